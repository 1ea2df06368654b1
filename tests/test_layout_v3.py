"""PaddleOCR-VL 1.5/1.6 data: PP-DocLayoutV3 polygons, upstream's polygon crop, polygon word assignment,
the ``model_version`` preset. Expected values come from the scripts, paddlex's own crop, shapely, or the
generator's ground truth, never from the code under test."""
from __future__ import annotations

import hashlib
import math
from collections import Counter

import numpy as np
import pytest

from ocrvl_ray.core.config import load_config
from ocrvl_ray.core.generations import LAYOUT, VERSIONS
from ocrvl_ray.core.records import Page, Region, Word
from ocrvl_ray.demo.models import build_tiny_layout_model
from ocrvl_ray.layout.compose import ComposeOptions, compose_page, get_recipe
from ocrvl_ray.layout.compose.render import blank_outside, encode_jpeg
from ocrvl_ray.layout.config import LayoutConfig

V3 = "PP-DocLayoutV3"


def rotated(cx, cy, w, h, deg):
    """Corners of a w x h rectangle centred at (cx, cy), turned by deg (clockwise on screen)."""
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return [(cx + dx * c - dy * s, cy + dx * s + dy * c) for dx, dy in
            ((-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2))]


def bbox(points):
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return min(xs), min(ys), max(xs), max(ys)


# ---------------------------------------------------------------------------------------------
# the preset
# ---------------------------------------------------------------------------------------------
def test_model_version_preset():
    assert set(LAYOUT) == set(VERSIONS) and LayoutConfig.model_fields["model_version"].default == "v1"
    default = load_config(LayoutConfig, overrides=[], env={})
    v1 = load_config(LayoutConfig, overrides=["model_version=v1"], env={})
    assert v1.model_dump() == default.model_dump()
    assert (v1.layout.model_name, v1.layout.shape_mode) == ("PP-DocLayoutV2", "auto")
    for version in ("v1.5", "v1.6"):
        c = load_config(LayoutConfig, overrides=[f"model_version={version}"], env={})
        assert (c.layout.model_name, c.layout.shape_mode) == (V3, "auto")
    # keys set explicitly (command line, YAML, FAST_* environment) win over the preset
    c = load_config(LayoutConfig, overrides=["model_version=v1.5", "layout.shape_mode=quad"],
                    env={"FAST_LAYOUT_MODEL": "PP-DocLayoutV2"})
    assert (c.layout.model_name, c.layout.shape_mode) == ("PP-DocLayoutV2", "quad")
    with pytest.raises(ValueError, match="model_version"):
        load_config(LayoutConfig, overrides=["model_version=v2"], env={})


# ---------------------------------------------------------------------------------------------
# the tiny V3 model through the real paddleocr class
# ---------------------------------------------------------------------------------------------
PAGE = (1240, 1754)
#: a rectangle turned 18 degrees on a PAGE-shaped image (in page pixels), normalised to the page
TILT = [(x / PAGE[0], y / PAGE[1]) for x, y in rotated(620, 1090, 700, 200, 18)]
V3_SCRIPT = [("doc_title", 0.95, 0.20, 0.05, 0.80, 0.15), ("text", 0.90, *bbox(TILT))]


@pytest.fixture(scope="module")
def v3_dir(tmp_path_factory):
    return build_tiny_layout_model(tmp_path_factory.mktemp("v3"), V3_SCRIPT, V3, polygons=[None, TILT])


def test_tiny_v3_returns_polygons_through_layout_detection(v3_dir):
    from paddleocr import LayoutDetection

    ld = LayoutDetection(model_name=V3, model_dir=str(v3_dir), device="cpu")
    w, h = PAGE[0] // 2, PAGE[1] // 2
    boxes = ld.predict(np.full((h, w, 3), 255, np.uint8), threshold=0.5, layout_shape_mode="auto")[0]["boxes"]
    assert [(b["label"], b["order"]) for b in boxes] == [("doc_title", 1), ("text", 2)]
    title, text = (np.asarray(b["polygon_points"], dtype=float) for b in boxes)
    x1, y1, x2, y2 = (int(v * s) for v, s in zip(V3_SCRIPT[0][2:6], (w, h, w, h)))
    assert np.allclose(title, [[x1, y1], [x2, y1], [x2, y2], [x1, y2]], atol=1)  # box-like mask: the box
    scripted = np.array(TILT) * (w, h)
    assert len(text) == 4   # a turned rectangle: auto keeps the quad; corners within the mask's grid (3x4 px)
    assert max(np.linalg.norm(scripted - p, axis=1).min() for p in text) < 10
    rect = ld.predict(np.full((h, w, 3), 255, np.uint8), threshold=0.5, layout_shape_mode="rect")[0]["boxes"]
    assert all("polygon_points" not in b for b in rect)


def test_detector_keeps_polygons_in_page_pixels(tmp_path, v3_dir):
    """A page larger than the detector input: polygon points are mapped back like the boxes."""
    from PIL import Image

    from ocrvl_ray.core.records import pages_to_table
    from ocrvl_ray.layout.config import LayoutConfig, LayoutModelConfig
    from ocrvl_ray.layout.stages.decode import decode_batch
    from ocrvl_ray.layout.stages.detect_layout import LayoutDetectStage

    def detector(**section):
        stage = LayoutDetectStage(LayoutModelConfig(model_dir=str(v3_dir), model_name=V3, **section))
        stage.setup()
        return stage

    w, h = PAGE
    Image.new("RGB", (w, h), "white").save(tmp_path / "p.png")
    t = pages_to_table([Page("p0", "ocr_public", "train", "p.png", str(tmp_path / "p.png"), w, h, [], "l.json")])
    batch = {c: np.array(t.column(c).to_pylist() + [None], dtype=object)[:-1] for c in t.column_names}
    batch["width"], batch["height"] = t.column("width").to_numpy(), t.column("height").to_numpy()
    batch = decode_batch(batch, LayoutConfig().max_pixels, "array", det_max_side=1024)
    assert batch["det_image"][0].shape[0] == 1024     # detection ran on a reduced copy
    out = detector().process_batch(batch)
    regions = [Region.from_row(r) for r in out["regions"][0]]
    assert [r.label for r in regions] == ["doc_title", "text"]
    poly = np.asarray(regions[1].polygon)
    scripted = np.array(TILT) * (w, h)
    assert max(np.linalg.norm(scripted - p, axis=1).min() for p in poly) < 20  # 4 mask px at 1754/800
    rect = detector(shape_mode="rect").process_batch(batch)
    assert all(Region.from_row(r).polygon is None for r in rect["regions"][0])


# ---------------------------------------------------------------------------------------------
# crops: ours equal paddlex's CropByBoxes pixel for pixel
# ---------------------------------------------------------------------------------------------
POLYGONS = {
    "turned": rotated(201.3, 148.7, 230.0, 70.0, 21),
    "concave": [(60.5, 40.2), (330.9, 40.2), (330.9, 120.0), (150.25, 120.0), (150.25, 260.8), (60.5, 260.8)],
    "beyond_box": [(20.0, -15.5), (390.0, 30.0), (410.7, 290.0), (-12.0, 310.0)],
}


@pytest.mark.parametrize("name", sorted(POLYGONS))
def test_polygon_crop_equals_paddlex_crop(name):
    from paddlex.inference.pipelines.components.common.crop_image_regions import CropByBoxes

    rng = np.random.default_rng(7)
    page = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    poly = np.asarray(POLYGONS[name], dtype=np.float32)       # paddlex hands polygons over as float32
    x1, y1 = max(0, int(poly[:, 0].min())), max(0, int(poly[:, 1].min()))
    x2, y2 = min(400, int(poly[:, 0].max())), min(300, int(poly[:, 1].max()))
    theirs = CropByBoxes()(page, [{"cls_id": 22, "label": "text", "coordinate": [x1, y1, x2, y2],
                                   "polygon_points": poly}], "auto")[0]["img"]
    ours = blank_outside(page[y1:y2, x1:x2], poly.astype(np.float64).tolist(), (x1, y1))
    assert ours.shape == theirs.shape and np.array_equal(ours, theirs)
    assert (ours == 255).all(axis=2).mean() > 0.02        # something was blanked

    # the same through compose_page (mask none): the sample's JPEG is the JPEG of paddlex's crop
    words = [Word("1", [x1 + 5.0, y1 + 5.0, x2 - 5.0, y1 + 5.0, x2 - 5.0, y2 - 5.0, x1 + 5.0, y2 - 5.0], "전체")]
    region = Region("text", 0.9, (float(x1), float(y1), float(x2), float(y2)), order=1,
                    polygon=poly.astype(np.float64).tolist())
    res = compose_page(Page("p", "ocr_public", "train", "p.png", None, 400, 300, words), page, [region], [],
                       get_recipe("ocr_public", {"layout_threshold": 0.0, "layout_min_coverage": 0.0}),
                       ComposeOptions(mask="none"))
    (sample,) = res.samples
    assert sample.image == encode_jpeg(theirs, 80)


# ---------------------------------------------------------------------------------------------
# word assignment by polygon
# ---------------------------------------------------------------------------------------------
DIAMOND = [(200.0, 40.0), (360.0, 200.0), (200.0, 360.0), (40.0, 200.0)]   # a square turned 45 degrees


def _word(i, x1, y1, x2, y2, text):
    return Word(str(i), [x1, y1, x2, y1, x2, y2, x1, y2], text)


def _page(words):
    return Page("p", "ocr_public", "train", "p.png", None, 400, 400, words)


@pytest.mark.parametrize("center_inside", [False, True])
def test_words_go_to_the_polygon_not_its_bounding_box(center_inside):
    words = [_word(1, 170, 190, 230, 210, "안쪽"),       # centre of the diamond
             _word(2, 190, 60, 210, 75, "위"),          # near the top corner, still inside
             _word(3, 45, 45, 85, 60, "모서리"),          # inside the box, outside the diamond
             _word(4, 320, 330, 355, 350, "구석")]        # inside the box, outside the diamond
    image = np.full((400, 400, 3), 200, np.uint8)
    recipe = get_recipe("ocr_public", {"center_inside": center_inside})
    shaped = Region("text", 0.9, bbox(DIAMOND), order=1, polygon=[list(p) for p in DIAMOND])
    res = compose_page(_page(words), image, [shaped], [], recipe, ComposeOptions(mask="none"))
    (sample,) = res.samples
    assert sample.text.split() == ["위", "안쪽"] and sample.polygon == [list(p) for p in DIAMOND]
    assert res.skips.to_dict()["counts"].get("word_unused") == 2
    # the crop is blanked outside the diamond: its corners are white, its centre is the page's grey
    import cv2
    crop = cv2.imdecode(np.frombuffer(sample.image, np.uint8), cv2.IMREAD_COLOR)
    assert crop[2, 2].min() > 245 and crop[-3, -3].min() > 245 and abs(int(crop[160, 160, 0]) - 200) < 6
    # the same region without its polygon takes the corner words too
    boxed = Region("text", 0.9, bbox(DIAMOND), order=1)
    (plain,) = compose_page(_page(words), image, [boxed], [], recipe, ComposeOptions(mask="none")).samples
    assert Counter(plain.text.split()) == Counter(["위", "안쪽", "모서리", "구석"]) and plain.polygon is None


def test_a_word_under_two_regions_goes_to_the_polygon_that_covers_it():
    """Two tilted regions whose boxes overlap: the word belongs to the polygon it lies in."""
    a = rotated(150, 150, 260, 60, 35)
    b = rotated(200, 150, 260, 60, -35)
    word = _word(1, 95, 105, 125, 125, "왼쪽")     # inside polygon a; also inside b's bounding box
    from shapely.geometry import Polygon, box as sbox
    assert Polygon(a).contains(sbox(95, 105, 125, 125)) and not Polygon(b).intersects(sbox(95, 105, 125, 125))
    assert sbox(*bbox(b)).contains(sbox(95, 105, 125, 125))
    regions = [Region("text", 0.9, bbox(b), order=1, polygon=[list(p) for p in b]),
               Region("text", 0.9, bbox(a), order=2, polygon=[list(p) for p in a])]
    res = compose_page(_page([word]), np.full((400, 400, 3), 255, np.uint8), regions, [],
                       get_recipe("ocr_public"), ComposeOptions(mask="none"))
    (sample,) = res.samples
    assert sample.text == "왼쪽" and sample.polygon == [list(p) for p in a]


def test_region_order_detector_mode():
    regions = [Region("table", 0.9, (0, 0, 10, 10)), Region("text", 0.9, (0, 20, 10, 30), order=1)]
    from ocrvl_ray.layout.compose.reading import region_order
    assert region_order(regions) == [1, 0] and region_order(regions, "detector") == [0, 1]


# ---------------------------------------------------------------------------------------------
# the Ray job: tiny V3 with a turned region; v1 = default; v1.5 demo end to end
# ---------------------------------------------------------------------------------------------
def _lmdb(path) -> list[tuple]:
    """(label, image sha1, meta) per sample, sorted by page, region and label (pages commit in any order)."""
    from ocrvl_ray.lmdb import LmdbReader

    with LmdbReader(str(path)) as r:
        rows = [(r.label(i), hashlib.sha1(r.image_bytes(i)).hexdigest(), r.meta(i)) for i in range(len(r))]
    return sorted(rows, key=lambda t: (t[2]["page_id"], t[2]["region_box"], t[2]["sample_kind"], t[0]))


def test_v3_polygons_reach_the_lmdb_meta(ray_local, tmp_path):
    """A sample page; the model returns the first paragraph as a band turned 8 degrees inside its box."""
    import json
    from pathlib import Path

    from shapely.geometry import Polygon, box as sbox

    from ocrvl_ray.demo.sample import TEMPLATE_REGIONS, make_sample_dataset
    from ocrvl_ray.ingest.prepare import PrepareConfig, prepare
    from ocrvl_ray.layout.job import run_layout

    w, h = 620, 877
    data = make_sample_dataset(tmp_path / "ds", n_pages=1, seed=11, size=(w, h))
    manifest = tmp_path / "m.parquet"
    prepare(PrepareConfig(dataset="ocr_public", labels=[data["labels_dir"]], images=[data["images_dir"]],
                          out=str(manifest), quiet=True))
    x1, y1, x2, y2 = (v * s for v, s in zip(TEMPLATE_REGIONS[2][2:6], (w, h, w, h)))  # the first "text"
    band = rotated((x1 + x2) / 2, (y1 + y2) / 2, 0.985 * (x2 - x1), 0.45 * (y2 - y1), 8)
    assert sbox(x1, y1, x2, y2).contains(Polygon(band))
    model = build_tiny_layout_model(tmp_path / "v3", TEMPLATE_REGIONS, V3,
                                    polygons=[None, None, [(x / w, y / h) for x, y in band]])
    out = tmp_path / "v3_layout.lmdb"
    cfg = load_config(LayoutConfig, overrides=[
        f"manifest={manifest}", f"output={out}", "model_version=v1.5", f"layout.model_dir={model}",
        "cells.enabled=false", "progress=false", "report_html=false", "mask=none"], env={})
    assert run_layout(cfg)["pages_ok"] == 1
    layout = [(label, meta) for label, _, meta in _lmdb(out)]
    assert len(layout) == 5 and all("region_polygon" in m for _, m in layout)  # title, heading, 2 texts, table
    turned = [(label, m) for label, m in layout if m["layout_label"] == "text"
              and Polygon(m["region_polygon"]).symmetric_difference(Polygon(band)).area < 0.15 * Polygon(band).area]
    assert len(turned) == 1, [m["region_polygon"] for _, m in layout]
    for label, meta in turned:
        doc = json.loads(Path(data["labels_dir"], Path(meta["source_image"]).stem + ".json").read_text("utf-8"))
        boxes = [(b["data"], sbox(min(b["x"]), min(b["y"]), max(b["x"]), max(b["y"]))) for b in doc["bbox"]]
        poly = Polygon(meta["region_polygon"])
        inner, outer = poly.buffer(-3), poly.buffer(3)   # a margin for the mask's 4.4 px grid
        sure = Counter(t for t, b in boxes if inner.contains(b))
        possible = Counter(t for t, b in boxes if outer.intersects(b))
        got = Counter(label.split())
        assert sure and not (sure - got), sure - got           # wholly inside the polygon: in the label
        assert not (got - possible), got - possible             # every label word touches the polygon
        assert any(sbox(x1, y1, x2, y2).contains(b) and not outer.intersects(b) for _, b in boxes)
    # the detections file carries the same polygons
    from ocrvl_ray.layout.detections import detections_path, load

    [(_, _, regions, _)] = load(detections_path(str(out))).values()
    polys = [r["polygon"] for r in regions if r["polygon"]]
    assert any(Polygon(pg).symmetric_difference(Polygon(band)).area < 0.15 * Polygon(band).area for pg in polys)


def test_v1_equals_default_and_v15_demo_runs_v3_end_to_end(ray_local, tmp_path):
    """Bundled sample (1 page, no cells: fast). model_version=v1 is the default config, so it writes the
    default's samples (checked on the full sample against the code before this change: identical LMDB);
    v1.5 with demo models runs the tiny V3 (box-shaped masks on the template): the v1 crops and labels, plus
    each layout sample's polygon."""
    from ocrvl_ray.layout.job import run_layout

    def cfg(name, *over):
        return load_config(LayoutConfig, overrides=[f"output={tmp_path / name}_layout.lmdb", "demo_models=true",
                                                    "limit=1", "split=train", "cells.enabled=false", "progress=false",
                                                    "report_html=false", *over], env={})

    assert cfg("v1", "model_version=v1").model_dump() == cfg("v1").model_dump()
    run_layout(cfg("v1", "model_version=v1"))
    report = run_layout(cfg("v15", "model_version=v1.5"))
    v1, v15 = _lmdb(tmp_path / "v1_train_layout.lmdb"), _lmdb(tmp_path / "v15_train_layout.lmdb")
    assert report["pages_ok"] == 1 and len(v1) == 5   # title, heading, two paragraphs, table
    assert [(label, sha) for label, sha, _ in v15] == [(label, sha) for label, sha, _ in v1]
    for (_, _, m15), (_, _, m1) in zip(v15, v1):
        assert "region_polygon" not in m1
        x1, y1, x2, y2 = m15["region_box"]
        poly = np.asarray(m15.pop("region_polygon"))
        assert poly.shape == (4, 2) and np.allclose(poly.min(axis=0), (x1, y1), atol=3) \
            and np.allclose(poly.max(axis=0), (x2, y2), atol=3)
        assert m15 == m1
