"""Keep only the label: every pixel of a crop outside its label words' (dilated) polygons becomes paper.

The original inpainted the whole crop outside the preserved words (``cv2.inpaint``, seconds per page at
2480x3508): the fill came from the paper around the label words alone, and nothing else on the crop survived,
whatever its size. Here the same holds at a fraction of the cost. The paper is sampled only in the ring the
dilation adds around the label words, never elsewhere, so no stamp, logo, photo or black bar can leak into
the fill: a median per coarse block, blocks without samples filled from their neighbours on the coarse grid
(the original's inpainting at block resolution), smoothed and upscaled bilinearly, so the shading the words
sit on carries over. Label words keep their own pixels; a light feather inside the dilated area blends them
into the fill. Cost and fidelity against whole-crop inpainting: ``bench/compose_cost.py``.
"""
from __future__ import annotations

import cv2
import numpy as np

#: Side of a paper block in crop pixels, the sampling step (every STEP-th pixel each way), and the fewest
#: samples a block needs for its own estimate (fewer: filled from its neighbours).
BLOCK = 64
STEP = 4
MIN_SAMPLES = 4


def keep_mask(shape: tuple[int, int], pts: list[np.ndarray], dilate: int) -> np.ndarray:
    """uint8 ``(h, w)`` mask, 255 inside the int32 polygons ``pts`` grown by ``dilate`` pixels."""
    mask = np.zeros(shape, np.uint8)
    if pts:
        cv2.fillPoly(mask, pts, 255)
        if dilate > 0:  # a round pen of radius `dilate` along the outline = dilation by a disc
            cv2.polylines(mask, pts, True, 255, thickness=2 * dilate + 1, lineType=cv2.LINE_8)
    return mask


def _median(cells: np.ndarray, values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per cell the lower median of the uint8 ``values`` (``(k,)``) in it: a 256-bin histogram per cell."""
    hist = np.bincount(cells * 256 + values, minlength=len(counts) * 256).reshape(len(counts), 256).cumsum(axis=1)
    return (hist < ((counts + 1) // 2)[:, None]).sum(axis=1).astype(np.uint8)


def _fill(grid: np.ndarray, known: np.ndarray) -> np.ndarray:
    """``grid`` (``(gh, gw, c)`` uint8) with every cell not ``known`` filled from the known ones, ring by ring:
    each takes the mean of its already filled 8 neighbours (the original's inpainting from the words'
    surroundings, at block resolution; a mean of neighbours never overshoots them)."""
    vals = grid.astype(np.float32) * known[:, :, None]
    have = known.astype(np.float32)
    while not have.all():
        total = cv2.boxFilter(vals, -1, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT)
        n = cv2.boxFilter(have, -1, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT)
        new = (have == 0) & (n > 0)
        vals[new] = total.reshape(vals.shape)[new] / n[new][:, None]
        have[new] = 1
    return np.rint(vals).astype(np.uint8)


def paper(crop: np.ndarray, sample: np.ndarray | None = None, block: int = BLOCK, step: int = STEP) -> np.ndarray:
    """Paper estimate of ``crop`` (new contiguous array, same shape, uint8) from the pixels where ``sample``
    (``(h, w)``, nonzero = paper; None = every pixel) is set: per ``block``-sized cell the median colour of every
    ``step``-th such pixel (every one if the step misses them all); cells with fewer than ``MIN_SAMPLES`` are
    filled from the others (``_fill``); smoothed over 3x3 cells and upscaled bilinearly."""
    h, w = crop.shape[:2]
    if sample is None:
        sample = np.ones((h, w), bool)
    s0 = step // 2 if min(h, w) > step else 0
    ys, xs = np.nonzero(sample[s0::step, s0::step])
    ys, xs = ys * step + s0, xs * step + s0
    if not len(ys):
        ys, xs = np.nonzero(sample)
    if not len(ys):
        ys, xs = np.nonzero(np.ones((h, w), bool))
    chans = 1 if crop.ndim == 2 else crop.shape[2]
    values = crop[ys, xs].reshape(-1, chans)
    gh, gw = max(1, min(h, round(h / block))), max(1, min(w, round(w / block)))
    cells = (ys * gh // h) * gw + xs * gw // w
    counts = np.bincount(cells, minlength=gh * gw)
    known = counts >= min(MIN_SAMPLES, len(ys))
    if known.sum() <= 1:  # one estimate for the whole crop
        cells, counts, known = np.zeros_like(cells), np.array([len(ys)]), np.ones(1, bool)
        gh = gw = 1
    grid = np.stack([_median(cells, values[:, c], counts) for c in range(chans)], axis=1).reshape(gh, gw, chans)
    if gh == 1 and gw == 1:
        out = np.empty_like(crop)
        out[:] = grid[0, 0] if crop.ndim == 3 else grid[0, 0, 0]
        return out
    if not known.all():
        grid = _fill(grid, known.reshape(gh, gw))
    grid = grid.reshape(gh, gw, *crop.shape[2:])
    if gh >= 3 and gw >= 3:  # a block whose samples caught ink touching a word must not stand out
        grid = cv2.medianBlur(grid, 3)
    return cv2.resize(grid, (w, h), interpolation=cv2.INTER_LINEAR).reshape(crop.shape)


def keep_only(crop: np.ndarray, polys: list[np.ndarray], dilate: int, feather: int) -> np.ndarray:
    """A new image: the pixels of ``crop`` inside ``polys`` (``(k, 2)`` crop coordinates) dilated by ``dilate``,
    the paper estimate everywhere else. With ``feather`` > 0 the kept area's edge is blended over about
    ``feather`` pixels (two box filters ~ a Gaussian of that sigma) inside the dilated area, never fading the
    polygons themselves and never reaching past the dilation."""
    h, w = crop.shape[:2]
    pts = [np.round(p).astype(np.int32) for p in polys]
    if not pts:
        return paper(crop)
    allp = np.concatenate(pts)
    pad = dilate + 1
    x1, y1 = max(0, int(allp[:, 0].min()) - pad), max(0, int(allp[:, 1].min()) - pad)
    x2, y2 = min(w, int(allp[:, 0].max()) + pad + 1), min(h, int(allp[:, 1].max()) + pad + 1)
    if x2 <= x1 or y2 <= y1:
        return paper(crop)
    win = (slice(y1, y2), slice(x1, x2))   # holds the dilated words
    pts = [p - np.array([x1, y1], np.int32) for p in pts]
    kept = keep_mask((y2 - y1, x2 - x1), pts, dilate)
    sample = np.zeros((h, w), np.uint8)
    sample[win] = kept
    if dilate > 0:
        cv2.fillPoly(sample[win], pts, 0)  # the paper the dilation adds around the words: the fill's only source
    out = paper(crop, sample)
    alpha = kept
    if feather > 0:
        k = (2 * feather + 1, 2 * feather + 1)  # the two filters reach 2 * feather px: start that far inside
        alpha = cv2.blur(cv2.blur(keep_mask(kept.shape, pts, max(0, dilate - 2 * feather)), k), k)
        cv2.fillPoly(alpha, pts, 255)        # the words themselves are never faded
        alpha = cv2.min(alpha, kept)         # nothing past the dilation survives
    if crop.ndim == 3:
        alpha = cv2.merge([alpha] * crop.shape[2])
    # out = crop * a + paper * (1 - a), in uint8 (exact where a is 0 or 255)
    out[win] = cv2.add(cv2.multiply(crop[win], alpha, scale=1 / 255),
                       cv2.multiply(out[win], cv2.bitwise_not(alpha), scale=1 / 255))
    return out
