"""Reading label files: small files whole (``read_files``), huge collections streamed (``stream_collection``).

A huge ``images[] + annotations[]`` file (the original's multi-GB ``*_merged.json``, text_in_wild's
``textinthewild_data_info.json``) is parsed incrementally with ijson and spilled to ``partitions`` temp files by
a hash of the image id, so an image and its annotations meet in one partition; each partition is then joined
on its own. Memory stays bounded by one partition, whatever the file size.
"""
from __future__ import annotations

import json
import os
import pickle
import tempfile
import zlib
from typing import Any, Iterator

import pyarrow as pa

from ocrvl_ray.report.skips import Skip, SkipCounter
from ocrvl_ray.sources.batch import PageBatch, Source
from ocrvl_ray.sources.readers import (READERS, Options, as_key, count_orphans, detect_collection,
                                       group_annotations, join_collection, read_doc)

BOM = b"\xef\xbb\xbf"


def parse_json(data: bytes) -> Any | Skip:
    """Bytes -> JSON value, or NOT_UTF8 / MALFORMED_JSON."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return Skip.NOT_UTF8
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return Skip.MALFORMED_JSON


def read_file(src: Source, dataset: str, opts: Options, out: PageBatch, skips: SkipCounter) -> None:
    try:
        with open(src.path, "rb") as f:
            data = f.read()
    except OSError as e:
        skips.add(Skip.ERROR, f"{src.rel} ({type(e).__name__})")
        return
    doc = parse_json(data)
    if isinstance(doc, Skip):
        skips.add(doc, src.rel)
        return
    read_doc(doc, dataset, src, opts, out, skips)


def read_files(sources: list[Source], dataset: str, opts: Options) -> tuple[pa.Table | None, dict]:
    """One unit of work: many small label files -> (pages table or None, skip counts)."""
    out, skips = PageBatch(), SkipCounter()
    for src in sources:
        try:
            read_file(src, dataset, opts, out, skips)
        except Exception as e:  # a reader bug on odd input must not lose the other files of the unit
            skips.add(Skip.ERROR, f"{src.rel} ({type(e).__name__}: {e})")
    return out.to_table(skips), skips.to_dict()


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
    import ijson

    images, anns = ijson.sendable_list(), ijson.sendable_list()
    coros = [ijson.items_coro(images, "images.item", use_float=True),
             ijson.items_coro(anns, "annotations.item", use_float=True)]
    first: dict[str, Any] = {}
    counts = {"i": 0, "a": 0}

    def drain(kind: str, items: list, id_field: str) -> None:
        for entry in items:
            n = counts[kind]
            counts[kind] += 1
            first.setdefault(kind, entry)
            key = as_key(entry.get(id_field)) if isinstance(entry, dict) else None
            if key is None:
                what = "images" if kind == "i" else "annotations"
                skips.add(Skip.MISSING_FIELD, f"{src.rel}:{what}[{n}] (no {id_field})")
                continue
            spill.put(partition_of(key, partitions), (kind, n, entry))
        del items[:]

    try:
        with open(src.path, "rb") as f:
            head = f.read(3)
            chunk = head[3:] if head == BOM else head
            while chunk:
                for c in coros:
                    c.send(chunk)
                drain("i", images, "id")
                drain("a", anns, "image_id")
                chunk = f.read(1 << 20)
        for c in coros:
            c.close()
        drain("i", images, "id")
        drain("a", anns, "image_id")
    except OSError as e:
        skips.add(Skip.ERROR, f"{src.rel} ({type(e).__name__})")
        return Skip.ERROR
    except ijson.JSONError as e:
        return Skip.NOT_UTF8 if "utf" in str(e).lower() else Skip.MALFORMED_JSON
    except UnicodeDecodeError:
        return Skip.NOT_UTF8
    if not counts["i"]:
        return Skip.UNKNOWN_FORMAT
    return first.get("i"), first.get("a")


def stream_collection(src: Source, dataset: str, opts: Options, partitions: int,
                      tmp_dir: str | None = None) -> Iterator[tuple[pa.Table | None, dict]]:
    """Yield ``(pages table or None, skip counts)`` per partition of one huge collection file."""
    skips = SkipCounter()
    with tempfile.TemporaryDirectory(prefix="ocrvl-spill-", dir=tmp_dir) as d:
        spill = _Spill(d, partitions)
        firsts = _spill_stream(src, spill, partitions, skips)
        if firsts is Skip.UNKNOWN_FORMAT:  # no images[]: a page document after all, read it whole
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
            items = spill.read(p)
            images = [(n, e) for kind, n, e in items if kind == "i"]
            groups = group_annotations((e for kind, n, e in items if kind == "a"), None, src.rel, skips)
            # group_annotations numbers entries within the partition; restore file positions for messages
            positions = [n for kind, n, e in items if kind == "a"]
            groups = {k: [(positions[j], a) for j, a in v] for k, v in groups.items()}
            del items
            out = PageBatch()
            try:
                join_collection(family.spec, family.name, images, groups, src, opts, out, skips)
                count_orphans(groups, src.rel, skips)
            except Exception as e:  # a reader bug on odd input must not lose the other partitions
                skips.add(Skip.ERROR, f"{src.rel} partition {p} ({type(e).__name__}: {e})")
            yield out.to_table(skips), skips.to_dict()
            skips = SkipCounter()
