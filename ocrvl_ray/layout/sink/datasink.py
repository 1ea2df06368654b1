"""``LmdbSink``: the Ray Data end of the layout pipeline — one writer on the driver's node, exactly once.

    sink = LmdbSink("out/finance_train_layout.lmdb")
    summary = write_lmdb(ds, sink)       # = ds.write_datasink(sink, concurrency=1, ray_remote_args=...)

Rows are ``SinkPage`` rows (see ``rows.py``). Each write task runs ``LmdbWriter`` on its blocks; the
driver merges the tasks' ``WriteStats`` into ``sink.summary``.
"""
from __future__ import annotations

import time
from typing import Iterable, Iterator

from ray.data import Datasink
from ray.data.block import Block, BlockAccessor

from ocrvl_ray.layout.sink.rows import SinkPage, SinkSample, as_bytes
from ocrvl_ray.layout.sink.writer import (DEFAULT_MAP_SIZE, DEFAULT_MAX_TXN_BYTES, DEFAULT_WRITE_BYTES, RESOURCES,
                                          LmdbWriter, WriteStats, check_options, keep_freed_heap)


class LmdbSink(Datasink):
    """Appends page rows to one LMDB directory; pages whose ``page/<id>`` marker exists are skipped.

    Ray bundles blocks so each write task (one env open, a few fsyncs) gets at least ``min_bytes_per_write``
    bytes, or, when ``min_pages_per_write`` is given, that many pages instead (both ``None``: one task per
    block). ``map_size`` is the initial map, doubled when full; ``max_txn_bytes`` bounds a transaction (it
    always ends at a page boundary).
    """

    def __init__(self, path: str, index_base: int = 1, label_format: str = "pickle",
                 map_size: int = DEFAULT_MAP_SIZE, max_txn_bytes: int = DEFAULT_MAX_TXN_BYTES,
                 min_pages_per_write: int | None = None, min_bytes_per_write: int | None = DEFAULT_WRITE_BYTES,
                 identity: bytes | None = None, detections: str | None = None):
        check_options(index_base, label_format)
        self.path, self.index_base, self.label_format = str(path), index_base, label_format
        self.identity = identity       # outputs.identity_record: the LMDB refuses pages of another config
        self.detections = detections   # folder of Parquet parts (detections.py), written before pages commit
        self.map_size, self.max_txn_bytes = map_size, max_txn_bytes
        self._min_rows, self._min_bytes = task_size(min_pages_per_write, min_bytes_per_write)
        self.summary: dict = {}

    def _writer(self) -> LmdbWriter:
        return LmdbWriter(self.path, self.index_base, self.label_format, self.map_size, self.max_txn_bytes,
                          identity=self.identity)

    def prepare(self) -> None:
        """Creates the LMDB or checks its options (``OcrvlError`` on mismatch). Call before a long pipeline."""
        with self._writer():
            pass

    @property
    def supports_distributed_writes(self) -> bool:
        return False   # LMDB lives on one local disk: the driver's node

    @property
    def write_concurrency(self) -> int:
        return 1       # one writer (``sharded.ShardedLmdbSink`` runs one per shard)

    @property
    def min_rows_per_write(self) -> int | None:
        return self._min_rows

    @property
    def min_bytes_per_write(self) -> int | None:
        return self._min_bytes

    def on_write_start(self, schema=None) -> None:
        self.prepare()

    def write(self, blocks: Iterable[Block], ctx) -> dict:
        start = time.time()
        keep_freed_heap()
        with self._writer() as w:
            stats = w.write_pages(iter_pages(blocks), before_commit=detections_writer(self.detections))
        return stats.timed(start).to_dict()

    def on_write_complete(self, write_result) -> None:
        stats = WriteStats()
        for ret in write_result.write_returns:
            if ret:
                stats.merge(ret)
        with self._writer() as w:   # also creates the LMDB (num-samples 0) for an empty dataset
            num = w.num_samples
        self.summary = {**stats.to_dict(), "num_samples": num, "write_tasks": len(write_result.write_returns),
                        "path": self.path}


def task_size(pages: int | None, nbytes: int | None) -> tuple[int | None, int | None]:
    """Ray Data bundles write tasks by rows or by bytes, not both: pages win when given."""
    return (pages, None) if pages is not None else (None, nbytes)


def detections_writer(folder: str | None):
    """A ``before_commit`` hook that writes the pages' detections records as one Parquet part (or None)."""
    if not folder:
        return None
    from ocrvl_ray.layout.detections import write_part

    def before(pages: list[SinkPage]) -> None:
        write_part(folder, [p.detections for p in pages if p.detections])
    return before


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
    label, filename, width, height, meta = (
        fields[k].to_pylist() if k in fields else [None] * len(struct)
        for k in ("label", "filename", "width", "height", "meta"))
    valid = struct.is_valid().to_pylist()
    offsets = samples.offsets.to_pylist()
    others = [name for name in batch.schema.names if name != "samples"]
    for i, row in enumerate(batch.select(others).to_pylist()):
        page = SinkPage.from_row(row)
        page.samples = [SinkSample(images[j], label[j] or "", filename[j] or "", width[j] or 0, height[j] or 0,
                                   meta[j] or "") for j in range(offsets[i], offsets[i + 1]) if valid[j]]
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
    """Runs ``ds`` into ``sink`` with ``sink.write_concurrency`` write tasks at a time (1, or one per shard) on
    the driver's node; returns ``sink.summary``.

    ``writer.RESOURCES`` (no CPU) lets the writer run on a head node that advertises none; ``preserve_order`` makes the
    key numbering follow the dataset order (deterministic runs).
    """
    sink.prepare()
    if preserve_order:
        ds.context.execution_options.preserve_order = True
    ds.write_datasink(sink, concurrency=sink.write_concurrency, ray_remote_args=RESOURCES.remote_args())
    return sink.summary
