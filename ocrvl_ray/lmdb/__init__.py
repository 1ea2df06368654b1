"""The LMDB on-disk contract in one package: what the layout job writes and what training, eval and inspect read.

    schema.py    key layout, the one read-only open, the one label decoder (erniekit's reading)
    rows.py      the sink's input row: one ``SinkPage`` per page, its ``SinkSample`` crops
    writer.py    ``LmdbWriter``: exactly-once page commits, no Ray
    sink.py      ``LmdbSink``: the Ray Data datasink (``shards=N``; 1 is the smallest case), ``write_lmdb``
    shards.py    a sharded output: page -> shard, folder, index, rank -> shards
    reader.py    ``LmdbReader``, ``completed_pages``, ``verify_lmdb``
    identity.py  the record of what made an LMDB's content; resume only under the same hash
    reshard.py   ``reshard``: a verified copy into N shards (``ocrvl reshard``), no Ray

``LmdbSink``/``write_lmdb`` import Ray, so they load on first use only; nothing here imports ``layout``.
"""
from ocrvl_ray.lmdb.reader import LmdbReader, completed_pages, verify_lmdb
from ocrvl_ray.lmdb.rows import SINK_ROW_SCHEMA, SinkPage, SinkSample
from ocrvl_ray.lmdb.writer import LmdbWriter, WriteStats

__all__ = ["LmdbSink", "write_lmdb", "LmdbReader", "LmdbWriter", "WriteStats", "SinkPage", "SinkSample",
           "SINK_ROW_SCHEMA", "completed_pages", "verify_lmdb"]


def __getattr__(name):
    if name in ("LmdbSink", "write_lmdb"):
        from ocrvl_ray.lmdb import sink
        return getattr(sink, name)
    raise AttributeError(name)
