"""Columnar builder of manifest rows: readers append pages, ``to_table`` validates and builds Arrow in bulk.

Per-word Python work costs more than parsing the JSON, so readers only collect raw word fields; all boxes of
a batch (hundreds of pages) are checked and ordered clockwise in one numpy pass, bad words and pages left
without words are counted, and the result is exactly ``records.PAGE_SCHEMA``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from ocrvl_ray.core.records import PAGE_SCHEMA, WORD_TYPE, Page, make_page_id
from ocrvl_ray.core.skips import Skip, SkipCounter
from ocrvl_ray.ingest.geometry import boxes_to_xy, quads_to_flat8


@dataclass(frozen=True)
class Source:
    """One label file: absolute ``path``, ``rel`` path below the label root's parent, its split."""
    path: str
    rel: str
    split: str

    @property
    def stem(self) -> str:
        return os.path.splitext(os.path.basename(self.path))[0]


def dumps_attrs(attrs: dict | None) -> str:
    return json.dumps(attrs, ensure_ascii=False, sort_keys=True) if attrs else ""


class WordList:
    """Raw words of one page: id, box, text, attrs, record index. ``layout`` says how boxes are given:
    ``xy4`` (``xs``/``ys`` corner lists, any order), ``xywh`` or ``xs_ys`` (whole box in ``xs``, ``ys`` unused)."""

    def __init__(self, record: str = "bbox", layout: str = "xy4") -> None:
        self.record = record            # name of the JSON list the words came from, for skip examples
        self.layout = layout
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


def strings(values: list) -> pa.Array:
    """A string column; lone surrogates (``"\\ud800"`` in a JSON label) become U+FFFD instead of failing."""
    try:
        return pa.array(values, pa.string())
    except UnicodeEncodeError:
        return pa.array([v if v is None else v.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
                         for v in values], pa.string())


class PageBatch:
    """Append-only pages in columnar form; ``to_table`` checks every box at once."""

    def __init__(self) -> None:
        self.page_ids: list[str] = []
        self._cols: dict[str, list] = {k: [] for k in ("dataset", "split", "image_name", "width", "height",
                                                       "source", "attrs", "rel", "record")}
        self._n_words: list[int] = []
        self._w: dict[str, list] = {k: [] for k in ("ids", "xs", "ys", "texts", "attrs", "index")}
        self._positions: dict[str, list[int]] = {}  # box layout -> word positions

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
        w = self._w
        start = len(w["ids"])
        self._positions.setdefault(words.layout, []).extend(range(start, start + len(words.ids)))
        self._n_words.append(len(words.ids))
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
        n = len(w["ids"])
        X, Y, pre = np.zeros((n, 4)), np.zeros((n, 4)), [None] * n
        for layout, pos in self._positions.items():
            if len(pos) == n:       # one layout: no gather/scatter
                X, Y, pre = boxes_to_xy(w["xs"], w["ys"], layout)
                break
            xs, ys = w["xs"], w["ys"]
            X[pos], Y[pos], sub = boxes_to_xy([xs[i] for i in pos], [ys[i] for i in pos], layout)
            for i, r in zip(pos, sub):
                pre[i] = r
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
            [strings(w["ids"]).filter(mask), points, strings(w["texts"]).filter(mask),
             strings(w["attrs"]).filter(mask)],
            fields=list(WORD_TYPE))
        offsets = np.zeros(n_pages + 1, dtype=np.int32)
        np.cumsum(kept, out=offsets[1:])
        word_lists = pa.ListArray.from_arrays(pa.array(offsets), words).cast(PAGE_SCHEMA.field("words").type)
        table = pa.Table.from_arrays([
            pa.array(self.page_ids, pa.string()), pa.array(c["dataset"], pa.string()),
            strings(c["split"]), strings(c["image_name"]),
            pa.nulls(n_pages, pa.string()), pa.array(c["width"], pa.int32()), pa.array(c["height"], pa.int32()),
            word_lists, strings(c["source"]), strings(c["attrs"])], schema=PAGE_SCHEMA)
        table = table.filter(pa.array(kept > 0))
        return table if table.num_rows else None

    def pages(self, skips: SkipCounter | None = None) -> list[Page]:
        table = self.to_table(skips if skips is not None else SkipCounter())
        return [] if table is None else [Page.from_row(r) for r in table.to_pylist()]
