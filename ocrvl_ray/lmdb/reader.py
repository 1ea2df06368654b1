"""Reading our LMDBs the way erniekit's ``SFTMultimodalDatasetLmdb`` does, resume markers, verification.

Opening and label decoding are ``lmdb.schema``'s (``open_readonly``, ``decode_label``), shared with
``ocrvl inspect`` and the training pre-flight.
"""
from __future__ import annotations

import io
import json
import os
from collections import Counter

from ocrvl_ray.lmdb import schema as S
from ocrvl_ray.lmdb.shards import expand, index_path, is_sharded


class LmdbReader:
    """``reader[i] -> (PIL RGB image, label)``, ``reader.meta(i) -> dict``, ``len(reader)``.

    Sample i is read from key number ``i + index_base``. ``index_base=None`` takes it from ``ocrvl-schema``
    (1 when absent, like erniekit); ``index_base=1`` reproduces erniekit exactly, whatever was written.
    The length is ``num-samples``, else (like erniekit) the longest run of ``image-`` keys from the base.
    """

    def __init__(self, path: str, index_base: int | None = None):
        self.path = os.fspath(path)
        self.env = S.open_readonly(self.path)
        self.txn = self.env.begin()
        raw = self.txn.get(S.SCHEMA_KEY)
        self.schema = json.loads(raw) if raw else {}
        self.index_base = self.schema.get("index_base", 1) if index_base is None else index_base
        num = self.txn.get(S.NUM_SAMPLES)
        self.length_source = "num-samples" if num is not None else "probe"
        self._len = int(num.decode()) if num is not None else self._probe_length()

    def _probe_length(self) -> int:
        def has(i: int) -> bool:
            return self.txn.get(S.key(S.IMAGE_FMT, self.index_base + i)) is not None
        if not has(0):
            return 0
        hi = 1
        while has(hi):
            hi *= 2
        lo = hi // 2   # has(lo) is true, has(hi) false
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if has(mid) else (lo, mid)
        return hi

    def __len__(self) -> int:
        return self._len

    def _index(self, i: int) -> int:
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError(f"sample {i} out of range 0..{self._len - 1}")
        return i + self.index_base

    def _get(self, i: int, *fmts: str) -> bytes:
        k = self._index(i)
        for fmt in fmts:
            v = self.txn.get(S.key(fmt, k))
            if v is not None:
                return v
        raise KeyError(f"{self.path}: sample {i}: no key {' / '.join(fmt % k for fmt in fmts)}")

    def image_bytes(self, i: int) -> bytes:
        return self._get(i, S.IMAGE_FMT, S.IMG_FALLBACK_FMT)

    def image(self, i: int):
        from PIL import Image
        return Image.open(io.BytesIO(self.image_bytes(i))).convert("RGB")

    def label(self, i: int) -> str:
        return S.decode_label(self._get(i, S.GT_FMT, S.LABEL_FMT, S.TEXT_FALLBACK_FMT))

    def meta(self, i: int) -> dict:
        try:
            return json.loads(self._get(i, S.META_FMT))
        except KeyError:
            return {}

    def __getitem__(self, i: int):
        return self.image(i), self.label(i)

    def markers(self):
        """Yields ``(page_id, {"first", "count", "status"[, "detail"]})`` in key order."""
        with self.txn.cursor() as cur:
            if not cur.set_range(S.PAGE_PREFIX):
                return
            for k, v in cur:
                if not k.startswith(S.PAGE_PREFIX):
                    return
                yield k[len(S.PAGE_PREFIX):].decode("utf-8"), json.loads(v)

    def close(self) -> None:
        self.txn.abort()
        self.env.close()

    def __enter__(self) -> "LmdbReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def completed_pages(path: str, retry_skipped: bool = False) -> set[str]:
    """Page ids with a marker (nothing to redo); empty if the LMDB does not exist yet.

    Skipped pages have markers too; ``retry_skipped=True`` leaves them out so they are processed again
    (the sink then replaces their marker, as they never wrote samples). A shard folder: all its shards.
    """
    if is_sharded(path):
        return set().union(*(completed_pages(p, retry_skipped) for p in expand(path)))
    if not os.path.isfile(os.path.join(path, "data.mdb")):
        return set()
    done: set[str] = set()
    env = S.open_readonly(path)
    try:
        with env.begin() as txn, txn.cursor() as cur:
            if cur.set_range(S.PAGE_PREFIX):
                for k in cur.iternext(keys=True, values=False):
                    if not k.startswith(S.PAGE_PREFIX):
                        break
                    if retry_skipped and json.loads(cur.value()).get("status") != "ok":
                        continue
                    done.add(k[len(S.PAGE_PREFIX):].decode("utf-8"))
    finally:
        env.close()
    return done


def verify_lmdb(path: str, decode: bool = True, decode_limit: int | None = None) -> dict:
    """Checks an LMDB against the schema; ``ok`` is True when ``problems`` is empty.

    Checked: ``num-samples``; image/label/meta keys exactly ``base .. base+N-1``; page markers tile that
    range without overlap; with ``decode``, every image (or the first ``decode_limit``) opens with PIL,
    every label is non-empty text and every meta is JSON. A shard folder: every shard, summed (``shards``
    holds each shard's own report).
    """
    if is_sharded(path):
        return _verify_shards(path, decode, decode_limit)
    problems: list[str] = []
    with LmdbReader(path) as r:
        n, base, txn = len(r), r.index_base, r.txn
        label_format = r.schema.get("label_format", "pickle")
        if r.length_source != "num-samples":
            problems.append("no num-samples key")
        if not r.schema:
            problems.append("no ocrvl-schema key (not written by ocrvl-ray)")
        label_fmt = S.LABEL_FMT if label_format == "text" else S.GT_FMT
        for fmt in (S.IMAGE_FMT, label_fmt, S.META_FMT):
            problems += _check_contiguous(txn, fmt, base, n)
        by_status, ranges = Counter(), []
        for page_id, m in r.markers():
            by_status[m.get("status", "?")] += 1
            if m.get("count", 0):
                ranges.append((int(m["first"]), int(m["count"]), page_id))
        ranges.sort()
        expect = base
        for first, count, page_id in ranges:
            if first != expect:
                problems.append(f"page {page_id}: samples start at {first}, expected {expect} (gap or overlap)")
                break
            expect = first + count
        if expect != base + n:
            problems.append(f"page markers cover {expect - base} samples, num-samples is {n}")
        kinds, bad = Counter(), []
        if decode:
            for i in range(n if decode_limit is None else min(n, decode_limit)):
                try:
                    r.image(i).load()
                    if not r.label(i):
                        raise ValueError("empty label")
                    kinds[str(r.meta(i).get("sample_kind", "unknown"))] += 1
                except Exception as e:
                    bad.append(f"sample {i} (key {i + base}): {type(e).__name__}: {e}"[:200])
            if bad:
                problems.append(f"{len(bad)} undecodable samples, e.g. {bad[0]}")
        return {"path": os.fspath(path), "ok": not problems, "problems": problems, "num_samples": n,
                "index_base": base, "label_format": label_format, "schema_version": r.schema.get("version"),
                "erniekit_compatible": base == 1 and not problems, "pages": sum(by_status.values()),
                "pages_by_status": dict(sorted(by_status.items())), "samples_by_kind": dict(sorted(kinds.items())),
                "undecodable": bad[:10]}


def _verify_shards(path: str, decode: bool, decode_limit: int | None) -> dict:
    parts = [verify_lmdb(p, decode, decode_limit) for p in expand(path)]
    problems = [f"{os.path.basename(r['path'])}: {msg}" for r in parts for msg in r["problems"]]
    idx = index_path(path)
    if os.path.isfile(idx):
        with open(idx, encoding="utf-8") as f:
            index = json.load(f)
        if index.get("shards") != len(parts):
            problems.append(f"{idx} names {index.get('shards')} shards, the folder holds {len(parts)}")
    else:
        problems.append(f"{idx} is missing (the shard index the layout job writes)")
    by_status, kinds = Counter(), Counter()
    for r in parts:
        by_status.update(r["pages_by_status"])
        kinds.update(r["samples_by_kind"])
    return {"path": os.fspath(path), "ok": not problems, "problems": problems,
            "num_samples": sum(r["num_samples"] for r in parts), "index_base": parts[0]["index_base"],
            "label_format": parts[0]["label_format"], "schema_version": parts[0]["schema_version"],
            "erniekit_compatible": all(r["erniekit_compatible"] for r in parts) and not problems,
            "pages": sum(r["pages"] for r in parts), "pages_by_status": dict(sorted(by_status.items())),
            "samples_by_kind": dict(sorted(kinds.items())),
            "undecodable": [u for r in parts for u in r["undecodable"]][:10], "shards": parts}


def _check_contiguous(txn, fmt: str, base: int, n: int) -> list[str]:
    """Streams the keys of one prefix (sorted, zero-padded) and compares them with base..base+n-1."""
    prefix = fmt.split("%")[0].encode()
    expect, problems = base, []
    with txn.cursor() as cur:
        if cur.set_range(prefix):
            for k in cur.iternext(keys=True, values=False):
                if not k.startswith(prefix):
                    break
                num = int(k[len(prefix):])
                if num != expect:
                    kind = "missing" if num > expect else "unexpected"
                    problems.append(f"{prefix.decode()}: {kind} key near {expect} (found {num})")
                    return problems
                expect += 1
    if expect != base + n:
        problems.append(f"{prefix.decode()}: {expect - base} keys, num-samples is {n}")
    return problems
