"""Collecting the data report of a layout LMDB (``ocrvl inspect``): counts, histograms, character classes,
suspicious samples, a sampled contact sheet, a health line and the recorded snapshot of what made it.

Streams: one ``get`` per key of each sample, aggregates in fixed-size counters and histograms, keeps at
most ``examples`` flagged samples per reason. Every crop is decoded once at 1/8 scale for the blank
check (JPEG size from the header); only the sampled contact-sheet crops and kept examples become thumbnails.
Read-only (``lmdb.schema.open_readonly``); labels decoded as erniekit trains on them (``decode_label``).
"""
from __future__ import annotations

import base64
import io
import json
import os
import unicodedata
from bisect import bisect_right
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ocrvl_ray.lmdb import schema as schema

CHAR_CLASSES = ("hangul", "latin", "digit", "space", "symbol", "other")
LENGTH_EDGES = (1, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)       # label characters
SIDE_EDGES = (16, 32, 64, 128, 256, 512, 1024, 2048)                 # crop pixels
#: What each sample kind is (the report's legend; docs/compose.md has the rules).
SAMPLE_KINDS = {
    "layout": "a layout region's crop (text block, title, table, …), labelled with its words in reading order",
    "cell": "one table cell found by the cell detector, labelled with the words inside it",
    "word": "one word's box (word_fallback: only on pages that give no region sample)",
}
FLAGS = {
    "near_blank": "near-blank crop (pixel std below threshold)",
    "long_label": "very long label",
    "unusual_chars": "control / replacement / private-use / format characters",
    "empty_label": "label empty after strip",
    "tiny_crop": "crop smaller than 8 px on a side",
    "undecodable_image": "image bytes do not decode",
}
_HANGUL_RANGES = ((0xAC00, 0xD7A3), (0x1100, 0x11FF), (0x3130, 0x318F), (0xA960, 0xA97F), (0xD7B0, 0xD7FF))
_THUMB = (360, 200)


# ------------------------------------------------------------------------------------------ text

@lru_cache(maxsize=None)
def char_class(ch: str) -> str:
    """One of CHAR_CLASSES for a single character."""
    cp = ord(ch)
    if any(lo <= cp <= hi for lo, hi in _HANGUL_RANGES):
        return "hangul"
    if ch.isspace():
        return "space"
    cat = unicodedata.category(ch)
    if cat == "Nd":
        return "digit"
    if cat[0] == "L" and "LATIN" in unicodedata.name(ch, ""):
        return "latin"
    if cat[0] in "PS":
        return "symbol"
    return "other"


@lru_cache(maxsize=None)
def unusual_char(ch: str) -> str | None:
    cat = unicodedata.category(ch)
    if (cat == "Cc" and ch != "\n") or cat in ("Co", "Cs", "Cn", "Cf") or ch == "\ufffd":
        kind = {"Cc": "control", "Co": "private use", "Cs": "surrogate", "Cn": "unassigned",
                "Cf": "format"}.get(cat, "replacement")
        return f"U+{ord(ch):04X} {kind}"
    return None


def unusual_chars(text: str) -> list[str]:
    """Characters that should not be in an OCR label, as ``U+XXXX kind`` (newline is allowed)."""
    return [u for u in map(unusual_char, dict.fromkeys(text)) if u]


# ------------------------------------------------------------------------------------------ pixels

def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header without decoding; None if not a parseable JPEG."""
    if data[:2] != b"\xff\xd8":
        return None
    i, n = 2, len(data)
    while i + 9 < n:
        if data[i] != 0xFF:
            return None
        m = data[i + 1]
        if m == 0xFF:                                   # fill byte
            i += 1
        elif 0xD0 <= m <= 0xD8 or m == 0x01:            # markers without a length
            i += 2
        elif 0xC0 <= m <= 0xCF and m not in (0xC4, 0xC8, 0xCC):   # SOFn: P, Y, X
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        else:
            i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None


def crop_stats(data: bytes) -> tuple[int, int, float]:
    """(width, height, grayscale std) from a 1/8-scale decode; raises ValueError on undecodable bytes.

    JPEG: size from the header, pixels via libjpeg's DCT-domain downscale (OpenCV); a JPEG without its
    end marker counts as truncated. Other formats: PIL, downscaled to 256 px.
    """
    size = jpeg_size(data)
    if size is not None:
        import cv2

        if data.rstrip(b"\0")[-2:] != b"\xff\xd9":
            raise ValueError("truncated JPEG (no end marker)")
        g = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8)
        if g is None or min(size) <= 0:
            raise ValueError("JPEG does not decode")
        return size[0], size[1], float(cv2.meanStdDev(g)[1][0, 0])
    im = Image.open(io.BytesIO(data))
    w, h = im.size
    g = im.convert("L")
    g.thumbnail((256, 256), Image.BILINEAR)
    return w, h, float(np.asarray(g, dtype=np.float32).std())


def thumbnail_jpeg(data: bytes, size: tuple[int, int] = _THUMB) -> bytes:
    im = Image.open(io.BytesIO(data))
    im.draft("RGB", size)
    im = im.convert("RGB")
    im.thumbnail(size, Image.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def data_uri(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


# ------------------------------------------------------------------------------------------ aggregates

class Histogram:
    """Fixed-edge histogram: bin i counts edges[i-1] <= v < edges[i]; first bin < edges[0], last >= edges[-1]."""

    def __init__(self, edges: tuple[int, ...]):
        self.edges = edges
        self.counts = [0] * (len(edges) + 1)
        self.n, self.total, self.min, self.max = 0, 0, None, None

    def add(self, v: int) -> None:
        self.counts[bisect_right(self.edges, v)] += 1
        self.n += 1
        self.total += v
        self.min = v if self.min is None else min(self.min, v)
        self.max = v if self.max is None else max(self.max, v)

    def labels(self) -> list[str]:
        e = self.edges
        return ([f"<{e[0]}"] + [f"{e[i - 1]}-{e[i] - 1}" for i in range(1, len(e))] + [f">={e[-1]}"])

    def to_dict(self) -> dict:
        return {"bins": self.labels(), "counts": list(self.counts), "n": self.n, "min": self.min, "max": self.max,
                "mean": round(self.total / self.n, 1) if self.n else None}


def contact_indices(n: int, k: int) -> list[int]:
    """k sample indices evenly spaced over 0..n-1 (first and last included); all when k >= n."""
    if n <= 0 or k <= 0:
        return []
    if k >= n:
        return list(range(n))
    if k == 1:
        return [0]
    return sorted({j * (n - 1) // (k - 1) for j in range(k)})


def _scan_keys(txn, base: int, n: int | None) -> dict:
    """Count sample keys per prefix, inside and outside the numbered range, and page markers."""
    inside, outside, out_examples, max_num = Counter(), Counter(), [], {}
    pages, other = Counter(), 0
    for key in txn.cursor().iternext(keys=True, values=False):
        if key.startswith(schema.PAGE_PREFIX):
            status = "?"
            try:
                status = json.loads(txn.get(key)).get("status", "?")
            except (ValueError, AttributeError, TypeError):
                pass
            pages[str(status)] += 1
            continue
        prefix, dash, digits = key.rpartition(b"-")
        if not dash or not digits.isdigit() or len(digits) != 9:
            other += 1
            continue
        name, num = prefix.decode("ascii", "replace"), int(digits)
        max_num[name] = max(max_num.get(name, num), num)
        if n is not None and base <= num < base + n:
            inside[name] += 1
        else:
            outside[name] += 1
            if len(out_examples) < 5:
                out_examples.append(key.decode("ascii", "replace"))
    return {"inside": inside, "outside": outside, "outside_examples": out_examples, "max_num": max_num,
            "pages": pages, "other_keys": other}


def _health(n: int, declared: int | None, base: int, scan: dict, stats: dict) -> dict:
    problems = []
    if declared is None:
        problems.append(f"num-samples missing (inferred {n} from the highest image key)")
    if n == 0:
        problems.append("no samples")
    found = {}
    for kind, names in (("image", ("image", "img")), ("label", ("gt", "label", "text")), ("meta", ("meta",))):
        have = n - stats["missing_" + kind]
        found[kind] = have
        if have < n:
            problems.append(f"{n - have} sample(s) without {kind} ({'/'.join(names)}-%09d)")
    n_out = sum(scan["outside"].values())
    if n_out:
        hint = f" in {', '.join(scan['outside_examples'][:3])}"
        if base == 1 and any(k.endswith("-000000000") for k in scan["outside_examples"]):
            hint += " (keys start at 0: written 0-based, the erniekit reader never sees sample 0)"
        problems.append(f"{n_out} sample key(s) outside {base}..{base + n - 1}{hint}")
    if stats["undecodable"]:
        problems.append(f"{stats['undecodable']} image(s) do not decode")
    notes = []
    if base == 0:
        notes.append("index_base 0 (FAST tools): the erniekit reader reads keys 1..N and never sees sample 0")
    summary = (f"{n} samples; image {found['image']}/{n}, label {found['label']}/{n}, meta {found['meta']}/{n}")
    line = (f"health: OK — {summary}" if not problems
            else f"health: {len(problems)} problem(s) — {'; '.join(problems)}")
    return {"ok": not problems, "problems": problems, "notes": notes, "line": line, "found": found}


def collect_lmdb(path: str | os.PathLike, contact: int = 48, *, examples: int = 12, long_label: int = 1000,
                 blank_std: float = 3.0) -> tuple[dict, dict[int, bytes]]:
    """(report, thumbnails by sample index) of the LMDB at ``path``, in one streaming pass."""
    env = schema.open_readonly(path, max_readers=8)
    p = Path(env.path())
    thumbs: dict[int, bytes] = {}
    try:
        with env.begin(buffers=False) as txn:
            report = _collect(txn, p, contact, examples, long_label, blank_std, thumbs)
    finally:
        env.close()
    return report, thumbs


def _read_sample(txn, num: int) -> tuple[bytes | None, bytes | None, bytes | None]:
    """(image, label bytes, meta) of key number ``num``, with the erniekit reader's fallbacks."""
    img = txn.get(schema.key(schema.IMAGE_FMT, num)) or txn.get(schema.key(schema.IMG_FALLBACK_FMT, num))
    label = (txn.get(schema.key(schema.GT_FMT, num)) or txn.get(schema.key(schema.LABEL_FMT, num))
             or txn.get(schema.key(schema.TEXT_FALLBACK_FMT, num)))
    return img, label, txn.get(schema.key(schema.META_FMT, num))


def _collect(txn, path: Path, contact: int, examples: int, long_label: int, blank_std: float,
             thumbs: dict[int, bytes]) -> dict:
    raw_n = txn.get(schema.NUM_SAMPLES)
    declared = int(raw_n) if raw_n is not None and raw_n.strip().isdigit() else None
    opts = {}
    raw_schema = txn.get(schema.SCHEMA_KEY)
    if raw_schema is not None:
        try:
            opts = json.loads(raw_schema)
        except ValueError:
            opts = {}
    base = int(opts.get("index_base", 1))
    scan = _scan_keys(txn, base, declared)
    n = declared if declared is not None else max(
        (scan["max_num"].get(k, base - 1) - base + 1 for k in ("image", "img")), default=0)
    if declared is None:
        scan = _scan_keys(txn, base, n)

    counts = {k: Counter() for k in ("dataset", "sample_kind", "layout_label", "split")}
    text_len, widths, heights = Histogram(LENGTH_EDGES), Histogram(SIDE_EDGES), Histogram(SIDE_EDGES)
    chars, samples_with, other_chars = Counter(), Counter(), Counter()
    flagged = {f: {"count": 0, "examples": []} for f in FLAGS}
    stats = Counter(missing_image=0, missing_label=0, missing_meta=0, undecodable=0)
    want = set(contact_indices(n, contact))
    sheet = []

    for i in range(n):
        num = i + base
        img, label_raw, meta_raw = _read_sample(txn, num)
        meta: dict[str, Any] = {}
        if meta_raw is None:
            stats["missing_meta"] += 1
        else:
            try:
                meta = json.loads(meta_raw)
            except ValueError:
                meta = {}
            meta = meta if isinstance(meta, dict) else {}
        for k in counts:
            counts[k][str(meta.get(k, "(no meta)" if meta_raw is None else "(unset)"))] += 1

        text = ""
        if label_raw is None:
            stats["missing_label"] += 1
        else:
            text = schema.decode_label(label_raw)
            text_len.add(len(text))
            present = set()
            for ch in text:
                c = char_class(ch)
                chars[c] += 1
                present.add(c)
                if c == "other":
                    other_chars[ch] += 1
            samples_with.update(present)

        w = h = 0
        decoded = False
        flags: list[tuple[str, str]] = []
        if img is None:
            stats["missing_image"] += 1
        else:
            try:
                w, h, std = crop_stats(img)
                decoded = True
                widths.add(w)
                heights.add(h)
                if std < blank_std:
                    flags.append(("near_blank", f"std {std:.2f}"))
                if min(w, h) < 8:
                    flags.append(("tiny_crop", f"{w}x{h}"))
            except Exception as e:  # any decoder error means the same thing here
                stats["undecodable"] += 1
                flags.append(("undecodable_image", f"{type(e).__name__}: {e}"[:120]))
        if label_raw is not None:
            if len(text) > long_label:
                flags.append(("long_label", f"{len(text)} chars"))
            bad = unusual_chars(text)
            if bad:
                flags.append(("unusual_chars", ", ".join(bad[:4])))
            if not text:
                flags.append(("empty_label", ""))

        item = {"index": i, "key": num, "label": text[:300], "label_len": len(text), "width": w, "height": h,
                **{k: meta.get(k) for k in ("dataset", "sample_kind", "layout_label", "page_id")}}
        keep_thumb = i in want
        if i in want:
            sheet.append(item)
        for flag, detail in flags:
            f = flagged[flag]
            f["count"] += 1
            if len(f["examples"]) < examples:
                f["examples"].append({**item, "detail": detail})
                keep_thumb = True
        if keep_thumb and decoded and i not in thumbs:
            thumbs[i] = thumbnail_jpeg(img)

    total_chars = sum(chars.values())
    report = {
        "path": str(path),
        "schema": {"version": opts.get("version"), "index_base": base,
                   "label_format": opts.get("label_format", "pickle" if scan["inside"].get("gt") else "text"),
                   "declared": raw_schema is not None},
        "num_samples": declared,
        "samples_read": n,
        "counts": {k: dict(v.most_common()) for k, v in counts.items()},
        "pages": dict(scan["pages"].most_common()),
        "text_length": text_len.to_dict(),
        "crop_width": widths.to_dict(),
        "crop_height": heights.to_dict(),
        "char_classes": {c: {"chars": chars[c], "share": round(chars[c] / total_chars, 4) if total_chars else 0.0,
                             "samples": samples_with[c]} for c in CHAR_CLASSES},
        "other_chars": [{"char": ch, "code": f"U+{ord(ch):04X}", "count": c,
                         "name": unicodedata.name(ch, "") or f"<{unicodedata.category(ch)}>"}
                        for ch, c in other_chars.most_common(20)],
        "suspicious": flagged,
        "contact": sheet,
        "thresholds": {"blank_std": blank_std, "long_label": long_label},
    }
    report["health"] = _health(n, declared, base, scan, stats)
    report["identity"] = _identity(txn.get(schema.IDENTITY_KEY))
    return report


def _identity(raw: bytes | None) -> dict | None:
    """The record of what made the LMDB (``lmdb/identity.py``: hash, resolved identity, code); None if absent."""
    try:
        rec = json.loads(raw) if raw is not None else None
    except ValueError:
        return None
    return rec if isinstance(rec, dict) else None
