"""``LmdbSink``: the Ray Data end of the layout pipeline — one writer on the driver's node, exactly once.

    sink = LmdbSink("out/finance_train_layout.lmdb")
    summary = write_lmdb(ds, sink)       # = ds.write_datasink(sink, concurrency=1, ray_remote_args={"num_cpus": 0})

Rows are ``SinkPage`` rows (see ``rows.py``). Each write task runs ``LmdbWriter`` on its blocks; the
driver merges the tasks' ``WriteStats`` into ``sink.summary``.
"""
from __future__ import annotations

from typing import Iterable, Iterator

from ray.data import Datasink
from ray.data.block import Block, BlockAccessor

from ocrvl_ray.sink.rows import SinkPage
from ocrvl_ray.sink.writer import DEFAULT_MAP_SIZE, DEFAULT_MAX_TXN_BYTES, LmdbWriter, WriteStats, check_options


class LmdbSink(Datasink):
    """Appends page rows to one LMDB directory; pages whose ``page/<id>`` marker exists are skipped."""

    def __init__(self, path: str, index_base: int = 1, label_format: str = "pickle",
                 map_size: int = DEFAULT_MAP_SIZE, max_txn_bytes: int = DEFAULT_MAX_TXN_BYTES,
                 min_pages_per_write: int | None = None):
        check_options(index_base, label_format)
        self.path, self.index_base, self.label_format = str(path), index_base, label_format
        self.map_size, self.max_txn_bytes = map_size, max_txn_bytes
        self._min_rows = min_pages_per_write
        self.summary: dict = {}

    def _writer(self) -> LmdbWriter:
        return LmdbWriter(self.path, self.index_base, self.label_format, self.map_size, self.max_txn_bytes)

    def prepare(self) -> None:
        """Creates the LMDB or checks its options (``OcrvlError`` on mismatch). Call before a long pipeline."""
        with self._writer():
            pass

    @property
    def supports_distributed_writes(self) -> bool:
        return False   # LMDB lives on one local disk: the driver's node

    @property
    def min_rows_per_write(self) -> int | None:
        return self._min_rows

    def on_write_start(self, schema=None) -> None:
        self.prepare()

    def write(self, blocks: Iterable[Block], ctx) -> dict:
        with self._writer() as w:
            return w.write_pages(iter_pages(blocks)).to_dict()

    def on_write_complete(self, write_result) -> None:
        stats = WriteStats()
        for ret in write_result.write_returns:
            if ret:
                stats.merge(ret)
        with self._writer() as w:   # also creates the LMDB (num-samples 0) for an empty dataset
            num = w.num_samples
        self.summary = {**stats.to_dict(), "num_samples": num, "write_tasks": len(write_result.write_returns),
                        "path": self.path}


def iter_pages(blocks: Iterable[Block]) -> Iterator[SinkPage]:
    """Page rows of Arrow or pandas blocks; empty blocks (possibly without columns) are skipped."""
    for block in blocks:
        acc = BlockAccessor.for_block(block)
        if acc.num_rows() == 0:
            continue
        if hasattr(block, "to_pylist"):          # pyarrow.Table
            rows = block.to_pylist()
        else:                                    # pandas.DataFrame (lists as object arrays)
            rows = block.to_dict("records")
        for row in rows:
            yield SinkPage.from_row(row)


def write_lmdb(ds, sink: LmdbSink, preserve_order: bool = True) -> dict:
    """Runs ``ds`` into ``sink`` with one write task at a time on the driver's node; returns ``sink.summary``.

    ``num_cpus=0`` lets the writer run on a head node that advertises no CPUs; ``preserve_order`` makes the
    key numbering follow the dataset order (deterministic runs).
    """
    sink.prepare()
    if preserve_order:
        ds.context.execution_options.preserve_order = True
    ds.write_datasink(sink, concurrency=1, ray_remote_args={"num_cpus": 0})
    return sink.summary
