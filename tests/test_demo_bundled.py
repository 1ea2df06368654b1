"""The bundled sample through the quick start (demo models): every family gives its kind of sample, with the
masking and reading order of the original. Expected values come from the label files the generator wrote
(words in the order they were drawn) and from the page pixels, never from the composer."""
from __future__ import annotations

import io
import json
from collections import defaultdict

import numpy as np
import pytest
from PIL import Image

from ocrvl_ray.demo.sample import sample_dataset_dir
from ocrvl_ray.demo.scenes import FOLDERS, SCENES
from ocrvl_ray.lmdb.reader import LmdbReader


@pytest.fixture(scope="module")
def samples(bundled_sample_run):
    """{dataset: [(meta, label, RGB array)]} of a full quick-start run on the bundled sample."""
    report, out = bundled_sample_run
    # the sample's Training/ and Validation/ folders: one LMDB per split, named after the output
    assert report["outputs"] == {"train": str(out.parent / "sample_train_layout.lmdb"),
                                 "valid": str(out.parent / "sample_valid_layout.lmdb")}
    assert {s: r["pages_ok"] for s, r in report["splits"].items()} == {"train": 6, "valid": 2}
    out = out.parent / "sample_train_layout.lmdb"
    got = defaultdict(list)
    with LmdbReader(str(out)) as r:
        for i in range(len(r)):
            img = np.asarray(Image.open(io.BytesIO(r.image_bytes(i))).convert("RGB")).astype(int)
            got[r.meta(i)["dataset"]].append((r.meta(i), r.label(i), img))
    return got


def page(family: str):
    """(label words as the generator wrote them, page RGB array)."""
    root = sample_dataset_dir() / FOLDERS[family]
    image = next(p for p in root.rglob("*") if p.suffix in (".png", ".jpg"))
    doc = json.loads(next(root.rglob("*.json")).read_text("utf-8"))
    return doc, np.asarray(Image.open(image).convert("RGB")).astype(int)


def px(scene: str, index: int) -> tuple[int, int, int, int]:
    w, h = SCENES[scene].size
    x1, y1, x2, y2 = SCENES[scene].regions[index][2:6]
    return round(x1 * w), round(y1 * h), round(x2 * w), round(y2 * h)


def at(rows, x1: int, y1: int):
    """The one sample whose region starts at (x1, y1) (within the detector's rounding)."""
    [row] = [r for r in rows if abs(r[0]["region_box"][0] - x1) <= 3 and abs(r[0]["region_box"][1] - y1) <= 3]
    return row


def dark(a: np.ndarray) -> int:
    return int((a.mean(axis=2) < 128).sum())


def test_every_family_gives_its_kind_of_sample(samples):
    kinds = {ds: sorted({m["sample_kind"] for m, _, _ in rows}) for ds, rows in samples.items()}
    assert kinds == {"ocr_public": ["cell", "layout"], "finance_logistics": ["cell"], "handwriting": ["word"],
                     "public_admin": ["cell", "layout"], "text_in_wild": ["layout"]}
    # the report page keeps its paragraphs beside the table's cells (cells_replace: table)
    labels = {m["layout_label"] for m, _, _ in samples["ocr_public"] if m["sample_kind"] == "layout"}
    assert {"text", "doc_title", "paragraph_title"} <= labels and "table" not in labels
    # handwriting: no regions, so one sample per written word, in the order they were written
    doc, _ = page("handwriting")
    written = [b["data"] for b in doc["bbox"]]
    assert sorted(label for _, label, _ in samples["handwriting"]) == sorted(written) and len(written) >= 20


def test_form_guide_text_and_stamp_are_masked_out(samples):
    doc, img = page("public_admin")
    words = [(a["annotation.text"], a["annotation.bbox"]) for a in doc["annotations"]]
    x1, y1, x2, y2 = px("form", 1)                      # paragraph + the printed guide line below its words
    last = max(y + h for _, (x, y, w, h) in words if y1 <= y and y + h <= y2 and x2 > x)
    assert dark(img[last + 2:y2, x1:x2]) > 300          # the guide line is on the page ...
    meta, label, crop = at(samples["public_admin"], x1, y1)
    top = meta["region_box"][1]
    assert dark(crop[last + 2 - top:, :]) == 0           # ... and gone from the crop
    assert "안내:" not in label
    x1, y1, x2, y2 = px("form", 3)                      # paragraph under a red stamp
    red = lambda a: int(((a[..., 0] > 150) & (a[..., 1] < 110) & (a[..., 2] < 110)).sum())
    meta, _, crop = at(samples["public_admin"], x1, y1)
    cx, cy = meta["region_box"][:2]
    outside = np.ones(img.shape[:2], bool)              # the stamp's ink away from every label word
    for _, (x, y, w, h) in words:
        outside[max(0, y - 3):y + h + 3, max(0, x - 3):x + w + 3] = False
    win = (slice(cy, cy + crop.shape[0]), slice(cx, cx + crop.shape[1]))
    away = outside[win][..., None]
    assert red(img[win] * away) > 300 and red(crop * away) < 10
    cells = [(m, c) for m, _, c in samples["public_admin"] if m["sample_kind"] == "cell"]
    assert len(cells) == 10                             # value cells; the field-name cells hold no label word
    for m, c in cells:                                  # the printed hint in each value cell's corner is gone
        cx, cy = m["region_box"][:2]
        assert dark(img[cy:cy + 22, cx:cx + 45]) > 10 and dark(c[:22, :45]) == 0


def test_tall_narrow_note_is_read_in_rows(samples):
    doc, _ = page("public_admin")
    x1, y1, x2, y2 = px("form", 4)
    inside = [(a["id"], a["annotation.text"], a["annotation.bbox"]) for a in doc["annotations"]
              if x1 <= a["annotation.bbox"][0] and a["annotation.bbox"][0] + a["annotation.bbox"][2] <= x2
              and y1 <= a["annotation.bbox"][1]]
    [(_, label, crop)] = [r for r in samples["public_admin"] if r[0]["layout_label"] == "aside_text"]
    assert crop.shape[0] > 2 * crop.shape[1]
    assert label.split() == [t for _, t, _ in sorted(inside)]   # drawn line by line, left to right
    lines = label.split("\n")
    assert len(lines) > 10 and all(len(line.split()) <= 3 for line in lines)


def test_text_in_wild_banner_columns_and_stray_characters(samples):
    doc, img = page("text_in_wild")
    ud = [a["text"] for a in doc["annotations"] if a["attributes"].get("word_ud")]   # drawn bottom to top
    du = [a["text"] for a in doc["annotations"] if a["attributes"].get("word_du")]   # drawn top to bottom
    [banner] = [label for m, label, _ in samples["text_in_wild"] if m["layout_label"] == "vertical_text"]
    assert banner == " ".join(ud) + "\n" + " ".join(du)
    # the sticker between the sign's two words: characters no word holds, hidden from the crop
    yellow = lambda a: int(((a[..., 0] > 200) & (a[..., 1] > 160) & (a[..., 2] < 90)).sum())
    sign_y = px("photo", 0)[1]
    [(meta, label, crop)] = [r for r in samples["text_in_wild"] if r[0]["layout_label"] == "text"
                             and r[0]["region_box"][1] < sign_y + 100]
    bx1, by1, bx2, by2 = meta["region_box"]
    assert yellow(img[by1:by2, bx1:bx2]) > 1000 and yellow(crop) < 20
    assert len(label.split()) == 2
