"""Synthetic sample pages: reproducible, AI-Hub label format, word boxes on the ink, template-consistent."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from ocrvl_ray.demo.sample import (KOREAN_WORDS, LATIN_WORDS, TABLE_GRID, TEMPLATE_CELLS, TEMPLATE_REGIONS,
                                   font_path, make_sample_dataset, sample_dataset_dir)


def test_same_seed_same_bytes_other_seed_other_text(tmp_path):
    a = make_sample_dataset(tmp_path / "a", n_pages=2, seed=3)
    b = make_sample_dataset(tmp_path / "b", n_pages=2, seed=3)
    c = make_sample_dataset(tmp_path / "c", n_pages=2, seed=4)
    for pa, pb in zip(a["pages"], b["pages"]):
        assert Path(pa["image"]).read_bytes() == Path(pb["image"]).read_bytes()
        assert Path(pa["label"]).read_bytes() == Path(pb["label"]).read_bytes()
    words = lambda d: [w["data"] for w in json.loads(Path(d["pages"][0]["label"]).read_text("utf-8"))["bbox"]]
    assert words(a) != words(c)


def test_label_format_and_folder_layout(tmp_path):
    d = make_sample_dataset(tmp_path, n_pages=1, seed=0, dataset="ocr_public")
    assert d["labels_dir"].endswith("Training/02.라벨링데이터") and d["images_dir"].endswith("Training/01.원천데이터")
    page = d["pages"][0]
    doc = json.loads(Path(page["label"]).read_text("utf-8"))
    img = Image.open(page["image"])
    assert (doc["Images"]["width"], doc["Images"]["height"]) == img.size
    assert doc["Images"]["identifier"] == Path(page["image"]).stem == page["id"]
    texts = [b["data"] for b in doc["bbox"]]
    assert len(texts) == page["n_words"] > 100
    assert any("\uac00" <= ch <= "\ud7a3" for t in texts for ch in t), "Korean words present"
    assert any(t[0].isdigit() for t in texts) and any(t.isascii() and t[0].isalpha() for t in texts)
    b = doc["bbox"][0]
    assert b["x"][0] == b["x"][1] < b["x"][2] == b["x"][3] and b["y"][0] == b["y"][2] < b["y"][1] == b["y"][3]


def test_word_boxes_sit_on_ink_and_inside_template_regions(tmp_path):
    d = make_sample_dataset(tmp_path, n_pages=1, seed=1)
    page = d["pages"][0]
    gray = np.asarray(Image.open(page["image"]).convert("L"))
    h, w = gray.shape
    regions = [(lab, (x1 * w, y1 * h, x2 * w, y2 * h)) for lab, _s, x1, y1, x2, y2, _o in TEMPLATE_REGIONS]
    table = next(box for lab, box in regions if lab == "table")
    tw, th = table[2] - table[0], table[3] - table[1]
    cells = [(table[0] + a * tw, table[1] + b * th, table[0] + c * tw, table[1] + e * th)
             for a, b, c, e in TEMPLATE_CELLS]
    in_cells = 0
    for b in json.loads(Path(page["label"]).read_text("utf-8"))["bbox"]:
        x1, x2, y1, y2 = b["x"][0], b["x"][2], b["y"][0], b["y"][1]
        assert (gray[y1:y2, x1:x2] < 128).any(), b["data"]
        inside = [lab for lab, (rx1, ry1, rx2, ry2) in regions if rx1 <= x1 and x2 <= rx2 and ry1 <= y1 and y2 <= ry2]
        assert len(inside) == 1, (b["data"], inside)
        if inside == ["table"]:
            in_cells += sum(cx1 <= x1 and x2 <= cx2 and cy1 <= y1 and y2 <= cy2 for cx1, cy1, cx2, cy2 in cells) == 1
    assert in_cells == TABLE_GRID[0] * TABLE_GRID[1]


def test_sample_dataset_dir_generates_once(tmp_path):
    root = sample_dataset_dir(tmp_path)
    labels = sorted(root.rglob("*.json"))
    assert len(labels) == 8 and (root / ".complete").is_file()   # 6 training pages, 2 validation pages
    assert len([p for p in labels if "Validation" in p.parts]) == 2
    stamp = labels[0].stat().st_mtime_ns
    assert sample_dataset_dir(tmp_path) == root and labels[0].stat().st_mtime_ns == stamp


def test_font_is_the_bundled_subset_and_covers_every_drawn_character():
    from fontTools.ttLib import TTFont

    path = Path(font_path())
    assert path.parent.name == "assets" and path.stat().st_size < 200_000
    font = TTFont(path)
    assert font["name"].getDebugName(1) == "OcrvlSampleGothic" and "kern" in font
    cmap = font.getBestCmap()
    drawn = set("".join(KOREAN_WORDS) + "".join(LATIN_WORDS) + "0123456789,.- ")
    assert not [c for c in drawn if ord(c) not in cmap]


def test_shipped_sample_is_what_the_generator_makes(tmp_path):
    """The sample shipped in the repo regenerates from its seed (same words, same boxes within 1 px)."""
    from ocrvl_ray.demo.sample import SHIPPED_SAMPLE

    def close(a, b):
        if isinstance(a, dict):
            return isinstance(b, dict) and a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
        if isinstance(a, list):
            return isinstance(b, list) and len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
        if isinstance(a, (int, float)) and not isinstance(a, bool):
            return isinstance(b, (int, float)) and abs(a - b) <= 1
        return a == b

    assert sample_dataset_dir() == SHIPPED_SAMPLE
    fresh = sample_dataset_dir(tmp_path)
    shipped = sorted(p.relative_to(SHIPPED_SAMPLE) for p in SHIPPED_SAMPLE.rglob("*") if p.is_file())
    assert shipped == sorted(p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file() and p.name != ".complete")
    assert len([p for p in shipped if p.suffix in (".png", ".jpg")]) == 8
    for rel in (p for p in shipped if p.suffix == ".json"):
        assert close(json.loads((SHIPPED_SAMPLE / rel).read_text("utf-8")), json.loads((fresh / rel).read_text("utf-8"))), rel