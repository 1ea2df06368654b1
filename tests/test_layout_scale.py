"""Scale-out arithmetic and the benchmark's detector stand-ins (no Ray, no model)."""
from __future__ import annotations

import time

import numpy as np
import pytest

from ocrvl_ray.demo.sample import TEMPLATE_REGIONS
from ocrvl_ray.layout.scale import cores_per_gpu, gpu_plan, shards_needed


def test_cores_and_shards_arithmetic():
    assert cores_per_gpu(240, 85) == pytest.approx(20.4)
    assert shards_needed(750, 20, 15_000) == 1 and shards_needed(751, 20, 15_000) == 2
    assert gpu_plan("cpu", 8) is None
    line = gpu_plan("gpu:0", 4, gpus=2)
    assert "CPU:GPU" in line and "< 8" in line


def test_standin_layout_detector_maps_template_to_page_pixels_without_cpu():
    from ocrvl_ray.testing.standin import StandInLayoutDetector

    w, h = 2480, 3508
    det = np.zeros((1024, 724, 3), np.uint8)                  # what decode hands the detector
    batch = {"page_id": np.array(["p"]), "status": np.array(["ok"]), "detail": np.array([""]),
             "image_path": np.array(["x.jpg"]), "det_image": [det], "det_sx": np.array([w / 724]),
             "det_sy": np.array([h / 1024]), "width": np.array([w]), "height": np.array([h])}
    from ocrvl_ray.layout.config import LayoutModelConfig

    import paddle  # noqa: F401 - predict_each imports it; its first import is not the stand-in's work

    d = StandInLayoutDetector(LayoutModelConfig(), batch_s=0.2)
    d.setup()
    t, c = time.perf_counter(), time.process_time()
    out = d.process_batch(batch)
    assert time.perf_counter() - t >= 0.2 and time.process_time() - c < 0.1   # waits, does not compute
    got = [(r["label"], r["box"]) for r in out["regions"][0]]
    want = [(lab, (x1 * w, y1 * h, x2 * w, y2 * h)) for lab, _s, x1, y1, x2, y2, _o in TEMPLATE_REGIONS]
    assert [g[0] for g in got] == [x[0] for x in want]
    for (_, g), (_, e) in zip(got, want):
        assert np.allclose(g, e, atol=1e-6)


def test_standin_cell_detector_gives_the_template_cells_of_each_table():
    from ocrvl_ray.demo.sample import TEMPLATE_CELLS
    from ocrvl_ray.testing.standin import StandInCellDetector

    page = np.zeros((400, 300, 3), np.uint8)
    table = {"label": "table", "score": 0.9, "box": (100.0, 200.0, 300.0, 400.0)}
    batch = {"page_id": np.array(["p"]), "status": np.array(["ok"]), "detail": np.array([""]),
             "image_path": np.array(["x.jpg"]), "image": [page], "regions": [[table]]}
    from ocrvl_ray.layout.config import CellModelConfig

    out = StandInCellDetector(CellModelConfig(), batch_s=0.0).process_batch(batch)
    assert list(out["status"]) == ["ok"], out["detail"]
    got = sorted(tuple(round(v) for v in c["box"]) for c in out["cells"][0])
    want = sorted((round(100 + 200 * x1), round(200 + 200 * y1), round(100 + 200 * x2), round(200 + 200 * y2))
                  for x1, y1, x2, y2 in TEMPLATE_CELLS)
    assert got == want
