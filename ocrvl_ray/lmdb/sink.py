"""``LmdbSink``: the Ray Data end of the layout pipeline — write tasks on the driver's node, exactly once.

    sink = LmdbSink("out/finance_train_layout.lmdb", shards=2)
    summary = write_lmdb(ds, sink)   # = ds.write_datasink(sink, concurrency=sink.write_concurrency, ...)

Rows are ``SinkPage`` rows (``rows.py``). Each write task runs ``LmdbWriter`` (``writer.py``) on its blocks, per
shard (``shards.py``); the driver merges the tasks' ``WriteStats`` into ``sink.summary``.
"""
from __future__ import annotations

import os
import time
from typing import Callable, Iterable, Iterator

from ray.data import Datasink
from ray.data.block import Block, BlockAccessor

from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.lmdb.rows import SinkPage, SinkSample, as_bytes
from ocrvl_ray.lmdb.shards import check_shard_folder, shard_of, shard_paths, write_index
from ocrvl_ray.lmdb.writer import (DEFAULT_COMMIT_INTERVAL_S, DEFAULT_INDEX_BASE, DEFAULT_LABEL_FORMAT,
                                   DEFAULT_MAP_SIZE, DEFAULT_MAX_TXN_BYTES, DEFAULT_WRITE_BYTES, RESOURCES, LmdbWriter,
                                   WriteStats, check_options, keep_freed_heap)


class LmdbSink(Datasink):
    """Appends page rows to one LMDB (``shards=1``) or to a folder of ``shards`` LMDBs; exactly once.

    A page whose ``page/<id>`` marker exists is skipped. With N shards a page goes to ``shard_of(page_id, N)``,
    Ray runs up to N write tasks at a time, and each task writes its pages shard by shard, starting at a
    different shard per task, so concurrent tasks mostly write different shards (LMDB's write lock serialises
    the rest; every txn re-checks the markers). One shard is simply the smallest case: the LMDB at ``path``.

    Ray bundles blocks so each write task (one env open, a few fsyncs) gets at least ``min_bytes_per_write``
    bytes, or, when ``min_pages_per_write`` is given, that many pages (per shard) instead (both ``None``: one
    task per block). With a byte target a task also starts once ``commit_interval_s`` have passed since the last
    one started (at the next block that arrives), and a task commits at least that often too: a crash loses at
    most about that much work however slowly pages come (``WriteTarget``). ``map_size`` is the initial map, doubled when full; ``max_txn_bytes`` bounds a transaction
    (it always ends at a page boundary). ``before_commit(pages)`` (picklable) runs before each transaction,
    e.g. to write the pages' detections first; ``progress`` (a ``core.console.page_counter`` actor) is told
    ``("written", n)`` after each transaction, so the driver counts written pages without reading the LMDB.
    """

    def __init__(self, path: str, shards: int = 1, *, index_base: int = DEFAULT_INDEX_BASE,
                 label_format: str = DEFAULT_LABEL_FORMAT,
                 map_size: int = DEFAULT_MAP_SIZE, max_txn_bytes: int = DEFAULT_MAX_TXN_BYTES,
                 min_pages_per_write: int | None = None, min_bytes_per_write: int | None = DEFAULT_WRITE_BYTES,
                 identity: bytes | None = None, before_commit: Callable[[list[SinkPage]], None] | None = None,
                 progress=None, commit_interval_s: float = DEFAULT_COMMIT_INTERVAL_S):
        check_options(index_base, label_format)
        if int(shards) < 1:
            raise OcrvlError(f"shards={shards}: need at least 1")
        self.path, self.shards = os.fspath(path), int(shards)
        self.paths = [self.path] if self.shards == 1 else shard_paths(self.path, self.shards)
        self.index_base, self.label_format = index_base, label_format
        self._opts = dict(index_base=index_base, label_format=label_format, map_size=map_size,
                          max_txn_bytes=max_txn_bytes, identity=identity,  # identity: refuse pages of another config
                          commit_interval_s=commit_interval_s)
        self.before_commit = before_commit
        self.progress = progress   # a ``console.page_counter``: told the pages each transaction commits
        self._min_rows, min_bytes = task_size(min_pages_per_write, min_bytes_per_write)
        self._min_bytes = None if min_bytes is None else WriteTarget(min_bytes, commit_interval_s)
        self.summary: dict = {}

    def _writer(self, i: int) -> LmdbWriter:
        return LmdbWriter(self.paths[i], **self._opts)

    def _counts(self) -> list[int]:
        """Samples per shard (opening each also creates it, with num-samples 0, when new)."""
        counts = []
        for i in range(self.shards):
            with self._writer(i) as w:
                counts.append(w.num_samples)
        return counts

    def prepare(self) -> None:
        """Creates the LMDB(s) or checks their options (``OcrvlError`` on mismatch). Call before a long pipeline."""
        if self.shards > 1:
            check_shard_folder(self.path, self.shards)
            os.makedirs(self.path, exist_ok=True)
        self._write_index(self._counts())

    def _write_index(self, counts: list[int]) -> None:
        if self.shards > 1:
            write_index(self.path, self.paths, counts, self.index_base, self.label_format)

    @property
    def supports_distributed_writes(self) -> bool:
        return False   # LMDB lives on one local disk: the driver's node

    @property
    def write_concurrency(self) -> int:
        return self.shards   # one write task per shard at a time

    @property
    def min_rows_per_write(self) -> int | None:
        """``min_pages_per_write`` per shard: a task's pages split N ways, so each shard's txn commits (and
        syncs) about as many pages as one unsharded write."""
        return None if self._min_rows is None else self._min_rows * self.shards

    @property
    def min_bytes_per_write(self) -> int | None:
        """The same for any N: N tasks run at once, so Ray's gap between two tasks overlaps the others' writes."""
        return self._min_bytes

    def on_write_start(self, schema=None) -> None:
        self.prepare()

    def write(self, blocks: Iterable[Block], ctx) -> dict:
        started = time.time()
        keep_freed_heap()
        pages = iter_pages(blocks)
        if self.shards == 1:
            groups: list = [pages]                  # streamed: pages commit as their blocks arrive
        else:
            groups = [[] for _ in range(self.shards)]
            for page in pages:
                groups[shard_of(page.page_id, self.shards)].append(page)
        first = getattr(ctx, "task_idx", 0) % self.shards
        stats = WriteStats()
        for k in range(self.shards):
            i = (first + k) % self.shards
            if self.shards == 1 or groups[i]:
                with self._writer(i) as w:
                    stats.merge(w.write_pages(groups[i], before_commit=self.before_commit,
                                              after_commit=self._committed if self.progress is not None else None))
        return stats.timed(started).to_dict()

    def _committed(self, st: WriteStats) -> None:
        self.progress.add.remote("written", sum(st.pages.values()))

    def on_write_complete(self, write_result) -> None:
        stats = WriteStats()
        for ret in write_result.write_returns:
            if ret:
                stats.merge(ret)
        counts = self._counts()   # also creates the LMDB (num-samples 0) for an empty dataset
        self._write_index(counts)
        self.summary = {**stats.to_dict(), "num_samples": sum(counts), "write_tasks": len(write_result.write_returns),
                        "path": self.path}
        if self.shards > 1:
            self.summary.update(shards=self.shards, shard_num_samples=counts)


class WriteTarget(int):
    """The bytes Ray Data bundles into a write task, a target that is also met once ``interval_s`` have passed
    since it was last met (or since the sink was made): small or slow runs then commit as they go instead of
    only when the stream ends (issue 27: 128 of 200 pages composed, none committed, at 512 MB per task).

    Ray 2.60's write bundler (``EstimateBytes.can_build_ready_bundle``) asks ``size_bytes >= target`` each
    time a block arrives; for an ``int`` subclass on the right Python tries its reflected ``__le__`` first.
    The driver holds the one instance (the bundler runs there), so the clock is the stream's."""

    def __new__(cls, nbytes: int, interval_s: float):
        self = super().__new__(cls, int(nbytes))
        self.interval_s, self.met = float(interval_s), time.monotonic()
        return self

    def __le__(self, size) -> bool:
        now = time.monotonic()
        if int(size) >= int(self) or now - self.met >= self.interval_s:
            self.met = now
            return True
        return False

    def __reduce__(self):
        return WriteTarget, (int(self), self.interval_s)


def task_size(pages: int | None, nbytes: int | None) -> tuple[int | None, int | None]:
    """Ray Data bundles write tasks by rows or by bytes, not both: pages win when given."""
    return (pages, None) if pages is not None else (None, nbytes)


def iter_pages(blocks: Iterable[Block]) -> Iterator[SinkPage]:
    """Page rows of Arrow or pandas blocks; empty blocks (possibly without columns) are skipped."""
    for block in blocks:
        acc = BlockAccessor.for_block(block)
        if acc.num_rows() == 0:
            continue
        if hasattr(block, "to_pylist"):          # pyarrow.Table
            yield from _arrow_pages(block)
        else:                                    # pandas.DataFrame (lists as object arrays)
            for row in block.to_dict("records"):
                yield SinkPage.from_row(row)


def _arrow_pages(table) -> Iterator[SinkPage]:
    """Arrow fast path: image bytes stay zero-copy views of the block's buffers."""
    import pyarrow as pa
    t = table.schema.field("samples").type if "samples" in table.column_names else None
    if not (t is not None and (pa.types.is_list(t) or pa.types.is_large_list(t)) and pa.types.is_struct(t.value_type)
            and {"image", "label"} <= {f.name for f in t.value_type}):
        for row in table.to_pylist():            # e.g. list<null> when every page was skipped
            yield SinkPage.from_row(row)
        return
    for batch in table.to_batches():
        yield from _batch_pages(batch)


def _batch_pages(batch) -> Iterator[SinkPage]:
    samples = batch.column("samples")
    struct = samples.values                      # all samples of the batch; offsets say whose they are
    fields = dict(zip([f.name for f in struct.type], struct.flatten()))
    images = _binary_views(fields["image"])
    label, filename, width, height, meta, kind, layout_label = (
        fields[k].to_pylist() if k in fields else [None] * len(struct)
        for k in ("label", "filename", "width", "height", "meta", "kind", "layout_label"))
    valid = struct.is_valid().to_pylist()
    offsets = samples.offsets.to_pylist()
    others = [name for name in batch.schema.names if name != "samples"]
    for i, row in enumerate(batch.select(others).to_pylist()):
        page = SinkPage.from_row(row)
        page.samples = [SinkSample(images[j], label[j] or "", filename[j] or "", width[j] or 0, height[j] or 0,
                                   meta[j] or "", kind[j] or "", layout_label[j] or "")
                        for j in range(offsets[i], offsets[i + 1]) if valid[j]]
        yield page


def _binary_views(arr) -> list:
    """Zero-copy ``memoryview`` per value of a (large_)binary Arrow array; ``b""`` for nulls."""
    import numpy as np
    import pyarrow as pa
    if pa.types.is_large_binary(arr.type):
        dtype = np.int64
    elif pa.types.is_binary(arr.type):
        dtype = np.int32
    else:
        return [as_bytes(v) for v in arr.to_pylist()]
    _, offsets, data = arr.buffers()
    off = np.frombuffer(offsets, dtype=dtype)[arr.offset:arr.offset + len(arr) + 1].tolist()
    view = memoryview(data).cast("B") if data is not None else memoryview(b"")
    valid = arr.is_valid().to_pylist()
    return [view[off[j]:off[j + 1]] if valid[j] else b"" for j in range(len(arr))]


def write_lmdb(ds, sink: LmdbSink, preserve_order: bool = True) -> dict:
    """Runs ``ds`` into ``sink`` with ``sink.write_concurrency`` write tasks at a time (one per shard) on the
    driver's node; returns ``sink.summary``.

    ``writer.RESOURCES`` (no CPU) lets the writer run on a head node that advertises none; ``preserve_order`` makes the
    key numbering follow the dataset order (deterministic runs).
    """
    sink.prepare()
    if preserve_order:
        ds.context.execution_options.preserve_order = True
    ds.write_datasink(sink, concurrency=sink.write_concurrency, ray_remote_args=RESOURCES.remote_args())
    return sink.summary
