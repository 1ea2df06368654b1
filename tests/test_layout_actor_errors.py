"""Detector actor start-up (issue 27, items 5 and 9): a GPU device on a CPU-only Paddle is refused in one line,
and a model that fails to load keeps its cause. Real paddle / paddleocr, no Ray."""
from __future__ import annotations

import pytest

from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.layout.stages.actors import load_predictor


def test_gpu_device_on_cpu_only_paddle_is_refused(demo_model_dirs):
    import paddle

    if paddle.device.is_compiled_with_cuda():
        pytest.skip("this Paddle has CUDA")
    layout_dir, _ = demo_model_dirs
    with pytest.raises(OcrvlError) as e:
        load_predictor("LayoutDetection", "PP-DocLayoutV2", str(layout_dir), "gpu", "layout")
    msg = str(e.value)
    assert len(msg.splitlines()) == 1
    assert msg.startswith("layout.device=gpu but Paddle ") and "is CPU-only" in msg and "layout.device=cpu" in msg
    # the same model on the CPU loads
    assert load_predictor("LayoutDetection", "PP-DocLayoutV2", str(layout_dir), "cpu", "layout") is not None


def test_a_failed_load_keeps_its_cause(demo_model_dirs, tmp_path):
    """A folder that passes the file check but holds no loadable graph: the error names the cause and chains it."""
    import shutil

    layout_dir, _ = demo_model_dirs
    broken = tmp_path / "broken"
    shutil.copytree(layout_dir, broken)
    for f in ("inference.json", "inference.pdmodel", "inference.pdiparams"):
        if (broken / f).exists():
            (broken / f).write_bytes(b"not a model")
    with pytest.raises(OcrvlError) as e:
        load_predictor("LayoutDetection", "PP-DocLayoutV2", str(broken), "cpu", "layout")
    assert e.value.__cause__ is not None
    assert type(e.value.__cause__).__name__ in str(e.value)
