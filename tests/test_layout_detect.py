"""LayoutDetector / CellDetector as plain callables on decoded batches (real paddleocr predictors)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.core.records import Page, Region, pages_to_table
from ocrvl_ray.core.skips import Skip
from ocrvl_ray.demo.models import build_tiny_cell_model, build_tiny_layout_model
from ocrvl_ray.layout.stages.decode import OK, decode_batch
from ocrvl_ray.layout.config import CellModelConfig, LayoutConfig, LayoutModelConfig
from ocrvl_ray.layout.stages.detect_cells import CellDetectStage
from ocrvl_ray.layout.stages.detect_layout import LayoutDetectStage

MAX_PIXELS = LayoutConfig().max_pixels


def layout_stage(model_dir, **section) -> LayoutDetectStage:
    """The stage as an actor holds it: built from its config section, then set up (model loaded)."""
    stage = LayoutDetectStage(LayoutModelConfig(model_dir=model_dir, **section))
    stage.setup()
    return stage


def cell_stage(model_dir, **section) -> CellDetectStage:
    stage = CellDetectStage(CellModelConfig(model_dir=model_dir, **section))
    stage.setup()
    return stage

SCRIPT = [
    ("doc_title", 0.92, 0.20, 0.05, 0.80, 0.10),
    ("text", 0.90, 0.10, 0.15, 0.90, 0.35),
    ("text", 0.40, 0.10, 0.40, 0.90, 0.50),   # 0.4 < threshold 0.5: dropped
    ("table", 0.40, 0.10, 0.55, 0.90, 0.95),  # 0.4 > table_threshold 0.3: kept, same pass
]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    return (build_tiny_layout_model(base / "layout", SCRIPT),
            build_tiny_cell_model(base / "cells", [(0, 0, 0.5, 0.5), (0.5, 0.5, 1, 1)]))


def write_page(path, w, h):
    Image.fromarray(np.full((h, w, 3), 250, np.uint8)).save(path)
    return path


def manifest(paths, sizes):
    pages = [Page(f"p{i}", "ocr_public", "train", p.name, str(p), w, h, [], f"l{i}.json")
             for i, (p, (w, h)) in enumerate(zip(paths, sizes))]
    t = pages_to_table(pages)
    return {c: (t.column(c).to_numpy() if c in ("width", "height") else np.array(t.column(c).to_pylist() + [None], dtype=object)[:-1])
            for c in t.column_names}


class CountingPredict:
    """Spy that counts predict calls of the real predictor (the predictor still does the work)."""

    def __init__(self, model):
        self.model, self.calls = model, 0

    def predict(self, *a, **kw):
        self.calls += 1
        return self.model.predict(*a, **kw)


def test_layout_regions_in_page_pixels_one_pass(tmp_path, models):
    sizes = [(2480, 3508), (900, 600)]
    paths = [write_page(tmp_path / f"p{i}.png", w, h) for i, (w, h) in enumerate(sizes)]
    batch = decode_batch(manifest(paths, sizes), MAX_PIXELS, "array", det_max_side=1024)
    det = layout_stage(str(models[0]), threshold=0.5, table_threshold=0.3)
    det.model = CountingPredict(det.model)
    out = det.process_batch(batch)
    assert det.model.calls == 1
    for i, (w, h) in enumerate(sizes):
        regions = [Region.from_row(r) for r in out["regions"][i]]
        assert [(r.label, r.order) for r in regions] == [("doc_title", 1), ("text", 2), ("table", None)]
        want = [(0.20 * w, 0.05 * h, 0.80 * w, 0.10 * h), (0.10 * w, 0.15 * h, 0.90 * w, 0.35 * h),
                (0.10 * w, 0.55 * h, 0.90 * w, 0.95 * h)]
        tol = 1.0 + max(w, h) / 1024  # paddlex rounds to whole detector pixels
        for r, wb in zip(regions, want):
            assert np.allclose(r.box, wb, atol=tol), (r.label, r.box, wb)
        assert regions[2].score == pytest.approx(0.4)
        # the table between table_threshold and threshold feeds the cell detector only (issue 11, item 5)
        assert [r.kind for r in regions] == ["layout", "layout", "table_only"]
    cells = cell_stage(str(models[1]), threshold=0.3).process_batch(out)["cells"]
    assert all(len(c) == 2 and {r["table"] for r in c} == {2} for c in cells)


def test_non_ok_rows_pass_through_and_detector_errors_are_per_row(tmp_path, models):
    sizes = [(300, 400)] * 3
    paths = [write_page(tmp_path / f"q{i}.png", w, h) for i, (w, h) in enumerate(sizes)]
    paths[0] = tmp_path / "missing.png"
    batch = decode_batch(manifest(paths, sizes), MAX_PIXELS, "array")
    assert batch["status"][0] == Skip.IMAGE_MISSING.value
    dets = list(batch["det_image"])
    dets[2] = np.zeros((0, 5, 3), np.uint8)  # an "ok" row the real predictor cannot process
    batch["det_image"] = dets
    out = layout_stage(str(models[0])).process_batch(batch)
    assert out["status"][0] == Skip.IMAGE_MISSING.value and out["regions"][0] == []
    assert out["status"][1] == OK and len(out["regions"][1]) == 3
    assert out["status"][2] == Skip.DETECTOR_ERROR.value and "layout detector failed" in out["detail"][2]


def test_cells_mapped_back_through_the_downscale(tmp_path, models):
    """Table 1800x2400 px > max_side 1280: crop downscaled by 0.5333, cells must come back x1.875."""
    w, h = 2000, 3000
    path = write_page(tmp_path / "big.png", w, h)
    other = write_page(tmp_path / "small.png", 300, 200)
    batch = decode_batch(manifest([path, other], [(w, h), (300, 200)]), MAX_PIXELS, "array")
    table = Region("table", 0.9, (100.0, 300.0, 1900.0, 2700.0)).to_row()
    text = Region("text", 0.9, (10.0, 10.0, 200.0, 50.0), order=1).to_row()
    batch["regions"] = [[text, table], [text]]
    out = cell_stage(str(models[1]), threshold=0.3, max_side=1280).process_batch(batch)
    cells = [Region.from_row(c) for c in out["cells"][0]]
    # hand-computed: crop 1800x2400 -> 960x1280; cell (0,0)-(480,640) -> page 100 + 480*1.875 = 1000 ...
    assert sorted(c.box for c in cells) == [(100.0, 300.0, 1000.0, 1500.0), (1000.0, 1500.0, 1900.0, 2700.0)]
    assert all(c.kind == "cell" and c.table == 1 and c.label == "cell" for c in cells)
    assert out["cells"][1] == [] and out["status"] == [OK, OK]


def test_jpeg_tables_come_from_a_reduced_decode_with_the_same_cells(tmp_path, models):
    """Table 1800x2400 px, max_side 1024: the JPEG is decoded at 1/2 (1200 >= 1024 on the long side), the crop
    900x1200 -> 768x1024; cells come back in page pixels as from the full decode, within the 2 px of a 1/2 decode."""
    from ocrvl_ray.layout.stages.decode import page_image_at

    w, h = 2000, 3000
    path = write_page(tmp_path / "big.jpg", w, h)
    batch = decode_batch(manifest([path], [(w, h)]), MAX_PIXELS, "bytes")
    assert page_image_at(batch, 0, 2)[0].shape == (1500, 1000, 3)
    batch["regions"] = [[Region("table", 0.9, (100.0, 300.0, 1900.0, 2700.0)).to_row()]]
    out = cell_stage(str(models[1]), threshold=0.3, max_side=1024).process_batch(batch)
    got = sorted(Region.from_row(c).box for c in out["cells"][0])
    want = [(100.0, 300.0, 1000.0, 1500.0), (1000.0, 1500.0, 1900.0, 2700.0)]
    assert len(got) == 2 and all(abs(a - b) <= 2 for g, e in zip(got, want) for a, b in zip(g, e)), got


def test_table_partly_outside_the_page_is_clipped(tmp_path, models):
    path = write_page(tmp_path / "p.png", 400, 300)
    batch = decode_batch(manifest([path], [(400, 300)]), MAX_PIXELS, "array")
    batch["regions"] = [[Region("table", 0.9, (200.0, 100.0, 500.0, 400.0)).to_row()]]
    cells = [Region.from_row(c) for c in cell_stage(str(models[1])).process_batch(batch)["cells"][0]]
    assert sorted(c.box for c in cells) == [(200.0, 100.0, 300.0, 200.0), (300.0, 200.0, 400.0, 300.0)]


def test_cell_detector_edge_cases_never_raise(tmp_path, models):
    paths = [write_page(tmp_path / f"e{i}.png", 400, 300) for i in range(2)]
    batch = decode_batch(manifest(paths, [(400, 300)] * 2), MAX_PIXELS, "bytes")
    outside = Region("table", 0.9, (500.0, 350.0, 600.0, 400.0)).to_row()   # entirely off the page
    inside = Region("table", 0.9, (0.0, 0.0, 200.0, 100.0)).to_row()
    batch["regions"] = [[outside], [inside]]
    batch["image_bytes"] = [batch["image_bytes"][0], b"not an image"]
    out = cell_stage(str(models[1])).process_batch(batch)
    assert out["status"][0] == OK and out["cells"][0] == []
    assert out["status"][1] == Skip.ERROR.value and "image_bytes do not decode" in out["detail"][1]


def test_missing_model_dir_is_one_clear_error(tmp_path):
    with pytest.raises(OcrvlError, match="layout.model_dir=.*demo_models=true"):
        layout_stage(str(tmp_path / "nothing"))
    with pytest.raises(OcrvlError, match="cells.model_dir"):
        cell_stage(str(tmp_path / "nothing"))


def test_model_dir_layouts_paddlex_loads_are_accepted_and_incomplete_ones_named(tmp_path):
    from ocrvl_ray.layout.stages.actors import check_model_dir

    def folder(name, files):
        d = tmp_path / name
        d.mkdir()
        for f in files:
            (d / f).write_bytes(b"x")
        return str(d)

    ok = [("inference.yml", "inference.json", "inference.pdiparams"), ("inference.yml", "inference.pdmodel", "inference.pdiparams"),
          ("inference.yml", "model.safetensors", "config.json"), ("inference.yml", "model_state.pdparams", "config.json")]
    for i, files in enumerate(ok):
        assert check_model_dir(folder(f"ok{i}", files), "layout", "layout.model_dir")
    bad = {("inference.yml", "inference.json"): "inference.pdiparams missing",
           ("inference.yml", "model.safetensors"): "config.json missing",
           ("inference.yml", "config.json"): "inference.json \\+ inference.pdiparams, or model.safetensors \\+ config.json missing",
           ("model.safetensors", "config.json"): "inference.yml missing"}
    for i, (files, needle) in enumerate(bad.items()):
        with pytest.raises(OcrvlError, match=f"layout.model_dir=.*{needle}"):
            check_model_dir(folder(f"bad{i}", files), "layout", "layout.model_dir")


def test_a_safetensors_model_loads_and_predicts_without_autograd(tmp_path):
    """The paddle_dynamic engine (model.safetensors + config.json) loads, and inference keeps no autograd graph."""
    import paddle

    from ocrvl_ray.testing.models import build_tiny_real_layout_model

    det = layout_stage(str(build_tiny_real_layout_model(tmp_path / "real")))
    seen = []
    predict = det.model.predict
    det.model = type("Spy", (), {"predict": lambda self, *a, **kw: seen.append(paddle.is_grad_enabled()) or predict(*a, **kw)})()
    pages = [np.random.default_rng(i).integers(0, 255, (300, 200, 3), dtype=np.uint8) for i in range(2)]
    boxes = det._predict({"det_image": pages}, [0, 1])
    assert len(boxes) == 2 and not any(isinstance(b, Exception) for b in boxes)
    assert seen == [False] and paddle.is_grad_enabled()


NO_NET_SCRIPT = """
import socket, sys
events = []
sys.addaudithook(lambda ev, args: events.append((ev, str(args)[:80])) if ev in ("socket.connect", "socket.getaddrinfo") else None)
import numpy as np
from ocrvl_ray.layout.config import LayoutModelConfig
from ocrvl_ray.layout.stages.detect_layout import LayoutDetectStage
det = LayoutDetectStage(LayoutModelConfig(model_dir=sys.argv[1]))
det.setup()
det.model.predict([np.full((64, 64, 3), 255, np.uint8)], threshold=det.thresholds)
print("EVENTS", events)
"""


def test_no_network_when_model_dir_is_given(models, tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("PADDLE_PDX")}
    env["OCRVL_CACHE"] = str(tmp_path / "cache")
    proc = subprocess.run([sys.executable, "-c", NO_NET_SCRIPT, str(models[0])], env=env, capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "EVENTS []" in proc.stdout
    assert (tmp_path / "cache" / "paddlex").is_dir()  # paddlex cache redirected under OCRVL_CACHE


def test_table_crop_tasks_then_cell_actor_on_arrow_batches_equal_the_in_process_path(tmp_path, models):
    """The pipeline's path (Arrow batches: TableCropStage adds ``tables``, the cell detector reads them and
    drops them) gives the cells of the in-process path, and passes the other columns through untouched."""
    from ray.data.block import BlockAccessor

    from ocrvl_ray.layout.stages.table_crops import TableCropStage

    path = write_page(tmp_path / "big.jpg", 2000, 3000)
    batch = decode_batch(manifest([path], [(2000, 3000)]), MAX_PIXELS, "bytes")
    batch["regions"] = [[Region("table", 0.9, (100.0, 300.0, 1900.0, 2700.0)).to_row()]]
    detector = cell_stage(str(models[1]), threshold=0.3, max_side=1024)
    want = detector.process_batch(dict(batch))["cells"][0]
    arrow = BlockAccessor.batch_to_block({k: v for k, v in batch.items() if not k.startswith("det_")})
    cropped = TableCropStage(1024, 1, "bytes").process_batch(arrow)
    assert "tables" in cropped.column_names and cropped.column("words").equals(arrow.column("words"))
    out = detector.process_batch(cropped)
    assert "tables" not in out.column_names and out.column("image_bytes").equals(arrow.column("image_bytes"))
    got = out.column("cells").to_pylist()[0]
    assert [(c["label"], [round(v, 3) for v in c["box"]], c["table"]) for c in got] == \
        [(c["label"], [round(v, 3) for v in c["box"]], c["table"]) for c in want]
