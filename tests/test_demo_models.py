"""Tiny offline models load through the REAL paddleocr classes and return what they script."""
from __future__ import annotations

import numpy as np
import pytest

from ocrvl_ray.demo.models import build_tiny_cell_model, build_tiny_layout_model, demo_models
from ocrvl_ray.demo.sample import TEMPLATE_CELLS, TEMPLATE_REGIONS
from ocrvl_ray.testing.models import build_tiny_real_layout_model

SCRIPT = [
    ("header", 0.95, 0.10, 0.02, 0.90, 0.05),
    ("text", 0.90, 0.10, 0.40, 0.90, 0.60, 3),   # explicit order: after the title
    ("doc_title", 0.92, 0.20, 0.08, 0.80, 0.15, 1),
    ("table", 0.40, 0.10, 0.65, 0.90, 0.95, 5),
    ("text", 0.40, 0.10, 0.20, 0.90, 0.30, 2),   # weak text box: dropped at 0.5
]


@pytest.fixture(scope="module")
def layout_dir(tmp_path_factory):
    return build_tiny_layout_model(tmp_path_factory.mktemp("layout"), SCRIPT)


def test_layout_model_returns_scripted_boxes_per_image_size(layout_dir):
    from paddleocr import LayoutDetection

    ld = LayoutDetection(model_name="PP-DocLayoutV2", model_dir=str(layout_dir), device="cpu")
    thr = {i: 0.5 for i in range(25)}
    thr[21] = 0.3  # table, in the same single pass
    a, b = np.full((1000, 800, 3), 255, np.uint8), np.full((300, 600, 3), 255, np.uint8)
    res = ld.predict([a, b], batch_size=2, threshold=thr, layout_nms=True)
    got_a = [(r["label"], r["coordinate"], r["order"]) for r in res[0]["boxes"]]
    assert got_a == [("header", [80, 20, 720, 50], None),
                     ("doc_title", [160, 80, 640, 150], 1),
                     ("text", [80, 400, 720, 600], 2),
                     ("table", [80, 650, 720, 950], None)]
    got_b = [(r["label"], r["coordinate"]) for r in res[1]["boxes"]]
    assert got_b == [("header", [60, 6, 540, 15]), ("doc_title", [120, 24, 480, 45]),
                     ("text", [60, 120, 540, 180]), ("table", [60, 195, 540, 285])]
    # a plain 0.5 threshold drops the 0.4 table: the per-class dict is what keeps it
    labels = [r["label"] for r in ld.predict(a, threshold=0.5)[0]["boxes"]]
    assert "table" not in labels and labels.count("text") == 1


def test_cell_model_through_table_cells_detection(tmp_path):
    from paddleocr import TableCellsDetection

    d = build_tiny_cell_model(tmp_path / "cells", [(0, 0, 0.5, 0.5), (0.5, 0.5, 1, 1), (0.2, 0.1, 0.25, 0.3, 0.8)],
                              score=0.9)
    cd = TableCellsDetection(model_name="RT-DETR-L_wired_table_cell_det", model_dir=str(d), device="cpu")
    boxes = cd.predict(np.full((300, 600, 3), 255, np.uint8), threshold=0.3)[0]["boxes"]
    got = sorted((r["label"], [round(float(v), 3) for v in r["coordinate"]]) for r in boxes)
    assert got == [("cell", [0.0, 0.0, 300.0, 150.0]), ("cell", [300.0, 150.0, 600.0, 300.0])]


def test_empty_script_returns_no_boxes(tmp_path):
    from paddleocr import LayoutDetection

    d = build_tiny_layout_model(tmp_path / "empty", [])
    ld = LayoutDetection(model_name="PP-DocLayoutV2", model_dir=str(d), device="cpu")
    assert ld.predict(np.full((64, 64, 3), 255, np.uint8), threshold=0.0)[0]["boxes"] == []


def test_bad_scripts_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="label"):
        build_tiny_layout_model(tmp_path / "x", [("paragraph", 0.9, 0, 0, 1, 1)])
    with pytest.raises(ValueError, match="coordinates"):
        build_tiny_layout_model(tmp_path / "y", [("text", 0.9, 0.5, 0, 0.4, 1)])


def test_demo_models_are_cached_and_match_the_template(tmp_path):
    layout, cells = demo_models(tmp_path)
    again = demo_models(tmp_path)
    assert (layout, cells) == again and sorted(p.name for p in tmp_path.iterdir()) == sorted([layout.name, cells.name])
    from paddleocr import LayoutDetection

    ld = LayoutDetection(model_name="PP-DocLayoutV2", model_dir=str(layout), device="cpu")
    w, h = 1240, 1754
    res = ld.predict(np.full((h, w, 3), 255, np.uint8), threshold=0.3)[0]["boxes"]
    want = [(lab, [round(x1 * w), round(y1 * h), round(x2 * w), round(y2 * h)])
            for lab, _s, x1, y1, x2, y2, _o in TEMPLATE_REGIONS]
    got = [(r["label"], r["coordinate"]) for r in res]
    assert len(got) == len(want)
    for (gl, gb), (wl, wb) in zip(got, want):
        assert gl == wl and np.allclose(gb, wb, atol=1), (gl, gb, wb)
    assert len(TEMPLATE_CELLS) == 20


def test_tiny_real_architecture_model_loads_and_orders(tmp_path):
    from paddleocr import LayoutDetection

    d = build_tiny_real_layout_model(tmp_path / "real")
    assert {p.name for p in d.iterdir()} >= {"model.safetensors", "config.json", "inference.yml"}
    ld = LayoutDetection(model_name="PP-DocLayoutV2", model_dir=str(d), device="cpu")
    img = np.random.default_rng(0).integers(0, 255, (600, 500, 3), dtype=np.uint8)
    boxes = ld.predict(img, threshold=0.0)[0]["boxes"]
    assert boxes, "random weights still produce (meaningless) boxes at threshold 0"
    orders = [b["order"] for b in boxes if b["order"] is not None]
    assert orders == list(range(1, len(orders) + 1))
    assert all(0 <= b["coordinate"][0] <= b["coordinate"][2] <= 500 for b in boxes)
