"""`ocrvl demo-loop paddleformers` (docs/quickstart-loop.md), for real, in .venv-paddleformers: the bundled sample ->
train and valid LMDBs -> a tiny PaddleOCR-VL built with PaddleFormers' model code -> LoRA steps whose loss falls ->
merge -> eval of base vs fine-tuned on the valid LMDB -> the HTML report. ~3 minutes on 2 cores."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

if int(version("paddleformers").split(".")[0]) < 1:
    pytest.skip("needs PaddleFormers 1.x: runs in .venv-paddleformers (tests/test_train_paddleformers.py calls it)",
                allow_module_level=True)

import pyarrow.parquet as pq  # noqa: E402

from ocrvl_ray.lmdb.reader import LmdbReader  # noqa: E402
from ocrvl_ray.testing.demo_loop import finished_stages  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def loop(ray_address, tmp_path_factory):
    run = tmp_path_factory.mktemp("demo-loop") / "run"
    res = subprocess.run([sys.executable, "-m", "ocrvl_ray.cli", "demo-loop", "paddleformers", f"run_dir={run}"],
                         capture_output=True, text=True, timeout=1200, cwd=REPO,
                         env={**os.environ, "RAY_ADDRESS": ray_address})
    return {"run": run, "res": res, "lines": (res.stdout + res.stderr).strip().splitlines()}


def test_the_loop_closes_on_the_valid_split(loop):
    run, lines = loop["run"], loop["lines"]
    assert loop["res"].returncode == 0, lines[-30:]
    stages = finished_stages(run)
    lmdbs = stages["layout"]["outputs"]["lmdb"]
    # every sample of the train LMDB with a label became a training row
    with LmdbReader(lmdbs["train"]) as r:
        labelled = sum(bool(r.label(i)) for i in range(len(r)))
    sft = Path(stages["train"]["inputs"]["output_dir"])
    assert sft.parent == run and sft.name.startswith("sft-")                  # one folder per training config
    engine = json.loads((run / f"{sft.name}.data" / "engine.json").read_text())
    assert engine["data"]["rows"] == labelled > 100
    # the base was built with PaddleFormers' own PaddleOCR-VL code, the export merged and verified
    assert json.loads((run / "base" / "config.json").read_text())["model_type"] == "paddleocr_vl"
    assert stages["merge"]["outputs"]["verified"] is True and (run / "export" / "model.safetensors").is_file()
    # eval: both models on the valid LMDB's first samples, in LMDB order, and the HTML report
    preds = pq.read_table(run / "eval" / "predictions.parquet").to_pydict()
    with LmdbReader(lmdbs["valid"]) as r:
        assert preds["reference"] == [r.label(i) for i in range(len(preds["reference"]))]
    assert len(preds["reference"]) == 12 and {"prediction:base", "prediction:ft"} <= set(preds)
    assert (run / "eval" / "report.html").stat().st_size > 1000


def test_the_training_loss_falls(loop):
    [metrics] = loop["run"].glob("sft-*.metrics.jsonl")
    losses = [json.loads(line) for line in metrics.read_text().splitlines()]
    curve = [(r["step"], r["loss"]) for r in losses if "loss" in r and "checkpoint" not in r]
    assert [s for s, _ in curve] == [1, 5, 10, 15, 20, 25, 30, 35, 40], curve     # the first step, then every 5th
    # the labels are random sample words: a tiny random model learns their distribution, from ~ln(vocab) down
    first, last = curve[0][1], sum(v for _, v in curve[-3:]) / 3
    assert last < first - 1.0, curve
    shown = [line for line in loop["lines"] if line.startswith("ocrvl train: step ")]
    assert len(shown) == 9
    assert f"demo-loop paddleformers: training loss {first:.3f} (step 1) -> {curve[-1][1]:.3f} (step 40)" in \
        loop["lines"]


def test_the_console_is_short(loop):
    lines = loop["lines"]
    assert not [line for line in lines if "\x1b[" in line], "ANSI colours on the console"
    assert len(lines) < 90, "\n".join(lines)
    last = loop["res"].stdout.strip().splitlines()[-1]
    assert last == f"demo-loop paddleformers: report {loop['run'] / 'eval' / 'report.html'}"
