"""Readers of the five AI-Hub label families (raw files and the original's ``*_merged.json``).

Two shapes of label document exist:

* a **page** document: one image per file, ``Images{...}`` + ``bbox[]``/``Bbox[]`` with ``x[4]``, ``y[4]``,
  ``data`` (ocr_public, finance_logistics, handwriting);
* a **collection**: ``images[]`` + ``annotations[]`` joined by ``image_id`` (public_admin per-file and merged,
  text_in_wild, and the original's merged files of the three page families).

``READERS`` maps a dataset name to its ``Family``; ``detect`` picks one from content (``--dataset auto``).
Every skipped word/page is counted in a ``SkipCounter`` with a ``file:record`` example.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np

from ocrvl_ray.core.config import truthy
from ocrvl_ray.core.skips import Skip, SkipCounter
from ocrvl_ray.ingest.batch import PageBatch, Source, WordList
from ocrvl_ray.ingest.geometry import box_to_xy4, quads_to_flat8
from ocrvl_ray.ingest.splits import hashed_split

PAGE_FAMILIES = ("ocr_public", "finance_logistics", "handwriting")
FAMILIES = (*PAGE_FAMILIES, "public_admin", "text_in_wild")


@dataclass(frozen=True)
class Options:
    """Split policy: ``split`` forces one split for everything; text_in_wild hashes image ids otherwise."""
    split: str | None = None
    seed: int = 42
    valid_fraction: float = 0.1


# ------------------------------------------------------------------------------------------------
# small field helpers
# ------------------------------------------------------------------------------------------------
_MISSING = object()
CHAR = "\x00char"  # word id a spec returns for a character box (text_in_wild), kept for masks only


def dget(d: Any, dotted: str, default: Any = None) -> Any:
    """``d["image.file.name"]`` (flat dotted key) or ``d["image"]["file"]["name"]`` (nested) or default."""
    if not isinstance(d, dict):
        return default
    v = d.get(dotted, _MISSING)
    if v is not _MISSING:
        return v
    head, sep, rest = dotted.partition(".")
    while sep:
        sub = d.get(head, _MISSING)
        if isinstance(sub, dict):
            return dget(sub, rest, default)
        nxt, sep, rest = rest.partition(".")
        head = f"{head}.{nxt}"
    return default


def as_int(v: Any) -> int:
    """Page width/height; 0 when missing or not a number (= unknown, the layout stage reads the image)."""
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        return 0
    return int(f) if 0 < f < 2 ** 31 else 0


def as_key(v: Any) -> str | None:
    """An id as a join key: ``7``, ``7.0`` and ``"7"`` are the same image."""
    if type(v) is int:
        return str(v)
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    s = str(v).strip()
    return s or None


def as_text(v: Any) -> str | None:
    """Label text, stripped; numbers become text; None when empty."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        v = str(v)
    if not isinstance(v, str):
        return None
    v = v.strip()
    return v or None


def flag(d: dict, name: str) -> bool:
    """A boolean flag whose key may come in any case (``UD``, ``ud``)."""
    for k, v in d.items():
        if isinstance(k, str) and k.lower() == name:
            return truthy(v)
    return False


def parse_json(data: bytes) -> Any | Skip:
    """Bytes -> JSON value, or NOT_UTF8 / MALFORMED_JSON."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return Skip.NOT_UTF8
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return Skip.MALFORMED_JSON


def json_error_at(data: bytes) -> str:
    """Where ``data`` stops being valid JSON: ``line L column C: <reason>`` (for skip examples)."""
    try:
        json.loads(data.decode("utf-8-sig"))
    except json.JSONDecodeError as e:
        return f"line {e.lineno} column {e.colno}: {e.msg}"
    except (RecursionError, UnicodeDecodeError) as e:
        return type(e).__name__
    return "valid JSON"


# ------------------------------------------------------------------------------------------------
# page documents: ocr_public / finance_logistics / handwriting raw files
# ------------------------------------------------------------------------------------------------
def is_page_doc(doc: Any) -> bool:
    return isinstance(doc, dict) and ("Images" in doc or "bbox" in doc or "Bbox" in doc)


def page_doc_words(boxes: list, rel: str, skips: SkipCounter, record: str = "bbox") -> WordList:
    """``bbox[]`` entries ``{id, data, x[4], y[4]}`` -> raw words (boxes are checked later, in bulk)."""
    words = WordList(record)
    try:  # fast path: every box has its fields and a non-empty text
        texts = [t.strip() if type(t) is str else as_text(t) for t in [b["data"] for b in boxes]]
        xs, ys = [b["x"] for b in boxes], [b["y"] for b in boxes]
        ids = [b.get("id") for b in boxes]
    except (KeyError, TypeError, AttributeError):
        texts = [None]
    if all(texts):
        words.ids = list(map(str, ids)) if None not in ids else [str(i if v is None else v) for i, v in enumerate(ids)]
        words.xs, words.ys, words.texts = xs, ys, texts
        words.attrs = [""] * len(texts)
        words.index = list(range(len(texts)))
        return words
    for i, b in enumerate(boxes):
        try:
            text, xs, ys = b["data"], b["x"], b["y"]
        except (KeyError, TypeError):
            skips.add(Skip.MISSING_FIELD, f"{rel}:{record}[{i}]")
            continue
        text = text.strip() if type(text) is str else as_text(text)
        if not text:
            skips.add(Skip.EMPTY_TEXT, f"{rel}:{record}[{i}]")
            continue
        wid = b.get("id")
        words.add(str(i) if wid is None else str(wid), xs, ys, text, i)
    return words


def read_page_doc(doc: dict, dataset: str, src: Source, opts: Options, out: PageBatch,
                  skips: SkipCounter) -> None:
    img = doc.get("Images", doc.get("images"))
    boxes = doc.get("bbox", doc.get("Bbox"))
    if not isinstance(img, dict) or not isinstance(boxes, list):
        skips.add(Skip.MISSING_FIELD, f"{src.rel}: needs Images{{}} and bbox[]")
        return
    name = as_text(img.get("filename")) or as_text(img.get("file_name")) or src.stem
    out.add(dataset, opts.split or src.split, name, as_int(img.get("width")), as_int(img.get("height")),
            src.path, src.rel, None, page_doc_words(boxes, src.rel, skips))


# ------------------------------------------------------------------------------------------------
# collections: images[] + annotations[]
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PageInfo:
    name: str
    width: int
    height: int
    split: str
    attrs: dict | None


class CollectionSpec:
    """How one family reads an image entry and an annotation entry of a collection."""
    box_layout = "xywh"

    def page(self, img: dict, src: Source, opts: Options) -> PageInfo | Skip:
        raise NotImplementedError

    def word(self, ann: dict, index: int) -> tuple[str, Any, str, dict | None] | Skip | None:
        """``(id, box, text, attrs)``; a Skip for a bad word; None for a box that is not a label word."""
        raise NotImplementedError

    def fallback_words(self, img: dict, rel: str, skips: SkipCounter) -> WordList | None:
        """Words for an image that has no annotations in the collection (None: there are none)."""
        return None


class MergedPageSpec(CollectionSpec):
    """The original merge of ocr_public / finance_logistics / handwriting: ``bbox`` = ``[x0..x3, y0..y3]``."""
    box_layout = "xs_ys"

    def page(self, img, src, opts):
        name = as_text(img.get("file_name")) or as_text(img.get("sub_dataset"))
        if name is None:
            return Skip.MISSING_FIELD
        return PageInfo(name, as_int(img.get("width")), as_int(img.get("height")), opts.split or src.split, None)

    def word(self, ann, index):
        if "bbox" not in ann or "text" not in ann:
            return Skip.MISSING_FIELD
        text = as_text(ann["text"])
        if text is None:
            return Skip.EMPTY_TEXT
        wid = ann.get("id")
        return (str(index) if wid is None else str(wid)), ann["bbox"], text, None

    def fallback_words(self, img, rel, skips):
        """Like the original: an image without merged annotations reads its ``original_json_path`` if it exists."""
        path = img.get("original_json_path")
        if not isinstance(path, str) or not os.path.isfile(path):
            return None
        try:
            with open(path, "rb") as f:
                doc = parse_json(f.read())
        except OSError:
            return None
        boxes = doc.get("bbox", doc.get("Bbox")) if isinstance(doc, dict) else None
        if not isinstance(boxes, list):
            return None
        return page_doc_words(boxes, rel, skips, record=f"{os.path.basename(path)}:bbox")


class PublicAdminSpec(CollectionSpec):
    """공공행정문서 OCR: ``image.file.name`` or ``file.name`` (flat dotted or nested keys), ``annotation.bbox`` =
    ``[x,y,w,h]``."""

    def page(self, img, src, opts):
        name = as_text(dget(img, "image.file.name")) or as_text(dget(img, "file.name")) or \
            as_text(img.get("file_name"))
        if name is None:
            return Skip.MISSING_FIELD
        attrs = {k.replace("image.", "").replace(".", "_"): v for k in
                 ("image.category", "image.make.code", "image.make.year")
                 if (v := dget(img, k)) is not None}
        w = dget(img, "image.width", img.get("width"))
        h = dget(img, "image.height", img.get("height"))
        return PageInfo(name, as_int(w), as_int(h), opts.split or src.split, attrs or None)

    def word(self, ann, index):
        box = dget(ann, "annotation.bbox", ann.get("bbox"))
        raw_text = dget(ann, "annotation.text", ann.get("text", _MISSING))
        if box is None or raw_text is _MISSING:
            return Skip.MISSING_FIELD
        text = as_text(raw_text)
        if text is None:
            return Skip.EMPTY_TEXT
        wid = ann.get("id", dget(ann, "annotation.id"))
        return (str(index) if wid is None else str(wid)), box, text, None


class TextInWildSpec(CollectionSpec):
    """Text in the wild: words are ``attributes.class == word``; ``character`` boxes go to ``attrs["chars"]``."""
    ORIENTATIONS = ("usd", "ud", "du")

    def page(self, img, src, opts):
        name = as_text(img.get("file_name"))
        key = as_key(img.get("id"))
        if name is None or key is None:
            return Skip.MISSING_FIELD
        attrs = {}
        if img.get("type") is not None:
            attrs["type"] = str(img["type"])
        orient = next((o for o in self.ORIENTATIONS if flag(img, o)), None)
        if orient:
            attrs["orientation"] = orient
        split = opts.split or hashed_split(key, opts.seed, opts.valid_fraction)
        return PageInfo(name, as_int(img.get("width")), as_int(img.get("height")), split, attrs or None)

    def word(self, ann, index):
        attributes = ann.get("attributes") if isinstance(ann.get("attributes"), dict) else {}
        kind = str(attributes.get("class", "word")).strip().lower()
        if kind not in ("word", "character"):
            return None
        if "bbox" not in ann:
            return Skip.MISSING_FIELD
        if kind == "character":
            return CHAR, ann["bbox"], "", None
        text = as_text(ann.get("text"))
        if text is None:
            return Skip.EMPTY_TEXT
        wattrs = {f: True for f in ("word_ud", "word_du") if flag(attributes, f)}
        wid = ann.get("id")
        return (str(index) if wid is None else str(wid)), ann["bbox"], text, wattrs or None


def group_annotations(annotations: Iterable[tuple[int, Any]], single_image_key: str | None, rel: str,
                      skips: SkipCounter) -> dict[str, list[tuple[int, dict]]]:
    """``(index, annotation)`` pairs -> image key -> [(index, annotation)]; annotations without ``image_id``
    belong to the only image of a one-image file, else they are counted as missing a field."""
    groups: dict[str, list[tuple[int, dict]]] = {}
    for j, ann in annotations:
        if not isinstance(ann, dict):
            skips.add(Skip.MISSING_FIELD, f"{rel}:annotations[{j}]")
            continue
        key = as_key(ann.get("image_id")) or single_image_key
        if key is None:
            skips.add(Skip.MISSING_FIELD, f"{rel}:annotations[{j}] (no image_id)")
            continue
        groups.setdefault(key, []).append((j, ann))
    return groups


def join_collection(spec: CollectionSpec, dataset: str, images: Iterable[tuple[int, Any]],
                    groups: dict[str, list[tuple[int, dict]]], src: Source, opts: Options,
                    out: PageBatch, skips: SkipCounter, single_image_key: str | None = None) -> None:
    """Turn ``(index, image)`` entries plus their grouped annotations into pages (groups are consumed)."""
    for i, img in images:
        where = f"{src.rel}:images[{i}]"
        if not isinstance(img, dict):
            skips.add(Skip.MISSING_FIELD, where)
            continue
        key = as_key(img.get("id")) or single_image_key
        info = spec.page(img, src, opts)
        if isinstance(info, Skip):
            skips.add(info, where)
            groups.pop(key, None)
            continue
        words, chars = WordList("annotations", spec.box_layout), []
        anns = groups.pop(key, []) if key is not None else []
        if not anns:
            words = spec.fallback_words(img, src.rel, skips) or words
        for j, ann in anns:
            w = spec.word(ann, j)
            if w is None:
                continue
            if isinstance(w, Skip):
                skips.add(w, f"{src.rel}:annotations[{j}]")
                continue
            if w[0] == CHAR:
                xy = box_to_xy4(w[1], spec.box_layout)
                if not isinstance(xy, Skip):
                    chars.append(xy)
            else:
                words.add(w[0], w[1], None, w[2], j, w[3])
        attrs = dict(info.attrs or {})
        if chars:
            flat, reasons = quads_to_flat8(np.array([c[0] for c in chars]), np.array([c[1] for c in chars]))
            attrs["chars"] = [[round(v, 2) for v in row] for row, r in zip(flat.tolist(), reasons) if r is None]
        out.add(dataset, info.split, info.name, info.width, info.height, f"{src.path}#{where}", src.rel,
                attrs or None, words)


def count_orphans(groups: dict[str, list], rel: str, skips: SkipCounter) -> None:
    """Annotations whose ``image_id`` names no image."""
    for key, anns in groups.items():
        skips.add(Skip.MISSING_FIELD, f"{rel}:annotations[{anns[0][0]}] (image_id {key} not in images)",
                  n=len(anns))


def is_collection(doc: Any) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("images"), list) and \
        isinstance(doc.get("annotations"), list)


def read_collection(doc: dict, dataset: str, spec: CollectionSpec, src: Source, opts: Options,
                    out: PageBatch, skips: SkipCounter) -> None:
    images = doc["images"]
    single = None
    if len(images) == 1 and isinstance(images[0], dict):
        single = as_key(images[0].get("id")) or "<only image>"
    groups = group_annotations(enumerate(doc["annotations"]), single, src.rel, skips)
    join_collection(spec, dataset, enumerate(images), groups, src, opts, out, skips, single)
    count_orphans(groups, src.rel, skips)


# ------------------------------------------------------------------------------------------------
# registry and detection
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Family:
    name: str
    spec: CollectionSpec
    page_reader: Callable[..., None] | None = None


_MERGED = MergedPageSpec()
READERS: dict[str, Family] = {
    "ocr_public": Family("ocr_public", _MERGED, read_page_doc),
    "finance_logistics": Family("finance_logistics", _MERGED, read_page_doc),
    "handwriting": Family("handwriting", _MERGED, read_page_doc),
    "public_admin": Family("public_admin", PublicAdminSpec()),
    "text_in_wild": Family("text_in_wild", TextInWildSpec()),
}

# substrings of Dataset.name or of the file path that name a page family (checked in this order)
_HINTS = (("handwriting", ("손글씨", "handwrit")),
          ("finance_logistics", ("금융", "물류", "finance", "logistic")),
          ("ocr_public", ("ocr_public", "공공")))


def page_family_hint(*texts: Any) -> str | None:
    """The family the first text with a hint names (pass the most reliable text first)."""
    for text in texts:
        blob = str(text or "").lower()
        for name, needles in _HINTS:
            if any(n in blob for n in needles):
                return name
    return None


def detect_collection(first_image: Any, first_ann: Any, path: str) -> str | None:
    """Family of a collection from its first image and annotation entries (and the file name)."""
    img = first_image if isinstance(first_image, dict) else {}
    ann = first_ann if isinstance(first_ann, dict) else {}
    ds = img.get("dataset")
    if ds in FAMILIES:
        return ds
    if dget(img, "image.file.name") is not None or dget(img, "file.name") is not None or \
            dget(ann, "annotation.bbox") is not None:
        return "public_admin"
    if isinstance(ann.get("attributes"), dict) or any(k.lower() in TextInWildSpec.ORIENTATIONS for k in img):
        return "text_in_wild"
    if "file_name" in img or "bbox" in ann:
        return page_family_hint(img.get("original_json_path"), path)
    return None


def detect(doc: Any, path: str) -> str | None:
    """The family of a parsed label document, or None when the content does not tell."""
    if is_page_doc(doc):
        ds = doc.get("Dataset") if isinstance(doc.get("Dataset"), dict) else {}
        return page_family_hint(ds.get("name"), path)
    if is_collection(doc):
        imgs, anns = doc["images"], doc["annotations"]
        return detect_collection(imgs[0] if imgs else None, anns[0] if anns else None, path)
    return None


def read_doc(doc: Any, dataset: str, src: Source, opts: Options, out: PageBatch, skips: SkipCounter) -> None:
    """Read one parsed label document into ``out``; ``dataset`` may be ``auto``."""
    name = detect(doc, src.path) if dataset == "auto" else dataset
    family = READERS.get(name) if name else None
    if family is None:
        skips.add(Skip.UNKNOWN_FORMAT, f"{src.rel} (family not recognised; pass --dataset)")
        return
    if is_page_doc(doc) and family.page_reader is not None:
        family.page_reader(doc, family.name, src, opts, out, skips)
    elif is_collection(doc):
        read_collection(doc, family.name, family.spec, src, opts, out, skips)
    else:
        skips.add(Skip.UNKNOWN_FORMAT, f"{src.rel} (not a {family.name} label file)")
