"""LMDB output: ``LmdbSink`` (Ray Data datasink, exactly once, resumable), the erniekit-compatible
``LmdbReader``, resume markers (``completed_pages``) and ``verify_lmdb``. Key layout: ``core/lmdb_schema.py``.

``shards=N`` (``ShardedLmdbSink``, ``make_sink``): N LMDBs in one folder, written in parallel; the readers here
accept the folder. ``LmdbSink``/``write_lmdb``/``ShardedLmdbSink``/``make_sink`` import Ray, so they load on first use only.
"""
from ocrvl_ray.layout.sink.reader import LmdbReader, completed_pages, verify_lmdb
from ocrvl_ray.layout.sink.rows import SINK_ROW_SCHEMA, SinkPage, SinkSample
from ocrvl_ray.layout.sink.writer import LmdbWriter, WriteStats

__all__ = ["LmdbSink", "ShardedLmdbSink", "make_sink", "write_lmdb", "LmdbReader", "LmdbWriter", "WriteStats", "SinkPage", "SinkSample",
           "SINK_ROW_SCHEMA", "completed_pages", "verify_lmdb"]


def __getattr__(name):
    if name in ("LmdbSink", "write_lmdb"):
        from ocrvl_ray.layout.sink import datasink
        return getattr(datasink, name)
    if name in ("ShardedLmdbSink", "make_sink"):
        from ocrvl_ray.layout.sink import sharded
        return getattr(sharded, name)
    raise AttributeError(name)
