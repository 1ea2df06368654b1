"""LMDB layout written by ``LmdbSink`` and read by the erniekit reader, ``ocrvl inspect``, training and tests;
the one read-only open and the one label decoder every reader here uses.

Sample i (0 <= i < N) lives at key number ``i + index_base`` (1-based by default, what erniekit reads):
  image-%09d   JPEG bytes of the crop
  gt-%09d      pickle {'bboxes': [[0,0,w,0,w,h,0,h]], 'words': [label], 'filename': name}
               (label_format "text": ``label-%09d`` plain UTF-8 instead)
  meta-%09d    JSON provenance: page_id, dataset, split, source_image, region_box, layout_label,
               sample_kind ("layout" | "cell" | "word"), recipe
Page completion markers (one write txn with the page's samples):
  page/<page_id>  JSON {"first": key number of first sample, "count": n, "status": "ok" | skip reason}
Fixed keys: num-samples (ASCII decimal), ocrvl-schema (JSON with version and options), ocrvl-identity (JSON: the
hash and the identity of everything that shaped the content; a rerun resumes only under the same hash), plus the original's
metadata keys scheme=det, format_version=1, image_ext=jpg, serializer=pickle, bboxes_type=ic15_flat8.
"""
from __future__ import annotations

import os
from pathlib import Path

from ocrvl_ray.core import safe_pickle
from ocrvl_ray.core.errors import OcrvlError

SCHEMA_VERSION = 1
NUM_SAMPLES = b"num-samples"
SCHEMA_KEY = b"ocrvl-schema"
IDENTITY_KEY = b"ocrvl-identity"   # JSON {"hash", "identity"}: what made the content (layout/outputs.py)
PAGE_PREFIX = b"page/"
IMAGE_FMT = "image-%09d"
GT_FMT = "gt-%09d"
LABEL_FMT = "label-%09d"
META_FMT = "meta-%09d"
LEGACY_META = {b"scheme": b"det", b"format_version": b"1", b"image_ext": b"jpg",
               b"serializer": b"pickle", b"bboxes_type": b"ic15_flat8"}

# Options recorded in ``ocrvl-schema``; reopening an LMDB with other values is refused.
LABEL_FORMATS = ("pickle", "text")
INDEX_BASES = (0, 1)
TEXT_META = {b"scheme": b"recog", b"serializer": b"text"}  # overrides LEGACY_META for label_format "text"
# Fallback keys the erniekit reader also accepts (never written by us).
IMG_FALLBACK_FMT = "img-%09d"
TEXT_FALLBACK_FMT = "text-%09d"
MAX_PAGE_ID_BYTES = 500  # LMDB keys are at most 511 bytes, "page/" included


def key(fmt: str, n: int) -> bytes:
    """``key(IMAGE_FMT, 3) == b"image-000000003"``."""
    return (fmt % n).encode("ascii")


def page_key(page_id: str) -> bytes:
    return PAGE_PREFIX + page_id.encode("utf-8")


def open_readonly(path: str | os.PathLike, max_readers: int = 126):
    """Opens an LMDB directory (or its ``data.mdb``) read-only; ``OcrvlError`` names the path and the fix.

    Joins LMDB's reader table when ``lock.mdb`` is writable, so reading next to a live writer (e.g.
    ``completed_pages`` during a run) sees a consistent snapshot; lock-free like erniekit otherwise.
    """
    import lmdb

    p = Path(path)
    if p.is_file() and p.name == "data.mdb":
        p = p.parent
    if not (p / "data.mdb").is_file():
        raise OcrvlError(f"{path}: no LMDB here (expected a directory holding data.mdb, e.g. out/sample_layout.lmdb)")
    lock = os.access(p / "lock.mdb", os.W_OK)
    try:
        return lmdb.open(str(p), readonly=True, lock=lock, readahead=False, meminit=False, subdir=True,
                         max_readers=max_readers)
    except lmdb.Error as e:
        raise OcrvlError(f"{path}: cannot open as LMDB ({e}); pass a *_layout.lmdb directory") from None


def decode_label(raw: bytes) -> str:
    """The label text erniekit's LMDB reader trains on: a pickled dict with ``words`` gives its str words
    joined by " " (or ``words`` itself when it is a str); anything else is the UTF-8 text of the bytes
    (invalid bytes dropped). Stripped. Pickles that reference code are treated as plain bytes, never run."""
    try:
        value = safe_pickle.loads(raw)
    except Exception:  # noqa: BLE001 - bytes that are no (plain) pickle are text, as in erniekit
        value = None
    text = None
    if isinstance(value, dict) and "words" in value:
        words = value["words"]
        if isinstance(words, (list, tuple)):
            text = " ".join(w for w in words if isinstance(w, str))
        elif isinstance(words, str):
            text = words
    if text is None:
        text = raw.decode("utf-8", errors="ignore")
    return text.strip()
