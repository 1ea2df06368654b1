"""Box geometry on numpy arrays: boxes are ``(n, 4)`` float arrays of ``x1, y1, x2, y2`` in page pixels."""
from __future__ import annotations

import math

import numpy as np


def clip_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Boxes clipped to the page ``[0, width] x [0, height]`` (empty boxes get x2 <= x1 or y2 <= y1)."""
    out = boxes.astype(np.float64, copy=True)
    np.clip(out[:, 0::2], 0, width, out=out[:, 0::2])
    np.clip(out[:, 1::2], 0, height, out=out[:, 1::2])
    return out


def region_box(box, width: int, height: int) -> tuple[int, int, int, int]:
    """A detected box as the original cropped it: truncated to int, clipped to the page."""
    x1, y1, x2, y2 = (int(v) for v in box)
    return max(0, x1), max(0, y1), min(width, x2), min(height, y2)


def union_box(boxes: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    """Integer box enclosing ``boxes`` (floor/ceil), clipped to the page."""
    x1, y1 = boxes[:, 0].min(), boxes[:, 1].min()
    x2, y2 = boxes[:, 2].max(), boxes[:, 3].max()
    return (max(0, math.floor(x1)), max(0, math.floor(y1)),
            min(width, math.ceil(x2)), min(height, math.ceil(y2)))


def padded_box(box, pad: int, width: int, height: int) -> tuple[int, int, int, int]:
    """Integer box around ``box`` grown by ``pad`` pixels on each side (coordinates truncated by ``int()``, as
    the original's word crops), clipped to the page."""
    x1, y1, x2, y2 = (int(v) for v in box)
    return max(0, x1 - pad), max(0, y1 - pad), min(width, x2 + pad), min(height, y2 + pad)


def areas(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def intersections(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))`` intersection areas."""
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    return np.clip(w, 0, None) * np.clip(h, 0, None)


def overlap_ratios(words: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """``(n_words, n_regions)`` share of each word's area inside each region (0 for zero-area words)."""
    if len(words) == 0 or len(regions) == 0:
        return np.zeros((len(words), len(regions)))
    a = areas(words)[:, None]
    inter = intersections(words, regions)
    return np.divide(inter, a, out=np.zeros_like(inter), where=a > 0)


def best_region(ratios: np.ndarray, threshold: float) -> np.ndarray:
    """Per word, the region with the largest ratio (ties: the first) if that ratio is >= threshold and > 0; else -1."""
    if ratios.shape[1] == 0:
        return np.full(ratios.shape[0], -1, dtype=np.int64)
    best = ratios.argmax(axis=1)
    top = ratios[np.arange(len(best)), best]
    return np.where((top >= threshold) & (top > 0), best, -1)


def centres_inside(words: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """``(n_words, n_regions)`` whether each word's centre lies inside each region (borders included)."""
    cx = (words[:, 0] + words[:, 2]) / 2
    cy = (words[:, 1] + words[:, 3]) / 2
    return ((regions[None, :, 0] <= cx[:, None]) & (cx[:, None] <= regions[None, :, 2]) &
            (regions[None, :, 1] <= cy[:, None]) & (cy[:, None] <= regions[None, :, 3]))


# ---------------------------------------------------------------------------------------------
# polygon regions (PP-DocLayoutV3): a polygon is an ``(m, 2)`` array of ``x, y`` points in page pixels
# ---------------------------------------------------------------------------------------------
def polygon_area(poly: np.ndarray) -> float:
    """Area of a simple polygon (shoelace); 0 for fewer than 3 points."""
    if len(poly) < 3:
        return 0.0
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def clip_to_box(poly: np.ndarray, box) -> np.ndarray:
    """The part of ``poly`` inside the axis-aligned ``box`` (Sutherland-Hodgman: exact area for any simple
    polygon, convex or not, against a rectangle); an empty ``(0, 2)`` array when they do not meet."""
    pts = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
    x1, y1, x2, y2 = (float(v) for v in box)
    for axis, bound, keep_low in ((0, x1, False), (0, x2, True), (1, y1, False), (1, y2, True)):
        if not len(pts):
            break
        nxt = np.roll(pts, -1, axis=0)
        a, b = pts[:, axis], nxt[:, axis]
        inside_a = a <= bound if keep_low else a >= bound
        inside_b = b <= bound if keep_low else b >= bound
        out = []
        for p, q, ia, ib, va, vb in zip(pts, nxt, inside_a, inside_b, a, b):
            if ia:
                out.append(p)
            if ia != ib:  # the edge crosses the bound: add the crossing point
                t = (bound - va) / (vb - va)
                out.append(p + t * (q - p))
        pts = np.asarray(out, dtype=np.float64).reshape(-1, 2)
    return pts


def polygon_coverage(words: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """``(n_words,)`` share of each word box's area inside the polygon (0 for zero-area words)."""
    out = np.zeros(len(words))
    if len(poly) < 3:
        return out
    px1, py1 = poly.min(axis=0)
    px2, py2 = poly.max(axis=0)
    a = areas(words)
    near = np.flatnonzero((a > 0) & (words[:, 0] < px2) & (words[:, 2] > px1) & (words[:, 1] < py2) & (words[:, 3] > py1))
    for i in near:
        out[i] = polygon_area(clip_to_box(poly, words[i])) / a[i]
    return out


def points_in_polygon(points: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """``(n,)`` whether each ``(x, y)`` point lies inside the polygon (even-odd rule)."""
    x, y = points[:, 0:1], points[:, 1:2]
    ax, ay = poly[None, :, 0], poly[None, :, 1]
    bx, by = np.roll(poly[:, 0], -1)[None, :], np.roll(poly[:, 1], -1)[None, :]
    crosses = (ay > y) != (by > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        at_x = ax + (y - ay) * (bx - ax) / (by - ay)
    return ((crosses & (x < at_x)).sum(axis=1) % 2) == 1
