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

import json
import os
import time
from dataclasses import dataclass

from ocrvl_ray.core.errors import OcrvlError, unwrap_ray, user_error
from ocrvl_ray.core.runtime import StageResources
from ocrvl_ray.layout.config import LayoutConfig


# ---------------------------------------------------------------------------------------------
# graph
# ---------------------------------------------------------------------------------------------
def stage_resources(cfg: LayoutConfig) -> list[StageResources]:
    """What every stage of this config asks Ray for, in graph order (read by ``ocrvl cluster-check``)."""
    from ocrvl_ray.lmdb import writer
    from ocrvl_ray.layout.stages import compose, decode, detect_cells, detect_layout, table_crops

    stages = [decode, detect_layout] + ([table_crops, detect_cells] if cfg.cells.enabled else []) + [compose]
    return [s.resources(cfg) for s in stages] + [writer.RESOURCES]


def read_manifest(manifest: str):
    """The manifest as a Dataset, through Ray Data's V1 Parquet reader.

    Ray 2.60's default (V2) lists files in a task and starts 32 footer-reader actors on every read, for a
    manifest of one or a few files: ~4 s of each layout run on 2 cores (docs/performance.md, "Start-up")."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    v2, ctx.use_datasource_v2 = ctx.use_datasource_v2, False
    try:
        return ray.data.read_parquet(manifest)
    finally:
        ctx.use_datasource_v2 = v2


def reservation_starves(cfg: LayoutConfig, cluster_cpus: float) -> bool:
    """Ray Data's resource reservation would leave a stage without a CPU to start a task on.

    Ray reserves for each stage, upstream first, at least the CPUs of one task (of the min actors for a
    pool) and never more than the cluster has. With fewer CPUs than the stages' sum (3 for decode, table
    crops and compose at 1 each, plus the detector pools' share on a CPU device) compose gets no
    reservation and waits on the others: the cores idle ~15 % of the time (measured on 2 cores: 83–87 %
    busy with it, 93–98 % without). An empty cluster (an autoscaler not up yet) keeps Ray's default."""
    need = sum(r.num_cpus * (r.actors[0] if r.actors else 1) for r in stage_resources(cfg)[:-1])
    return 0 < cluster_cpus < need


def build_dataset(cfg: LayoutConfig, manifest: str, done: frozenset, split: str | None = None,
                  detections: str | None = None, progress=None):
    """The Ray Data graph from manifest (one split of it) to sink rows (not executed until written).

    With ``detections`` (a detections file) both detector pools are replaced by a lookup in that file;
    ``progress`` (a ``console.page_counter``) counts the pages composed.
    """
    import ray.data

    from ocrvl_ray.layout import detections as det
    from ocrvl_ray.layout.stages import compose, decode, detect_cells, detect_layout, table_crops

    ds = read_manifest(manifest)
    if reservation_starves(cfg, ray.cluster_resources().get("CPU", 0.0)):
        ds.context.op_resource_reservation_enabled = False
    if split is not None:
        from ray.data.expressions import col

        ds = ds.filter(expr=col("split") == split)
    if cfg.limit:
        ds = ds.limit(cfg.limit)
    # Parquet files arrive as few big blocks; small blocks let pages stream through the pools and commit
    # to the LMDB as they finish (streaming repartition, no all-to-all shuffle).
    ds = ds.repartition(target_num_rows_per_block=cfg.decode_batch_size)
    ds = ds.map_batches(decode.decode_stage, batch_size=cfg.decode_batch_size, batch_format="numpy",
                        fn_kwargs={"done": done, "max_pixels": cfg.max_pixels, "handoff": cfg.handoff},
                        **decode.resources(cfg).map_batches_args())
    if detections:
        ds = ds.map_batches(det.AttachDetections, batch_size=cfg.compose_batch_size, batch_format="pyarrow",
                            fn_constructor_kwargs={"path": detections}, **det.resources(cfg).map_batches_args())
        models = json.dumps({"detections": detections})
    else:
        lay = cfg.layout
        ds = ds.map_batches(detect_layout.LayoutDetector, batch_size=lay.batch_size, batch_format="pyarrow",
                            fn_constructor_kwargs={
                                "model_dir": lay.model_dir, "model_name": lay.model_name, "device": lay.device,
                                "threshold": lay.threshold, "table_threshold": lay.table_threshold,
                                "layout_nms": lay.layout_nms, "shape_mode": lay.shape_mode},
                            **detect_layout.resources(cfg).map_batches_args())
        if cfg.cells.enabled:
            cel = cfg.cells
            ds = ds.map_batches(table_crops.table_crops_stage, batch_size=cel.batch_size, batch_format="pyarrow",
                                fn_kwargs={"max_side": cel.max_side}, **table_crops.resources(cfg).map_batches_args())
            ds = ds.map_batches(detect_cells.CellDetector, batch_size=cel.batch_size, batch_format="pyarrow",
                                fn_constructor_kwargs={
                                    "model_dir": cel.model_dir, "model_name": cel.model_name, "device": cel.device,
                                    "threshold": cel.threshold, "max_side": cel.max_side},
                                **detect_cells.resources(cfg).map_batches_args())
        models = json.dumps({"layout": {"name": cfg.layout.model_name, "dir": cfg.layout.model_dir},
                             "cells": {"name": cfg.cells.model_name, "dir": cfg.cells.model_dir}
                             if cfg.cells.enabled else None})
    return ds.map_batches(compose.compose_stage, batch_size=cfg.compose_batch_size, batch_format="numpy",
                          fn_kwargs={"recipes": cfg.recipes, "jpeg_quality": cfg.jpeg_quality, "mask": cfg.mask,
                                     "models": models, "progress": progress},
                          **compose.resources(cfg).map_batches_args())


# ---------------------------------------------------------------------------------------------
# the job
# ---------------------------------------------------------------------------------------------
@dataclass
class SplitPlan:
    """Where one split goes: ``output`` (final) and ``work`` (the same, or a rebuild folder swapped in at the end)."""
    split: str
    output: str
    work: str
    identity: dict
    detections_in: str | None


def resolve_inputs(cfg: LayoutConfig) -> tuple[LayoutConfig, str]:
    """Fills in the bundled sample manifest and the offline demo models when the config asks for them, and
    makes every path absolute on this machine (refusing relative outputs inside a Ray job's working-dir copy)."""
    from ocrvl_ray.layout.compose import get_recipe
    from ocrvl_ray.layout.outputs import resolve_path

    for dataset, overrides in cfg.recipes.items():
        get_recipe(dataset, overrides)  # fail fast on a bad recipe key, before Ray starts anything
    cfg = cfg.model_copy(deep=True)
    cfg.output = resolve_path(cfg.output, "output", cfg.data_root, output=True)
    cfg.manifest = resolve_path(cfg.manifest, "manifest", cfg.data_root, output=False)
    cfg.detections = resolve_path(cfg.detections, "detections", cfg.data_root, output=False)
    if cfg.demo_models and not cfg.detections:
        from ocrvl_ray.demo.models import demo_models

        layout_dir, cell_dir = demo_models(layout_model_name=cfg.layout.model_name)
        cfg.layout.model_dir = cfg.layout.model_dir or str(layout_dir)
        cfg.cells.model_dir = cfg.cells.model_dir or str(cell_dir)
    if cfg.manifest:
        return cfg, cfg.manifest
    from ocrvl_ray.demo.sample import sample_manifest

    return cfg, str(sample_manifest())


def plan_splits(cfg: LayoutConfig, manifest: str) -> list[SplitPlan]:
    """Pre-flight before Ray starts: manifest, splits, models, outputs, and the identity of each output."""
    from ocrvl_ray.core.config import config_hash
    from ocrvl_ray.layout import preflight
    from ocrvl_ray.layout.outputs import layout_identity, split_outputs
    from ocrvl_ray.lmdb.identity import identity_state

    splits = preflight.manifest_splits(manifest)
    if not splits:
        raise OcrvlError(f"manifest={manifest} holds no pages; check the `ocrvl prepare` report beside it")
    if cfg.split is not None and cfg.split not in splits:
        raise OcrvlError(f"split={cfg.split} is not in manifest={manifest}; it holds {', '.join(splits)}")
    for note in preflight.check_models(cfg):
        print(f"note: {note}", flush=True)
    plans = []
    for split, out in split_outputs(cfg.output, splits).items():   # names from all splits, so split= agrees
        if cfg.split is not None and split != cfg.split:
            continue
        out = preflight.check_output(out)
        det_in = preflight.check_detections(cfg.detections, split) if cfg.detections else None
        identity = layout_identity(cfg, manifest, split)
        state = identity_state(out, identity)
        work = out
        if isinstance(state, list) and not cfg.overwrite:
            raise OcrvlError(f"output={out} was made with another config (differs in {', '.join(state[:4])}); "
                             f"pass overwrite=true to rebuild it (the old LMDB stays readable until the new one is "
                             f"complete) or choose another output")
        if cfg.overwrite and state != "new":
            head, name = os.path.split(out)
            work = os.path.join(head, f".{name}.rebuild-{config_hash(identity)[:12]}")
        plans.append(SplitPlan(split, out, work, identity, det_in))
    return plans


def layout_identities(cfg: LayoutConfig) -> dict[str, dict]:
    """split -> identity of its output, as a run of ``cfg`` would record it (for ``ocrvl pipeline``)."""
    from ocrvl_ray.layout import preflight
    from ocrvl_ray.layout.outputs import layout_identity

    cfg, manifest = resolve_inputs(cfg)
    splits = [cfg.split] if cfg.split else preflight.manifest_splits(manifest)
    return {s: layout_identity(cfg, manifest, s) for s in splits}


def count_rows(manifest: str, split: str) -> int:
    import pyarrow.dataset as pads

    return pads.dataset(manifest, format="parquet").count_rows(filter=pads.field("split") == split)


def run_layout(cfg: LayoutConfig) -> dict:
    """Runs the layout job, one LMDB per split; returns (and prints and writes) the run report."""
    from ocrvl_ray.core.runtime import init_ray
    from ocrvl_ray.report.run import combine_reports, print_report

    cfg, manifest = resolve_inputs(cfg)
    plans = plan_splits(cfg, manifest)          # every user error before Ray starts
    init_ray(num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus)
    reports = {}
    for plan in plans:
        reports[plan.split] = _run_split(cfg, manifest, plan)
        print_report(reports[plan.split])
    report = combine_reports(reports)
    if len(reports) > 1:
        print(f"layout: {len(reports)} splits -> " + ", ".join(f"{s}: {r['output']} ({r['num_samples']} samples)"
                                                          for s, r in reports.items()), flush=True)
    return report


def _run_split(cfg: LayoutConfig, manifest: str, plan: SplitPlan) -> dict:
    import ray.data

    from ocrvl_ray.core.config import config_hash
    from ocrvl_ray.core.console import RayLog, Ticker, page_counter
    from ocrvl_ray.layout.detections import PartWriter, detections_path
    from ocrvl_ray.lmdb import LmdbSink, completed_pages, write_lmdb
    from ocrvl_ray.lmdb.identity import identity_record
    from ocrvl_ray.report.run import build_report, write_report

    t0 = time.time()
    total = count_rows(manifest, plan.split)
    pages_in = min(total, cfg.limit) if cfg.limit else total
    sink = LmdbSink(plan.work, cfg.shards, index_base=cfg.index_base, label_format=cfg.label_format,
                     min_pages_per_write=cfg.write_batch_pages, min_bytes_per_write=cfg.write_batch_mb << 20,
                     identity=identity_record(plan.identity), before_commit=PartWriter(detections_path(plan.work)))
    sink.prepare()
    done = frozenset(completed_pages(plan.work))
    ray.data.DataContext.get_current().enable_progress_bars = False   # Ray's output goes to the log file
    log_path = plan.output.rstrip("/") + ".log"
    # Pages commit a write task (up to write_batch_mb) at a time, so progress counts composed pages too.
    counter = page_counter() if cfg.progress else None
    with RayLog(log_path, enabled=cfg.quiet) as log:
        def progress() -> None:
            composed = min(pages_in - len(done), ray.get(counter.total.remote(), timeout=10))
            rate = composed / max(1e-9, time.time() - t0)
            log.say(f"layout [{plan.split}]: {len(done) + composed}/{pages_in} pages composed, "
                    f"{len(completed_pages(plan.work))} written ({rate:.1f} pages/s)")

        log.say(f"layout [{plan.split}]: {pages_in} pages -> {plan.output} "
                f"({len(done)} already done; Ray's output: {log_path})")
        try:
            with Ticker(progress, cfg.progress_every_s if cfg.progress else 0):
                summary = write_lmdb(build_dataset(cfg, manifest, done, plan.split, plan.detections_in, counter), sink)
        except Exception as e:  # noqa: BLE001 - one line on the console; the whole story in the log
            import traceback

            traceback.print_exc()   # into the log file while it is redirected
            err = user_error(e)
            inner = unwrap_ray(e)
            msg = str(err).splitlines()[0] if err is not None else \
                f"a stage failed: {type(inner).__name__}: {(str(inner).splitlines() or [''])[0][:300]}"
            raise OcrvlError(f"{msg} (full log: {log_path})") from None
        finally:
            if counter is not None:
                ray.kill(counter)
    if plan.work != plan.output:
        _swap_in(plan.work, plan.output)
    report = build_report(cfg, manifest, pages_in=pages_in, already_done=len(done), summary=summary,
                          elapsed_s=time.time() - t0)
    report.update(output=plan.output, split=plan.split, config_hash=config_hash(plan.identity),
                  detections=detections_path(plan.output), log=log_path if cfg.quiet else None)
    if cfg.report_html:
        from ocrvl_ray.report.inspect import inspect_lmdb

        report["report_html"] = inspect_lmdb(plan.output, html=True)["html"]
    write_report(report, plan.output)
    return report


def _swap_in(work: str, output: str) -> None:
    """Replaces ``output`` (and its detections) by the finished rebuild ``work``; the old one is readable until
    the rename, and removed after it."""
    import shutil

    from ocrvl_ray.layout.detections import detections_path

    for src, dst in ((work, output), (detections_path(work), detections_path(output))):
        old = None
        if os.path.exists(dst):
            old = f"{dst}.old-{os.getpid()}"
            os.replace(dst, old)
        if os.path.exists(src):
            os.replace(src, dst)
        if old:
            shutil.rmtree(old, ignore_errors=True)
