"""Keep only the label: every pixel of a crop outside its label words' (dilated) polygons is replaced.

The original inpainted the whole crop outside the preserved words (``cv2.inpaint``, seconds per page at
2480x3508). Here the removed area is filled from an estimate of the paper: the median colour of a coarse
grid of blocks (each block's median over a subsample of its pixels outside the label words, so ink, rules
and stamps, which cover a minority of a block, drop out), smoothed and upscaled bilinearly so shading and
photo gradients survive. Label words keep their own pixels; a light feather blends them into the fill.
Cost and fidelity against whole-crop inpainting: ``bench/compose_cost.py``.
"""
from __future__ import annotations

import cv2
import numpy as np

#: Side of a background block in crop pixels, and the sampling step inside a block (64 samples per block).
BLOCK = 64
STEP = 8


def keep_mask(shape: tuple[int, int], pts: list[np.ndarray], dilate: int) -> np.ndarray:
    """uint8 ``(h, w)`` mask, 255 inside the int32 polygons ``pts`` grown by ``dilate`` pixels."""
    mask = np.zeros(shape, np.uint8)
    if pts:
        cv2.fillPoly(mask, pts, 255)
        if dilate > 0:  # a round pen of radius `dilate` along the outline = dilation by a disc
            cv2.polylines(mask, pts, True, 255, thickness=2 * dilate + 1, lineType=cv2.LINE_8)
    return mask


def paper(crop: np.ndarray, exclude: np.ndarray | None = None, block: int = BLOCK, step: int = STEP) -> np.ndarray:
    """Background estimate of ``crop`` (new contiguous array, same shape, uint8): per ``block``-sized cell the
    median colour of every ``step``-th pixel outside ``exclude`` (bool ``(h, w)``, e.g. the label words'
    ink), smoothed over 3x3 cells and upscaled bilinearly. Cells with few such pixels take the crop's median."""
    h, w = crop.shape[:2]
    s0 = step // 2 if min(h, w) > step else 0
    sub = crop[s0::step, s0::step]
    sh, sw = sub.shape[:2]
    gh, gw = max(1, min(sh, round(h / block))), max(1, min(sw, round(w / block)))
    bh, bw = sh // gh, sw // gw
    chans = 1 if crop.ndim == 2 else crop.shape[2]
    vals = sub[:gh * bh, :gw * bw].reshape(gh, bh, gw, bw, chans).transpose(0, 2, 1, 3, 4)
    vals = vals.reshape(gh, gw, bh * bw, chans).astype(np.uint16)
    if exclude is not None:
        ex = exclude[s0::step, s0::step][:gh * bh, :gw * bw].reshape(gh, bh, gw, bw).transpose(0, 2, 1, 3)
        ex = ex.reshape(gh, gw, bh * bw)
        vals[ex] = 1024                      # sorts after every colour
        count = (~ex).sum(axis=2)
    else:
        count = np.full((gh, gw), bh * bw)
    vals.sort(axis=2)
    if count.sum() == 0:                     # everything excluded: plain median
        vals = sub.reshape(1, 1, -1, chans).astype(np.uint16)
        vals.sort(axis=2)
        count = np.array([[vals.shape[2]]])
        gh = gw = 1
    flat = vals.reshape(-1, vals.shape[2], chans)
    whole = np.sort(flat[flat[:, :, 0] < 1024], axis=0)[int(count.sum()) // 2]  # the crop's median colour
    mid = np.minimum(count // 2, vals.shape[2] - 1)
    grid = np.take_along_axis(vals, mid[:, :, None, None], axis=2)[:, :, 0]
    grid[count < max(1, bh * bw // 8)] = whole
    grid = grid.astype(np.uint8).reshape(gh, gw, *crop.shape[2:])
    if gh == 1 and gw == 1:
        out = np.empty_like(crop)
        out[:] = grid[0, 0]
        return out
    if gh >= 3 and gw >= 3:  # a cell filled by a big word or a photo detail must not stand out
        grid = cv2.medianBlur(grid, 3)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_LINEAR).reshape(crop.shape)


def keep_only(crop: np.ndarray, polys: list[np.ndarray], dilate: int, feather: int) -> np.ndarray:
    """A new image: the pixels of ``crop`` inside ``polys`` (``(k, 2)`` crop coordinates), the paper
    estimate everywhere else. The kept area is the polygons dilated by ``dilate``; with ``feather`` > 0 its
    edge is blended over about ``feather`` pixels (two box filters ~ a Gaussian of that sigma), never
    fading the polygons themselves."""
    h, w = crop.shape[:2]
    pts = [np.round(p).astype(np.int32) for p in polys]
    if not pts:
        return paper(crop)
    core = np.zeros((h, w), np.uint8)
    cv2.fillPoly(core, pts, 1)
    out = paper(crop, core.view(bool))
    allp = np.concatenate(pts)
    pad = dilate + 2 * feather + 1
    x1, y1 = max(0, int(allp[:, 0].min()) - pad), max(0, int(allp[:, 1].min()) - pad)
    x2, y2 = min(w, int(allp[:, 0].max()) + pad + 1), min(h, int(allp[:, 1].max()) + pad + 1)
    if x2 <= x1 or y2 <= y1:
        return out
    origin = np.array([x1, y1], np.int32)
    pts = [p - origin for p in pts]
    win = (slice(y1, y2), slice(x1, x2))
    alpha = keep_mask((y2 - y1, x2 - x1), pts, dilate)
    if feather > 0:
        k = (2 * feather + 1, 2 * feather + 1)
        alpha = cv2.blur(cv2.blur(alpha, k), k)
        cv2.fillPoly(alpha, pts, 255)  # the words themselves are never faded
    if crop.ndim == 3:
        alpha = cv2.merge([alpha] * crop.shape[2])
    # out = crop * a + paper * (1 - a), in uint8 (exact where a is 0 or 255)
    out[win] = cv2.add(cv2.multiply(crop[win], alpha, scale=1 / 255),
                       cv2.multiply(out[win], cv2.bitwise_not(alpha), scale=1 / 255))
    return out
