"""Reading order: which region comes first on a page, and how a region's words become one label.

Rows (the default): words sorted by y-centre start a new row when ``|cy - cur_y| > max(row_gap_min,
row_gap_factor * median height)``, else join it with ``cur_y <- row_smoothing * cur_y + (1 - row_smoothing) * cy``;
inside a row words go by x-centre, then id. Columns (vertical text): used when a word is flagged ``ud``/``du`` or
the words' union is at least ``column_span_ratio`` times taller than wide; words sorted by x-centre start a new
column when ``|cx - column's first cx| > max(column_gap_min, column_gap_factor * median width)``; columns go left
to right, each top to bottom (bottom to top if more words are ``ud`` than ``du``). Words are joined by " ",
rows/columns by "\\n"; empty words and empty lines are dropped.
"""
from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from ocrvl_ray.core.records import Region


class ReadingParams(Protocol):
    row_gap_min: float
    row_gap_factor: float
    row_smoothing: float
    column_gap_min: float
    column_gap_factor: float
    column_span_ratio: float
    column_requires_tall_words: bool


def id_key(word_id) -> tuple:
    """Sort key for word ids of any type: numbers numerically, before other ids compared as text."""
    text = str(word_id).strip()
    try:
        return (0, int(text), "")
    except ValueError:
        return (1, 0, text)


def region_order(regions: Sequence[Region]) -> list[int]:
    """Indices of ``regions`` in reading order: ranked (``order`` set) by rank, then unranked top-to-bottom,
    left-to-right (by y1, then x1); ties keep the detector's output order."""
    def key(i: int):
        r = regions[i]
        if r.order is not None:
            return (0, r.order, 0.0, 0.0, i)
        return (1, 0, float(r.box[1]), float(r.box[0]), i)
    return sorted(range(len(regions)), key=key)


def is_columnar(boxes: np.ndarray, orients: Sequence[str | None], p: ReadingParams) -> bool:
    if any(o in ("ud", "du") for o in orients):
        return True
    span_x = boxes[:, 2].max() - boxes[:, 0].min()
    span_y = boxes[:, 3].max() - boxes[:, 1].min()
    if span_y / max(1.0, span_x) < p.column_span_ratio:
        return False
    if p.column_requires_tall_words:
        return bool(np.median(boxes[:, 3] - boxes[:, 1]) >= np.median(boxes[:, 2] - boxes[:, 0]))
    return True


def _cluster(order: list[int], centre: np.ndarray, threshold: float, smoothing: float | None) -> list[list[int]]:
    """Split ``order`` (sorted by ``centre``) into groups; the reference moves by smoothing, or stays at the first."""
    groups: list[list[int]] = []
    ref = 0.0
    for i in order:
        c = float(centre[i])
        if groups and abs(c - ref) <= threshold:
            groups[-1].append(i)
            if smoothing is not None:
                ref = smoothing * ref + (1.0 - smoothing) * c
        else:
            groups.append([i])
            ref = c
    return groups


def compose_text(boxes: np.ndarray, texts: Sequence[str], ids: Sequence, orients: Sequence[str | None],
                 p: ReadingParams) -> str:
    """The label of one region from its words' boxes ``(n, 4)``, texts, ids and orientations (``ud``/``du``/None)."""
    keep = [i for i, t in enumerate(texts) if t and t.strip()]
    if not keep:
        return ""
    boxes = np.asarray(boxes, dtype=np.float64)[keep]
    texts = [texts[i].strip() for i in keep]
    keys = [id_key(ids[i]) for i in keep]
    orients = [orients[i] for i in keep]
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    n = len(texts)
    if is_columnar(boxes, orients, p):
        widths = np.maximum(1.0, boxes[:, 2] - boxes[:, 0])
        threshold = max(p.column_gap_min, p.column_gap_factor * float(np.median(widths)))
        order = sorted(range(n), key=lambda i: (cx[i], cy[i], keys[i]))
        groups = _cluster(order, cx, threshold, None)
        upward = sum(o == "ud" for o in orients) > sum(o == "du" for o in orients)
        groups = [sorted(g, key=lambda i: (-cy[i] if upward else cy[i], keys[i])) for g in groups]
    else:
        heights = np.maximum(1.0, boxes[:, 3] - boxes[:, 1])
        threshold = max(p.row_gap_min, p.row_gap_factor * float(np.median(heights)))
        order = sorted(range(n), key=lambda i: (cy[i], keys[i]))
        groups = _cluster(order, cy, threshold, p.row_smoothing)
        groups = [sorted(g, key=lambda i: (cx[i], keys[i])) for g in groups]
    lines = (" ".join(texts[i] for i in g).strip() for g in groups)
    return "\n".join(line for line in lines if line)
