"""``shards=N``: the layout output as N LMDB shards written by up to N parallel write tasks.

    out/train_layout.lmdb/shard-00000-of-00002/   an ordinary LMDB each (``LmdbWriter``: exactly once, resumable)
    out/train_layout.lmdb/shard-00001-of-00002/
    out/train_layout.lmdb.shards.json             the index: count, names, hash rule, samples per shard

A page belongs to shard ``shard_of(page_id, N)`` (a stable hash), so reruns and resumes look for it where it
was written. Ray Data runs up to N write tasks at a time; each splits its pages by shard and writes the shards
in turn, starting at a different shard per task, so concurrent tasks mostly write different shards. When two
meet on one shard, LMDB's write lock serialises them and every txn re-checks the page markers.
Folder naming and reading (``expand``) are the shard contract in ``shards.py``.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Iterable

from ray.data import Datasink
from ray.data.block import Block

from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.layout.sink.datasink import LmdbSink, detections_writer, iter_pages, task_size
from ocrvl_ray.core.shards import SHARD_RE, index_path, shard_name
from ocrvl_ray.layout.sink.writer import (DEFAULT_MAP_SIZE, DEFAULT_MAX_TXN_BYTES, DEFAULT_WRITE_BYTES, LmdbWriter,
                                          WriteStats, check_options, keep_freed_heap)

HASH_RULE = "blake2b(page_id utf-8, digest_size=8) big-endian mod N"


def shard_of(page_id: str, n: int) -> int:
    """The shard of a page: stable across runs, processes and machines (unlike Python's ``hash``)."""
    return int.from_bytes(hashlib.blake2b(page_id.encode("utf-8"), digest_size=8).digest(), "big") % n


def shard_paths(path: str, n: int) -> list[str]:
    return [os.path.join(path, shard_name(i, n)) for i in range(n)]


def make_sink(path: str, shards: int = 1, **kw) -> "LmdbSink | ShardedLmdbSink":
    """One LMDB at ``path`` for ``shards=1``, else a folder of ``shards`` LMDBs."""
    return LmdbSink(path, **kw) if shards == 1 else ShardedLmdbSink(path, shards, **kw)


class ShardedLmdbSink(Datasink):
    """``LmdbSink`` over N shard LMDBs; same options, applied to every shard."""

    def __init__(self, path: str, shards: int, index_base: int = 1, label_format: str = "pickle",
                 map_size: int = DEFAULT_MAP_SIZE, max_txn_bytes: int = DEFAULT_MAX_TXN_BYTES,
                 min_pages_per_write: int | None = None, min_bytes_per_write: int | None = DEFAULT_WRITE_BYTES,
                 identity: bytes | None = None, detections: str | None = None):
        check_options(index_base, label_format)
        if shards < 1:
            raise OcrvlError(f"shards={shards}: need at least 1")
        self.path, self.shards = os.fspath(path), int(shards)
        self.paths = shard_paths(self.path, self.shards)
        self._opts = dict(index_base=index_base, label_format=label_format, map_size=map_size,
                          max_txn_bytes=max_txn_bytes, identity=identity)
        self.detections = detections   # one detections folder for all shards (parts have unique names)
        self._min_rows, self._min_bytes = task_size(min_pages_per_write, min_bytes_per_write)
        self.summary: dict = {}

    @property
    def write_concurrency(self) -> int:
        return self.shards

    def _writer(self, i: int) -> LmdbWriter:
        return LmdbWriter(self.paths[i], **self._opts)

    def prepare(self) -> None:
        """Creates the shards (or checks them: same count, same options) and the index."""
        self._check_folder()
        os.makedirs(self.path, exist_ok=True)
        counts = []
        for i in range(self.shards):
            with self._writer(i) as w:
                counts.append(w.num_samples)
        self._write_index(counts)

    def _check_folder(self) -> None:
        if os.path.isfile(os.path.join(self.path, "data.mdb")):
            raise OcrvlError(f"{self.path} holds a single LMDB (written with shards=1); use shards=1 or a new output")
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise OcrvlError(f"{self.path}: exists and is not a directory; a sharded output is a directory")
        if os.path.isdir(self.path):
            other = {m.group(2) for m in map(SHARD_RE.match, os.listdir(self.path)) if m} - {f"{self.shards:05d}"}
            if other:
                raise OcrvlError(f"{self.path} holds shards of a run with shards={int(min(other))}; resume with "
                                 f"that count or write to a new output")

    def _write_index(self, counts: list[int]) -> None:
        index = {"shards": self.shards, "dirs": [os.path.basename(p) for p in self.paths], "page_to_shard": HASH_RULE,
                 "num_samples": counts, "total_samples": sum(counts), "index_base": self._opts["index_base"],
                 "label_format": self._opts["label_format"]}
        tmp = index_path(self.path) + f".tmp-{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(index, f, indent=1)
        os.replace(tmp, index_path(self.path))

    @property
    def supports_distributed_writes(self) -> bool:
        return False   # the shards live on one local disk: the driver's node

    @property
    def min_rows_per_write(self) -> int | None:
        """``min_pages_per_write`` per shard: a task's pages split N ways, and each shard's txn commits
        (and syncs) about as many pages as one unsharded write."""
        return None if self._min_rows is None else self._min_rows * self.shards

    @property
    def min_bytes_per_write(self) -> int | None:
        """As one writer's: N tasks run at once, so Ray's gap between two tasks overlaps the others' writes."""
        return self._min_bytes

    def on_write_start(self, schema=None) -> None:
        self.prepare()

    def write(self, blocks: Iterable[Block], ctx) -> dict:
        start = time.time()
        keep_freed_heap()
        groups: list[list] = [[] for _ in range(self.shards)]
        for page in iter_pages(blocks):
            groups[shard_of(page.page_id, self.shards)].append(page)
        start = getattr(ctx, "task_idx", 0) % self.shards
        stats = WriteStats()
        before = detections_writer(self.detections)
        for k in range(self.shards):
            i = (start + k) % self.shards
            if groups[i]:
                with self._writer(i) as w:
                    stats.merge(w.write_pages(groups[i], before_commit=before))
        return stats.timed(start).to_dict()

    def on_write_complete(self, write_result) -> None:
        stats = WriteStats()
        for ret in write_result.write_returns:
            if ret:
                stats.merge(ret)
        counts = []
        for i in range(self.shards):
            with self._writer(i) as w:
                counts.append(w.num_samples)
        self._write_index(counts)
        self.summary = {**stats.to_dict(), "num_samples": sum(counts), "write_tasks": len(write_result.write_returns),
                        "path": self.path, "shards": self.shards, "shard_num_samples": counts}
