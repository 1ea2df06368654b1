"""Deterministic synthetic sink rows for tests and ``bench/sink.py`` (no detector needed)."""
from __future__ import annotations

import io
import json
import random

from ocrvl_ray.core.skips import Skip
from ocrvl_ray.lmdb.rows import SinkPage, SinkSample

LABELS = ("text", "paragraph_title", "table", "figure_title")
KINDS = ("layout", "cell", "word")


def tiny_jpeg(seed: int, size: tuple[int, int] = (24, 16)) -> bytes:
    from PIL import Image
    rnd = random.Random(seed)
    img = Image.new("RGB", size, tuple(rnd.randrange(256) for _ in range(3)))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    return buf.getvalue()


#: The labels of ``tiny_eval_lmdb``'s samples (sample j of page p: ``EVAL_LABELS[(p + j) % 4]``).
EVAL_LABELS = ("번호 12 금액", "합계 2024", "text 7", "번호 금액")


def tiny_eval_lmdb(path):
    """Writes ``path`` (returned): a 2-page, 4-sample LMDB for ``ocrvl eval`` tests (word crops, ``EVAL_LABELS``)."""
    from ocrvl_ray.lmdb.writer import LmdbWriter

    pages = [SinkPage(f"p{p}", "ok", "", [SinkSample(tiny_jpeg(10 * p + j, (64 + 8 * j, 32)), EVAL_LABELS[(p + j) % 4],
                                                     f"p{p}_{j}.jpg", 64 + 8 * j, 32, "{}", "word", "text")
                                          for j in range(2)]) for p in range(2)]
    with LmdbWriter(str(path)) as w:
        w.write_pages(pages)
    return path


def synthetic_pages(n_pages: int, samples_per_page: int = 3, seed: int = 0, skip_every: int = 0,
                    payload_bytes: int | None = None, prefix: str = "syn") -> list[SinkPage]:
    """``n_pages`` pages; every ``skip_every``-th is a skipped page (``no_regions``).

    Images are real tiny JPEGs, or with ``payload_bytes`` a JPEG marker plus random bytes of that size
    (JPEG-like records for throughput measurements; not decodable).
    """
    rnd = random.Random(seed)
    pages = []
    for p in range(n_pages):
        page_id = f"{prefix}-{seed}-{p:06d}"
        if skip_every and p % skip_every == skip_every - 1:
            pages.append(SinkPage(page_id, Skip.NO_REGIONS.value, "no layout region above threshold"))
            continue
        samples = []
        for j in range(rnd.randint(1, 2 * samples_per_page - 1) if samples_per_page > 1 else 1):
            w, h = rnd.randint(8, 400), rnd.randint(8, 200)
            image = (b"\xff\xd8\xff\xe0" + rnd.randbytes(payload_bytes) if payload_bytes
                     else tiny_jpeg(seed * 1_000_003 + p * 101 + j))
            meta = {"page_id": page_id, "dataset": "synthetic", "split": "train", "source_image": f"{page_id}.jpg",
                    "region_box": [0, 0, w, h], "layout_label": LABELS[j % len(LABELS)],
                    "sample_kind": KINDS[j % len(KINDS)], "recipe": "synthetic"}
            samples.append(SinkSample(image, f"라벨 {p}-{j} text", f"{page_id}_{j}.jpg", w, h,
                                      json.dumps(meta, ensure_ascii=False), meta["sample_kind"], meta["layout_label"]))
        skips = json.dumps({"counts": {Skip.EMPTY_TEXT.value: 1}, "examples": {}}) if p % 4 == 0 else ""
        pages.append(SinkPage(page_id, "ok", "", samples, skips))
    return pages


def lmdb_contents(path) -> dict:
    """Multiset of (page_id, label, image sha1, sample kind) read back through the downstream contract
    (``LmdbReader``): two LMDBs with the same samples compare equal whatever their key order."""
    import hashlib
    from collections import Counter

    from ocrvl_ray.lmdb.reader import LmdbReader

    out = Counter()
    with LmdbReader(str(path)) as r:
        for i in range(len(r)):
            m = r.meta(i)
            out[(m["page_id"], r.label(i), hashlib.sha1(r.image_bytes(i)).hexdigest(), m["sample_kind"])] += 1
    return out
