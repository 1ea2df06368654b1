"""PaddleFormers' PaddleOCR-VL multimodal plugin, reading images straight from our LMDBs.

A row's image is a *reference* ``<lmdb dir>/image-000000042`` (an absolute path, which PaddleFormers'
file reader passes through unchanged); ``?clean`` at the end marks eval rows, which are never augmented.
Only :func:`plugin_class` imports PaddleFormers (1.x), so the reference helpers are plain functions.
"""
from __future__ import annotations

import io
import os
import re
from typing import Any, Mapping, Optional

#: PaddleFormers' PaddleOCR-VL plugin defaults, which upstream's 1.5 LoRA recipe uses unchanged.
UPSTREAM_AUGMENT = {"rotation_p": 0.1, "rotation_degrees": [90, 270], "jpeg_p": 0.3, "jpeg_quality_range": [60, 100],
                    "scale_p": 0.5, "scale_range": [0.5, 1.5], "padding_p": 0.1, "padding_range": [0, 15],
                    "color_jitter_p": 0.1}
CLEAN = "?clean"
_REF_RE = re.compile(r"^(?P<dir>/.+)/(?P<key>(?:image|img)-\d{9})(?P<clean>\?clean)?$")


def image_ref(lmdb_dir: str, key_number: int, clean: bool = False) -> str:
    """``/data/a.lmdb/image-000000042`` (+ ``?clean`` for rows that must not be augmented)."""
    return f"{os.path.abspath(lmdb_dir)}/image-{key_number:09d}{CLEAN if clean else ''}"


def parse_ref(ref: str) -> Optional[tuple[str, str, bool]]:
    """(lmdb dir, key, clean) of an LMDB image reference, None for anything else (a file path, a URL)."""
    m = _REF_RE.match(ref)
    if not m or not os.path.isfile(os.path.join(m["dir"], "data.mdb")):
        return None
    return m["dir"], m["key"], bool(m["clean"])


def augment_params(augment: Any) -> Optional[dict]:
    """``augment`` as given by the user -> keyword arguments of ``get_ocr_augmentations``, None = off.

    ``true``/None: upstream's values; ``false``: off; a mapping: upstream's values updated by it.
    """
    if augment is None or augment is True:
        return dict(UPSTREAM_AUGMENT)
    if augment is False:
        return None
    if isinstance(augment, Mapping):
        unknown = set(augment) - set(UPSTREAM_AUGMENT)
        if unknown:
            from ocrvl_ray.core.errors import OcrvlError
            raise OcrvlError(f"augment: unknown key(s) {', '.join(sorted(unknown))}; use true, false or a mapping of "
                             f"{', '.join(UPSTREAM_AUGMENT)}")
        return {**UPSTREAM_AUGMENT, **augment}
    from ocrvl_ray.core.errors import OcrvlError
    raise OcrvlError(f"augment={augment!r}: use true (upstream's augmentation), false, or a mapping of "
                     f"{', '.join(UPSTREAM_AUGMENT)}")


_ENVS: dict[tuple[int, str], Any] = {}


def close_envs() -> None:
    """Close this process's cached envs (py-lmdb >= 2 refuses a second open of one path in a process)."""
    for key in [k for k in _ENVS if k[0] == os.getpid()]:
        _ENVS.pop(key).close()


def read_image_bytes(lmdb_dir: str, key: str) -> bytes:
    """The bytes under ``key`` (``img-`` as fallback for ``image-``), one read-only env per process."""
    import lmdb

    env = _ENVS.get((os.getpid(), lmdb_dir))
    if env is None:
        env = _ENVS[(os.getpid(), lmdb_dir)] = lmdb.open(lmdb_dir, readonly=True, lock=False, readahead=False,
                                                         subdir=True, max_readers=2048)
    with env.begin() as txn:
        raw = txn.get(key.encode()) or txn.get(key.replace("image-", "img-", 1).encode())
    if raw is None:
        raise KeyError(f"{lmdb_dir}: no key {key}")
    return raw


def plugin_class():
    """``LmdbPaddleOCRVLPlugin``: PaddleFormers' PaddleOCR-VL plugin + LMDB references + augmentation control."""
    from PIL import Image
    from paddleformers.datasets.template.mm_plugin import PaddleOCRVLPlugin

    class LmdbPaddleOCRVLPlugin(PaddleOCRVLPlugin):
        def __init__(self, image_token, video_token=None, audio_token=None, augment: Any = True, **kwargs):
            super().__init__(image_token, video_token, audio_token, **kwargs)
            params = augment_params(augment)
            self.augment = params
            self.image_augmentation = None if params is None else self.get_ocr_augmentations(**params)

        def _img_download(self, url: str):
            ref = parse_ref(url)
            if ref is None:
                return super()._img_download(url)
            return Image.open(io.BytesIO(read_image_bytes(ref[0], ref[1])))

        def _regularize_images(self, images, **kwargs):
            out = []
            for ref in images:
                parsed = parse_ref(ref) if isinstance(ref, str) else None
                clean = bool(parsed and parsed[2])
                out.append(self._preprocess_image(self._img_download(ref), augment=not clean, **kwargs))
            return {"images": out}

        def _preprocess_image(self, image, augment: bool = True, **kwargs):
            # upstream order: smart-resize to the processor's pixel budget, then augment (train rows only)
            h, w = kwargs["image_processor"].get_smarted_resize(
                image.height, image.width, min_pixels=kwargs["image_min_pixels"],
                max_pixels=kwargs["image_max_pixels"])[0]
            image = image.convert("RGB").resize((w, h))
            if augment and self.image_augmentation is not None:
                image = self.image_augmentation(image)
            return image

    return LmdbPaddleOCRVLPlugin
