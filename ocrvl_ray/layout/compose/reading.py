"""Reading order: which region comes first on a page, and how a region's words become one label.

The rules are the original's (``_compose_multiline_sentence``, strict-id mode). Words keep the order they
are given in (page order) wherever a sort ties, as the original's stable sorts did.

Rows (the default): words sorted by y-centre start a new row when ``|cy - row_y| > y_gap`` with
``y_gap = max(row_gap_min, row_gap_factor * median height)``, else join it with
``row_y <- row_smoothing * row_y + (1 - row_smoothing) * cy``. Inside a row (``split_sublines``) words are
walked in id order and a word starts a sub-line when it is far from the sub-line's mean y-centre
(``> y_gap``), wraps left of the previous word (``cx < prev_cx - max(row_gap_min, row_gap_factor * median
width)``) and sits off the sub-line's first word by more than a quarter median height; sub-lines, each by
x-centre then id, follow each other in that order.
Columns (vertical text): used when a word is flagged ``ud``/``du`` or the words' union is at least
``column_span_ratio`` times taller than wide (with ``column_requires_tall_words``: only if the median word
is taller than wide). Words sorted by x-centre start a new column when ``|cx - column's first cx| >
max(column_gap_min, column_gap_factor * median width)``; columns go left to right, each top to bottom, or
bottom to top when more of *its* words are ``ud`` than ``du``; equal y-centres keep x order.
Words are joined by " ", rows/columns by "\\n"; empty words and empty lines are dropped.
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
    split_sublines: bool


def id_key(word_id) -> tuple:
    """Sort key for word ids of any type: numbers numerically, before other ids compared as text."""
    text = str(word_id).strip()
    try:
        return (0, int(text), "")
    except ValueError:
        return (1, 0, text)


def region_order(regions: Sequence[Region], mode: str = "rank") -> list[int]:
    """Indices of ``regions`` in reading order. ``rank``: ranked (``order`` set) by rank, then unranked
    top-to-bottom, left-to-right (by y1, then x1); ties keep the detector's output order. ``detector``: the
    detector's output order (PP-DocLayoutV2/V3 sort every region, unranked labels included, by the order
    they predict)."""
    if mode == "detector":
        return list(range(len(regions)))

    def key(i: int):
        r = regions[i]
        if r.order is not None:
            return (0, r.order, 0.0, 0.0, i)
        return (1, 0, float(r.box[1]), float(r.box[0]), i)
    return sorted(range(len(regions)), key=key)


def column_mode(boxes: np.ndarray, orients: Sequence[str | None], p: ReadingParams) -> tuple[bool, bool]:
    """(read as columns?, is that a row reading only because of ``column_requires_tall_words``?)."""
    if any(o in ("ud", "du") for o in orients):
        return True, False
    span_x = boxes[:, 2].max() - boxes[:, 0].min()
    span_y = boxes[:, 3].max() - boxes[:, 1].min()
    if span_y / max(1.0, span_x) < p.column_span_ratio:
        return False, False
    if p.column_requires_tall_words and np.median(boxes[:, 3] - boxes[:, 1]) < np.median(boxes[:, 2] - boxes[:, 0]):
        return False, True
    return True, False


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


def _sublines(row: list[int], cx: np.ndarray, cy: np.ndarray, keys: list, y_gap: float, x_gap: float,
              base_gap: float) -> list[list[int]]:
    """A row walked in id order, split where a word lies off the sub-line in y and wraps back to the left."""
    out: list[list[int]] = []
    for i in sorted(row, key=lambda j: keys[j]):
        if out:
            cur = out[-1]
            mean_y = sum(float(cy[j]) for j in cur) / len(cur)
            if not (abs(cy[i] - mean_y) > y_gap and cx[i] < cx[cur[-1]] - x_gap and abs(cy[i] - cy[cur[0]]) > base_gap):
                cur.append(i)
                continue
        out.append([i])
    return [sorted(g, key=lambda j: (cx[j], keys[j])) for g in out]


def compose_text(boxes: np.ndarray, texts: Sequence[str], ids: Sequence, orients: Sequence[str | None],
                 p: ReadingParams) -> str:
    """The label of one region from its words' boxes ``(n, 4)``, texts, ids and orientations (``ud``/``du``/None),
    given in page order."""
    keep = [i for i, t in enumerate(texts) if t and t.strip()]
    if not keep:
        return ""
    boxes = np.asarray(boxes, dtype=np.float64)[keep]
    texts = [texts[i].strip() for i in keep]
    keys = [id_key(ids[i]) for i in keep]
    orients = [orients[i] for i in keep]
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    widths = np.maximum(1.0, boxes[:, 2] - boxes[:, 0])
    heights = np.maximum(1.0, boxes[:, 3] - boxes[:, 1])
    n = len(texts)
    if column_mode(boxes, orients, p)[0]:
        threshold = max(p.column_gap_min, p.column_gap_factor * float(np.median(widths)))
        groups = _cluster(sorted(range(n), key=lambda i: cx[i]), cx, threshold, None)
        lines = []
        for g in groups:
            upward = sum(orients[i] == "ud" for i in g) > sum(orients[i] == "du" for i in g)
            lines.append(sorted(g, key=lambda i: -cy[i] if upward else cy[i]))
    else:
        y_gap = max(p.row_gap_min, p.row_gap_factor * float(np.median(heights)))
        rows = _cluster(sorted(range(n), key=lambda i: cy[i]), cy, y_gap, p.row_smoothing)
        if p.split_sublines:
            x_gap = max(p.row_gap_min, p.row_gap_factor * float(np.median(widths)))
            base_gap = 0.25 * float(np.median(heights))
            lines = [sub for g in rows for sub in _sublines(g, cx, cy, keys, y_gap, x_gap, base_gap)]
        else:
            lines = [sorted(g, key=lambda i: (cx[i], keys[i])) for g in rows]
    out = (" ".join(texts[i] for i in g).strip() for g in lines)
    return "\n".join(line for line in out if line)
