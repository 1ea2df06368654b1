"""Reading label files: small files whole (``read_files``), huge collections streamed (``stream_collection``).

A huge ``images[] + annotations[]`` file (the original's multi-GB ``*_merged.json``, text_in_wild's
``textinthewild_data_info.json``) is parsed incrementally (``jsonstream``) and spilled to ``partitions`` temp files
by a hash of the image id, so an image and its annotations meet in one partition; each partition is then joined
on its own. Memory stays bounded by one partition, whatever the file size.
"""
from __future__ import annotations

import gc
import os
import pickle
import tempfile
import zlib
from contextlib import contextmanager
from typing import Any, Iterator

import pyarrow as pa

from ocrvl_ray.core.skips import Skip, SkipCounter
from ocrvl_ray.ingest.batch import PageBatch, Source
from ocrvl_ray.ingest.jsonstream import Malformed, NotACollection, iter_collection
from ocrvl_ray.ingest.readers import (READERS, Options, as_key, count_orphans, detect_collection,
                                       group_annotations, join_collection, json_error_at, parse_json,
                                       read_doc)


def read_file(src: Source, dataset: str, opts: Options, out: PageBatch, skips: SkipCounter) -> None:
    try:
        with open(src.path, "rb") as f:
            data = f.read()
    except OSError as e:
        skips.add(Skip.ERROR, f"{src.rel} ({type(e).__name__})")
        return
    doc = parse_json(data)
    if isinstance(doc, Skip):
        skips.add(doc, f"{src.rel} ({json_error_at(data)})" if doc is Skip.MALFORMED_JSON else src.rel)
        return
    read_doc(doc, dataset, src, opts, out, skips)


@contextmanager
def no_gc() -> Iterator[None]:
    """Parsed JSON holds no reference cycles; the cyclic GC only rescans the growing heap (2x slower)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def read_files(sources: list[Source], dataset: str, opts: Options) -> tuple[pa.Table | None, dict]:
    """One unit of work: many small label files -> (pages table or None, skip counts)."""
    out, skips = PageBatch(), SkipCounter()
    with no_gc():
        for src in sources:
            try:
                read_file(src, dataset, opts, out, skips)
            except Exception as e:  # a reader bug on odd input must not lose the other files of the unit
                skips.add(Skip.ERROR, f"{src.rel} ({type(e).__name__}: {e})")
        table = out.to_table(skips)
    return table, skips.to_dict()


def partition_of(key: str, partitions: int) -> int:
    return zlib.crc32(key.encode("utf-8")) % partitions


class _Spill:
    """Per-partition append-only pickle files of ``(kind, index, entry)`` tuples."""

    def __init__(self, directory: str, partitions: int, flush_at: int = 1000):
        self.paths = [os.path.join(directory, f"p{i:04d}.pkl") for i in range(partitions)]
        self.buffers: list[list] = [[] for _ in range(partitions)]
        self.flush_at = flush_at

    def put(self, p: int, item: tuple) -> None:
        buf = self.buffers[p]
        buf.append(item)
        if len(buf) >= self.flush_at:
            self.flush(p)

    def flush(self, p: int) -> None:
        if self.buffers[p]:
            with open(self.paths[p], "ab") as f:
                pickle.dump(self.buffers[p], f, protocol=pickle.HIGHEST_PROTOCOL)
            self.buffers[p] = []

    def read(self, p: int) -> list[tuple]:
        self.flush(p)
        items: list[tuple] = []
        if os.path.exists(self.paths[p]):
            with open(self.paths[p], "rb") as f:
                while True:
                    try:
                        items.extend(pickle.load(f))
                    except EOFError:
                        break
            os.remove(self.paths[p])
        return items


def _spill_stream(src: Source, spill: _Spill, partitions: int, skips: SkipCounter) -> tuple[Any, Any] | Skip:
    """Pass over the file once; returns the first image and annotation (for detection) or the file's Skip."""
    first: dict[str, Any] = {}
    counts = {"images": 0, "annotations": 0}
    id_field = {"images": "id", "annotations": "image_id"}
    try:
        with open(src.path, "rb") as f:
            for kind, entry in iter_collection(f):
                n = counts[kind]
                counts[kind] = n + 1
                first.setdefault(kind, entry)
                key = as_key(entry.get(id_field[kind])) if isinstance(entry, dict) else None
                if key is None:
                    skips.add(Skip.MISSING_FIELD, f"{src.rel}:{kind}[{n}] (no {id_field[kind]})")
                    continue
                spill.put(partition_of(key, partitions), (kind, n, entry))
    except OSError as e:
        skips.add(Skip.ERROR, f"{src.rel} ({type(e).__name__})")
        return Skip.ERROR
    except UnicodeDecodeError:
        return Skip.NOT_UTF8
    except (Malformed, RecursionError) as e:
        skips.add(Skip.MALFORMED_JSON, f"{src.rel} ({e or type(e).__name__})")
        return Skip.ERROR  # counted here, with its position
    except NotACollection:
        return Skip.UNKNOWN_FORMAT
    if not counts["images"]:
        return Skip.UNKNOWN_FORMAT
    return first.get("images"), first.get("annotations")


def stream_collection(src: Source, dataset: str, opts: Options, partitions: int,
                      tmp_dir: str | None = None) -> Iterator[tuple[pa.Table | None, dict]]:
    """Yield ``(pages table or None, skip counts)`` per partition of one huge collection file."""
    skips = SkipCounter()
    with tempfile.TemporaryDirectory(prefix="ocrvl-spill-", dir=tmp_dir) as d:
        spill = _Spill(d, partitions)
        with no_gc():
            firsts = _spill_stream(src, spill, partitions, skips)
        if firsts is Skip.UNKNOWN_FORMAT:  # no images[]: not a collection, read it whole (counts the reason)
            out = PageBatch()
            read_file(src, dataset, opts, out, skips)
            yield out.to_table(skips), skips.to_dict()
            return
        if isinstance(firsts, Skip):
            if firsts is not Skip.ERROR:  # ERROR was counted with its cause
                skips.add(firsts, src.rel)
            yield None, skips.to_dict()
            return
        name = detect_collection(*firsts, src.path) if dataset == "auto" else dataset
        family = READERS.get(name) if name else None
        if family is None:
            skips.add(Skip.UNKNOWN_FORMAT, f"{src.rel} (family not recognised; pass --dataset)")
            yield None, skips.to_dict()
            return
        for p in range(partitions):
            out = PageBatch()
            with no_gc():
                items = spill.read(p)
                images = [(n, e) for kind, n, e in items if kind == "images"]
                groups = group_annotations(((n, e) for kind, n, e in items if kind == "annotations"), None,
                                           src.rel, skips)
                del items
                try:
                    join_collection(family.spec, family.name, images, groups, src, opts, out, skips)
                    count_orphans(groups, src.rel, skips)
                except Exception as e:  # a reader bug on odd input must not lose the other partitions
                    skips.add(Skip.ERROR, f"{src.rel} partition {p} ({type(e).__name__}: {e})")
                table = out.to_table(skips)
            del images, groups, out
            yield table, skips.to_dict()
            skips = SkipCounter()
