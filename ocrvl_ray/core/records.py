"""The one vocabulary of ocrvl-ray: plain records that flow between stages, and their Arrow schemas.

``Page``   one source image with its labelled words (a manifest row).
``Word``   one labelled text box: 4-point polygon, clockwise from top-left, in page pixels.
``Region`` one detected box on a page (layout region or table cell), page pixels.

Geometry lives in plain floats so pure functions (compose/) never need Ray or Paddle.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterable

import pyarrow as pa

SCHEMA_VERSION = 1


@dataclass
class Word:
    id: str
    points: list[float]  # flat8 [x1,y1,x2,y2,x3,y3,x4,y4], clockwise from top-left
    text: str
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def aabb(self) -> tuple[float, float, float, float]:
        xs, ys = self.points[0::2], self.points[1::2]
        return min(xs), min(ys), max(xs), max(ys)

    def to_row(self) -> dict:
        return {"id": self.id, "points": [float(v) for v in self.points], "text": self.text,
                "attrs": json.dumps(self.attrs, ensure_ascii=False, sort_keys=True) if self.attrs else ""}

    @classmethod
    def from_row(cls, row: dict) -> "Word":
        attrs = row.get("attrs") or ""
        return cls(id=str(row["id"]), points=[float(v) for v in row["points"]], text=row["text"] or "",
                   attrs=json.loads(attrs) if attrs else {})


@dataclass
class Page:
    page_id: str
    dataset: str
    split: str
    image_name: str             # file name as the label names it (lookup key)
    image_path: str | None      # resolved absolute path (None until matched)
    width: int
    height: int
    words: list[Word] = field(default_factory=list)
    source: str = ""            # label file (and record) it came from, for error messages
    attrs: dict[str, Any] = field(default_factory=dict)  # e.g. {"orientation": "ud"} for text_in_wild

    def to_row(self) -> dict:
        return {"page_id": self.page_id, "dataset": self.dataset, "split": self.split,
                "image_name": self.image_name, "image_path": self.image_path,
                "width": int(self.width), "height": int(self.height),
                "words": [w.to_row() for w in self.words], "source": self.source,
                "attrs": json.dumps(self.attrs, ensure_ascii=False, sort_keys=True) if self.attrs else ""}

    @classmethod
    def from_row(cls, row: dict) -> "Page":
        attrs = row.get("attrs") or ""
        words = row.get("words")
        return cls(page_id=row["page_id"], dataset=row["dataset"], split=row["split"],
                   image_name=row["image_name"], image_path=row.get("image_path"),
                   width=int(row["width"]), height=int(row["height"]),
                   words=[Word.from_row(w) for w in (words if words is not None else [])],
                   source=row.get("source") or "", attrs=json.loads(attrs) if attrs else {})


@dataclass
class Region:
    """A detected box. ``kind`` is "layout", "table_only" (a table under the layout threshold: for the cell
    detector, not a layout sample) or "cell"; cells carry the index of their table region. ``polygon``: the
    region's outline when the model returns one (PP-DocLayoutV3 masks), ``[[x, y], ...]`` in page pixels."""
    label: str
    score: float
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in page pixels
    order: int | None = None                # PP-DocLayoutV2/V3 reading-order rank (1-based), None if unranked
    kind: str = "layout"
    table: int | None = None
    polygon: list[list[float]] | None = None

    def to_row(self) -> dict:
        """Row form; ``polygon`` is ``[]`` when there is none (a column that is never null)."""
        return {"label": self.label, "score": float(self.score), "box": [float(v) for v in self.box],
                "order": -1 if self.order is None else int(self.order), "kind": self.kind,
                "table": -1 if self.table is None else int(self.table),
                "polygon": [[float(x), float(y)] for x, y in self.polygon or ()]}

    @classmethod
    def from_row(cls, row: dict) -> "Region":
        order, table = int(row.get("order", -1)), int(row.get("table", -1))
        poly = row.get("polygon")
        poly = [[float(p[0]), float(p[1])] for p in poly] if poly is not None and len(poly) else None
        return cls(label=row["label"], score=float(row["score"]), box=tuple(float(v) for v in row["box"]),
                   order=None if order < 0 else order, kind=row.get("kind", "layout"),
                   table=None if table < 0 else table, polygon=poly)


WORD_TYPE = pa.struct([("id", pa.string()), ("points", pa.list_(pa.float64())),
                       ("text", pa.string()), ("attrs", pa.string())])
PAGE_SCHEMA = pa.schema([
    ("page_id", pa.string()), ("dataset", pa.string()), ("split", pa.string()),
    ("image_name", pa.string()), ("image_path", pa.string()),
    ("width", pa.int32()), ("height", pa.int32()),
    ("words", pa.list_(WORD_TYPE)), ("source", pa.string()), ("attrs", pa.string()),
], metadata={b"ocrvl.schema": b"page", b"ocrvl.version": str(SCHEMA_VERSION).encode()})
#: Manifest columns of a page, in schema order (what ``Page.from_row`` reads).
PAGE_FIELDS = tuple(PAGE_SCHEMA.names)


def make_page_id(dataset: str, split: str, image_name: str, source_key: str = "") -> str:
    """Stable id: a hash of what identifies the page in its dataset, independent of run, machine, workers."""
    h = hashlib.sha1("\x1f".join((dataset, split, image_name, source_key)).encode("utf-8")).hexdigest()
    return f"{dataset}-{h[:16]}"


def pages_to_table(pages: Iterable[Page]) -> pa.Table:
    return pa.Table.from_pylist([p.to_row() for p in pages], schema=PAGE_SCHEMA)
