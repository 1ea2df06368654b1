"""``ocrvl convert-detector``: paddlex's converter called as is on a Paddle-layout checkpoint of a tiny random
PP-DocLayoutV2 (built in .venv-torch), the folder it writes loads in transformers and detects the same."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from ocrvl_ray import cli
from tests.venv_suites import ROOT, TORCH_PYTHON

needs_torch = pytest.mark.skipif(not TORCH_PYTHON.exists(), reason="no .venv-torch; build it with: ./install.sh torch")


def _in_torch(code: str, *args: str) -> str:
    res = subprocess.run([str(TORCH_PYTHON), "-c", code, *args], capture_output=True, text=True, timeout=600,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny-hf") / "v2"
    _in_torch("import sys; from ocrvl_ray.layout.engines.configs import save_random_detector as s; "
              "s(sys.argv[1], 'v2')", str(out))
    return out


def paddle_checkpoint(hf_dir, out_dir):
    """The tiny model as a Paddle checkpoint: paddle.save of its tensors, Linear weights as Paddle's [in, out]."""
    import paddle
    from paddlex.modules.base.weight_converter import _should_transpose
    from safetensors.numpy import load_file

    state = load_file(str(hf_dir / "model.safetensors"))
    out_dir.mkdir()
    paddle.save({k: paddle.to_tensor(np.ascontiguousarray(v.T) if v.ndim == 2 and "bias" not in k
                                     and _should_transpose(k) else v) for k, v in state.items()},
                str(out_dir / "model_state.pdparams"))
    shutil.copy(hf_dir / "config.json", out_dir / "config.json")
    (out_dir / "inference.yml").write_text("Global:\n  model_name: PP-DocLayoutV2\n")
    return state


@needs_torch
def test_converted_folder_has_the_weights_and_detects_the_same(tiny_hf, tmp_path):
    from safetensors.numpy import load_file

    state = paddle_checkpoint(tiny_hf, tmp_path / "paddle")
    assert cli.main(["convert-detector", "--from", str(tmp_path / "paddle"), "--out", str(tmp_path / "hf")]) == 0
    converted = load_file(str(tmp_path / "hf" / "model.safetensors"))
    assert sorted(converted) == sorted(state)
    assert all(converted[k].shape == v.shape and np.array_equal(converted[k], v) for k, v in state.items())
    pre = json.loads((tmp_path / "hf" / "preprocessor_config.json").read_text())
    assert pre["image_processor_type"] == "PPDocLayoutV2ImageProcessor"
    out = _in_torch("""
import json, sys
from ocrvl_ray.layout.engines.transformers_detector import TransformersDetector
from ocrvl_ray.layout.engines.configs import synthetic_page
page = synthetic_page(850, 1100)
a, b = (TransformersDetector(d, threshold=0.0).predict([page])[0] for d in sys.argv[1:])
print(json.dumps([len(a), a == b]))
""", str(tiny_hf), str(tmp_path / "hf"))
    n, same = json.loads(out.strip().splitlines()[-1])
    assert n > 1 and same


def test_convert_detector_user_errors(tmp_path, capsys):
    src = tmp_path / "static"
    src.mkdir()
    (src / "inference.yml").write_text("Global:\n  model_name: PP-DocLayoutV2\n")
    (src / "inference.pdiparams").write_bytes(b"")
    assert cli.main(["convert-detector", "--from", str(src), "--out", str(tmp_path / "o")]) == 2
    assert "no *.pdparams checkpoint (a static export's inference.pdiparams" in capsys.readouterr().err
    (src / "inference.yml").write_text("Global:\n  model_name: PP-DocLayout_plus-L\n")
    assert cli.main(["convert-detector", "--from", str(src), "--out", str(tmp_path / "o")]) == 2
    assert "model 'PP-DocLayout_plus-L' cannot be converted" in capsys.readouterr().err
    (src / "model_state.pdparams").write_bytes(b"")
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "x").write_text("")
    assert cli.main(["convert-detector", "--from", str(src), "--out", str(tmp_path / "o"),
                     "model_name=PP-DocLayoutV2"]) == 2
    assert "exists and is not empty" in capsys.readouterr().err
