"""``ocrvl eval`` loads every model folder our own tools write, and refuses a wrong one before Ray starts.

- a tiny PaddleOCR-VL 1.5 base saved by PaddleFormers 1.2 (built here in ``.venv-paddleformers``: no SigLIP
  pooling head, a ``tokenizer.json`` and no sentencepiece model), the same base + a LoRA in memory, and the
  ``ocrvl merge`` export of that LoRA: real paddlex model class, real Ray Data actors, a real LMDB;
- wrong folders (missing, not PaddleOCR-VL, tensors missing, a shard missing, no tokenizer) and an unwritable
  ``--out``: one line, exit 2, Ray never started;
- a folder that passes the checks but fails inside the Ray actor: one line naming the model and the log file,
  no ANSI codes, the traceback in ``<out>/eval.log``.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ocrvl_ray.cli.eval import main
from ocrvl_ray.testing.sink import tiny_eval_lmdb
from tests.venv_suites import PF_PYTHON

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pf_base(tmp_path_factory) -> Path:
    """A tiny PaddleOCR-VL 1.5 base written by PaddleFormers 1.2's own ``save_pretrained`` (offline)."""
    if not PF_PYTHON.is_file():
        pytest.skip(f"{PF_PYTHON} is missing (the PaddleFormers 1.x environment)")
    out = tmp_path_factory.mktemp("pf") / "PaddleOCR-VL-1.5-tiny"
    code = ("import sys; from ocrvl_ray.demo.tiny_paddleocr_vl import build_tiny_paddleocr_vl as b; "
            "b(sys.argv[1], 'v1.5')")
    p = subprocess.run([str(PF_PYTHON), "-c", code, str(out)], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    from ocrvl_ray.testing.tiny_vl import build_tiny_ocrvl

    return build_tiny_ocrvl(tmp_path_factory.mktemp("vl") / "base")


@pytest.fixture
def no_ray(monkeypatch):
    """A tripwire: the command must fail before it starts Ray."""
    import ray

    import ocrvl_ray.core.runtime as runtime

    was_up = ray.is_initialized()

    def tripped(*a, **k):
        raise AssertionError("Ray was started")
    monkeypatch.setattr(runtime, "init_ray", tripped)
    yield
    assert ray.is_initialized() == was_up


def _tensor_names(folder: Path) -> set[str]:
    from ocrvl_ray.export.st import TensorSet

    return set(TensorSet.open(folder).tensors)


def test_paddleformers_base_lacks_only_the_unused_vision_head(pf_base, tiny_base):
    """Why the paddlex class refused it: PaddleFormers 1.2 builds and saves no SigLIP pooling head."""
    from ocrvl_ray.eval.models import has_vision_head

    gone = _tensor_names(tiny_base) - _tensor_names(pf_base)
    assert gone and all(n.startswith("visual.vision_model.head.") or ".encoder.layers.1." in n for n in gone)
    assert not has_vision_head(str(pf_base)) and has_vision_head(str(tiny_base))
    assert not (pf_base / "tokenizer.model").exists() and (pf_base / "tokenizer.json").is_file()


def test_eval_loads_a_paddleformers_base_its_lora_and_the_merge_export(pf_base, tmp_path):
    """As a user runs it (its own process and local Ray): exit 0, our short lines on the console, Ray's
    output (Ray Data's progress logs included) in ``<out>/eval.log``."""
    from ocrvl_ray.export.merge import merge_lora
    from ocrvl_ray.export.st import TensorSet
    from ocrvl_ray.testing.export import is_linear, write_adapter

    base = tmp_path / "base"
    shutil.copytree(pf_base, base)
    spec = [(t.name, tuple(t.shape)) for t in TensorSet.open(base).tensors.values()]
    lora = write_adapter(tmp_path / "lora", spec, r=4, lora_alpha=8, dtype="float32", std=0.3,
                         select=lambda n, s: is_linear(n, s) and n != "lm_head.weight")
    export = merge_lora(base, lora, tmp_path / "export", log=lambda s: None).out
    lmdb = tiny_eval_lmdb(tmp_path / "valid_layout.lmdb")
    out = tmp_path / "eval"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    p = subprocess.run([sys.executable, "-m", "ocrvl_ray.cli", "eval", "--model", f"base={base}",
                        "--model", f"ft={base}+{lora}", "--model", f"merged={export}", "--data", str(lmdb),
                        "--out", str(out), "limit=2", "max_new_tokens=4", "bootstrap=20"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    t = pq.read_table(out / "predictions.parquet").to_pydict()
    assert all(0 < k <= 4 for m in ("base", "ft", "merged") for k in t[f"tokens:{m}"])
    assert t["prediction:ft"] == t["prediction:merged"]       # in-memory LoRA == merged export
    m = json.loads((out / "metrics.json").read_text())
    assert [x["model_version"] for x in m["run"]["models"]] == ["v1.5"] * 3
    lines = p.stdout.splitlines()
    assert all(ln.startswith(("eval: ", "base:", "ft:", "merged:", "ft vs", "merged vs", "predictions:",
                              "metrics:", "report:")) for ln in lines), lines
    assert not p.stderr.strip() and len(lines) <= 20, (p.stdout, p.stderr[-3000:])
    assert "Dataset" in (out / "eval.log").read_text(errors="replace")


def _break(folder: Path, how: str) -> None:
    if how == "no tensor":   # drop one LLM weight from the file (a truncated copy)
        from safetensors.numpy import load_file, save_file

        f = folder / "model.safetensors"
        t = load_file(str(f))
        del t["model.layers.1.mlp.up_proj.weight"]
        save_file(t, str(f), metadata={"format": "pt"})
    elif how == "no tokenizer":
        (folder / "tokenizer.model").unlink()
    elif how == "no shard":
        (folder / "model.safetensors").rename(folder / "model-00001-of-00002.safetensors")
        names = _tensor_names(folder)
        (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
            n: f"model-0000{1 + (i % 2)}-of-00002.safetensors" for i, n in enumerate(sorted(names))}}))
    elif how == "no config":
        (folder / "config.json").unlink()


@pytest.mark.parametrize("how, needle", [
    ("missing", "does not exist or is not a folder"),
    ("no config", "is not a model folder: no config.json"),
    ("no tensor", "1 tensor(s) missing (model.layers.1.mlp.up_proj.weight)"),
    ("no shard", "model-00002-of-00002.safetensors is listed in the index but missing"),
    ("no tokenizer", "has no tokenizer.model or tokenizer.json"),
])
def test_a_broken_model_folder_is_one_line_before_ray(tiny_base, tmp_path, capsys, no_ray, how, needle):
    folder = tmp_path / "model"
    if how != "missing":
        shutil.copytree(tiny_base, folder)
        _break(folder, how)
    lmdb = tiny_eval_lmdb(tmp_path / "v.lmdb")
    t0 = time.monotonic()
    assert main(["--model", f"m={folder}", "--data", str(lmdb), "--out", str(tmp_path / "o")]) == 2
    assert time.monotonic() - t0 < 10
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and str(folder) in err, err


def test_a_model_that_is_not_paddleocr_vl_is_one_line_before_ray(tmp_path, capsys, no_ray):
    """The tiny Qwen2 that ``tiny_lora_sft`` (``ocrvl_ray.testing.train``) fine-tunes: a folder our tools write,
    but no OCR model."""
    from ocrvl_ray.testing.train import build_tiny_base

    qwen = build_tiny_base(tmp_path / "qwen2")
    lmdb = tiny_eval_lmdb(tmp_path / "v.lmdb")
    capsys.readouterr()
    assert main(["--model", str(qwen), "--data", str(lmdb), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is a 'qwen2' model" in err and "not PaddleOCR-VL" in err, err


def test_out_that_cannot_be_written_is_one_line_before_ray(tiny_base, tmp_path, capsys, no_ray):
    (tmp_path / "file").write_text("x")
    lmdb = tiny_eval_lmdb(tmp_path / "v.lmdb")
    assert main(["--model", str(tiny_base), "--data", str(lmdb), "--out", str(tmp_path / "file" / "eval")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is a file, not a folder" in err, err


def test_a_failure_inside_the_ray_actor_is_one_line_and_names_the_log(tiny_base, tmp_path, capsys):
    """config.json disagrees with the weights' shapes (names match: the checks pass), so loading fails in the
    actor; the console and the pipeline's manifest get one line without ANSI codes, the log the traceback."""
    from ocrvl_ray.core.config import load_config
    from ocrvl_ray.core.errors import OcrvlError
    from ocrvl_ray.end_to_end import PipelineConfig, run_pipeline

    bad = tmp_path / "bad"
    shutil.copytree(tiny_base, bad)
    cfg = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**cfg, "intermediate_size": cfg["intermediate_size"] * 2}))
    lmdb = tiny_eval_lmdb(tmp_path / "v.lmdb")
    pcfg = load_config(PipelineConfig, overrides={
        "run_dir": str(tmp_path / "run"), "stages": ["eval"], "merge": {"base": str(tiny_base)},
        "eval": {"export": str(bad), "data": str(lmdb), "options": {"limit": 1, "max_new_tokens": 2}}}, env={})
    with pytest.raises(OcrvlError) as e:
        run_pipeline(pcfg, log=lambda s: None)
    log = tmp_path / "run" / "eval" / "eval.log"
    assert "model ft" in str(e.value) and "Error(s) in loading state_dict" in str(e.value)
    assert f"full log: {log}" in str(e.value) and "\n" not in str(e.value)
    assert "Traceback" in log.read_text(errors="replace")
    error = json.loads((tmp_path / "run" / "run_manifest.json").read_text())["stages"]["eval"]["error"]
    assert "\x1b" not in error and "\n" not in error and "Error(s) in loading state_dict" in error, error
