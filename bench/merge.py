"""Streaming LoRA merge vs the I/O floor and vs an in-memory merge, on a full-size synthetic PaddleOCR-VL.

Builds the 620 real tensors at their real HF shapes (bf16, ~1.9 GB) and a rank-8 adapter on every Linear,
then times, each in its own subprocess (so peak RSS is per method):
  io_floor  plain chunked read + write (+ fsync) of the same safetensors bytes
  merge     ocrvl's streaming merge (ocrvl_ray.export.merge.merge_lora), incl. hashing, support files, report
  inmemory  load every tensor, merge whole tensors, save (what a notebook does)
io_floor and merge run in ``--reps`` alternating repetitions (medians), the in-memory merge once.
Last lines: FIGURE io_floor_cpu / merge_cpu / inmemory_cpu (CPU seconds, robust to a busy machine), RATIO
merge_vs_io_floor (wall), FIGURE merge_peak_rss, RATIO inmemory_vs_io_floor, FIGURE inmemory_peak_rss.

    .venv/bin/python bench/merge.py [--workdir /tmp] [--model DIR] [--reps 3] [--no-inmemory]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM). Unlike ru_maxrss it does not inherit the parent's peak
    across fork+exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def child(mode: str, work: Path) -> None:
    """Run one method; print a JSON line with wall seconds and this process's peak RSS."""
    import numpy as np

    base, lora, out = work / "base", work / "lora", work / f"out_{mode}"
    shutil.rmtree(out, ignore_errors=True)
    t0, c0 = time.perf_counter(), time.process_time()
    if mode == "io_floor":
        out.mkdir()
        buf = bytearray(64 * 1024 * 1024)
        with open(base / "model.safetensors", "rb") as src, open(out / "model.safetensors", "wb") as dst:
            while n := src.readinto(buf):
                dst.write(memoryview(buf)[:n])
            dst.flush()
            os.fsync(dst.fileno())
    elif mode == "merge":
        from ocrvl_ray.export.merge import merge_lora

        merge_lora(base, lora, out, log=lambda s: None)
    elif mode == "inmemory":
        from ocrvl_ray.export.adapter import load_adapter, pair_adapter
        from ocrvl_ray.export.st import TensorSet, read_tensor, save_file

        ts = TensorSet.open(base)
        tensors = {name: read_tensor(info) for name, info in ts.tensors.items()}   # the whole model in RAM
        for p in pair_adapter(load_adapter(lora), ts):
            w = tensors[p.base_key]                                                   # [out, in]
            delta = p.B.astype(np.float32).T @ p.A.astype(np.float32).T               # (A @ B)ᵀ [out, in]
            tensors[p.base_key] = (w.astype(np.float32) + p.scaling * delta).astype(w.dtype)
        out.mkdir()
        save_file(tensors, out / "model.safetensors")
    else:
        raise SystemExit(f"unknown mode {mode}")
    secs = time.perf_counter() - t0
    cpu = time.process_time() - c0
    rss_mib = peak_rss_mib()
    shutil.rmtree(out, ignore_errors=True)
    print(json.dumps({"mode": mode, "seconds": secs, "cpu_seconds": cpu, "peak_rss_mib": rss_mib}))


def run_child(mode: str, work: Path) -> dict:
    res = subprocess.run([sys.executable, __file__, "--child", mode, "--workdir", str(work)],
                         capture_output=True, text=True, check=True)
    r = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"{mode:<9} {r['seconds']:7.2f} s wall {r['cpu_seconds']:7.2f} s CPU   peak RSS {r['peak_rss_mib']:8.0f} MiB",
          flush=True)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=tempfile.gettempdir())
    ap.add_argument("--model", default=None, help="folder for base/ and lora/: reused when present, kept after")
    ap.add_argument("--reps", type=int, default=3, help="alternating io_floor/merge repetitions (medians)")
    ap.add_argument("--no-inmemory", action="store_true")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, Path(args.workdir))

    from ocrvl_ray.testing import export as sy

    work = Path(args.model) if args.model else Path(tempfile.mkdtemp(prefix="ocrvl-bench-merge-", dir=args.workdir))
    load0 = os.getloadavg()[0]
    try:
        t0 = time.perf_counter()
        spec = sy.model_spec()                       # 620 tensors, real shapes, HF layout
        if not (work / "lora" / "lora_config.json").is_file():
            sy.write_base(work / "base", spec, pool=1 << 24)  # bf16; weights tiled from 16M random values
            sy.write_adapter(work / "lora", spec, r=8, lora_alpha=16)
        size = (work / "base" / "model.safetensors").stat().st_size
        n_lin = sum(sy.is_linear(n, s) for n, s in spec)
        print(f"base {size / 2**30:.2f} GiB ({len(spec)} tensors, adapter on {n_lin} Linear weights) "
              f"ready in {time.perf_counter() - t0:.1f} s", flush=True)
        floors, merges = [], []
        for rep in range(args.reps):                 # alternate, so drifting load hits both alike
            pair = ("io_floor", "merge") if rep % 2 == 0 else ("merge", "io_floor")
            for mode in pair:
                (floors if mode == "io_floor" else merges).append(run_child(mode, work))
        inmem = None if args.no_inmemory else run_child("inmemory", work)
    finally:
        if not args.model:
            shutil.rmtree(work, ignore_errors=True)
    med = statistics.median
    floor_s, merge_s = med(r["seconds"] for r in floors), med(r["seconds"] for r in merges)
    print(f"load average: {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
          f"({os.cpu_count()} cores: wall-time ratios grow with load); medians of {args.reps} alternating runs")
    print(f"FIGURE io_floor_cpu {med(r['cpu_seconds'] for r in floors):.1f} s")
    print(f"FIGURE merge_cpu {med(r['cpu_seconds'] for r in merges):.1f} s")
    print(f"RATIO merge_vs_io_floor {merge_s / floor_s:.2f}")
    print(f"FIGURE merge_peak_rss {max(r['peak_rss_mib'] for r in merges):.0f} MiB")
    if inmem:
        print(f"FIGURE inmemory_cpu {inmem['cpu_seconds']:.1f} s")
        print(f"RATIO inmemory_vs_io_floor {inmem['seconds'] / floor_s:.2f}")
        print(f"FIGURE inmemory_peak_rss {inmem['peak_rss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
