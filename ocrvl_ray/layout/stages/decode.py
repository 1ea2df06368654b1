"""Decode stage: manifest rows -> page status, (possibly rotated) words, detector input, page image hand-off.

``decode_batch(batch, max_pixels, handoff, det_max_side)`` is a plain function over a numpy batch of
manifest rows (``records.PAGE_SCHEMA`` columns); ``DecodeStage`` (built from the config) runs it as Ray
tasks. Per page it

* refuses a missing file (``Skip.IMAGE_MISSING``), an image above ``max_pixels`` judged from the header
  before any pixel is decoded (``Skip.IMAGE_TOO_LARGE``), and zero-byte / corrupt / truncated files
  (``Skip.IMAGE_CORRUPT``);
* normalises to 8-bit BGR: EXIF orientation applied, grayscale/palette/CMYK converted, alpha composited
  on white, 16-bit scaled to 8-bit;
* applies ``ocrvl_ray.layout.compose.orient_page`` to pages labelled with an ``orientation`` (text_in_wild);
* emits a reduced detector input (longest side <= ``det_max_side``; JPEGs are DCT-downscaled while
  decoding) and the factors that map detector pixels back to page pixels;
* hands the full page downstream either as encoded bytes (``handoff="bytes"``: the original file when
  OpenCV decodes it to the same pixels, else a fast PNG) or as the decoded array (``handoff="array"``).

Output columns added: ``status`` ("ok" or a Skip value), ``detail``, ``det_image``, ``det_sx``, ``det_sy``
and ``image_bytes`` or ``image`` (``image_column(handoff)``). ``width``/``height``/``words`` are updated to the
decoded page.
Use ``page_image(batch, i)`` downstream to get the full BGR page from either hand-off.
"""
from __future__ import annotations

import io
import os
import warnings
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageOps

from ocrvl_ray.core.records import PAGE_FIELDS, Page, Word
from ocrvl_ray.core.runtime import StageResources
from ocrvl_ray.core.skips import Skip
from ocrvl_ray.ingest.geometry import clockwise_from_top_left
from ocrvl_ray.layout.stages.base import Stage

OK = "ok"
HANDOFFS = ("bytes", "array")
DET_MAX_SIDE = 1024
EMPTY_IMAGE = np.zeros((0, 0, 3), np.uint8)
_EXIF_ORIENTATION = 0x0112
_SWAPS_AXES = {5, 6, 7, 8}
_PLAIN_MODES = {"RGB", "L"}  # modes OpenCV's IMREAD_COLOR decodes to exactly our pixels


class _Refused(Exception):
    def __init__(self, skip: Skip, detail: str):
        super().__init__(detail)
        self.skip, self.detail = skip, detail


def image_column(handoff: str) -> str:
    """The column that carries the full page for a hand-off: ``image_bytes`` (bytes) or ``image`` (array)."""
    if handoff not in HANDOFFS:
        raise ValueError(f"handoff must be one of {HANDOFFS}, got {handoff!r}")
    return "image_bytes" if handoff == "bytes" else "image"


class DecodeStage(Stage):
    """CPU tasks: manifest rows -> decoded pages. Its request differs from the detector pools', so Ray keeps
    decode a separate operator. It never sees the pages already done: the driver leaves them out of the read."""
    name = "decode"
    reads = PAGE_FIELDS
    drops = ()
    batch_format = "numpy"

    def __init__(self, max_pixels: int, handoff: str, batch_size: int):
        self.max_pixels, self.handoff, self.batch_size = max_pixels, handoff, batch_size
        self.writes = ("status", "detail", "det_image", "det_sx", "det_sy", image_column(handoff),
                       "words", "width", "height")
        self.resources = StageResources("decode task", num_cpus=1.0)

    @classmethod
    def from_config(cls, cfg) -> "DecodeStage":
        return cls(cfg.max_pixels, cfg.handoff, cfg.decode_batch_size)

    def setup(self) -> None:
        cv2.setNumThreads(1)   # a task holds one CPU: OpenCV's own thread pool would only oversubscribe it

    def process_batch(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        return decode_batch(batch, self.max_pixels, self.handoff)


def decode_batch(batch: dict[str, np.ndarray], max_pixels: int, handoff: str,
                 det_max_side: int = DET_MAX_SIDE) -> dict[str, Any]:
    """Decode every page of a manifest batch; bad pages get a status, never an exception."""
    image_col = image_column(handoff)
    n = len(batch["page_id"])
    out = {k: list(v) for k, v in batch.items()}
    status, detail = list(batch.get("status", [OK] * n)), list(batch.get("detail", [""] * n))
    det, sx, sy, full = [EMPTY_IMAGE] * n, [1.0] * n, [1.0] * n, [None] * n
    words = [_word_rows(w) for w in batch["words"]]
    for i in range(n):
        if status[i] != OK:
            continue
        page = Page.from_row({k: batch[k][i] for k in batch if k in PAGE_FIELDS} | {"words": words[i]})
        try:
            page, decoded = decode_page(page, max_pixels, handoff, det_max_side)
        except _Refused as r:
            status[i], detail[i] = r.skip.value, r.detail
            continue
        except Exception as e:  # noqa: BLE001 - a bad page must never kill the run
            status[i], detail[i] = Skip.ERROR.value, f"{page.image_path}: {type(e).__name__}: {e}"
            continue
        out["width"][i], out["height"][i] = page.width, page.height
        words[i] = [w.to_row() for w in page.words]
        det[i], full[i] = decoded["det_image"], decoded["full"]
        sx[i], sy[i] = page.width / det[i].shape[1], page.height / det[i].shape[0]
    out.update(words=words, status=status, detail=detail, det_image=det, det_sx=sx, det_sy=sy)
    out["width"] = np.asarray(out["width"], np.int32)
    out["height"] = np.asarray(out["height"], np.int32)
    empty = b"" if handoff == "bytes" else EMPTY_IMAGE
    out[image_col] = [f if f is not None else empty for f in full]
    return out


def _word_rows(words) -> list[dict]:
    """Manifest words (Arrow structs as numpy objects) -> plain ``Word.to_row()`` dicts."""
    return [Word.from_row(w).to_row() for w in (words if words is not None else [])]


def decode_page(page: Page, max_pixels: int, handoff: str, det_max_side: int) -> tuple[Page, dict]:
    """Decode one page; returns the updated page and ``{"det_image", "full"}`` (bytes or array)."""
    path = page.image_path
    if not path or not os.path.isfile(path):
        raise _Refused(Skip.IMAGE_MISSING, f"{path or page.image_name}: image file not found")
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        raise _Refused(Skip.IMAGE_CORRUPT, f"{path}: zero-byte file")
    im = _open_checked(data, path, max_pixels)
    orientation = _exif_orientation(im)
    raw_w, raw_h = im.size
    disp_w, disp_h = (raw_h, raw_w) if orientation in _SWAPS_AXES else (raw_w, raw_h)
    page = _exif_words(page, orientation, raw_w, raw_h, disp_w, disp_h)
    needs_orient = _needs_orient(page)
    plain = im.mode in _PLAIN_MODES and orientation in (0, 1) and not needs_orient and "transparency" not in im.info
    bgr = _decode_plain(data, im, handoff, det_max_side) if plain else None
    if bgr is None:
        try:
            im.load()
            bgr = _to_bgr(ImageOps.exif_transpose(im) if orientation not in (0, 1) else im)
        except (OSError, SyntaxError, ValueError) as e:
            raise _Refused(Skip.IMAGE_CORRUPT, f"{path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    page.width, page.height = disp_w, disp_h
    if needs_orient:
        from ocrvl_ray.layout.compose import orient_page

        page, bgr = orient_page(page, bgr)
        page.height, page.width = bgr.shape[:2]
    det_image = _reduce(bgr, det_max_side)
    if handoff == "array":
        full: Any = bgr
    elif plain:
        full = data  # OpenCV decodes the original file to these same pixels: move the compact original
    else:
        full = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])[1].tobytes()
    return page, {"det_image": det_image, "full": full}


def page_image(batch: dict[str, Any], i: int) -> np.ndarray:
    """The full BGR page of row ``i`` from either hand-off (``image`` array or ``image_bytes``)."""
    return page_image_at(batch, i, 1)[0]


def page_image_at(batch: dict[str, Any], i: int, reduce: int) -> tuple[np.ndarray, int]:
    """``page_image`` at a reduced scale where that is cheap: a JPEG hand-off is decoded DCT-downscaled by
    ``reduce`` (2, 4, 8; about half the cost of a full decode at 2); other inputs come at full size.
    Returns ``(image, k)``: page pixel = k x image pixel."""
    if "image" in batch:
        return np.asarray(batch["image"][i]), 1
    data = batch["image_bytes"][i]
    k = reduce if reduce in _REDUCED and bytes(data[:2]) == b"\xff\xd8" else 1
    flags = _REDUCED[k] if k > 1 else cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if img is None:
        raise ValueError(f"page {batch['page_id'][i]}: image_bytes do not decode")
    return img, k


def _needs_orient(page: Page) -> bool:
    if not page.attrs.get("orientation") or page.attrs.get("oriented"):
        return False
    from ocrvl_ray.layout.compose.orient import page_orientation  # compose owns the text_in_wild rotation rule

    return page_orientation(page) is not None


def _open_checked(data: bytes, path: str, max_pixels: int) -> Image.Image:
    """Open (header only) and refuse images above ``max_pixels`` before any pixel is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise _Refused(Skip.IMAGE_TOO_LARGE, f"{path}: {e}") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise _Refused(Skip.IMAGE_CORRUPT, f"{path}: not a readable image ({type(e).__name__})") from None
    w, h = im.size
    if w * h > max_pixels:
        raise _Refused(Skip.IMAGE_TOO_LARGE,
                       f"{path}: {w}x{h} = {w * h:,} pixels is above max_pixels={max_pixels:,} "
                       f"(raise max_pixels if the image is genuine)")
    if w <= 0 or h <= 0:
        raise _Refused(Skip.IMAGE_CORRUPT, f"{path}: image has no pixels ({w}x{h})")
    return im


def _exif_orientation(im: Image.Image) -> int:
    """EXIF orientation from the header only. (Pillow's ``getexif`` on a PNG decodes all pixels to look for
    an eXIf chunk after the image data; such late chunks are ignored here.)"""
    try:
        if im.format == "PNG":
            raw = im.info.get("exif")
            if not raw:
                return 1
            exif = Image.Exif()
            exif.load(raw)
        else:
            exif = im.getexif()
        return int(exif.get(_EXIF_ORIENTATION, 1) or 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block means "no orientation"
        return 1


def _decode_plain(data: bytes, im: Image.Image, handoff: str, det_max_side: int) -> np.ndarray | None:
    """OpenCV fast path for 8-bit RGB/gray PNG and JPEG without orientation; None = use the Pillow path.

    With the "bytes" hand-off a JPEG is decoded DCT-downscaled (1/2, 1/4, 1/8) to just above the
    detector size: the full page is never materialised in this stage.
    """
    if im.format not in ("PNG", "JPEG"):
        return None
    if im.format == "JPEG" and not data.rstrip(b"\x00\r\n ")[-2:] == b"\xff\xd9":
        return None  # no end-of-image marker: truncated, let Pillow report it
    flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    if handoff == "bytes" and im.format == "JPEG":
        k = reduction(max(im.size), det_max_side)
        flags = _REDUCED[k] if k > 1 else flags
    return cv2.imdecode(np.frombuffer(data, np.uint8), flags)


#: DCT-scaled JPEG decodes (the flags already ignore EXIF orientation).
_REDUCED = {2: cv2.IMREAD_REDUCED_COLOR_2 | cv2.IMREAD_IGNORE_ORIENTATION,
            4: cv2.IMREAD_REDUCED_COLOR_4 | cv2.IMREAD_IGNORE_ORIENTATION,
            8: cv2.IMREAD_REDUCED_COLOR_8 | cv2.IMREAD_IGNORE_ORIENTATION}


def reduction(side: float, at_least: int) -> int:
    """The largest JPEG decode reduction (1, 2, 4, 8) that keeps ``side`` pixels at ``at_least`` or more."""
    return max((k for k in (1, 2, 4, 8) if side / k >= at_least), default=1)


def _to_bgr(im: Image.Image) -> np.ndarray:
    """Any PIL mode -> 8-bit 3-channel BGR (alpha composited on white, 16/32-bit scaled)."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im)
        peak = a.max(initial=0)
        if mode.startswith("I;16") or peak > 255:
            top = 65535.0
        elif mode == "F" and peak <= 1:
            top = 1.0  # float images in 0..1
        else:
            top = 255.0
        a8 = (np.clip(a.astype(np.float64), 0, top) * (255 / top) + 0.5).astype(np.uint8)
        return cv2.cvtColor(a8, cv2.COLOR_GRAY2BGR)
    if mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return cv2.cvtColor(np.asarray(im), cv2.COLOR_RGB2BGR)


def _reduce(bgr: np.ndarray, max_side: int) -> np.ndarray:
    h, w = bgr.shape[:2]
    s = max_side / max(h, w)
    if s >= 1:
        return np.ascontiguousarray(bgr)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)


def _exif_words(page: Page, orientation: int, raw_w: int, raw_h: int, disp_w: int, disp_h: int) -> Page:
    """Words are taken in the displayed orientation (as the original pipeline did), unless the label's
    size matches the stored frame and not the displayed one: then they are mapped like the pixels."""
    if orientation not in _SWAPS_AXES or (page.width, page.height) != (raw_w, raw_h) or raw_w == raw_h:
        return page
    for w in page.words:
        w.points = clockwise_from_top_left(exif_transform_points(w.points, orientation, raw_w, raw_h))
    return page


def exif_transform_points(points: list[float], orientation: int, w: int, h: int) -> list[float]:
    """Map flat (x, y, ...) points of a ``w``x``h`` stored image to its EXIF-oriented display frame."""
    out = []
    for x, y in zip(points[0::2], points[1::2]):
        if orientation == 2:
            x, y = w - x, y
        elif orientation == 3:
            x, y = w - x, h - y
        elif orientation == 4:
            x, y = x, h - y
        elif orientation == 5:
            x, y = y, x
        elif orientation == 6:
            x, y = h - y, x
        elif orientation == 7:
            x, y = h - y, w - x
        elif orientation == 8:
            x, y = y, w - x
        out += [float(x), float(y)]
    return out
