"""`ocrvl demo-loop transformers` (docs/quickstart-loop.md), for real, from .venv-torch: the bundled sample -> train
and valid LMDBs (the layout stage run from .venv: its demo detectors are Paddle models) -> a tiny PaddleOCR-VL built
with transformers' model code -> PEFT LoRA steps under TorchTrainer whose loss falls -> merge of the checkpoint's
adapter -> eval of base vs fine-tuned with engine=transformers on the valid LMDB -> the HTML report; a rerun skips
every stage. ~4 minutes on 2 cores."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ocrvl_ray.lmdb.reader import LmdbReader
from ocrvl_ray.testing.demo_loop import finished_stages

REPO = Path(__file__).resolve().parents[2]
LAYOUT_PYTHON = REPO / ".venv" / "bin" / "python"
pytestmark = pytest.mark.skipif(not LAYOUT_PYTHON.exists(), reason="the layout stage runs from .venv; build it with "
                                                                   "./install.sh default")


def demo_loop(run: Path, ray_address: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ocrvl_ray.cli", "demo-loop", "transformers", f"run_dir={run}"],
                          capture_output=True, text=True, timeout=1500, cwd=REPO,
                          env={**os.environ, "RAY_ADDRESS": ray_address})


@pytest.fixture(scope="module")
def loop(ray_address, tmp_path_factory):
    run = tmp_path_factory.mktemp("demo-loop-tf") / "run"
    res = demo_loop(run, ray_address)
    return {"run": run, "res": res, "lines": (res.stdout + res.stderr).strip().splitlines()}


def test_the_loop_closes_on_the_valid_split(loop):
    run, lines = loop["run"], loop["lines"]
    assert loop["res"].returncode == 0, lines[-30:]
    assert f"demo-loop transformers: [layout] from .venv: .venv/bin/ocrvl pipeline {run / 'demo_loop.yaml'} " \
           "stages=[layout]" in lines
    stages = finished_stages(run)
    lmdbs = stages["layout"]["outputs"]["lmdb"]
    # the base: transformers' own model code, hub layout; the train stage's output: a PEFT adapter, and the
    # checkpoint it reported holds one under adapter/, which the merge read
    assert json.loads((run / "base" / "config.json").read_text())["model_type"] == "paddleocr_vl"
    sft = Path(stages["train"]["inputs"]["output_dir"])
    assert sft.parent == run and sft.name.startswith("sft-")
    ckpt = Path(stages["train"]["outputs"]["checkpoint"])
    for folder in (sft, ckpt / "adapter"):
        assert json.loads((folder / "adapter_config.json").read_text())["peft_type"] == "LORA"
        assert (folder / "adapter_model.safetensors").is_file()
    report = json.loads((run / "export" / "merge_report.json").read_text())
    assert report["lora"] == str(ckpt.resolve()) and "llm:lm_head" in report["module_families"]
    assert stages["merge"]["outputs"]["verified"] is True and (run / "export" / "model.safetensors").is_file()
    # eval with engine=transformers: both models on the valid LMDB's first samples, in LMDB order, and the report
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert metrics["run"]["engine"] == "transformers"
    assert [m["kind"] for m in metrics["run"]["models"]] == ["base", "export"]
    preds = pq.read_table(run / "eval" / "predictions.parquet").to_pydict()
    with LmdbReader(lmdbs["valid"]) as r:
        assert preds["reference"] == [r.label(i) for i in range(len(preds["reference"]))]
    assert len(preds["reference"]) == 12 and preds["prediction:base"] != preds["prediction:ft"]
    assert (run / "eval" / "report.html").stat().st_size > 1000
    assert loop["res"].stdout.strip().splitlines()[-1] == \
        f"demo-loop transformers: report {run / 'eval' / 'report.html'}"


def test_the_training_loss_falls(loop):
    [metrics] = loop["run"].glob("sft-*.metrics.jsonl")
    records = [json.loads(line) for line in metrics.read_text().splitlines()]
    curve = [(r["step"], r["loss"]) for r in records if "loss" in r and "checkpoint" not in r]
    assert [s for s, _ in curve] == [5, 10, 15, 20, 25, 30, 35, 40], curve
    first, last = curve[0][1], sum(v for _, v in curve[-3:]) / 3
    assert last < first - 0.7, curve          # from about ln(320) = 5.8 (the byte-level tokenizer) towards 4
    assert f"demo-loop transformers: training loss {first:.3f} (step 5) -> {curve[-1][1]:.3f} (step 40)" in \
        loop["lines"]


def test_a_rerun_skips_every_stage(loop, ray_address):
    res = demo_loop(loop["run"], ray_address)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout + res.stderr
    for stage in ("layout", "train", "merge", "eval"):
        assert f"[{stage}] done before with the same config" in out, out[-3000:]


def test_the_eval_stage_follows_a_transformers_training_unless_told_otherwise():
    from ocrvl_ray.cli.demo_loop import load_demo_config
    from ocrvl_ray.end_to_end import _eval_stage

    cfg = load_demo_config("transformers", ["run_dir=/tmp/x"])
    assert "engine" not in cfg.eval.options and _eval_stage(cfg).options["engine"] == "transformers"
    told = load_demo_config("transformers", ["run_dir=/tmp/x", "eval.options.engine=vllm"])
    assert _eval_stage(told).options["engine"] == "vllm"
    other = load_demo_config("transformers", ["run_dir=/tmp/x", "train.overrides.engine=paddleformers"])
    assert "engine" not in _eval_stage(other).options


def test_started_without_torch_it_is_one_line_naming_the_venv():
    p = subprocess.run([str(LAYOUT_PYTHON), "-m", "ocrvl_ray.cli", "demo-loop", "transformers", "run_dir=/tmp/x"],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert p.returncode == 2 and p.stderr.strip() == (
        "ocrvl demo-loop: error: demo-loop transformers runs from .venv-torch: .venv-torch/bin/ocrvl demo-loop "
        "transformers (build it with: ./install.sh torch)"), p.stderr
