"""Crop pixels: hide words a label lacks (inpaint small windows around them only), blank what lies outside a
region's polygon, encode JPEG."""
from __future__ import annotations

import cv2
import numpy as np


def _merge_rects(rects: list[list[int]]) -> list[list[int]]:
    """Merge overlapping ``[x1, y1, x2, y2]`` rectangles until none overlap."""
    rects = [list(r) for r in rects]
    merged = True
    while merged:
        merged = False
        out: list[list[int]] = []
        for r in rects:
            for o in out:
                if r[0] < o[2] and o[0] < r[2] and r[1] < o[3] and o[1] < r[3]:
                    o[0], o[1] = min(o[0], r[0]), min(o[1], r[1])
                    o[2], o[3] = max(o[2], r[2]), max(o[3], r[3])
                    merged = True
                    break
            else:
                out.append(r)
        rects = out
    return rects


def hide_words(crop: np.ndarray, hide: list[np.ndarray], keep: list[np.ndarray], dilate: int,
               radius: int = 3) -> np.ndarray:
    """A copy of ``crop`` with the polygons ``hide`` (``(k, 2)`` crop coordinates) dilated by ``dilate`` pixels
    and inpainted (Telea), never touching pixels inside the polygons ``keep``.

    Only small windows around the hidden polygons are inpainted (overlapping windows merged), not the crop.
    """
    out = crop.copy()
    h, w = crop.shape[:2]
    if not hide:
        return out
    margin = dilate + radius + 1
    ipolys = [np.round(p).astype(np.int32) for p in hide]
    kpolys = [np.round(p).astype(np.int32) for p in keep]
    ibox = np.array([[*p.min(axis=0), *p.max(axis=0)] for p in ipolys]).reshape(-1, 4)
    kbox = np.array([[*p.min(axis=0), *p.max(axis=0)] for p in kpolys]).reshape(-1, 4)
    rects = []
    for x1, y1, x2, y2 in ibox:
        x1, y1, x2, y2 = max(0, x1 - margin), max(0, y1 - margin), min(w, x2 + margin + 1), min(h, y2 + margin + 1)
        if x2 > x1 and y2 > y1:
            rects.append([int(x1), int(y1), int(x2), int(y2)])
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate + 1, 2 * dilate + 1)) if dilate > 0 else None
    for x1, y1, x2, y2 in _merge_rects(rects):
        origin = np.array([x1, y1], dtype=np.int32)
        mask = np.zeros((y2 - y1, x2 - x1), dtype=np.uint8)
        cv2.fillPoly(mask, [ipolys[i] - origin for i in _touching(ibox, x1, y1, x2, y2)], 255)
        if kernel is not None:
            mask = cv2.dilate(mask, kernel)
        kp = [kpolys[i] - origin for i in _touching(kbox, x1, y1, x2, y2)]
        if kp:
            cv2.fillPoly(mask, kp, 0)
        if mask.any():
            out[y1:y2, x1:x2] = cv2.inpaint(out[y1:y2, x1:x2], mask, radius, cv2.INPAINT_TELEA)
    return out


def _touching(boxes: np.ndarray, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    """Indices of integer boxes (inclusive corners) that reach into the window [x1, x2) x [y1, y2)."""
    return np.flatnonzero((boxes[:, 0] < x2) & (boxes[:, 2] >= x1) & (boxes[:, 1] < y2) & (boxes[:, 3] >= y1))


def blank_outside(crop: np.ndarray, polygon, origin: tuple[int, int]) -> np.ndarray:
    """A copy of ``crop`` (taken at page pixel ``origin``) with every pixel outside ``polygon`` (page pixels)
    set to 255: PaddleOCR-VL's crop of a polygon region (paddlex ``CropByBoxes``, ``layout_shape_mode`` not
    ``rect``): points truncated to integers, shifted to the crop, rasterised by ``cv2.fillPoly`` (8-connected)."""
    pts = np.asarray(polygon, dtype=np.float64).reshape(-1, 2).astype(np.int32) - np.asarray(origin, np.int32)
    inside = np.zeros(crop.shape[:2], np.uint8)
    cv2.fillPoly(inside, [pts.reshape(-1, 1, 2)], 1)
    out = crop.copy()
    out[inside == 0] = 255
    return out


def encode_jpeg(image: np.ndarray, quality: int) -> bytes | None:
    """JPEG bytes of a BGR (or gray) uint8 image; None if OpenCV cannot encode it."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])  # views need no copy
    return buf.tobytes() if ok else None
