"""Exactly-once LMDB writer (no Ray): a page's samples, its ``page/<id>`` marker and ``num-samples``
commit in one write transaction, so any crash leaves a consistent, contiguous LMDB.

``LmdbSink`` runs this inside its Ray write task; it is usable on its own too (tests, bench, tools).
"""
from __future__ import annotations

import ctypes
import functools
import json
import os
import pickle
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

import lmdb

from ocrvl_ray.lmdb import schema as S
from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.core.runtime import StageResources
from ocrvl_ray.core.skips import Skip, SkipCounter
from ocrvl_ray.lmdb.rows import SinkPage, SinkSample

#: Key numbering and label encoding of a new LMDB (the layout config's index_base / label_format defaults too).
DEFAULT_INDEX_BASE = 1            # erniekit's reader
DEFAULT_LABEL_FORMAT = "pickle"   # gt-%09d dicts
DEFAULT_MAP_SIZE = 64 << 20       # grows by doubling ahead of each txn (and on MapFullError)
DEFAULT_MAX_TXN_BYTES = 64 << 20  # commit at the next page boundary once a txn holds this much
#: Ray Data bundles blocks into write tasks of at least this many bytes: Ray's ~25-30 ms between two tasks and
#: each task's env open are paid per task, so tasks are sized by what they write (docs/performance.md, "Sink").
DEFAULT_WRITE_BYTES = 512 << 20
#: A transaction also commits once this many seconds have passed since the write task's last commit (or start),
#: at a page boundary, so a crash loses at most that much work however slowly pages arrive (docs/lmdb.md).
DEFAULT_COMMIT_INTERVAL_S = 30.0
#: One write task at a time on the driver's node; no CPU, so it also runs on a head that advertises none.
RESOURCES = StageResources("LMDB writer task", num_cpus=0.0)


@dataclass
class WriteStats:
    """What one or more write transactions did; mergeable across write tasks."""
    pages: Counter = field(default_factory=Counter)         # new page markers by status
    pages_already_done: int = 0                              # marker existed: retry or resume, nothing written
    samples: int = 0
    samples_by_kind: Counter = field(default_factory=Counter)
    samples_by_label: Counter = field(default_factory=Counter)
    page_skips: SkipCounter = field(default_factory=SkipCounter)   # pages with status != ok (examples: page ids)
    item_skips: SkipCounter = field(default_factory=SkipCounter)   # word/region/sample skips inside pages
    txns: int = 0
    map_growths: int = 0
    write_s: float = 0.0                                     # seconds inside write tasks, summed over tasks
    write_span: tuple[float, float] | None = None            # first task's start, last task's end (epoch s)

    def timed(self, start: float) -> "WriteStats":
        """Records one write task that began at ``start`` (``time.time()``) and ends now."""
        end = time.time()
        self.write_s += end - start
        self.write_span = (start, end)
        return self

    def merge(self, other: "WriteStats | dict") -> "WriteStats":
        o = other if isinstance(other, WriteStats) else WriteStats.from_dict(other)
        self.pages.update(o.pages)
        self.pages_already_done += o.pages_already_done
        self.samples += o.samples
        self.samples_by_kind.update(o.samples_by_kind)
        self.samples_by_label.update(o.samples_by_label)
        self.page_skips.merge(o.page_skips)
        self.item_skips.merge(o.item_skips)
        self.txns += o.txns
        self.map_growths += o.map_growths
        self.write_s += o.write_s
        if o.write_span:
            spans = [sp for sp in (self.write_span, o.write_span) if sp]
            self.write_span = (min(sp[0] for sp in spans), max(sp[1] for sp in spans))
        return self

    def to_dict(self) -> dict:
        return {"pages": dict(sorted(self.pages.items())), "pages_already_done": self.pages_already_done,
                "samples": self.samples, "samples_by_kind": dict(sorted(self.samples_by_kind.items())),
                "samples_by_label": dict(sorted(self.samples_by_label.items())),
                "page_skips": self.page_skips.to_dict(), "item_skips": self.item_skips.to_dict(),
                "txns": self.txns, "map_growths": self.map_growths, "write_s": self.write_s,
                "write_span": list(self.write_span) if self.write_span else None}

    @classmethod
    def from_dict(cls, d: dict) -> "WriteStats":
        return cls(pages=Counter(d.get("pages", {})), pages_already_done=int(d.get("pages_already_done", 0)),
                   samples=int(d.get("samples", 0)), samples_by_kind=Counter(d.get("samples_by_kind", {})),
                   samples_by_label=Counter(d.get("samples_by_label", {})),
                   page_skips=SkipCounter.from_dict(d.get("page_skips", {})),
                   item_skips=SkipCounter.from_dict(d.get("item_skips", {})),
                   txns=int(d.get("txns", 0)), map_growths=int(d.get("map_growths", 0)),
                   write_s=float(d.get("write_s", 0.0)),
                   write_span=tuple(d["write_span"]) if d.get("write_span") else None)


def check_options(index_base: int, label_format: str) -> None:
    if index_base not in S.INDEX_BASES:
        raise OcrvlError(f"index_base={index_base!r} is not supported; use 1 (erniekit) or 0 (original FAST tools)")
    if label_format not in S.LABEL_FORMATS:
        raise OcrvlError(f"label_format={label_format!r} is not supported; use one of {', '.join(S.LABEL_FORMATS)}")


@functools.cache
def keep_freed_heap() -> None:
    """Lets a write-task process keep the heap LMDB frees after a commit and at ``env.close`` (glibc; else a no-op).

    By default glibc hands that memory back at once, so each write task's first txn faults in and zeroes its
    ~64 MiB of dirty pages again: ~40 ms per task, a third of a 256-page task on tmpfs (``bench/sink.py``).
    Kept: up to 256 MiB of free heap, allocations below 64 MiB from the heap. Once per process."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return
    mallopt(-1, 256 << 20)   # M_TRIM_THRESHOLD
    mallopt(-3, 64 << 20)    # M_MMAP_THRESHOLD


def encode_gt(sample: SinkSample) -> bytes:
    """The original ``gt-`` value: one full-crop box and the label as the only word."""
    w, h = float(sample.width), float(sample.height)
    return pickle.dumps({"bboxes": [[0.0, 0.0, w, 0.0, w, h, 0.0, h]], "words": [sample.label],
                         "filename": sample.filename}, protocol=4)


class LmdbWriter:
    """Opens (creating or validating) one LMDB directory and appends pages exactly once.

    >>> with LmdbWriter("out/train_layout.lmdb") as w:
    ...     stats = w.write_pages(pages)      # iterable of SinkPage
    """

    def __init__(self, path: str, index_base: int = DEFAULT_INDEX_BASE, label_format: str = DEFAULT_LABEL_FORMAT,
                 map_size: int = DEFAULT_MAP_SIZE, max_txn_bytes: int = DEFAULT_MAX_TXN_BYTES,
                 identity: bytes | None = None, commit_interval_s: float = DEFAULT_COMMIT_INTERVAL_S):
        check_options(index_base, label_format)
        self.commit_interval_s = float(commit_interval_s)
        self.identity = identity  # ``identity.identity_record``: recorded once, then required to match
        self.path, self.index_base, self.label_format = os.fspath(path), index_base, label_format
        self.map_size, self.max_txn_bytes = int(map_size), int(max_txn_bytes)
        self.env: lmdb.Environment | None = None
        self.map_growths = 0

    def __enter__(self) -> "LmdbWriter":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> "LmdbWriter":
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise OcrvlError(f"{self.path}: exists and is not a directory; an LMDB output path must be a directory")
        os.makedirs(self.path, exist_ok=True)
        data = os.path.join(self.path, "data.mdb")
        used = os.path.getsize(data) if os.path.exists(data) else 0
        # Open with headroom over the data already there (LMDB would silently shrink to the used size).
        self.env = lmdb.open(self.path, map_size=max(self.map_size, 2 * used), subdir=True,
                             readahead=False, meminit=False, max_dbs=0)
        self.env.reader_check()   # drop reader slots of killed processes
        with self.env.begin() as txn:
            raw = txn.get(S.SCHEMA_KEY)
        if raw is None:
            self._commit(self._init_schema)
        else:
            self._check_schema(json.loads(raw))
        if self.identity is not None:
            self._commit(self._check_identity)
        return self

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None

    @property
    def num_samples(self) -> int:
        with self.env.begin() as txn:
            return int(txn.get(S.NUM_SAMPLES))

    def write_pages(self, pages: Iterable[SinkPage], before_commit=None, after_commit=None) -> WriteStats:
        """Writes pages in transactions of about ``max_txn_bytes`` or ``commit_interval_s`` (whichever comes first,
        so a slow page source still commits), always ending at a page boundary.

        ``before_commit(pages)`` runs before each transaction (e.g. to write the pages' detections first),
        ``after_commit(stats)`` after it with that transaction's ``WriteStats`` (e.g. to report progress)."""
        stats, batch, size = WriteStats(), [], 0
        since = time.monotonic()

        def commit(b: list[SinkPage], nbytes: int) -> None:
            if before_commit:
                before_commit(b)
            self._reserve(nbytes)
            st = self._commit(lambda txn: self._put_pages(txn, b))
            if after_commit:
                after_commit(st)
            stats.merge(st)

        for page in pages:
            batch.append(page)
            size += 256 + sum(len(s.image) + len(s.label) + len(s.meta) for s in page.samples)  # 256: marker
            if size >= self.max_txn_bytes or time.monotonic() - since >= self.commit_interval_s:
                commit(batch, size)
                batch, size, since = [], 0, time.monotonic()
        if batch:
            commit(batch, size)
        stats.map_growths, self.map_growths = self.map_growths, 0
        return stats

    # -- internals -------------------------------------------------------------------------------
    def _reserve(self, nbytes: int) -> None:
        """Grow the map (by doubling) before a txn of about ``nbytes`` rather than abort it on a full map:
        room for twice that above the pages in use (copy-on-write pages, B-tree overhead)."""
        info, psize = self.env.info(), self.env.stat()["psize"]
        need = (info["last_pgno"] + 1) * psize + 2 * nbytes + (1 << 20)
        size = info["map_size"]
        if size < need:
            while size < need:
                size *= 2
            self.env.set_mapsize(size)
            self.map_growths += 1

    def _commit(self, fn):
        """Runs ``fn(txn)`` in one write txn; on a full map the txn is aborted, the map doubled, and retried."""
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    return fn(txn)
            except lmdb.MapFullError:
                self.env.set_mapsize(self.env.info()["map_size"] * 2)
                self.map_growths += 1
            except lmdb.MapResizedError:   # another process grew the map: adopt its size
                self.env.set_mapsize(0)

    def _init_schema(self, txn) -> None:
        raw = txn.get(S.SCHEMA_KEY)
        if raw is None:
            with txn.cursor() as cur:
                if cur.first():
                    raise OcrvlError(f"{self.path}: an LMDB without an ocrvl-schema key (not written by ocrvl); "
                                     "choose a new output directory")
            meta = {**S.LEGACY_META, **(S.TEXT_META if self.label_format == "text" else {})}
            for k, v in meta.items():
                txn.put(k, v)
            txn.put(S.SCHEMA_KEY, json.dumps({"version": S.SCHEMA_VERSION, "index_base": self.index_base,
                                              "label_format": self.label_format, "writer": "ocrvl-ray"}).encode())
            txn.put(S.NUM_SAMPLES, b"0")
        else:
            self._check_schema(json.loads(raw))

    def _check_schema(self, have: dict) -> None:
        if (have.get("index_base"), have.get("label_format")) != (self.index_base, self.label_format):
            raise OcrvlError(f"{self.path}: existing LMDB has index_base={have.get('index_base')}, "
                             f"label_format={have.get('label_format')} but this run asks index_base={self.index_base}, "
                             f"label_format={self.label_format}; use the same options or a new output directory")
        if have.get("version", 0) > S.SCHEMA_VERSION:
            raise OcrvlError(f"{self.path}: written by a newer ocrvl-ray (schema {have.get('version')}); upgrade ocrvl-ray")

    def _check_identity(self, txn) -> None:
        have = txn.get(S.IDENTITY_KEY)
        if have is None:
            with txn.cursor() as cur:
                if cur.set_range(S.PAGE_PREFIX) and cur.key().startswith(S.PAGE_PREFIX):
                    raise OcrvlError(f"{self.path}: holds pages but no record of the config that made them; "
                                     f"pass overwrite=true to rebuild it or choose a new output")
            txn.put(S.IDENTITY_KEY, self.identity)
        elif json.loads(have).get("hash") != json.loads(self.identity).get("hash"):
            raise OcrvlError(f"{self.path}: was made with another config; pass overwrite=true to rebuild it "
                             f"or choose a new output")

    def _put_pages(self, txn, pages: list[SinkPage]) -> WriteStats:
        st = WriteStats(txns=1)
        n = int(txn.get(S.NUM_SAMPLES))
        label_fmt = S.GT_FMT if self.label_format == "pickle" else S.LABEL_FMT
        for page in pages:
            if not page.page_id or len(page.page_id.encode("utf-8")) > S.MAX_PAGE_ID_BYTES:
                st.page_skips.add(Skip.MISSING_FIELD if not page.page_id else Skip.ERROR,
                                  f"page_id {page.page_id[:60]!r}: empty or longer than {S.MAX_PAGE_ID_BYTES} bytes")
                continue
            pkey = S.page_key(page.page_id)
            old = txn.get(pkey)
            if old is not None and _final(json.loads(old)):
                st.pages_already_done += 1
                continue
            status = page.status or Skip.ERROR.value
            first, count = self.index_base + n, 0
            if page.skips:
                st.item_skips.merge(_skips(page.skips))
            if status == "ok":
                for s in page.samples:
                    if not s.image:
                        st.item_skips.add(Skip.IMAGE_CORRUPT, f"{page.page_id}:{s.filename}")
                        continue
                    if not s.label.strip():
                        st.item_skips.add(Skip.EMPTY_LABEL, f"{page.page_id}:{s.filename}")
                        continue
                    k = first + count
                    txn.put(S.key(S.IMAGE_FMT, k), s.image)
                    txn.put(S.key(label_fmt, k), encode_gt(s) if self.label_format == "pickle" else s.label.encode())
                    txn.put(S.key(S.META_FMT, k), s.meta.encode())
                    st.samples_by_kind[s.kind or "unknown"] += 1
                    st.samples_by_label[s.layout_label or "unknown"] += 1
                    count += 1
            else:
                st.page_skips.add(status, f"{page.page_id}: {page.detail}"[:200] if page.detail else page.page_id)
            marker = {"first": first, "count": count, "status": status}
            if page.detail:
                marker["detail"] = page.detail[:500]
            txn.put(pkey, json.dumps(marker, ensure_ascii=False).encode())
            st.pages[status] += 1
            st.samples += count
            n += count
        txn.put(S.NUM_SAMPLES, str(n).encode())
        return st


def _final(marker: dict) -> bool:
    """A marker is final unless it records a skipped page without samples (those may be retried)."""
    return marker.get("status") == "ok" or int(marker.get("count", 0)) > 0


def _skips(raw: str) -> dict:
    try:
        d = json.loads(raw)
    except ValueError:
        return {"counts": {Skip.ERROR.value: 1}, "examples": {Skip.ERROR.value: ["unparseable skips JSON"]}}
    return d if isinstance(d, dict) else {}
