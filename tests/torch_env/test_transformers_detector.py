"""The transformers layout engine on tiny random PP-DocLayoutV2/V3/V4 folders built offline (save_pretrained of
the model and its image processor), CPU, fp32 and bf16; and the paddlex-compatible finishing of its results."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.core.assets import layout_labels
from ocrvl_ray.layout.engines.configs import available_versions, save_random_detector, synthetic_page
from ocrvl_ray.layout.engines.transformers_detector import (SKIP_ORDER_LABELS, TransformersDetector,
                                                            check_model_folder, to_regions)

VERSIONS = [v for v in ("v2", "v3", "v4") if v in available_versions()]


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-detectors")
    return {v: save_random_detector(root / v, v, tiny=True) for v in VERSIONS}


def test_v2_and_v3_are_available():
    assert {"v2", "v3"} <= set(VERSIONS)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_tiny_detector_predicts_regions_in_page_pixels(tiny_dirs, version, dtype):
    det = TransformersDetector(tiny_dirs[version], dtype=dtype, threshold=0.0)
    assert det.version == version and det.labels == layout_labels()
    assert next(det.model.parameters()).dtype == getattr(torch, dtype)
    pages = [synthetic_page(850, 1100), synthetic_page(900, 600, seed=1)]
    results = det.predict(pages)
    assert len(results) == 2 and det.predict([]) == []
    for page, regions in zip(pages, results):
        h, w = page.shape[:2]
        # bf16 on these tiny random models is not a fidelity test: their outputs sit near the decision points
        # (V3's mask-enhanced queries collapse to empty boxes, V2 keeps 1 box of fp32's 19), so only fp32 must
        # find boxes; bf16 must run and give well-formed regions.
        assert regions or dtype == "bfloat16", "threshold 0 keeps at least the best box"
        ranks = []
        for r in regions:
            assert set(r) == {"label", "score", "box", "order", "polygon"}
            assert r["label"] in det.labels and 0.0 < r["score"] <= 1.0
            x1, y1, x2, y2 = r["box"]
            assert all(isinstance(v, int) for v in r["box"]) and 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
            if r["label"] in SKIP_ORDER_LABELS:
                assert r["order"] == -1
            else:
                ranks.append(r["order"])
            if version == "v2":
                assert r["polygon"] == []
            if version == "v4":
                assert len(r["polygon"]) == 4   # the regressed quadrilateral, in page pixels
            if r["polygon"]:
                pts = np.asarray(r["polygon"])
                assert pts.shape[1] == 2 and np.isfinite(pts).all()
        assert ranks == list(range(1, len(ranks) + 1))   # 1-based, in list (reading) order


def _result(labels, scores, boxes, polys=None) -> dict:
    out = {"labels": torch.tensor(labels), "scores": torch.tensor(scores, dtype=torch.float32),
           "boxes": torch.tensor(boxes, dtype=torch.float32)}
    if polys is not None:
        out["polygon_points"] = polys
    return out


LABELS = ["text", "table", "image", "paragraph_title"]
THRESHOLDS = np.array([0.5, 0.3, 0.5, 0.5])


def test_to_regions_finishes_results_as_paddlex_does():
    """Thresholds strictly above (table lower), rounding, same-label NMS at IoU 0.6, the whole-page image dropped
    (> 82 % of a landscape page), order 1-based over ordered labels only, reading order kept."""
    res = _result([0, 1, 0, 3, 2, 0],
                  [0.9, 0.35, 0.8, 0.6, 0.95, 0.5],
                  [[10.4, 10.6, 100.2, 50.0], [0, 60, 200, 120], [12, 12, 99, 49], [5, 130, 300, 160],
                   [-3, -2, 402, 299], [300, 200, 350, 250]],
                  polys=[np.array([[10, 11], [100, 11], [100, 50], [10, 50]]), None, None, None, None, None])
    got = to_regions(res, 300, 400, LABELS, THRESHOLDS, layout_nms=True)
    assert [(r["label"], r["box"], r["order"]) for r in got] == [
        ("text", [10, 11, 100, 50], 1), ("table", [0, 60, 200, 120], -1), ("paragraph_title", [5, 130, 300, 160], 2)]
    assert got[0]["polygon"] == [[10.0, 11.0], [100.0, 11.0], [100.0, 50.0], [10.0, 50.0]] and got[1]["polygon"] == []
    assert got[0]["score"] == pytest.approx(0.9)


def test_layout_nms_across_labels_at_098():
    """An image and a table on the same box: NMS (IoU > 0.98 across labels) keeps the higher score; without
    NMS the overlap filter keeps both (image/table pairs are exempt)."""
    res = _result([1, 2], [0.8, 0.9], [[300, 200, 350, 250], [300, 200, 350, 250]])
    assert [r["label"] for r in to_regions(res, 300, 400, LABELS, THRESHOLDS, True)] == ["image"]
    assert [r["label"] for r in to_regions(res, 300, 400, LABELS, THRESHOLDS, False)] == ["table", "image"]


def test_overlap_filter_as_paddlex():
    """paddlex's filter_boxes: the smaller of two boxes overlapping > 70 % of it goes (order renumbered), a text
    inside an image stays, an inline formula > 50 % inside goes itself, boxes under 6 px and references go."""
    labels = ["text", "image", "inline_formula", "reference"]
    res = _result([0, 0, 1, 0, 2, 0, 3],
                  [0.9] * 7,
                  [[0, 0, 100, 100], [10, 10, 90, 95], [200, 0, 300, 100], [210, 10, 290, 90], [20, 20, 60, 70],
                   [0, 150, 100, 154], [0, 200, 100, 250]])
    got = to_regions(res, 300, 400, labels, np.full(4, 0.5), layout_nms=False)
    assert [(r["label"], r["box"], r["order"]) for r in got] == [
        ("text", [0, 0, 100, 100], 1), ("image", [200, 0, 300, 100], -1), ("text", [210, 10, 290, 90], 2)]


def test_to_regions_keeps_a_lone_page_image_and_clips_to_the_page():
    res = _result([2], [0.95], [[-3, -2, 402, 299]])
    assert [(r["label"], r["box"]) for r in to_regions(res, 300, 400, LABELS, THRESHOLDS, True)] == [
        ("image", [0, 0, 400, 299])]


def test_model_folder_errors(tmp_path, tiny_dirs):
    paddle_dir = tmp_path / "paddle"
    paddle_dir.mkdir()
    (paddle_dir / "inference.yml").write_text("Global: {model_name: PP-DocLayoutV2}\n")
    with pytest.raises(OcrvlError, match=r"config.json, model.safetensors, preprocessor_config.json missing.*"
                                         r"ocrvl convert-detector"):
        check_model_folder(paddle_dir)
    other = tmp_path / "other"
    other.mkdir()
    for f in ("model.safetensors", "preprocessor_config.json"):
        (other / f).write_bytes(b"")
    (other / "config.json").write_text(json.dumps({"model_type": "rt_detr"}))
    with pytest.raises(OcrvlError, match="model_type 'rt_detr' is not a PP-DocLayout model"):
        check_model_folder(other)
    with pytest.raises(OcrvlError, match="layout.dtype must be one of float32, bfloat16"):
        TransformersDetector(tiny_dirs["v2"], dtype="float16")
    with pytest.raises(OcrvlError, match="no label tabel in this model"):
        TransformersDetector(tiny_dirs["v2"], thresholds={"tabel": 0.3})
    with pytest.raises(OcrvlError, match="device must be cpu, gpu or gpu:N"):
        TransformersDetector(tiny_dirs["v2"], device="tpu")


CELLS = "RT-DETR-L_wired_table_cell_det"


@pytest.fixture(scope="module")
def tiny_cells(tmp_path_factory):
    from ocrvl_ray.layout.engines.configs import save_random_cell_detector

    return save_random_cell_detector(tmp_path_factory.mktemp("tiny-cells") / "cells")


def test_cell_stage_on_transformers_maps_the_models_cells_to_page_pixels(tiny_cells):
    """cells.engine=transformers in the cell stage (in-process: it cuts the table itself): the model's boxes on the
    RGB crop, mapped back by hand (page = origin + crop x factor; the 1000x600 table shrinks to 512x307)."""
    from ocrvl_ray.layout.config import CellModelConfig
    from ocrvl_ray.layout.engines.transformers_cells import TransformersCellDetector
    from ocrvl_ray.layout.stages.detect_cells import CellDetectStage

    page = np.ascontiguousarray(synthetic_page(1200, 900, seed=5)[..., ::-1])   # BGR, as decode hands it on
    table = {"label": "table", "score": 0.9, "box": (100.0, 200.0, 1100.0, 800.0), "kind": "layout"}
    batch = {"page_id": np.array(["p"]), "status": np.array(["ok"]), "detail": np.array([""]),
             "image_path": np.array(["p.png"]), "image": [page], "regions": [[table]]}
    stage = CellDetectStage(CellModelConfig(engine="transformers", model_dir=str(tiny_cells), threshold=0.0,
                                            max_side=512))
    stage.setup()
    out = stage.process_batch(batch)
    assert list(out["status"]) == ["ok"], out["detail"]
    crop = np.ascontiguousarray(page[200:800, 100:1100][..., ::-1])     # the table, RGB
    import cv2

    small = cv2.resize(crop, (512, 307), interpolation=cv2.INTER_AREA)
    want = TransformersCellDetector(tiny_cells, CELLS, threshold=0.0).predict([small])[0]
    fx, fy = 1000 / 512, 600 / 307
    want = [[min(max(100 + x1 * fx, 100), 1100), min(max(200 + y1 * fy, 200), 800),
             min(max(100 + x2 * fx, 100), 1100), min(max(200 + y2 * fy, 200), 800)]
            for x1, y1, x2, y2 in (c["coordinate"] for c in want)]
    got = out["cells"][0]
    assert len(got) == len(want) > 5 and {(c["kind"], c["table"]) for c in got} == {("cell", 0)}
    np.testing.assert_allclose([c["box"] for c in got], want, atol=1e-3)


def test_cell_detector_dtype_and_folder_errors(tiny_cells, tiny_dirs, tmp_path):
    import shutil

    from ocrvl_ray.layout.engines.transformers_cells import TransformersCellDetector, check_cell_folder

    det = TransformersCellDetector(tiny_cells, CELLS, dtype="bfloat16")
    assert next(det.model.parameters()).dtype == torch.bfloat16
    assert all(0 <= c["coordinate"][0] < c["coordinate"][2] <= 300 for c in det.predict([synthetic_page(300, 200)])[0])
    with pytest.raises(OcrvlError, match="cells.engine=transformers needs cells.model_dir=DIR"):
        check_cell_folder(None, CELLS)
    with pytest.raises(OcrvlError, match="model_type 'pp_doclayout_v2' is not an RT-DETR model"):
        check_cell_folder(tiny_dirs["v2"], CELLS)
    named = tmp_path / "wireless"
    shutil.copytree(tiny_cells, named)
    (named / "inference.yml").write_text("Global: {model_name: RT-DETR-L_wireless_table_cell_det}\n")
    with pytest.raises(OcrvlError, match="holds RT-DETR-L_wireless_table_cell_det, but cells.model_name="
                                         "RT-DETR-L_wired_table_cell_det; set cells.model_name="):
        check_cell_folder(named, CELLS)
    with pytest.raises(OcrvlError, match="cells.dtype must be one of float32, bfloat16"):
        TransformersCellDetector(tiny_cells, CELLS, dtype="float16")
