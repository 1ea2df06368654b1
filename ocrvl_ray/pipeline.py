"""The layout job as one Ray Data stream (the only module that builds Ray Data graphs).

    manifest.parquet ─read─▶ decode (CPU tasks, skips pages already in the LMDB)
      ─▶ LayoutDetector (actor pool, GPU when configured) ─▶ CellDetector (actor pool)
      ─▶ compose (CPU tasks) ─▶ LmdbSink (one writer on the driver's node)

``run_layout(cfg)`` resolves inputs (the bundled sample and demo models when asked), runs the stream and
returns the run report (also printed and written next to the LMDB).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ocrvl_ray.config import LayoutConfig
from ocrvl_ray.errors import OcrvlError
from ocrvl_ray.records import Page, Region
from ocrvl_ray.report.skips import Skip, SkipCounter

#: Columns the compose stage needs from upstream; everything else (detector input) is dropped before it.
_DETECT_ONLY = ("det_image", "det_sx", "det_sy")


# ---------------------------------------------------------------------------------------------
# stage functions (plain functions over numpy batches; Ray runs them as tasks)
# ---------------------------------------------------------------------------------------------
def decode_stage(batch: dict[str, np.ndarray], done: frozenset, max_pixels: int, handoff: str) -> dict:
    """Drops pages the LMDB already holds (resume before any detection), then decodes the rest."""
    from ocrvl_ray.detect.decode import decode_batch

    keep = np.array([pid not in done for pid in batch["page_id"]], dtype=bool)
    if not keep.all():
        batch = {k: np.asarray(v)[keep] for k, v in batch.items()}
    if len(batch["page_id"]) == 0:
        return {}
    return decode_batch(batch, max_pixels=max_pixels, handoff=handoff)


def compose_stage(batch: dict[str, np.ndarray], recipes: dict, jpeg_quality: int, mask: str):
    """Pages with regions and cells -> one sink row per page (samples + status), never an exception."""
    import pyarrow as pa

    from ocrvl_ray.compose import ComposeOptions, compose_page, get_recipe
    from ocrvl_ray.detect.decode import page_image
    from ocrvl_ray.sink.rows import SINK_ROW_SCHEMA, SinkPage, SinkSample

    opts = ComposeOptions(jpeg_quality=jpeg_quality, mask=mask)
    rows = []
    for i, pid in enumerate(batch["page_id"]):
        row = SinkPage(page_id=str(pid), status=str(batch["status"][i]), detail=str(batch["detail"][i]))
        if row.status == "ok":
            try:
                page = Page.from_row({k: batch[k][i] for k in _PAGE_KEYS})
                regions = [Region.from_row(r) for r in _items(batch["regions"][i])]
                cells = [Region.from_row(r) for r in _items(batch["cells"][i])] if "cells" in batch else []
                recipe = get_recipe(page.dataset, recipes.get(page.dataset))
                result = compose_page(page, page_image(batch, i), regions, cells, recipe, opts)
                row.status = result.status.value if isinstance(result.status, Skip) else str(result.status)
                row.skips = json.dumps(result.skips.to_dict(), ensure_ascii=False) if result.skips.total else ""
                row.samples = [SinkSample(image=s.image, label=s.text, filename=s.filename, width=s.width,
                                          height=s.height, meta=_meta(page, s)) for s in result.samples]
            except OcrvlError:
                raise  # a configuration problem (e.g. a bad recipe key) must stop the run, not skip every page
            except Exception as e:  # noqa: BLE001 - a bad page must never kill the run
                row.status, row.detail = Skip.ERROR.value, f"{page_label(batch, i)}: {type(e).__name__}: {e}"
                row.samples = []
        rows.append(row.to_row())
    return pa.Table.from_pylist(rows, schema=SINK_ROW_SCHEMA)


_PAGE_KEYS = ("page_id", "dataset", "split", "image_name", "image_path", "width", "height", "words", "source", "attrs")


def _items(v) -> list:
    return [] if v is None else list(v)


def page_label(batch, i) -> str:
    return str(batch["image_path"][i] or batch["image_name"][i])


def _meta(page: Page, s) -> str:
    return json.dumps({"page_id": page.page_id, "dataset": page.dataset, "split": page.split,
                       "source_image": page.image_path or page.image_name, "region_box": list(s.box),
                       "layout_label": s.layout_label, "sample_kind": s.kind, "recipe": s.recipe},
                      ensure_ascii=False)


# ---------------------------------------------------------------------------------------------
# graph
# ---------------------------------------------------------------------------------------------
def build_dataset(cfg: LayoutConfig, manifest: str, done: frozenset):
    """The Ray Data graph from manifest to sink rows (not executed until written)."""
    import ray.data

    from ocrvl_ray.detect.actors import actor_pool_args
    from ocrvl_ray.detect.cells import CellDetector
    from ocrvl_ray.detect.layout import LayoutDetector

    ds = ray.data.read_parquet(manifest)
    if cfg.limit:
        ds = ds.limit(cfg.limit)
    # Parquet files arrive as few big blocks; small blocks let pages stream through the pools and commit
    # to the LMDB as they finish (streaming repartition, no all-to-all shuffle).
    ds = ds.repartition(target_num_rows_per_block=cfg.decode_batch_size)
    # CPU tasks; resources differ from the actor pools', so Ray keeps decode a separate operator.
    ds = ds.map_batches(decode_stage, batch_size=cfg.decode_batch_size, batch_format="numpy", num_cpus=1,
                        fn_kwargs={"done": done, "max_pixels": cfg.max_pixels, "handoff": cfg.handoff})
    lay = cfg.layout
    ds = ds.map_batches(LayoutDetector, **actor_pool_args(lay, lay.device), fn_constructor_kwargs={
        "model_dir": lay.model_dir, "model_name": lay.model_name, "device": lay.device,
        "threshold": lay.threshold, "table_threshold": lay.table_threshold, "layout_nms": lay.layout_nms})
    if cfg.cells.enabled:
        cel = cfg.cells
        ds = ds.map_batches(CellDetector, **actor_pool_args(cel, cel.device), fn_constructor_kwargs={
            "model_dir": cel.model_dir, "model_name": cel.model_name, "device": cel.device,
            "threshold": cel.threshold, "max_side": cel.max_side})
    ds = ds.drop_columns(list(_DETECT_ONLY))
    return ds.map_batches(compose_stage, batch_size=cfg.compose_batch_size, batch_format="numpy", num_cpus=1,
                          fn_kwargs={"recipes": cfg.recipes, "jpeg_quality": cfg.jpeg_quality,
                                     "mask": cfg.mask})


# ---------------------------------------------------------------------------------------------
# the job
# ---------------------------------------------------------------------------------------------
def resolve_inputs(cfg: LayoutConfig) -> tuple[LayoutConfig, str]:
    """Fills in the bundled sample manifest and the offline demo models when the config asks for them."""
    from ocrvl_ray.compose import get_recipe

    for dataset, overrides in cfg.recipes.items():
        get_recipe(dataset, overrides)  # fail fast on a bad recipe key, before Ray starts anything
    if cfg.demo_models:
        from ocrvl_ray.testing.models import demo_models

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
    from ocrvl_ray.sources.prepare import prepare
    from ocrvl_ray.testing.pages import sample_dataset_dir

    root = sample_dataset_dir()
    key = hashlib.sha1(str(root).encode()).hexdigest()[:10]
    cache = Path(os.environ.get("OCRVL_CACHE") or Path(tempfile.gettempdir()) / "ocrvl-cache")
    out = cache / f"sample-manifest-{key}.parquet"   # the package folder may be read-only
    if not out.exists():
        cache.mkdir(parents=True, exist_ok=True)
        prepare("ocr_public", [str(root)], images=[str(root)], out=str(out), progress=False, use_ray=False)
    return out


def user_error(e: BaseException) -> str | None:
    """The one-line ``OcrvlError`` message inside a Ray-wrapped failure, if there is one."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OcrvlError):
            return str(e).splitlines()[0]
        found = re.search(r"ocrvl_ray\.errors\.OcrvlError: (.+)", str(e))
        if found:
            return found.group(1).strip()
        e = e.__cause__ or e.__context__
    return None


def count_rows(manifest: str) -> int:
    import pyarrow.dataset as pads

    return pads.dataset(manifest, format="parquet").count_rows()


def run_layout(cfg: LayoutConfig) -> dict:
    """Runs the layout job; returns (and prints and writes) the run report."""
    import ray.data

    from ocrvl_ray.report.run import build_report, print_report, write_report
    from ocrvl_ray.sink import LmdbSink, completed_pages, write_lmdb

    t0 = time.time()
    cfg, manifest = resolve_inputs(cfg)
    total = count_rows(manifest)
    pages_in = min(total, cfg.limit) if cfg.limit else total
    sink = LmdbSink(cfg.output, index_base=cfg.index_base, label_format=cfg.label_format,
                    min_pages_per_write=cfg.write_batch_pages)
    sink.prepare()
    done = frozenset(completed_pages(cfg.output))
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = cfg.progress
    try:
        summary = write_lmdb(build_dataset(cfg, manifest, done), sink)
    except Exception as e:  # Ray wraps a stage's OcrvlError (e.g. a model that cannot load): unwrap it
        msg = user_error(e)
        if msg is None:
            raise
        raise OcrvlError(msg) from None
    elapsed = time.time() - t0
    report = build_report(cfg, manifest, pages_in=pages_in, already_done=len(done), summary=summary,
                          elapsed_s=elapsed)
    if cfg.report_html:
        from ocrvl_ray.report.inspect import default_html_path, inspect_lmdb

        inspect_lmdb(cfg.output, html=True)
        report["report_html"] = default_html_path(cfg.output)
    write_report(report, cfg.output)
    print_report(report)
    return report
