"""The row the sink consumes: one per page, so a page's samples never straddle two write tasks.

Build rows with ``SinkPage(...).to_row()`` (or plain dicts of the same shape); ``SinkPage.from_row``
reads them back from whatever Ray Data hands a write task (Arrow ``to_pylist`` dicts, pandas/numpy
conversions where lists arrive as object arrays and bytes as ``np.bytes_``/uint8 arrays).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import pyarrow as pa

SAMPLE_TYPE = pa.struct([("image", pa.binary()), ("label", pa.string()), ("filename", pa.string()),
                         ("width", pa.int32()), ("height", pa.int32()), ("meta", pa.string()),
                         ("kind", pa.string()), ("layout_label", pa.string())])
SINK_ROW_SCHEMA = pa.schema([("page_id", pa.string()), ("status", pa.string()), ("detail", pa.string()),
                             ("samples", pa.list_(SAMPLE_TYPE)), ("skips", pa.string()),
                             ("detections", pa.string())])


@dataclass
class SinkSample:
    image: bytes          # JPEG (a zero-copy memoryview when read from an Arrow block)
    label: str
    filename: str
    width: int
    height: int
    meta: str             # JSON provenance (page_id, dataset, split, source_image, region_box, layout_label, sample_kind, recipe)
    kind: str             # "layout" | "cell" | "word" (the writer counts these typed fields; meta is stored as is)
    layout_label: str     # region label ("table" for cells, "word" for words)

    def to_row(self) -> dict:
        return {"image": self.image, "label": self.label, "filename": self.filename,
                "width": int(self.width), "height": int(self.height), "meta": self.meta, "kind": self.kind,
                "layout_label": self.layout_label}


@dataclass
class SinkPage:
    page_id: str
    status: str = "ok"    # "ok" or a Skip value
    detail: str = ""
    samples: list[SinkSample] = field(default_factory=list)
    skips: str = ""       # JSON of SkipCounter.to_dict() (word/region skips inside this page)
    detections: str = ""  # JSON of the page's detections (``detections.page_record``), "" if none ran

    def to_row(self) -> dict:
        return {"page_id": self.page_id, "status": self.status, "detail": self.detail,
                "samples": [s.to_row() for s in self.samples], "skips": self.skips, "detections": self.detections}

    @classmethod
    def from_row(cls, row: dict) -> "SinkPage":
        samples = row.get("samples")
        return cls(page_id=_text(row.get("page_id")), status=_text(row.get("status")),
                   detail=_text(row.get("detail")), skips=_text(row.get("skips")),
                   detections=_text(row.get("detections")),
                   samples=[_sample(s) for s in ([] if samples is None else list(samples)) if s is not None])


def _sample(s: Any) -> SinkSample:
    get = s.get if hasattr(s, "get") else (lambda k, d=None: d)
    return SinkSample(image=as_bytes(get("image")), label=_text(get("label")), filename=_text(get("filename")),
                      width=_int(get("width")), height=_int(get("height")), meta=_text(get("meta")),
                      kind=_text(get("kind")), layout_label=_text(get("layout_label")))


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, Enum):               # a Skip member given directly
        return str(v.value)
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).decode("utf-8", errors="replace")
    if isinstance(v, float) and v != v:   # pandas NaN for a missing string
        return ""
    return str(v)


def as_bytes(v: Any) -> bytes:
    """Image bytes from bytes-likes and numpy arrays; ``b""`` for anything else (counted as image_corrupt)."""
    if v is None:
        return b""
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v)
    tobytes = getattr(v, "tobytes", None)   # numpy uint8 arrays and np.bytes_
    return tobytes() if tobytes else b""


def _int(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0
