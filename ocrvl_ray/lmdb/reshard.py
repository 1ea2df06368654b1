"""``reshard``: copy an LMDB (or a sharded folder) into N shards of the layout job's shard contract (no Ray).

Training ranks read whole shards (``shards.assign``), so one LMDB (the FAST tools', or ``shards=1``) feeds one
rank; ``ocrvl reshard IN --shards N --out OUT`` gives it N. What OUT keeps:

- every sample's records (``image-``, ``gt-``/``label-``, ``meta-`` and any other ``<prefix>-%09d`` family)
  byte for byte, renumbered contiguously from the input's ``index_base`` in each shard;
- the fixed keys as they are (``ocrvl-schema``, ``ocrvl-identity``, the original's metadata keys); an LMDB
  without ``ocrvl-schema`` gets the writer's record of its options and, without ``meta-`` keys, a meta record
  naming each sample's source key, so OUT is a complete ocrvl LMDB (its page markers aside: there are none);
- the order: a shard's samples are in input order (input shards one after another).

Which shard a sample goes to: with page markers, its page's ``shards.shard_of(page_id, N)`` (the marker follows,
``first`` rewritten), so a later layout resume into OUT looks for each page where the hash rule says. Without
markers (the FAST tools' LMDBs) sample i goes to shard ``i % N``: round-robin, so each rank gets a mix of the
whole input even when it was written dataset by dataset (contiguous blocks would give each rank one part).

OUT is written into a temporary folder beside it, checked (``verify_lmdb`` on its structure and the first
samples of each shard, and a multiset fingerprint of every (label, image) pair against IN's), then renamed
into place; the index ``<OUT>.shards.json`` (N > 1) follows. ``shards=1`` writes one LMDB (shards merged).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass

from ocrvl_ray.core.errors import OcrvlError, check_output_path
from ocrvl_ray.lmdb import schema as S
from ocrvl_ray.lmdb.reader import LmdbReader, verify_lmdb
from ocrvl_ray.lmdb.shards import expand, index_path, is_sharded, shard_of, shard_paths, write_index
from ocrvl_ray.lmdb.writer import DEFAULT_MAX_TXN_BYTES, LmdbWriter

_FAMILY = re.compile(rb"^(.+-)(\d{9})$")   # a per-sample key: prefix + the %09d key number
_IMAGE, _META = S.IMAGE_FMT[:-4].encode(), S.META_FMT[:-4].encode()
_LABELS = {"pickle": S.GT_FMT[:-4].encode(), "text": S.LABEL_FMT[:-4].encode()}
DECODE_CHECK = 64   # samples per shard the final verify_lmdb decodes (the fingerprint covers every byte)


@dataclass
class ReshardResult:
    path: str
    shards: int
    samples: int
    pages: int
    shard_samples: list[int]
    bytes: int              # value bytes copied
    seconds: float

    def line(self) -> str:
        """The one-line summary the CLI prints."""
        mb = self.bytes / 1e6
        return (f"{self.path}: {self.samples} samples ({self.pages} pages) in {self.shards} shard(s) "
                f"[{', '.join(map(str, self.shard_samples))}], {mb:.1f} MB in {self.seconds:.1f} s "
                f"({mb / max(self.seconds, 1e-6):.1f} MB/s), verified")


class _Source:
    """One input LMDB: its options, per-sample key families, fixed keys and markers (one read txn)."""

    def __init__(self, path: str):
        self.path = path
        self.env = S.open_readonly(path)
        self.txn = self.env.begin()
        try:
            self._load()
        except BaseException:
            self.close()
            raise

    def _load(self) -> None:
        path = self.path
        raw = self.txn.get(S.SCHEMA_KEY)
        self.schema = json.loads(raw) if raw else None
        self.families, self.fixed, self.has_markers = self._scan()
        if self.schema:
            self.index_base, self.label_format = self.schema.get("index_base", 1), self.schema.get("label_format",
                                                                                                      "pickle")
        else:
            self.index_base = 0 if self.txn.get(S.key(S.IMAGE_FMT, 0)) is not None else 1
            self.label_format = next((f for f, p in _LABELS.items() if p in self.families), "pickle")
        num = self.txn.get(S.NUM_SAMPLES)
        self.n = int(num) if num is not None else self._count(_IMAGE)
        label = _LABELS.get(self.label_format, b"gt-")
        if self.n and not (_IMAGE in self.families and label in self.families):
            raise OcrvlError(f"{path}: no image-%09d or {label.decode()}%09d keys (label_format "
                             f"{self.label_format}); pass an LMDB written by ocrvl layout or the FAST tools")

    def _scan(self) -> tuple[list[bytes], dict[bytes, bytes], bool]:
        """Per-sample key prefixes, the fixed keys (``num-samples`` aside) and whether page markers exist,
        jumping over each family and the markers instead of reading them."""
        families, fixed, markers = [], {}, False
        with self.txn.cursor() as cur:
            ok = cur.first()
            while ok:
                k = cur.key()
                if k.startswith(S.PAGE_PREFIX):
                    markers = True
                    ok = cur.set_range(S.PAGE_PREFIX[:-1] + b"0")     # "0" sorts right after "/"
                    continue
                m = _FAMILY.match(k)
                if m:
                    families.append(m.group(1))
                    ok = cur.set_range(m.group(1) + b":")             # ":" sorts right after "9"
                    continue
                if k != S.NUM_SAMPLES:
                    fixed[k] = cur.value()
                ok = cur.next()
        return families, fixed, markers

    def _count(self, prefix: bytes) -> int:
        with self.txn.cursor() as cur:
            n, ok = 0, cur.set_range(prefix)
            while ok and cur.key().startswith(prefix):
                n, ok = n + 1, cur.next()
        return n

    def markers(self) -> list[tuple[int, int, str, dict]]:
        """``(first, count, page_id, marker)`` sorted by key range (a skipped page's before a page at its key)."""
        out = []
        with self.txn.cursor() as cur:
            ok = cur.set_range(S.PAGE_PREFIX)
            while ok and cur.key().startswith(S.PAGE_PREFIX):
                m = json.loads(cur.value())
                out.append((int(m.get("first", 0)), int(m.get("count", 0)),
                            cur.key()[len(S.PAGE_PREFIX):].decode("utf-8"), m))
                ok = cur.next()
        return sorted(out, key=lambda r: (r[0], r[1]))

    def samples(self):
        """Yields ``[value per family]`` for samples 0..n-1 in key order: one cursor per family, in step;
        an ``OcrvlError`` names the first missing or extra key."""
        cursors = [self.txn.cursor() for _ in self.families]
        try:
            for fam, cur in zip(self.families, cursors):
                cur.set_range(fam)
            for i in range(self.n):
                want = [fam + b"%09d" % (self.index_base + i) for fam in self.families]
                values = []
                for w, cur in zip(want, cursors):
                    if cur.key() != w:
                        raise OcrvlError(f"{self.path}: key {w.decode()} missing (found {cur.key().decode()!r} "
                                         f"instead; num-samples {self.n}); check it with verify_lmdb")
                    values.append(cur.value())
                    cur.next()
                yield values
            for fam, cur in zip(self.families, cursors):
                if cur.key().startswith(fam):
                    raise OcrvlError(f"{self.path}: extra key {cur.key().decode()} beyond num-samples {self.n}; "
                                     f"check it with verify_lmdb")
        finally:
            for cur in cursors:
                cur.close()

    def close(self) -> None:
        self.txn.abort()
        self.env.close()


class _Shard:
    """One output shard: created by ``LmdbWriter`` (schema record, metadata keys), then filled in big txns."""

    def __init__(self, path: str, index_base: int, label_format: str, map_size: int):
        self.writer = LmdbWriter(path, index_base=index_base, label_format=label_format, map_size=map_size).open()
        self.items: list[tuple[bytes, bytes]] = []
        self.nbytes = 0
        self.count = 0   # samples so far

    def put(self, k: bytes, v: bytes) -> None:
        self.items.append((k, v))
        self.nbytes += len(k) + len(v)

    def flush(self) -> None:
        if not self.items:
            return
        items = sorted(self.items)
        self.writer._reserve(self.nbytes)   # the writer's map growth and full-map retry
        self.writer._commit(lambda txn: txn.cursor().putmulti(items))
        self.items, self.nbytes = [], 0

    def finish(self) -> None:
        """``num-samples``, the last txn, and everything on disk."""
        self.put(S.NUM_SAMPLES, str(self.count).encode())
        self.flush()
        self.writer.env.sync(True)


def _fingerprint(label: str, image: bytes) -> int:
    """One sample's term of the multiset fingerprint (their sum mod 2**128): its label and image bytes."""
    h = hashlib.blake2b(label.encode("utf-8"), digest_size=16)
    h.update(hashlib.blake2b(image, digest_size=16).digest())
    return int.from_bytes(h.digest(), "big")


def reshard(src: str, out: str, shards: int, *, overwrite: bool = False,
            txn_bytes: int = DEFAULT_MAX_TXN_BYTES, decode_limit: int | None = DECODE_CHECK) -> ReshardResult:
    """Copies ``src`` into ``shards`` shards at ``out`` (see the module doc); an ``OcrvlError`` when it cannot,
    or when the copy does not verify (``out`` is then left untouched)."""
    started = time.time()
    src, out = os.path.abspath(os.fspath(src)), os.path.abspath(os.fspath(out))
    if int(shards) < 1:
        raise OcrvlError(f"shards={shards}: need at least 1")
    if out == src or out.startswith(src.rstrip(os.sep) + os.sep) or src.startswith(out + os.sep):
        raise OcrvlError(f"out={out} overlaps the input {src}; write to a new folder")
    inputs = expand(src)
    if not is_sharded(src):
        S.open_readonly(src).close()   # the one "no LMDB here" error, before anything is written
    if os.path.lexists(out):
        if not overwrite:
            raise OcrvlError(f"out={out} exists; pass overwrite=true to replace it or choose a new output")
        if not (os.path.isfile(os.path.join(out, "data.mdb")) or is_sharded(out)):
            raise OcrvlError(f"out={out} exists and is no LMDB or shard folder; overwrite=true replaces only "
                             f"those, choose a new output")
    check_output_path(out, "out", folder=True, no_spaces=True)
    tmp = f"{out}.reshard-tmp-{os.getpid()}"
    _remove(tmp)
    try:
        result, fingerprint = _copy(inputs, tmp, int(shards), txn_bytes, started)
        problems = _check(inputs, tmp, result, fingerprint, decode_limit)
        if problems:
            raise OcrvlError(f"{src} -> {out}: the copy does not verify ({'; '.join(problems)[:300]}); "
                             f"nothing was replaced")
        _replace(tmp, out, result.shards)
    finally:
        _remove(tmp)
    result.path, result.seconds = out, time.time() - started
    return result


def _copy(inputs: list[str], tmp: str, n: int, txn_bytes: int, started: float) -> tuple[ReshardResult, int]:
    """Writes the shards (and, N > 1, their index) under ``tmp``; the result and IN's fingerprint."""
    sources: list[_Source] = []
    try:
        for p in inputs:
            sources.append(_Source(p))
        first = sources[0]
        for s in sources[1:]:
            if (s.index_base, s.label_format, s.fixed) != (first.index_base, first.label_format, first.fixed):
                raise OcrvlError(f"{s.path}: its options or fixed keys (ocrvl-schema, ocrvl-identity, metadata) "
                                 f"differ from {first.path}'s; reshard shards of one run only")
        paths = [tmp] if n == 1 else shard_paths(tmp, n)
        if n > 1:
            os.makedirs(tmp)
        map_size = 2 * sum(os.path.getsize(os.path.join(p, "data.mdb")) for p in inputs) // n + (64 << 20)
        outs: list[_Shard] = []
        copied = pages = fingerprint = 0
        try:
            for p in paths:
                outs.append(_Shard(p, first.index_base, first.label_format, map_size))
            for o in outs:
                for k, v in first.fixed.items():
                    o.put(k, v)
            for s in sources:
                nbytes, npages, fp = _copy_source(s, outs, txn_bytes)
                copied, pages, fingerprint = copied + nbytes, pages + npages, fingerprint + fp
            for o in outs:
                o.finish()
        finally:
            for o in outs:
                o.writer.close()
        counts = [o.count for o in outs]
        if n > 1:
            write_index(tmp, paths, counts, first.index_base, first.label_format)
        return (ReshardResult(tmp, n, sum(counts), pages, counts, copied, time.time() - started),
                fingerprint % (1 << 128))
    finally:
        for s in sources:
            s.close()


def _copy_source(s: _Source, outs: list[_Shard], txn_bytes: int) -> tuple[int, int, int]:
    """Routes one input's samples and markers to the output shards; (value bytes, markers, fingerprint)."""
    n, base, families = len(outs), s.index_base, s.families
    marks = s.markers() if s.has_markers else []
    add_meta = _META not in families
    if s.n:
        at_label, at_image = families.index(_LABELS[s.label_format]), families.index(_IMAGE)
    mi, end, target = 0, None, 0
    copied = pending = fingerprint = 0

    def place(page_id: str, count: int, marker: dict) -> int:
        """Writes a page's marker into its shard, at that shard's next key; returns the shard."""
        shard = shard_of(page_id, n)
        o = outs[shard]
        o.put(S.page_key(page_id), json.dumps({**marker, "first": base + o.count, "count": count},
                                              ensure_ascii=False).encode())
        return shard

    for i, values in enumerate(s.samples()):
        k = base + i
        if marks:
            while end is None or k >= end:
                if mi == len(marks) or (marks[mi][1] and marks[mi][0] != k):
                    at = f"page {marks[mi][2]} starts at {marks[mi][0]}" if mi < len(marks) else "no marker left"
                    raise OcrvlError(f"{s.path}: page markers do not tile the samples at key {k} ({at}); "
                                     f"check it with verify_lmdb")
                first, count, page_id, marker = marks[mi]
                mi += 1
                shard = place(page_id, count, marker)
                if count:
                    end, target = first + count, shard
        else:
            target = i % n
        o = outs[target]
        key_no = b"%09d" % (base + o.count)
        for fam, v in zip(families, values):
            o.put(fam + key_no, v)
        if add_meta:
            o.put(_META + key_no, json.dumps({"source_lmdb": s.path, "source_key": k}).encode())
        fingerprint += _fingerprint(S.decode_label(values[at_label]), values[at_image])
        o.count += 1
        size = sum(map(len, values))
        copied, pending = copied + size, pending + size
        if pending >= txn_bytes:
            for x in outs:
                x.flush()
            pending = 0
    for first, count, page_id, marker in marks[mi:]:
        if count:
            raise OcrvlError(f"{s.path}: page {page_id} points at keys {first}..{first + count - 1}, beyond "
                             f"num-samples {s.n}; check it with verify_lmdb")
        place(page_id, count, marker)
    for x in outs:
        x.flush()
    return copied, len(marks), fingerprint


def _check(inputs: list[str], tmp: str, result: ReshardResult, fingerprint: int,
           decode_limit: int | None) -> list[str]:
    """``verify_lmdb`` of the new output, then every sample read back through ``LmdbReader``: the multiset of
    (label, image) must be IN's, and every shard must hold IN's identity record.

    ``verify_lmdb`` wants page markers to tile the samples; an input without markers (the FAST tools') has none
    to copy, so there, and only there, "page markers cover 0 samples" is what OUT is expected to show."""
    report = verify_lmdb(tmp, decode=True, decode_limit=decode_limit)
    problems = list(report["problems"])
    if result.pages == 0:
        for part in report.get("shards", [report]):
            for msg in part["problems"]:
                if msg.startswith("page markers cover 0 samples"):
                    problems = [p for p in problems if p not in (msg, f"{os.path.basename(part['path'])}: {msg}")]
    if report["num_samples"] != result.samples:
        problems.append(f"{report['num_samples']} samples written, {result.samples} read")
    identity = _identity_bytes(inputs[0])
    got = 0
    for p in expand(tmp):
        with LmdbReader(p) as r:
            for i in range(len(r)):
                got += _fingerprint(r.label(i), r.image_bytes(i))
            if r.txn.get(S.IDENTITY_KEY) != identity:
                problems.append(f"{os.path.basename(p)}: identity record differs from the input's")
    if got % (1 << 128) != fingerprint:
        problems.append("the (label, image) pairs read back differ from the input's")
    return problems


def _identity_bytes(path: str) -> bytes | None:
    env = S.open_readonly(path)
    try:
        with env.begin() as txn:
            return txn.get(S.IDENTITY_KEY)
    finally:
        env.close()


def _replace(tmp: str, out: str, n: int) -> None:
    """Moves the checked output into place (an existing ``out`` only goes once the new one is there)."""
    old = f"{out}.reshard-old-{os.getpid()}"
    if os.path.lexists(out):
        os.rename(out, old)
    os.rename(tmp, out)
    if n > 1:
        os.replace(index_path(tmp), index_path(out))
    elif os.path.exists(index_path(out)):
        os.remove(index_path(out))   # the index of a sharded output this one replaced
    _remove(old)


def _remove(path: str) -> None:
    """A temporary output and its index, if there."""
    shutil.rmtree(path, ignore_errors=True)
    if os.path.exists(index_path(path)):
        os.remove(index_path(path))
