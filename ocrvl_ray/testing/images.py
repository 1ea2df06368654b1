"""Unusual and bad image files for decode tests: corrupt, truncated, zero-byte, a decompression bomb header,
EXIF-rotated JPEG, grayscale, RGBA, palette, 16-bit, CMYK."""
from __future__ import annotations

import os
import random
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def pattern_image(width: int = 64, height: int = 48) -> np.ndarray:
    """A deterministic RGB uint8 gradient with a distinct corner mark (top-left red block)."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([(x * 255 // max(1, width - 1)), (y * 255 // max(1, height - 1)),
                    np.full_like(x, 128)], axis=-1).astype(np.uint8)
    rgb[: max(1, height // 6), : max(1, width // 6)] = (255, 0, 0)
    return rgb


def write_image(path: str | os.PathLike, kind: str, width: int = 64, height: int = 48) -> Path:
    """Write a test image of ``kind``; returns the path.

    Good kinds: ``rgb_png``, ``rgb_jpeg``, ``gray_png``, ``rgba_png``, ``palette_png``, ``gray16_png``,
    ``rgb48_png``, ``cmyk_jpeg``, ``exif_rotated_jpeg`` (stored ``width``x``height`` with EXIF orientation 6 = shown
    rotated 90° clockwise). Bad kinds: ``zero_byte``, ``corrupt`` (random bytes), ``truncated_png``,
    ``truncated_jpeg``, ``bomb_png`` (a valid PNG header claiming 50000x50000 pixels, tiny file).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = pattern_image(width, height)
    im = Image.fromarray(rgb, "RGB")
    if kind == "rgb_png":
        im.save(path, "PNG")
    elif kind == "rgb_jpeg":
        im.save(path, "JPEG", quality=95)
    elif kind == "gray_png":
        im.convert("L").save(path, "PNG")
    elif kind == "rgba_png":
        rgba = im.convert("RGBA")
        alpha = np.full((height, width), 255, np.uint8)
        alpha[:, width // 2:] = 0  # right half fully transparent
        rgba.putalpha(Image.fromarray(alpha, "L"))
        rgba.save(path, "PNG")
    elif kind == "palette_png":
        im.convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(path, "PNG")
    elif kind == "gray16_png":
        gray = np.asarray(im.convert("L"), dtype=np.uint16) * 257  # full 16-bit range
        Image.fromarray(gray).save(path, "PNG")
    elif kind == "rgb48_png":  # 16 bits per channel
        import cv2

        cv2.imwrite(str(path) if path.suffix == ".png" else str(path) + ".png",
                    np.ascontiguousarray(rgb[:, :, ::-1]).astype(np.uint16) * 257)
        if path.suffix != ".png":
            Path(str(path) + ".png").rename(path)
    elif kind == "cmyk_jpeg":
        im.convert("CMYK").save(path, "JPEG", quality=95)
    elif kind == "exif_rotated_jpeg":
        exif = Image.Exif()
        exif[0x0112] = 6
        im.save(path, "JPEG", quality=95, exif=exif.tobytes())
    elif kind == "zero_byte":
        path.write_bytes(b"")
    elif kind == "corrupt":
        path.write_bytes(random.Random(7).randbytes(4096))
    elif kind in ("truncated_png", "truncated_jpeg"):
        big = Image.fromarray(pattern_image(max(width, 256), max(height, 256)), "RGB")
        tmp = path.with_suffix(".full")
        big.save(tmp, "PNG" if kind == "truncated_png" else "JPEG", quality=95)
        data = tmp.read_bytes()
        tmp.unlink()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "bomb_png":
        path.write_bytes(_png_header_only(50_000, 50_000))
    else:
        raise ValueError(f"unknown image kind {kind!r}")
    return path


GOOD_KINDS = ("rgb_png", "rgb_jpeg", "gray_png", "rgba_png", "palette_png", "gray16_png", "rgb48_png",
              "cmyk_jpeg", "exif_rotated_jpeg")
BAD_KINDS = ("zero_byte", "corrupt", "truncated_png", "truncated_jpeg", "bomb_png")


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width``x``height`` RGB but whose data is a few compressed rows."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (1 + 3 * width) * 4)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
