"""Word-box normalisation: every label box becomes a flat8 polygon clockwise from top-left (TL,TR,BR,BL).

Pure numpy; no Ray, no Paddle. Works on many boxes at once (``quads_to_flat8``) so readers do not pay
per-word Python overhead; a box that fails validation gets a ``Skip`` reason instead of a polygon.
"""
from __future__ import annotations

import math
from itertools import chain
from typing import Any, Sequence

import numpy as np

from ocrvl_ray.core.skips import Skip

MIN_AREA = 1e-6  # px^2; smaller polygons are degenerate


def quads_to_flat8(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order N quads (``xs``, ``ys`` of shape (N, 4), any vertex order) clockwise from top-left.

    Returns ``(flat8 (N, 8), reasons (N,) object)`` where ``reasons[i]`` is None for a good box, else a Skip.
    Clockwise on screen (y grows downwards) = increasing angle around the centroid; the start vertex is the
    one with the smallest x + y (ties: smallest y).
    """
    xs = np.asarray(xs, dtype=np.float64).reshape(-1, 4)
    ys = np.asarray(ys, dtype=np.float64).reshape(-1, 4)
    n = len(xs)
    reasons = np.full(n, None, dtype=object)
    finite = np.isfinite(xs).all(axis=1) & np.isfinite(ys).all(axis=1)
    reasons[~finite] = Skip.BAD_COORDINATE
    xs = np.where(finite[:, None], xs, 0.0)
    ys = np.where(finite[:, None], ys, 0.0)
    ang = np.arctan2(ys - ys.mean(axis=1, keepdims=True), xs - xs.mean(axis=1, keepdims=True))
    order = np.argsort(ang, axis=1, kind="stable")
    xs = np.take_along_axis(xs, order, axis=1)
    ys = np.take_along_axis(ys, order, axis=1)
    start = np.argmin((xs + ys) + 1e-9 * ys, axis=1)
    roll = (np.arange(4)[None, :] + start[:, None]) % 4
    xs = np.take_along_axis(xs, roll, axis=1)
    ys = np.take_along_axis(ys, roll, axis=1)
    area = 0.5 * np.abs((xs * np.roll(ys, -1, axis=1) - np.roll(xs, -1, axis=1) * ys).sum(axis=1))
    reasons[finite & (area <= MIN_AREA)] = Skip.DEGENERATE_BOX
    flat = np.empty((n, 8), dtype=np.float64)
    flat[:, 0::2] = xs
    flat[:, 1::2] = ys
    return flat, reasons


def xywh_to_xy4(x: float, y: float, w: float, h: float) -> tuple[list[float], list[float]]:
    """``[x, y, w, h]`` -> corner lists (TL, TR, BR, BL)."""
    return [x, x + w, x + w, x], [y, y, y + h, y + h]


def to_number(v: Any) -> float | None:
    """A JSON value as a finite-or-not float; None if it is not a number (bools and junk strings are not)."""
    if isinstance(v, bool):
        return None
    try:
        if isinstance(v, (int, float)):
            return float(v)
        if isinstance(v, str):
            return float(v.strip())
    except OverflowError:  # an integer literal beyond float range
        return math.inf
    except ValueError:
        return None
    return None


def numbers(values: Any, n: int) -> list[float] | Skip:
    """First ``n`` entries of a JSON list as floats, or the Skip reason why that is impossible."""
    if not isinstance(values, (list, tuple)):
        return Skip.MISSING_FIELD if values is None else Skip.BAD_COORDINATE
    if len(values) < n:
        return Skip.DEGENERATE_BOX
    out = [to_number(v) for v in values[:n]]
    if any(v is None or not math.isfinite(v) for v in out):
        return Skip.BAD_COORDINATE
    return out  # type: ignore[return-value]


def box_to_xy4(box: Any, layout: str) -> tuple[list[float], list[float]] | Skip:
    """One box in a source layout -> (xs, ys) corner lists, or a Skip reason.

    ``layout``: ``"xywh"`` (``[x, y, w, h]``) or ``"xs_ys"`` (8-vector ``[x0..x3, y0..y3]`` as the original merged
    JSON stores it; a 4-vector falls back to xywh like the original did).
    """
    if layout == "xs_ys" and isinstance(box, (list, tuple)) and 4 <= len(box) < 8:
        layout = "xywh"
    if layout == "xywh":
        v = numbers(box, 4)
        if isinstance(v, Skip):
            return v
        if v[2] <= 0 or v[3] <= 0:
            return Skip.DEGENERATE_BOX
        return xywh_to_xy4(*v)
    v = numbers(box, 8)
    if isinstance(v, Skip):
        return v
    return v[0:4], v[4:8]


def boxes_to_xy(a: list, b: list | None, layout: str) -> tuple[np.ndarray, np.ndarray, list]:
    """Many raw boxes -> (n, 4) corner arrays ``X``, ``Y`` and a pre-check Skip (or None) per box.

    ``layout`` ``"xy4"``: ``a`` holds the x lists and ``b`` the y lists (AI-Hub ``x[4]``, ``y[4]``); ``"xywh"`` and
    ``"xs_ys"``: ``a`` holds whole boxes (see ``box_to_xy4``). One numpy pass when every box is a clean list,
    else box by box.
    """
    n = len(a)
    width = 8 if layout == "xs_ys" else 4
    try:
        cols = (a, b) if layout == "xy4" else (a,)
        if set().union(*(map(type, c) for c in cols)) <= {list} and \
                set().union(*(map(len, c) for c in cols)) <= {width}:
            A = np.fromiter(chain.from_iterable(a), dtype=np.float64, count=width * n).reshape(n, width)
            pre: list = [None] * n
            if layout == "xy4":
                return A, np.fromiter(chain.from_iterable(b), dtype=np.float64, count=4 * n).reshape(n, 4), pre
            if layout == "xs_ys":
                return A[:, :4], A[:, 4:], pre
            x, y, w, h = A.T
            for i in np.flatnonzero((w <= 0) | (h <= 0)):
                pre[i] = Skip.DEGENERATE_BOX
            return np.stack([x, x + w, x + w, x], axis=1), np.stack([y, y, y + h, y + h], axis=1), pre
    except (TypeError, ValueError, OverflowError):
        pass
    X, Y, pre = np.zeros((n, 4)), np.zeros((n, 4)), [None] * n
    for i in range(n):
        if layout == "xy4":
            vx, vy = numbers(a[i], 4), numbers(b[i], 4)
            xy = vx if isinstance(vx, Skip) else vy if isinstance(vy, Skip) else (vx, vy)
        else:
            xy = box_to_xy4(a[i], layout)
        if isinstance(xy, Skip):
            pre[i] = xy
        else:
            X[i], Y[i] = xy
    return X, Y, pre


def clockwise_flat8(xs: Sequence[float], ys: Sequence[float]) -> list[float] | Skip:
    """One quad -> flat8 clockwise from top-left, or the Skip reason (bad coordinate / degenerate)."""
    flat, reasons = quads_to_flat8(np.asarray([xs], dtype=np.float64), np.asarray([ys], dtype=np.float64))
    return reasons[0] if reasons[0] is not None else flat[0].tolist()


def clockwise_from_top_left(points: Sequence[float]) -> list[float]:
    """A flat8 quad (any vertex order) reordered like ``quads_to_flat8``; degenerate quads are ordered too."""
    flat, _ = quads_to_flat8(np.asarray([points[0::2]], dtype=np.float64), np.asarray([points[1::2]], dtype=np.float64))
    return flat[0].tolist()
