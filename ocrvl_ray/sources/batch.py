"""Columnar builder of manifest rows: readers append pages, ``to_table`` validates and builds Arrow in bulk.

Per-word Python work costs more than parsing the JSON, so readers only collect raw word fields; all boxes of
a batch (hundreds of pages) are checked and ordered clockwise in one numpy pass, bad words and pages left
without words are counted, and the result is exactly ``records.PAGE_SCHEMA``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ocrvl_ray.records import PAGE_SCHEMA, WORD_TYPE, Page, make_page_id
from ocrvl_ray.report.skips import Skip, SkipCounter
from ocrvl_ray.sources.geometry import numbers, quads_to_flat8


@dataclass(frozen=True)
class Source:
    """One label file: absolute ``path``, ``rel`` path below the label root's parent, its split."""
    path: str
    rel: str
    split: str

    @property
    def stem(self) -> str:
        return Path(self.path).stem


def dumps_attrs(attrs: dict | None) -> str:
    return json.dumps(attrs, ensure_ascii=False, sort_keys=True) if attrs else ""


class WordList:
    """Raw words of one page: id, corner lists ``xs``/``ys`` (4 each, any order), text, attrs, record index."""

    def __init__(self, record: str = "bbox") -> None:
        self.record = record            # name of the JSON list the words came from, for skip examples
        self.ids: list[str] = []
        self.xs: list[Any] = []
        self.ys: list[Any] = []
        self.texts: list[str] = []
        self.attrs: list[str] = []
        self.index: list[int] = []

    def add(self, wid: str, xs: Any, ys: Any, text: str, index: int, attrs: dict | None = None) -> None:
        self.ids.append(wid)
        self.xs.append(xs)
        self.ys.append(ys)
        self.texts.append(text)
        self.attrs.append(dumps_attrs(attrs))
        self.index.append(index)


def coords(xs: list, ys: list) -> tuple[np.ndarray, np.ndarray, list]:
    """(n, 4) coordinate arrays plus a pre-check reason per word; one numpy call when all boxes are clean."""
    n = len(xs)
    try:
        if set(map(type, xs)) | set(map(type, ys)) <= {list} and set(map(len, xs)) | set(map(len, ys)) <= {4}:
            X = np.fromiter(chain.from_iterable(xs), dtype=np.float64, count=4 * n).reshape(n, 4)
            Y = np.fromiter(chain.from_iterable(ys), dtype=np.float64, count=4 * n).reshape(n, 4)
            return X, Y, [None] * n
    except (TypeError, ValueError):
        pass
    X, Y, pre = np.zeros((n, 4)), np.zeros((n, 4)), [None] * n
    for i in range(n):
        vx, vy = numbers(xs[i], 4), numbers(ys[i], 4)
        bad = vx if isinstance(vx, Skip) else vy if isinstance(vy, Skip) else None
        if bad is not None:
            pre[i] = bad
        else:
            X[i], Y[i] = vx, vy
    return X, Y, pre


class PageBatch:
    """Append-only pages in columnar form; ``to_table`` checks every box at once."""

    def __init__(self) -> None:
        self.page_ids: list[str] = []
        self._cols: dict[str, list] = {k: [] for k in ("dataset", "split", "image_name", "width", "height",
                                                       "source", "attrs", "rel", "record")}
        self._n_words: list[int] = []
        self._w: dict[str, list] = {k: [] for k in ("ids", "xs", "ys", "texts", "attrs", "index")}

    def __len__(self) -> int:
        return len(self.page_ids)

    def add(self, dataset: str, split: str, image_name: str, width: int, height: int, source: str,
            source_key: str, attrs: dict | None, words: WordList) -> None:
        self.page_ids.append(make_page_id(dataset, split, image_name, source_key))
        c = self._cols
        for k, v in (("dataset", dataset), ("split", split), ("image_name", image_name), ("width", int(width)),
                     ("height", int(height)), ("source", source), ("attrs", dumps_attrs(attrs)),
                     ("rel", source_key), ("record", words.record)):
            c[k].append(v)
        self._n_words.append(len(words.ids))
        w = self._w
        w["ids"] += words.ids
        w["xs"] += words.xs
        w["ys"] += words.ys
        w["texts"] += words.texts
        w["attrs"] += words.attrs
        w["index"] += words.index

    def to_table(self, skips: SkipCounter) -> pa.Table | None:
        """Validate + order all boxes, count bad words (``rel:bbox[i]``) and empty pages; None if no page is left."""
        w, c = self._w, self._cols
        n_pages = len(self.page_ids)
        if not n_pages:
            return None
        X, Y, pre = coords(w["xs"], w["ys"])
        flat, reasons = quads_to_flat8(X, Y)
        for i, r in enumerate(pre):
            if r is not None:
                reasons[i] = r
        keep = np.fromiter((r is None for r in reasons), dtype=bool, count=len(reasons))
        page_of = np.repeat(np.arange(n_pages), self._n_words)
        for i in np.flatnonzero(~keep):
            p = page_of[i]
            skips.add(reasons[i], f"{c['rel'][p]}:{c['record'][p]}[{w['index'][i]}]")
        kept = np.bincount(page_of[keep], minlength=n_pages)
        for p in np.flatnonzero(kept == 0):
            skips.add(Skip.PAGE_NO_WORDS, c["source"][p])
        n_kept = int(keep.sum())
        points = pa.ListArray.from_arrays(pa.array(np.arange(0, 8 * n_kept + 1, 8, dtype=np.int32)),
                                          pa.array(flat[keep].reshape(-1), type=pa.float64()))
        mask = pa.array(keep)
        words = pa.StructArray.from_arrays(
            [pa.array(w["ids"], pa.string()).filter(mask), points,
             pa.array(w["texts"], pa.string()).filter(mask), pa.array(w["attrs"], pa.string()).filter(mask)],
            fields=list(WORD_TYPE))
        offsets = np.zeros(n_pages + 1, dtype=np.int32)
        np.cumsum(kept, out=offsets[1:])
        word_lists = pa.ListArray.from_arrays(pa.array(offsets), words).cast(PAGE_SCHEMA.field("words").type)
        table = pa.Table.from_arrays([
            pa.array(self.page_ids, pa.string()), pa.array(c["dataset"], pa.string()),
            pa.array(c["split"], pa.string()), pa.array(c["image_name"], pa.string()),
            pa.nulls(n_pages, pa.string()), pa.array(c["width"], pa.int32()), pa.array(c["height"], pa.int32()),
            word_lists, pa.array(c["source"], pa.string()), pa.array(c["attrs"], pa.string())], schema=PAGE_SCHEMA)
        table = table.filter(pa.array(kept > 0))
        return table if table.num_rows else None

    def pages(self, skips: SkipCounter | None = None) -> list[Page]:
        table = self.to_table(skips if skips is not None else SkipCounter())
        return [] if table is None else [Page.from_row(r) for r in table.to_pylist()]
