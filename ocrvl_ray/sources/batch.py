"""Columnar builder of manifest rows: readers append pages, ``to_table`` builds one Arrow table in bulk.

Building ``Page``/``Word`` objects per word costs more than parsing the JSON; this builder keeps flat
Python lists and numpy blocks instead and produces exactly ``records.PAGE_SCHEMA``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from ocrvl_ray.records import PAGE_SCHEMA, WORD_TYPE, Page, make_page_id


@dataclass(frozen=True)
class Source:
    """One label file: absolute ``path``, ``rel`` path below the label root it was found under, its split."""
    path: str
    rel: str
    split: str

    @property
    def stem(self) -> str:
        return Path(self.path).stem


def dumps_attrs(attrs: dict | None) -> str:
    return json.dumps(attrs, ensure_ascii=False, sort_keys=True) if attrs else ""


class PageBatch:
    """Append-only pages in columnar form; ``page_ids`` is kept for duplicate checks."""

    def __init__(self) -> None:
        self.page_ids: list[str] = []
        self._cols: dict[str, list] = {k: [] for k in
                                       ("dataset", "split", "image_name", "width", "height", "source", "attrs")}
        self._offsets: list[int] = [0]
        self._word_ids: list[str] = []
        self._points: list[np.ndarray] = []
        self._texts: list[str] = []
        self._word_attrs: list[str] = []

    def __len__(self) -> int:
        return len(self.page_ids)

    @property
    def n_words(self) -> int:
        return self._offsets[-1]

    def add(self, dataset: str, split: str, image_name: str, width: int, height: int, source: str,
            source_key: str, attrs: dict | None, word_ids: list[str], points: np.ndarray,
            texts: list[str], word_attrs: list[str] | None = None) -> str:
        """One page; ``points`` is an (n, 8) float array already normalised clockwise from top-left."""
        page_id = make_page_id(dataset, split, image_name, source_key)
        self.page_ids.append(page_id)
        c = self._cols
        c["dataset"].append(dataset)
        c["split"].append(split)
        c["image_name"].append(image_name)
        c["width"].append(int(width))
        c["height"].append(int(height))
        c["source"].append(source)
        c["attrs"].append(dumps_attrs(attrs))
        self._offsets.append(self._offsets[-1] + len(word_ids))
        self._word_ids.extend(word_ids)
        self._points.append(np.asarray(points, dtype=np.float64).reshape(-1, 8))
        self._texts.extend(texts)
        self._word_attrs.extend(word_attrs if word_attrs is not None else [""] * len(word_ids))
        return page_id

    def to_table(self) -> pa.Table:
        n_words = self.n_words
        flat = np.concatenate(self._points).reshape(-1) if self._points else np.zeros(0)
        points = pa.ListArray.from_arrays(pa.array(np.arange(0, 8 * n_words + 1, 8, dtype=np.int32)),
                                          pa.array(flat, type=pa.float64()))
        words = pa.StructArray.from_arrays(
            [pa.array(self._word_ids, pa.string()), points, pa.array(self._texts, pa.string()),
             pa.array(self._word_attrs, pa.string())], fields=list(WORD_TYPE))
        word_lists = pa.ListArray.from_arrays(pa.array(self._offsets, pa.int32()), words)
        c = self._cols
        n = len(self.page_ids)
        return pa.Table.from_arrays([
            pa.array(self.page_ids, pa.string()), pa.array(c["dataset"], pa.string()),
            pa.array(c["split"], pa.string()), pa.array(c["image_name"], pa.string()),
            pa.nulls(n, pa.string()), pa.array(c["width"], pa.int32()), pa.array(c["height"], pa.int32()),
            word_lists.cast(PAGE_SCHEMA.field("words").type), pa.array(c["source"], pa.string()),
            pa.array(c["attrs"], pa.string())], schema=PAGE_SCHEMA)

    def pages(self) -> list[Page]:
        return [Page.from_row(r) for r in self.to_table().to_pylist()]
