"""The layout job as one Ray Data stream (the only module that builds Ray Data graphs).

    manifest.parquet ─read─▶ decode (CPU tasks, skips pages already in the LMDB)
      ─▶ LayoutDetector (actor pool, GPU when configured) ─▶ CellDetector (actor pool)
      ─▶ compose (CPU tasks) ─▶ LmdbSink (one writer on the driver's node)

Each stage (``stages/``) declares its resources once; ``stage_resources(cfg)`` lists them for the
cluster fit check, ``build_dataset`` passes the same declarations to Ray.

``run_layout(cfg)`` resolves inputs (the bundled sample and demo models when asked), runs the stream and
returns the run report (also printed and written next to the LMDB).
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path

from ocrvl_ray.core.errors import OcrvlError, user_error
from ocrvl_ray.core.runtime import StageResources
from ocrvl_ray.layout.config import LayoutConfig

# ---------------------------------------------------------------------------------------------
# graph
# ---------------------------------------------------------------------------------------------
def stage_resources(cfg: LayoutConfig) -> list[StageResources]:
    """What every stage of this config asks Ray for, in graph order (read by ``ocrvl cluster-check``)."""
    from ocrvl_ray.layout.sink import writer
    from ocrvl_ray.layout.stages import compose, decode, detect_cells, detect_layout

    stages = [decode, detect_layout] + ([detect_cells] if cfg.cells.enabled else []) + [compose]
    return [s.resources(cfg) for s in stages] + [writer.RESOURCES]


def build_dataset(cfg: LayoutConfig, manifest: str, done: frozenset):
    """The Ray Data graph from manifest to sink rows (not executed until written)."""
    import ray.data

    from ocrvl_ray.layout.stages import compose, decode, detect_cells, detect_layout

    ds = ray.data.read_parquet(manifest)
    if cfg.limit:
        ds = ds.limit(cfg.limit)
    # Parquet files arrive as few big blocks; small blocks let pages stream through the pools and commit
    # to the LMDB as they finish (streaming repartition, no all-to-all shuffle).
    ds = ds.repartition(target_num_rows_per_block=cfg.decode_batch_size)
    ds = ds.map_batches(decode.decode_stage, batch_size=cfg.decode_batch_size, batch_format="numpy",
                        fn_kwargs={"done": done, "max_pixels": cfg.max_pixels, "handoff": cfg.handoff},
                        **decode.resources(cfg).map_batches_args())
    lay = cfg.layout
    ds = ds.map_batches(detect_layout.LayoutDetector, batch_size=lay.batch_size, batch_format="numpy",
                        fn_constructor_kwargs={
                            "model_dir": lay.model_dir, "model_name": lay.model_name, "device": lay.device,
                            "threshold": lay.threshold, "table_threshold": lay.table_threshold,
                            "layout_nms": lay.layout_nms},
                        **detect_layout.resources(cfg).map_batches_args())
    if cfg.cells.enabled:
        cel = cfg.cells
        ds = ds.map_batches(detect_cells.CellDetector, batch_size=cel.batch_size, batch_format="numpy",
                            fn_constructor_kwargs={
                                "model_dir": cel.model_dir, "model_name": cel.model_name, "device": cel.device,
                                "threshold": cel.threshold, "max_side": cel.max_side},
                            **detect_cells.resources(cfg).map_batches_args())
    return ds.map_batches(compose.compose_stage, batch_size=cfg.compose_batch_size, batch_format="numpy",
                          fn_kwargs={"recipes": cfg.recipes, "jpeg_quality": cfg.jpeg_quality,
                                     "mask": cfg.mask},
                          **compose.resources(cfg).map_batches_args())


# ---------------------------------------------------------------------------------------------
# the job
# ---------------------------------------------------------------------------------------------
def resolve_inputs(cfg: LayoutConfig) -> tuple[LayoutConfig, str]:
    """Fills in the bundled sample manifest and the offline demo models when the config asks for them."""
    from ocrvl_ray.layout.compose import get_recipe

    for dataset, overrides in cfg.recipes.items():
        get_recipe(dataset, overrides)  # fail fast on a bad recipe key, before Ray starts anything
    if cfg.demo_models:
        from ocrvl_ray.demo.models import demo_models

        layout_dir, cell_dir = demo_models()
        cfg = cfg.model_copy(deep=True)
        cfg.layout.model_dir = cfg.layout.model_dir or str(layout_dir)
        cfg.cells.model_dir = cfg.cells.model_dir or str(cell_dir)
    manifest = cfg.manifest or str(sample_manifest())
    if not Path(manifest).exists():
        raise OcrvlError(f"manifest={manifest} does not exist; build one with `ocrvl prepare ... --out {manifest}`")
    return cfg, manifest


def sample_manifest() -> Path:
    """The bundled sample's manifest, prepared once next to the generated sample pages."""
    from ocrvl_ray.ingest.prepare import prepare
    from ocrvl_ray.demo.sample import sample_dataset_dir

    root = sample_dataset_dir()
    key = hashlib.sha1(str(root).encode()).hexdigest()[:10]
    cache = Path(os.environ.get("OCRVL_CACHE") or Path(tempfile.gettempdir()) / "ocrvl-cache")
    out = cache / f"sample-manifest-{key}.parquet"   # the package folder may be read-only
    if not out.exists():
        cache.mkdir(parents=True, exist_ok=True)
        prepare("ocr_public", [str(root)], images=[str(root)], out=str(out), progress=False, use_ray=False)
    return out


def count_rows(manifest: str) -> int:
    import pyarrow.dataset as pads

    return pads.dataset(manifest, format="parquet").count_rows()


def run_layout(cfg: LayoutConfig) -> dict:
    """Runs the layout job; returns (and prints and writes) the run report."""
    import ray.data

    from ocrvl_ray.report.run import build_report, print_report, write_report
    from ocrvl_ray.layout.sink import completed_pages, make_sink, write_lmdb

    t0 = time.time()
    cfg, manifest = resolve_inputs(cfg)
    total = count_rows(manifest)
    pages_in = min(total, cfg.limit) if cfg.limit else total
    sink = make_sink(cfg.output, cfg.shards, index_base=cfg.index_base, label_format=cfg.label_format,
                     min_pages_per_write=cfg.write_batch_pages)
    sink.prepare()
    done = frozenset(completed_pages(cfg.output))
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = cfg.progress
    try:
        summary = write_lmdb(build_dataset(cfg, manifest, done), sink)
    except Exception as e:  # Ray wraps a stage's OcrvlError (e.g. a model that cannot load): unwrap it
        err = user_error(e)
        if err is None:
            raise
        raise OcrvlError(str(err).splitlines()[0]) from None
    elapsed = time.time() - t0
    report = build_report(cfg, manifest, pages_in=pages_in, already_done=len(done), summary=summary,
                          elapsed_s=elapsed)
    if cfg.report_html:
        from ocrvl_ray.report.inspect import inspect_lmdb

        report["report_html"] = inspect_lmdb(cfg.output, html=True)["html"]
    write_report(report, cfg.output)
    print_report(report)
    return report
