"""What the Ray Train wrapper costs around a training loop, side by side in one run.

The same tiny LoRA fine-tune (``ocrvl_ray.testing.train:tiny_lora_sft``, 12 steps, 3 checkpoints) runs
  plain       in one fresh Python process, no Ray, no collective
  ray x1      under ``ocrvl train``'s DataParallelTrainer, 1 worker (Ray already started)
  ray x2      the same with 2 workers on gloo
and the checkpoint report latency (file written -> reported to storage) is read from ``metrics_log``.

    .venv/bin/python bench/train_wrapper.py
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")

ENTRY = "ocrvl_ray.testing.train:tiny_lora_sft"


def plain(base: Path, out: Path) -> float:
    code = ("import sys; from ocrvl_ray.testing.train import tiny_lora_sft; "
            f"tiny_lora_sft({{'model_name_or_path': {str(base)!r}, 'output_dir': {str(out)!r}}})")
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                   cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return time.perf_counter() - t


def on_ray(base: Path, root: Path, workers: int) -> tuple[float, list[float]]:
    from ocrvl_ray.train.config import load_train_config
    from ocrvl_ray.train.run import fit

    out, log = root / f"ray{workers}", root / f"metrics{workers}.jsonl"
    ours, args = load_train_config(None, [
        f"num_workers={workers}", "use_gpu=false", f"entry={ENTRY}", f"model_name_or_path={base}",
        f"output_dir={out}", f"storage_path={root / 'storage'}", f"run_name=bench{workers}",
        "max_failures=0", "watch_interval_s=0.5", f"metrics_log={log}"], env={})
    t = time.perf_counter()
    fit(ours, args)
    wall = time.perf_counter() - t
    latency = []
    for line in log.read_text().splitlines():
        rec = json.loads(line)
        if "checkpoint" in rec:
            written = (out / f"checkpoint-{rec['step']}" / "scheduler.pdparams").stat().st_mtime
            latency.append(rec["time"] - written)
    return wall, latency


def main() -> None:
    import ray

    from ocrvl_ray.testing.train import build_tiny_base

    root = Path(tempfile.mkdtemp(prefix="ocrvl-bench-train-"))
    base = build_tiny_base(root / "base")
    t_plain = plain(base, root / "plain")
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    t1, lat1 = on_ray(base, root, 1)
    t2, lat2 = on_ray(base, root, 2)
    ray.shutdown()
    print(f"plain {t_plain:.1f} s | ray x1 {t1:.1f} s | ray x2 {t2:.1f} s | "
          f"report latency x2 {[round(x, 2) for x in lat2]} s  (load {os.getloadavg()[0]:.1f}, dir {root})")
    print(f"FIGURE train_plain_process {t_plain:.1f} s")
    print(f"FIGURE train_ray_1worker_fit {t1:.1f} s")
    print(f"FIGURE train_ray_2workers_fit {t2:.1f} s")
    print(f"RATIO train_ray_1worker_over_plain {t1 / t_plain:.2f}")
    print(f"FIGURE checkpoint_report_latency_median {statistics.median(lat1 + lat2):.2f} s")


if __name__ == "__main__":
    main()
