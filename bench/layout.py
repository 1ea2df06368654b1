"""Layout pipeline throughput against what the machine's cores can do, side by side in one run.

    python bench/layout.py [--pages 160] [--size 2480x3508] [--detector standin|demo|real] [--reps 3]

Pages: generated sample pages at the real AI-Hub scan size (2480x3508 JPEG by default), prepared untimed.
Detector (``--detector``):
  standin  (default) a stand-in that sleeps ``--detector-ms`` per batch and returns the template's boxes:
           it costs no CPU, as a GPU detector would, so every CPU cycle measured is outside the detector
  demo     the scripted tiny paddle models (paddlex pre/post-processing on the CPU)
  real     a tiny random-weight real-architecture PP-DocLayoutV2 (realistic CPU compute per page)
Measured, every method with its models loaded outside its timer:
  sequential  one process, batch after batch through the job's own stage objects (``layout.job.stages``:
              decode -> layout -> table crops -> cells -> compose) into an ``LmdbWriter``; its process CPU time
              per page is ``cpu_ms_per_page_outside_detector`` (with the stand-in only)
  pipeline    the job's own path: ``layout.job.run_split`` (what ``ocrvl layout`` runs per split: the sink,
              the resume filter, the Ray Data graph written through ``LmdbSink``/``write_lmdb`` with its
              byte-sized write tasks, the report) on a local Ray with ``--cores`` CPUs, run complete on N/2 and
              on N pages: the steady rate is (N - N/2) / (T_N - T_N/2), so the start-up (actor pools, ramp)
              cancels out and is reported apart (T_N - N / rate); every LMDB is read back and checked
  detector    (demo/real only) the same LayoutDetectStage class over the same decoded detector inputs
Both hand-offs (``bytes``, ``array``) are run in ``--reps`` alternating repetitions; figures are medians.
``RATIO pipeline_vs_cpu_bound`` = steady pages/s / (cores x 1000 / CPU core-ms per page), default hand-off.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

HANDOFFS = ("bytes", "array")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=160,
                    help="pages per run; the steady window must dwarf the ramp (64 pages overstate it by ~25 %%)")
    ap.add_argument("--size", default="2480x3508")
    ap.add_argument("--detector", "--model", choices=("standin", "demo", "real"), default="standin")
    ap.add_argument("--detector-ms", type=float, default=25.0, help="stand-in: wall ms per detector batch")
    ap.add_argument("--batch", type=int, default=None, help="decode/layout/cells/compose batch size "
                                                            "(default: the config's)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--cores", type=int, default=os.cpu_count())
    ap.add_argument("--actor-cpus", type=float, default=None,
                    help="detector actors' num_cpus (default: the config's; 0 for the stand-in, as on a GPU)")
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))

    from ocrvl_ray.core.config import load_config
    from ocrvl_ray.demo.models import demo_models
    from ocrvl_ray.demo.sample import make_sample_dataset
    from ocrvl_ray.ingest.prepare import PrepareConfig, prepare
    from ocrvl_ray.layout.config import LayoutConfig

    work = Path(tempfile.mkdtemp(prefix="bench-layout-"))
    try:
        t = time.perf_counter()
        data = make_sample_dataset(work / "ds", n_pages=args.pages, seed=11, size=size, image_format="jpeg")
        manifest = work / "manifest.parquet"
        prepare(PrepareConfig(dataset="ocr_public", labels=[data["labels_dir"]], images=[data["images_dir"]],
                              out=str(manifest), quiet=True), use_ray=False)
        layout_dir, cell_dir = demo_models(work / "models")
        if args.detector == "real":
            from ocrvl_ray.testing.models import build_tiny_real_layout_model

            layout_dir = build_tiny_real_layout_model(work / "real-layout")
        print(f"{args.pages} pages of {size[0]}x{size[1]} JPEG generated in {time.perf_counter() - t:.0f} s; "
              f"detector: {args.detector}; cores: {args.cores}", flush=True)
        over = {"manifest": str(manifest), "progress": False, "report_html": False,
                "layout.model_dir": str(layout_dir), "cells.model_dir": str(cell_dir)}
        standin = args.detector == "standin"
        actor_cpus = 0.0 if standin and args.actor_cpus is None else args.actor_cpus
        if actor_cpus is not None:      # the stand-in is a GPU detector: its actors take no CPU slot by default,
            over.update({"layout.num_cpus": actor_cpus, "cells.num_cpus": actor_cpus})   # as actor_cpus() gives GPUs
        if args.batch:
            over.update({"layout.batch_size": args.batch, "cells.batch_size": args.batch,
                         "decode_batch_size": args.batch, "compose_batch_size": args.batch})

        def cfg(**extra) -> LayoutConfig:
            return load_config(LayoutConfig, overrides=[f"{k}={v}" for k, v in {**over, **extra}.items()], env={})

        default_handoff = cfg().handoff
        batch_s = args.detector_ms / 1000
        n = args.pages

        from ocrvl_ray.core.runtime import init_ray

        t = time.perf_counter()
        init_ray(num_cpus=args.cores)
        import ray.data

        ray.data.DataContext.get_current().enable_progress_bars = False
        print(f"ray.init {time.perf_counter() - t:.1f} s (not in any figure)", flush=True)
        with _detectors(standin, batch_s):
            run_stream(cfg(output=str(work / "warm.lmdb"), limit=2))  # Ray's worker processes, once
            seq = {h: [] for h in HANDOFFS}
            pipe = {h: [] for h in HANDOFFS}
            for rep in range(args.reps):
                order = HANDOFFS if rep % 2 == 0 else HANDOFFS[::-1]
                for h in order:
                    seq[h].append(sequential(cfg(handoff=h, output=str(work / f"seq-{rep}-{h}.lmdb")),
                                             manifest, standin, batch_s))
                    half = run_stream(cfg(handoff=h, output=str(work / f"half-{rep}-{h}.lmdb"), limit=n // 2))
                    full = run_stream(cfg(handoff=h, output=str(work / f"pipe-{rep}-{h}.lmdb")))
                    pipe[h].append(steady(half, full))
                    s, p = seq[h][-1], pipe[h][-1]
                    print(f"rep {rep} handoff={h:<5} sequential {n / s['wall']:6.2f} pages/s "
                          f"({s['cpu_ms']:.1f} core-ms/page) | pipeline start-up {p['startup']:5.2f} s, "
                          f"steady {p['rate']:6.2f} pages/s", flush=True)
                    shutil.rmtree(work / f"seq-{rep}-{h}.lmdb", ignore_errors=True)
                    shutil.rmtree(work / f"pipe-{rep}-{h}.lmdb", ignore_errors=True)
                    shutil.rmtree(work / f"half-{rep}-{h}.lmdb", ignore_errors=True)
        det_rate = bare_detector(cfg(), manifest) if not standin else None
    finally:
        shutil.rmtree(work, ignore_errors=True)

    unusable = sum(not math.isfinite(p["rate"]) for ps in pipe.values() for p in ps)
    if unusable:
        print(f"{unusable} pipeline repetition(s) without a steady estimate (N pages not slower than N/2), "
              f"left out of the medians")
    print(f"\nmedians of {args.reps} alternating repetitions; load average now {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores")
    for h in HANDOFFS:
        cpu = med(s["cpu_ms"] for s in seq[h])
        rate = med(p["rate"] for p in pipe[h])
        bound = args.cores * 1000 / cpu
        print(f"handoff={h:<5} sequential {n / med(s['wall'] for s in seq[h]):6.2f} pages/s, CPU {cpu:6.1f} "
              f"core-ms/page -> CPU bound {bound:6.2f} pages/s on {args.cores} cores; pipeline steady "
              f"{rate:6.2f} pages/s ({rate / bound:.2f} of the bound), start-up {med(p['startup'] for p in pipe[h]):.2f} s")
    h = default_handoff
    cpu = med(s["cpu_ms"] for s in seq[h])
    rate = med(p["rate"] for p in pipe[h])
    print(f"FIGURE pipeline_pages_per_s {rate:.2f} pages/s (steady state, handoff={h})")
    print(f"FIGURE pipeline_startup_s {med(p['startup'] for p in pipe[h]):.2f} s")
    print(f"RATIO pipeline_vs_sequential {rate * med(s['wall'] for s in seq[h]) / n:.3f}")
    other = HANDOFFS[1 - HANDOFFS.index(h)]
    print(f"RATIO handoff_{h}_vs_{other} {rate / med(p['rate'] for p in pipe[other]):.3f} (steady pages/s)")
    if standin:
        print(f"FIGURE cpu_ms_per_page_outside_detector {cpu:.1f} ms (handoff={h}, {size[0]}x{size[1]})")
        print(f"RATIO pipeline_vs_cpu_bound {rate / (args.cores * 1000 / cpu):.3f}")
    else:
        print(f"FIGURE bare_detector_pages_per_s {det_rate:.2f} pages/s")
        print(f"RATIO pipeline_vs_bare_detector {rate / det_rate:.3f}")


def _detectors(standin: bool, batch_s: float):
    """The stand-ins in the graph and in ``sequential``; nothing to swap with real models."""
    from ocrvl_ray.testing.standin import use_standins

    return use_standins(batch_s) if standin else contextlib.nullcontext()


def _batches(manifest: Path, size: int):
    import pyarrow.parquet as pq

    table = pq.read_table(manifest)
    for start in range(0, table.num_rows, size):
        chunk = table.slice(start, size)
        yield {c: chunk.column(c).to_numpy(zero_copy_only=False) for c in chunk.column_names}


def sequential(cfg, manifest: Path, standin: bool, batch_s: float) -> dict:
    """All steps in one process (the original's design), through the job's stage objects; wall s and process
    CPU ms per page."""
    from ocrvl_ray.layout.job import stages
    from ocrvl_ray.lmdb import LmdbWriter
    from ocrvl_ray.lmdb.sink import iter_pages

    graph = stages(cfg, None)
    for stage in graph:
        stage.setup()
    pages = 0
    t0, c0 = time.perf_counter(), time.process_time()
    with LmdbWriter(cfg.output) as writer:
        for batch in _batches(manifest, cfg.decode_batch_size):
            for stage in graph:
                batch = stage.process_batch(batch)
            writer.write_pages(iter_pages([batch]))
            pages += batch.num_rows
    cpu = time.process_time() - c0
    check_all_ok(cfg.output, pages)
    return {"wall": time.perf_counter() - t0, "cpu_ms": 1000 * cpu / max(1, pages) if standin else float("nan")}


def run_stream(cfg) -> dict:
    """One complete run of the job's own path (``run_split``: sink, graph, ``write_lmdb``); wall s and pages.
    Planning (``resolve_inputs``, ``plan_splits``: preflight, model identities) is outside the timer."""
    from ocrvl_ray.layout.job import plan_splits, resolve_inputs, run_split

    cfg, manifest_path = resolve_inputs(cfg)
    plan, = plan_splits(cfg, manifest_path)
    t0 = time.perf_counter()
    report = run_split(cfg, manifest_path, plan)
    wall = time.perf_counter() - t0
    check_all_ok(cfg.output, report["pages_processed"])
    return {"wall": wall, "pages": report["pages_processed"]}


def steady(half: dict, full: dict) -> dict:
    """Steady rate from two complete runs of N/2 and N pages (same start-up, so it cancels out):
    (N - N/2) / (T_N - T_N/2); start-up = T_N - N / rate. Robust to bursty output, unlike timing the
    outputs of one run (work done before the first output would count as start-up). A repetition whose N-page
    run was not slower than its N/2-page run (a load burst on a shared machine) has no estimate: NaN, left out
    of the medians."""
    if full["wall"] <= half["wall"]:
        return {"startup": math.nan, "rate": math.nan}
    rate = (full["pages"] - half["pages"]) / (full["wall"] - half["wall"])
    return {"startup": max(0.0, full["wall"] - full["pages"] / rate), "rate": rate}


def med(values) -> float:
    """Median of the finite values (NaN when there are none)."""
    finite = [v for v in values if math.isfinite(v)]
    return statistics.median(finite) if finite else math.nan


def check_all_ok(output: str, pages: int) -> None:
    """A figure is only honest if every page went all the way through (no detector or compose errors)."""
    from ocrvl_ray.lmdb import LmdbReader

    with LmdbReader(output) as r:
        markers = dict(r.markers())
        samples = len(r)
    bad = {m["status"]: m.get("detail", "") for m in markers.values() if m["status"] != "ok"}
    if len(markers) != pages or bad or samples < pages:
        raise SystemExit(f"bench: {output}: {len(markers)} of {pages} pages, {samples} samples, "
                         f"not ok: {bad or 'none'}; figures would not measure the whole pipeline")


def bare_detector(cfg, manifest: Path) -> float:
    """The LayoutDetectStage alone (same class, per-class thresholds) over decoded detector inputs; pages/s."""
    from ocrvl_ray.layout.stages.decode import DecodeStage
    from ocrvl_ray.layout.stages.detect_layout import LayoutDetectStage

    layout = LayoutDetectStage.from_config(cfg)
    layout.setup()
    decode = DecodeStage(cfg.max_pixels, "bytes", cfg.layout.batch_size)
    batches = [decode.process_batch(b) for b in _batches(manifest, cfg.layout.batch_size)]
    for b in batches:
        b.pop("image_bytes")
    layout.process_batch(batches[0])  # warm-up (first predict initialises paddle's kernels)
    t0 = time.perf_counter()
    n = sum(len(layout.process_batch(b)["page_id"]) for b in batches)
    return n / (time.perf_counter() - t0)


if __name__ == "__main__":
    main()
