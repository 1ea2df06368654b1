"""Memory of the layout detector per batch size: a CPU proxy for the GPU figure (no GPU here).

    .venv/bin/python bench/detector_memory.py [--batches 1,2,4] [--size 1024x724] [--workdir /tmp]

Builds a random-weight PP-DocLayoutV2 at paddlex's full-size config (``PPDocLayoutV2Config`` defaults,
53.6 M params, ``model.safetensors``: the ``paddle_dynamic`` engine). In a fresh process per run it loads
``LayoutDetectStage`` (our loading and predict path), runs a batch of 1 as warm-up, notes the peak RSS, then
predicts one batch of ``b`` pages (``--size`` is the detector input the decode stage makes from a 2480x3508
scan) and notes how far the peak grew. Once more at batch 2 with autograd on, as paddlex's dynamic engine
runs when called bare. Fp32 on CPU: a GPU run holds the same tensors, plus its allocator's cache and
kernels' workspaces, and bf16 halves the activations; measure with ``nvidia-smi`` before raising the batch.

Last lines: ``FIGURE detector_growth_mib_batch_<b>`` (peak growth over the loaded, warmed detector),
``FIGURE detector_mib_per_page`` (slope over the batches), ``FIGURE detector_loaded_rss_mib``,
``FIGURE detector_cpu_s_per_page``, ``RATIO detector_autograd_on_vs_off_batch_2`` (growth).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def child(model_dir: str, batch: int, size: tuple[int, int], autograd: bool) -> None:
    import numpy as np
    import paddle

    from ocrvl_ray.layout.config import LayoutModelConfig
    from ocrvl_ray.layout.stages.detect_layout import LayoutDetectStage

    det = LayoutDetectStage(LayoutModelConfig(model_dir=model_dir))
    det.setup()
    if autograd:   # paddlex's engine as called bare: every predict runs with autograd on
        bare = det.model.predict

        def predict(*a, **kw):
            with paddle.enable_grad():
                return bare(*a, **kw)
        det.model = type("Bare", (), {"predict": staticmethod(predict)})()
    rng = np.random.default_rng(0)
    page = lambda: rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)   # noqa: E731
    det._predict({"det_image": [page()]}, [0])
    loaded = peak_rss_mib()
    t = time.perf_counter()
    boxes = det._predict({"det_image": [page() for _ in range(batch)]}, list(range(batch)))
    secs = time.perf_counter() - t
    assert not any(isinstance(b, Exception) for b in boxes), boxes
    print(json.dumps({"loaded": loaded, "growth": peak_rss_mib() - loaded, "secs": secs}))


def run(model_dir: Path, batch: int, size: str, autograd: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", str(model_dir), "--batches", str(batch), "--size", size]
    out = subprocess.run(cmd + (["--autograd"] if autograd else []), capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", default="1,2,4")
    ap.add_argument("--size", default="1024x724", help="detector input WxH (a 2480x3508 scan reduced to 1024 px)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--autograd", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    if args.child:
        return child(args.child, int(args.batches), size, args.autograd)

    from ocrvl_ray.testing.models import build_tiny_real_layout_model

    batches = [int(b) for b in args.batches.split(",")]
    with tempfile.TemporaryDirectory(prefix="ocrvl-bench-detmem-", dir=args.workdir) as tmp:
        model = build_tiny_real_layout_model(Path(tmp) / "pp-doclayoutv2-full", full_size=True)
        print(f"full-size random PP-DocLayoutV2 at {model}; input {size[0]}x{size[1]}; load average "
              f"{os.getloadavg()[0]:.1f}; {os.cpu_count()} cores", flush=True)
        res = {}
        for b in batches:
            res[b] = run(model, b, args.size, autograd=False)
            print(f"batch {b}: loaded {res[b]['loaded']:.0f} MiB, +{res[b]['growth']:.0f} MiB, "
                  f"{res[b]['secs']:.1f} s", flush=True)
        on = run(model, 2, args.size, autograd=True)
        off = res[2] if 2 in res else run(model, 2, args.size, autograd=False)
        print(f"batch 2 with autograd on: +{on['growth']:.0f} MiB, {on['secs']:.1f} s", flush=True)
    n = len(batches)
    mean_b = sum(batches) / n
    mean_g = sum(res[b]["growth"] for b in batches) / n
    var = sum((b - mean_b) ** 2 for b in batches)
    slope = sum((b - mean_b) * (res[b]["growth"] - mean_g) for b in batches) / var if var else float("nan")
    for b in batches:
        print(f"FIGURE detector_growth_mib_batch_{b} {res[b]['growth']:.0f} MiB")
    print(f"FIGURE detector_mib_per_page {slope:.0f} MiB")
    print(f"FIGURE detector_loaded_rss_mib {min(r['loaded'] for r in res.values()):.0f} MiB")
    print(f"FIGURE detector_cpu_s_per_page {sum(r['secs'] for r in res.values()) / sum(batches):.2f} s")
    print(f"RATIO detector_autograd_on_vs_off_batch_2 {on['growth'] / max(1.0, off['growth']):.2f}")


if __name__ == "__main__":
    main()
