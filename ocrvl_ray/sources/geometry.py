"""Word-box normalisation: every label box becomes a flat8 polygon clockwise from top-left (TL,TR,BR,BL).

Pure numpy; no Ray, no Paddle. Works on many boxes at once (``quads_to_flat8``) so readers do not pay
per-word Python overhead; a box that fails validation gets a ``Skip`` reason instead of a polygon.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ocrvl_ray.report.skips import Skip

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
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip())
        except ValueError:
            return None
    try:  # Decimal from ijson
        return float(v)
    except (TypeError, ValueError):
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

    ``layout``: ``"xywh"`` (``[x, y, w, h]``), ``"xs_ys"`` (8-vector ``[x0..x3, y0..y3]`` as the original merged
    JSON stores it; a 4-vector falls back to xywh like the original did) or ``"flat8"``.
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
    if layout == "xs_ys":
        return v[0:4], v[4:8]
    return v[0::2], v[1::2]


def clockwise_flat8(xs: Sequence[float], ys: Sequence[float]) -> list[float] | Skip:
    """One quad -> flat8 clockwise from top-left, or the Skip reason (bad coordinate / degenerate)."""
    flat, reasons = quads_to_flat8(np.asarray([xs], dtype=np.float64), np.asarray([ys], dtype=np.float64))
    return reasons[0] if reasons[0] is not None else flat[0].tolist()
