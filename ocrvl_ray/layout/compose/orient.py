"""Upright pages: text_in_wild marks pages shot upside down (usd) or sideways (ud, du); turn them first."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import cv2
import numpy as np

from ocrvl_ray.core.config import truthy
from ocrvl_ray.core.records import Page, Word
from ocrvl_ray.ingest.geometry import clockwise_from_top_left

# flag -> (cv2 rotation, point map (x, y, W, H) -> (x', y'))
_TURNS = {
    "usd": (cv2.ROTATE_180, lambda x, y, w, h: (w - x, h - y)),
    "ud": (cv2.ROTATE_90_COUNTERCLOCKWISE, lambda x, y, w, h: (y, w - x)),
    "du": (cv2.ROTATE_90_CLOCKWISE, lambda x, y, w, h: (h - y, x)),
}


def _flags(value: Any) -> set[str]:
    if isinstance(value, str):
        return {t.lower() for t in value.replace(",", " ").split()}
    if isinstance(value, dict):
        return {str(k).lower() for k, v in value.items() if v is True or truthy(v)}
    if isinstance(value, (list, tuple, set)):
        return {str(t).strip().lower() for t in value}
    return set()


def page_orientation(page: Page) -> str | None:
    """``usd``, ``ud`` or ``du`` from ``page.attrs["orientation"]`` (a flag, a list of flags or a dict of
    flag -> truthy), by priority usd > ud > du; None for upright pages."""
    flags = _flags(page.attrs.get("orientation"))
    return next((f for f in ("usd", "ud", "du") if f in flags), None)


def word_orientation(word: Word) -> str | None:
    """``ud``/``du`` from ``word.attrs["orientation"]`` (or text_in_wild's ``word_ud``/``word_du`` flags)."""
    flags = _flags(word.attrs.get("orientation"))
    for f in ("ud", "du"):
        if f in flags or _flags({f: word.attrs.get("word_" + f, False)}):
            return f
    return None


def orient_page(page: Page, image: np.ndarray) -> tuple[Page, np.ndarray]:
    """Rotate ``image`` (H x W [x C]), the words' polygons and the character boxes (``attrs["chars"]``) by the
    page's orientation flag: usd 180 degrees, ud 90 degrees counter-clockwise, du 90 degrees clockwise.
    Polygons stay clockwise from top-left.
    Identity for upright pages and pages already turned (``attrs["oriented"]``)."""
    flag = page_orientation(page)
    if flag is None or page.attrs.get("oriented"):
        return page, image
    rotation, move = _TURNS[flag]
    h, w = image.shape[:2]
    turned = cv2.rotate(image, rotation)

    def turn(points: list[float]) -> list[float]:
        flat = [float(v) for x, y in zip(points[0::2], points[1::2]) for v in move(x, y, w, h)]
        return clockwise_from_top_left(flat) if len(flat) == 8 else flat

    words = [replace(word, points=turn(word.points)) for word in page.words]
    attrs = {**page.attrs, "oriented": True}
    if page.attrs.get("chars"):
        attrs["chars"] = [turn(c) for c in page.attrs["chars"]]
    out = replace(page, words=words, width=int(turned.shape[1]), height=int(turned.shape[0]), attrs=attrs)
    return out, turned
