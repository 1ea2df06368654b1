"""Scale-out arithmetic and the benchmark's detector stand-ins (no Ray, no model)."""
from __future__ import annotations

import time

import numpy as np
import pytest

from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.demo.sample import TEMPLATE_REGIONS
from ocrvl_ray.layout.scale import cores_per_gpu, gpu_plan, shards_needed


def test_cores_and_shards_arithmetic():
    assert cores_per_gpu(240, 85) == pytest.approx(20.4)
    assert shards_needed(750, 20, 15_000) == 1 and shards_needed(751, 20, 15_000) == 2


def _cfg(*overrides: str):
    from ocrvl_ray.core.config import load_config
    from ocrvl_ray.layout.config import LayoutConfig

    return load_config(LayoutConfig, overrides=list(overrides), env={})


def test_gpu_plan_prints_only_rates_measured_on_a_gpu(tmp_path):
    """No unmeasured rate: without gpu_figures no plan line; with bench/gpu_check.py's output, its GPU figures
    (the SMOKE lines of a CPU run are not GPU figures and are ignored)."""
    assert gpu_plan(_cfg("layout.device=gpu:0")) is None          # printed hard-coded H100 rates before
    out = tmp_path / "gpu_check.txt"
    out.write_text("INFO device NVIDIA H100; torch 2.14\n"
                   "SMOKE FIGURE detector_pages_per_s_v2_fp32_b8 999.0\n"
                   "FIGURE detector_pages_per_s_v2_fp32_b1 40.00\n"
                   "FIGURE detector_pages_per_s_v2_fp32_b8 150.00\n"
                   "FIGURE detector_pages_per_s_v2_bf16_b8 300.00\n"
                   "FIGURE cpu_ms_per_page_outside_detector 100.0 ms (16 pages of 2480x3508, handoff=bytes)\n")
    assert gpu_plan(_cfg("layout.device=cpu", f"gpu_figures={out}")) is None
    line = gpu_plan(_cfg("layout.device=gpu:0", "layout.batch_size=16", "layout.max_actors=2", f"gpu_figures={out}"))
    assert "at 150 pages/s (detector_pages_per_s_v2_fp32_b8" in line and "this job runs engine=paddle" in line
    assert "~15 CPU cores" in line and "at 100 core-ms/page" in line and "-> ~30 cores" in line   # 150 x 100 / 1000
    assert "measured at batch 8, layout.batch_size=16" in line
    (tmp_path / "f.json").write_text('{"detector_pages_per_s_v3_bf16_b32": 400}')
    line = gpu_plan(_cfg("model_version=v1.5", "layout.engine=transformers", "layout.dtype=bfloat16",
                         "layout.device=gpu", "layout.batch_size=4", f"gpu_figures={tmp_path / 'f.json'}"))
    assert "at 400 pages/s (detector_pages_per_s_v3_bf16_b32" in line and "engine=paddle" not in line
    line = gpu_plan(_cfg("layout.device=gpu", "layout.dtype=bfloat16", "layout.engine=transformers",
                         f"gpu_figures={tmp_path / 'f.json'}"))
    assert line.startswith("GPU plan: ") and "has no detector_pages_per_s_v2_bf16_bN figure" in line
    with pytest.raises(OcrvlError, match="gpu_figures=.*missing.txt: no such file"):
        gpu_plan(_cfg("layout.device=gpu", f"gpu_figures={tmp_path / 'missing.txt'}"))


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
