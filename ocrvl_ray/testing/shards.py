"""A sharded training LMDB as the layout job writes it (``shards=N``; contract in
:mod:`ocrvl_ray.lmdb.shards`): rendered text crops written by our own :class:`LmdbWriter`."""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

from ocrvl_ray.lmdb.rows import SinkPage, SinkSample
from ocrvl_ray.lmdb.writer import LmdbWriter
from ocrvl_ray.demo.sample import KOREAN_WORDS, font_path
from ocrvl_ray.lmdb.shards import shard_name


def render_crop(text: str, height: int = 28) -> tuple[bytes, int, int]:
    """(JPEG bytes, width, height) of a crop with ``text`` drawn in NanumGothic, black on white."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(font_path(), height - 8)
    width = int(font.getlength(text)) + 8
    img = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(img).text((4, 3), text, fill="black", font=font)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    return buf.getvalue(), width, height


def write_sharded(output: str | os.PathLike, shards: int, per_shard: int) -> list[list[str]]:
    """``output/shard-0000i-of-0000N`` LMDBs of ``per_shard`` samples each; returns the labels per shard
    (``"<shard>-<i> <word>"``, unique across shards)."""
    labels = []
    for s in range(shards):
        mine = [f"{s}-{i} {KOREAN_WORDS[(s * per_shard + i) % len(KOREAN_WORDS)]}" for i in range(per_shard)]
        pages = []
        for i, label in enumerate(mine):
            image, w, h = render_crop(label)
            meta = {"page_id": f"p{s}-{i}", "dataset": "rendered", "split": "train", "sample_kind": "word",
                    "layout_label": "text", "recipe": "rendered"}
            pages.append(SinkPage(f"p{s}-{i}", "ok", "", [SinkSample(image, label, f"p{s}-{i}.jpg", w, h,
                                                                     json.dumps(meta, ensure_ascii=False),
                                                                     "word", "text")]))
        with LmdbWriter(str(Path(output) / shard_name(s, shards))) as w:
            w.write_pages(pages)
        labels.append(mine)
    return labels
