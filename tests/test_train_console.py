"""`ocrvl train`'s console: our own lines only (start, a loss line per logged step, stored checkpoints, the
result); the workers' and Ray's output goes to ``<output_dir>.log``."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from ocrvl_ray.train.console import Tail, console_line

REPO = Path(__file__).resolve().parents[1]


def test_console_lines_of_metrics_records(tmp_path):
    assert console_line({"step": 3, "loss": 4.56789, "learning_rate": 0.02}) == \
        "ocrvl train: step 3 loss 4.5679 lr 2.00e-02"
    assert console_line({"step": 4, "loss": 1.0, "checkpoint": "/s/run/checkpoint-4"}) == \
        "ocrvl train: checkpoint stored: /s/run/checkpoint-4"
    assert console_line({"error": "rank 1: RuntimeError: boom"}) == "ocrvl train: worker failed: rank 1: RuntimeError: boom"
    assert console_line({"step": 4, "train_runtime": 3.2}) is None
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1, "loss": 2}\n')
    tail = Tail(str(path))                        # what was there before the run is not repeated
    with open(path, "a") as f:
        f.write('{"step": 2, "loss": 1}\n{"step": 3, "lo')
    assert tail.records() == [{"step": 2, "loss": 1}]
    with open(path, "a") as f:
        f.write('ss": 0.5}\n')
    assert tail.records() == [{"step": 3, "loss": 0.5}]


def test_train_console_is_our_lines_and_the_rest_goes_to_the_log(tmp_path):
    from ocrvl_ray.testing.train import build_tiny_base

    base = build_tiny_base(tmp_path / "base")
    out = tmp_path / "run"
    res = subprocess.run(
        [sys.executable, str(REPO / "jobs" / "train.py"), "num_workers=1", "use_gpu=false",
         "entry=ocrvl_ray.testing.train:tiny_lora_sft", f"model_name_or_path={base}", f"output_dir={out}",
         f"storage_path={tmp_path / 'storage'}", "max_steps=4", "save_steps=2", "logging_steps=1",
         "watch_interval_s=0.5"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env={**__import__("os").environ,
                                                                         "RAY_ADDRESS": ""})
    lines = (res.stdout + res.stderr).strip().splitlines()
    assert res.returncode == 0, lines[-20:]
    log = tmp_path / "run.log"
    assert lines[0] == f"ocrvl train: run: 1 rank(s), entry ocrvl_ray.testing.train:tiny_lora_sft; full log: {log}"
    steps = [int(m.group(1)) for line in lines if (m := re.match(r"ocrvl train: step (\d+) loss \d+\.\d{4}", line))]
    assert steps == [1, 2, 3, 4], lines
    stored = [line for line in lines if line.startswith("ocrvl train: checkpoint stored: ")]
    assert [s.rsplit("/", 1)[1] for s in stored] == ["checkpoint-2", "checkpoint-4"], lines
    assert lines[-1] == f"ocrvl train: done; latest checkpoint {tmp_path / 'storage' / 'run' / 'checkpoint-4'}"
    assert len(lines) == 8 and not any("\x1b[" in line for line in lines), lines
    assert len(log.read_text(errors="replace").splitlines()) > 20       # what used to flood the console
