"""Layout pipeline throughput, side by side in one run.

    python bench/layout.py [--pages 32] [--model real|demo] [--size 1240x1754]

Measures on the same generated pages and the same models:
  pipeline   the Ray Data job (`run_layout`) on a local Ray with this machine's cores
  detector   the bare PP-DocLayoutV2 loop in one process (decoded pages, batch = layout.batch_size)
  sequential the same steps one page after another in one process (the original's design):
             decode -> layout -> cells -> compose -> LMDB
and the CPU core-milliseconds per page spent outside the detectors (decode, resize, compose: crop,
masking, JPEG encode; LMDB write), measured with process time in the sequential run.
Also runs the pipeline with both hand-offs (encoded bytes vs decoded arrays) to keep the faster default.
`--model real` uses a tiny random-weight real-architecture PP-DocLayoutV2 (realistic compute per page);
`--model demo` the scripted tiny model (detector cost ~ paddlex pre/post-processing only).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=32)
    ap.add_argument("--model", choices=("real", "demo"), default="real")
    ap.add_argument("--size", default="1240x1754")
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))

    from ocrvl_ray.core.config import load_config
    from ocrvl_ray.demo.models import demo_models
    from ocrvl_ray.demo.sample import make_sample_dataset
    from ocrvl_ray.ingest.prepare import prepare
    from ocrvl_ray.layout.config import LayoutConfig
    from ocrvl_ray.testing.models import build_tiny_real_layout_model

    work = Path(tempfile.mkdtemp(prefix="bench-layout-"))
    try:
        data = make_sample_dataset(work / "ds", n_pages=args.pages, seed=11, size=size, image_format="jpeg")
        manifest = work / "manifest.parquet"
        prepare("ocr_public", [data["labels_dir"]], images=[data["images_dir"]], out=str(manifest),
                progress=False, use_ray=False)
        layout_dir, cell_dir = demo_models(work / "models")
        if args.model == "real":
            layout_dir = build_tiny_real_layout_model(work / "real-layout")
        over = {"manifest": str(manifest), "progress": False, "layout.model_dir": str(layout_dir),
                "cells.model_dir": str(cell_dir), "layout.batch_size": args.batch, "cells.batch_size": args.batch,
                "decode_batch_size": args.batch, "compose_batch_size": args.batch}

        def cfg(**extra) -> LayoutConfig:
            o = {**over, **extra}
            return load_config(LayoutConfig, overrides=[f"{k}={v}" for k, v in o.items()], env={})

        n = args.pages
        det_s = bare_detector(cfg(), manifest)
        seq_s, cpu_ms = sequential(cfg(output=str(work / "seq.lmdb")), manifest)
        pipe = {}
        from ocrvl_ray.core.runtime import init_ray

        init_ray(num_cpus=os.cpu_count())
        run_pipeline(cfg(output=str(work / "warmup.lmdb"), limit=2))  # spawn Ray's worker processes once
        for handoff in ("bytes", "array"):
            pipe[handoff] = run_pipeline(cfg(output=str(work / f"pipe-{handoff}.lmdb"), handoff=handoff))
        best = min(pipe.values())
        print(f"pages: {n} of {size[0]}x{size[1]} JPEG, model: {args.model}, cores: {os.cpu_count()}")
        print(f"bare detector loop (1 process)  {det_s:8.2f} s  {n / det_s:7.2f} pages/s")
        print(f"sequential implementation       {seq_s:8.2f} s  {n / seq_s:7.2f} pages/s")
        for h, s in pipe.items():
            print(f"pipeline, handoff={h:<5}          {s:8.2f} s  {n / s:7.2f} pages/s (incl. actor start-up)")
        print(f"CPU outside the detectors: {cpu_ms:.1f} core-ms per page")
        print(f"FIGURE pipeline_pages_per_s {n / best:.3f} pages/s")
        print(f"RATIO pipeline_vs_bare_detector {det_s / best:.3f}")
        print(f"RATIO pipeline_vs_sequential {seq_s / best:.3f}")
        print(f"RATIO handoff_bytes_speedup_over_array {pipe['array'] / pipe['bytes']:.3f}")
        print(f"FIGURE cpu_ms_per_page_outside_detector {cpu_ms:.1f} ms")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _batches(manifest: Path, size: int):
    import pyarrow.parquet as pq

    table = pq.read_table(manifest)
    for start in range(0, table.num_rows, size):
        chunk = table.slice(start, size)
        yield {c: chunk.column(c).to_numpy(zero_copy_only=False) for c in chunk.column_names}


def bare_detector(cfg, manifest: Path) -> float:
    """PP-DocLayoutV2 alone over already-decoded full pages, one process."""
    import cv2
    import paddleocr

    from ocrvl_ray.layout.stages.actors import prepare_paddle_env

    prepare_paddle_env()
    model = paddleocr.LayoutDetection(model_name="PP-DocLayoutV2", model_dir=cfg.layout.model_dir, device="cpu")
    pages = [cv2.imread(p) for b in _batches(manifest, 64) for p in b["image_path"]]
    t0 = time.perf_counter()
    for i in range(0, len(pages), cfg.layout.batch_size):
        chunk = pages[i:i + cfg.layout.batch_size]
        model.predict(chunk, batch_size=len(chunk), threshold=cfg.layout.threshold, layout_nms=True)
    return time.perf_counter() - t0


def sequential(cfg, manifest: Path) -> tuple[float, float]:
    """All steps in one process, page batch after page batch; returns (wall s, CPU ms/page outside detectors)."""
    from ocrvl_ray.layout.sink import LmdbWriter, SinkPage
    from ocrvl_ray.layout.stages.compose import compose_stage
    from ocrvl_ray.layout.stages.decode import decode_stage
    from ocrvl_ray.layout.stages.detect_cells import CellDetector
    from ocrvl_ray.layout.stages.detect_layout import LayoutDetector

    lay, cel = cfg.layout, cfg.cells
    layout = LayoutDetector(lay.model_dir, threshold=lay.threshold, table_threshold=lay.table_threshold)
    cells = CellDetector(cel.model_dir, threshold=cel.threshold, max_side=cel.max_side)
    cpu = 0.0
    pages = 0
    t0 = time.perf_counter()
    with LmdbWriter(cfg.output) as writer:
        for batch in _batches(manifest, cfg.decode_batch_size):
            c0 = time.process_time()
            batch = decode_stage(batch, frozenset(), cfg.max_pixels, cfg.handoff)
            cpu += time.process_time() - c0
            batch = cells(layout(batch))
            for k in ("det_image", "det_sx", "det_sy"):
                batch.pop(k)
            c0 = time.process_time()
            rows = compose_stage(batch, cfg.recipes, cfg.jpeg_quality, cfg.mask).to_pylist()
            writer.write_pages(SinkPage.from_row(r) for r in rows)
            cpu += time.process_time() - c0
            pages += len(rows)
    return time.perf_counter() - t0, 1000 * cpu / max(1, pages)


def run_pipeline(cfg) -> float:
    from ocrvl_ray.layout.job import run_layout

    t0 = time.perf_counter()
    report = run_layout(cfg)
    assert report["pages_ok"] == report["pages_in"] > 0, report
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
