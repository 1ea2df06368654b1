"""The layout job as one Ray Data stream (the only module that builds Ray Data graphs).

    manifest.parquet ─read (this split, minus the pages already in the LMDB)─▶ decode (CPU tasks)
      ─▶ detect_layout (actor pool, GPU when configured) ─▶ table_crops (CPU tasks)
      ─▶ detect_cells (actor pool) ─▶ compose (CPU tasks) ─▶ LmdbSink (write tasks on the driver's node)

``stages(cfg, detections)`` is that list of ``stages.base.Stage`` objects, each built from its config section;
``build_dataset`` is a loop over it, ``stage_resources(cfg)`` (the cluster fit check) reads the same list, and
``check_graph`` follows the columns through it before Ray starts.

``run_layout(cfg)`` resolves inputs (the bundled sample and demo models when asked), runs ``run_split`` per split
and returns the run report (also printed and written next to the LMDB).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

from ocrvl_ray.core.errors import OcrvlError, unwrap_ray, user_error
from ocrvl_ray.core.runtime import StageResources
from ocrvl_ray.layout.config import LayoutConfig
from ocrvl_ray.layout.stages.base import Stage, check_columns


# ---------------------------------------------------------------------------------------------
# graph
# ---------------------------------------------------------------------------------------------
def stages(cfg: LayoutConfig, detections: str | None, progress=None) -> list[Stage]:
    """The stages of this config in graph order. With ``detections`` (a detections file) one lookup stage
    replaces both detector pools; ``progress`` (a ``console.page_counter``) is told the pages composed."""
    from ocrvl_ray.layout import detections as det
    from ocrvl_ray.layout.stages import compose, decode, detect_cells, detect_layout, table_crops

    graph: list[Stage] = [decode.DecodeStage.from_config(cfg)]
    if detections:
        graph.append(det.DetectionsLookupStage.from_config(cfg, detections))
    else:
        graph.append(detect_layout.LayoutDetectStage.from_config(cfg))
        if cfg.cells.enabled:
            graph += [table_crops.TableCropStage.from_config(cfg), detect_cells.CellDetectStage.from_config(cfg)]
    return graph + [compose.ComposeStage.from_config(cfg, detections, progress)]


def check_graph(graph: list[Stage]) -> None:
    """Every column a stage (or the sink) reads is written upstream; else a one-line ``ConfigError``."""
    from ocrvl_ray.core.records import PAGE_FIELDS
    from ocrvl_ray.lmdb.rows import SINK_ROW_SCHEMA

    check_columns(graph, PAGE_FIELDS, ("the LMDB sink", SINK_ROW_SCHEMA.names))


def stage_resources(cfg: LayoutConfig) -> list[StageResources]:
    """What every stage of this config asks Ray for, in graph order (read by ``ocrvl cluster-check``)."""
    from ocrvl_ray.lmdb import writer

    return [s.resources for s in stages(cfg, cfg.detections)] + [writer.RESOURCES]


def read_manifest(manifest: str, from_driver: bool = False):
    """The manifest as a Dataset, through Ray Data's V1 Parquet reader.

    Ray 2.60's default (V2) lists files in a task and starts 32 footer-reader actors on every read, for a
    manifest of one or a few files: ~4 s of each layout run on 2 cores (docs/performance.md, "Start-up").
    ``from_driver``: a file only the driver's machine has (the bundled sample's, prepared in its temp dir; small):
    the driver reads it and its rows go through the object store, so read tasks on other nodes need no copy."""
    import ray.data

    if from_driver:
        import pyarrow.parquet as pq

        return ray.data.from_arrow(pq.read_table(manifest))

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


@dataclass
class Todo:
    """The pages of one split a run still has to make: ``keep`` (a Ray Data expression on manifest rows,
    pushed down into the Parquet read), ``pages_in`` (the split's pages, after ``limit``) and ``already_done``."""
    keep: object
    pages_in: int
    already_done: int


def pending_pages(manifest: str, split: str, done: set[str], limit: int) -> Todo:
    """Leaves the pages already in the LMDB (``done``) out of the manifest before the stream starts, so no stage
    ever sees the done set (bug 4: it went to every decode task, ~60 MB per task at 2 M pages).

    The driver reads the split's ``page_id`` column only and marks the done ones with Arrow's ``is_in``; the read
    then keeps the rest, by the shorter list: ``is_in`` the ids left or ``not_in`` the split's done ids. With
    ``limit`` the ids left of the first ``limit`` pages (it counts pages of the manifest, done or not, as before)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as pads
    from ray.data.expressions import col, lit

    keep = col("split") == split
    if not done and not limit:
        return Todo(keep, count_rows(manifest, split), 0)
    ids = pads.dataset(manifest, format="parquet").to_table(
        columns=["page_id"], filter=pads.field("split") == split).column("page_id")
    if limit:
        ids = ids.slice(0, limit)
    finished = pc.is_in(ids, value_set=pa.array(list(done), pa.string()))
    n_done = int(pc.sum(finished).as_py() or 0)
    left = ids.filter(pc.invert(finished))
    if not len(left):
        keep = lit(False)
    elif limit or len(left) < n_done:
        keep = keep & col("page_id").is_in(left.to_pylist())
    elif n_done:
        keep = keep & col("page_id").not_in(ids.filter(finished).to_pylist())
    return Todo(keep, len(ids), n_done)


class _StageActor:
    """An actor stage in Ray: ``setup`` once when the actor starts, ``process_batch`` per batch."""

    def __init__(self, stage: Stage):
        self.stage = stage
        stage.setup()

    def __call__(self, batch):
        return self.stage.process_batch(batch)


def _task_fn(stage: Stage):
    def run(batch):
        stage.setup()
        return stage.process_batch(batch)

    run.__name__ = run.__qualname__ = stage.name
    return run


def add_stage(ds, stage: Stage):
    """``ds`` followed by ``stage``: an actor pool when its resources name one, else tasks; the operator is
    named after the stage."""
    if stage.resources.actors:
        fn = type(stage.name, (_StageActor,), {"__module__": __name__})   # travels by value, named in the plan
        kwargs = {"fn_constructor_kwargs": {"stage": stage}}
    else:
        fn, kwargs = _task_fn(stage), {}
    return ds.map_batches(fn, batch_size=stage.batch_size, batch_format=stage.batch_format, **kwargs,
                          **stage.resources.map_batches_args())


def build_dataset(cfg: LayoutConfig, manifest: str, todo: Todo, detections: str | None, progress=None):
    """The Ray Data graph from the manifest's ``todo`` pages to sink rows (not executed until written).

    With ``detections`` (a detections file) both detector pools are replaced by a lookup in that file;
    ``progress`` (a ``console.page_counter``) counts the pages composed.
    """
    import ray

    graph = stages(cfg, detections, progress)
    check_graph(graph)
    ds = read_manifest(manifest, from_driver=not cfg.manifest)   # no manifest= : the bundled sample's
    if reservation_starves(cfg, ray.cluster_resources().get("CPU", 0.0)):
        ds.context.op_resource_reservation_enabled = False
    ds = ds.filter(expr=todo.keep)          # pushed down into the Parquet read
    # Parquet files arrive as few big blocks; small blocks let pages stream through the pools and commit
    # to the LMDB as they finish (streaming repartition, no all-to-all shuffle).
    ds = ds.repartition(target_num_rows_per_block=cfg.decode_batch_size)
    for stage in graph:
        ds = add_stage(ds, stage)
    return ds


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
        check_graph(stages(cfg, det_in))
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
        rep = reports[plan.split] = run_split(cfg, manifest, plan)
        if rep["pages_already_done"] < rep["pages_in"]:
            print_report(rep)   # a no-op run said "nothing to do" instead
    report = combine_reports(reports)
    if len(reports) > 1:
        print(f"layout: {len(reports)} splits -> " + ", ".join(f"{s}: {r['output']} ({r['num_samples']} samples)"
                                                          for s, r in reports.items()), flush=True)
    return report


def make_sink(cfg: LayoutConfig, plan: SplitPlan, progress=None):
    """The split's ``LmdbSink`` (created or checked); ``progress`` (a ``console.page_counter``) is told the pages
    each transaction commits."""
    from ocrvl_ray.layout.detections import PartWriter, detections_path
    from ocrvl_ray.lmdb import LmdbSink
    from ocrvl_ray.lmdb.identity import identity_record

    sink = LmdbSink(plan.work, cfg.shards, index_base=cfg.index_base, label_format=cfg.label_format,
                    min_pages_per_write=cfg.write_batch_pages, min_bytes_per_write=cfg.write_batch_mb << 20,
                    identity=identity_record(plan.identity), before_commit=PartWriter(detections_path(plan.work)),
                    progress=progress, commit_interval_s=cfg.commit_interval_s)
    sink.prepare()
    return sink


def resume_state(cfg: LayoutConfig, manifest: str, plan: SplitPlan) -> Todo:
    """What a run of this split still has to do, from the page markers of its (prepared) LMDB."""
    from ocrvl_ray.lmdb import completed_pages

    return pending_pages(manifest, plan.split, completed_pages(plan.work), cfg.limit)


def run_split(cfg: LayoutConfig, manifest: str, plan: SplitPlan) -> dict:
    """One split: its sink, the pages left to do, the graph written into the sink (``write_lmdb``), the report.
    ``bench/layout.py`` times this same function."""
    import ray.data

    from ocrvl_ray.core.config import config_hash
    from ocrvl_ray.core.console import page_counter
    from ocrvl_ray.layout.detections import detections_path
    from ocrvl_ray.lmdb import LmdbReader
    from ocrvl_ray.lmdb.shards import expand
    from ocrvl_ray.report.run import build_report, write_report

    t0 = time.time()
    ray.data.DataContext.get_current().enable_progress_bars = False   # Ray's output goes to the log file
    log_path = plan.output.rstrip("/") + ".log"
    where = writer_node(cfg)
    # Pages commit a write task (up to write_batch_mb) at a time, so progress counts composed pages too; both
    # counts come from the stages and the sink, never from a rescan of the LMDB. The stall watchdog reads them.
    counter = page_counter() if cfg.progress or stall_watch(cfg) else None
    try:
        sink = make_sink(cfg, plan, counter)
        todo = resume_state(cfg, manifest, plan)
        if todo.already_done == todo.pages_in:   # a finished LMDB: no stream, no detector pools
            print(f"layout [{plan.split}]: nothing to do: {todo.already_done} pages already in {plan.output}",
                  flush=True)
            counts = []
            for path in expand(plan.work):        # the LMDB, or each of its shards
                with LmdbReader(path) as r:
                    counts.append(len(r))
            summary = {"num_samples": sum(counts), "shards": cfg.shards}
        else:
            summary = stream_split(cfg, manifest, plan, todo, counter, sink, log_path, where, t0)
    finally:
        if counter is not None:
            ray.kill(counter)
    if plan.work != plan.output:
        _swap_in(plan.work, plan.output)
    report = build_report(cfg, manifest, pages_in=todo.pages_in, already_done=todo.already_done, summary=summary,
                          elapsed_s=time.time() - t0)
    report.update(output=plan.output, split=plan.split, config_hash=config_hash(plan.identity),
                  detections=detections_path(plan.output), log=log_path if cfg.quiet else None)
    if cfg.report_html:
        from ocrvl_ray.report.inspect import inspect_lmdb

        report["report_html"] = inspect_lmdb(plan.output, html=True)["html"]
    write_report(report, plan.output)
    return report


def stream_split(cfg: LayoutConfig, manifest: str, plan: SplitPlan, todo: Todo, counter, sink, log_path: str,
                 where: str, t0: float) -> dict:
    """The pages left (``todo``) through the graph into ``sink``; returns the sink's summary. A failure is one
    ``OcrvlError`` line on the console, its whole story in the log."""
    from ocrvl_ray.core.console import RayLog, Ticker
    from ocrvl_ray.lmdb import write_lmdb

    with RayLog(log_path, enabled=cfg.quiet) as log:
        log.say(f"layout [{plan.split}]: {todo.pages_in} pages -> {plan.output} on {where} "
                f"({todo.already_done} already done; Ray's output: {log_path})")
        if not plan.detections_in:
            log.say(f"layout [{plan.split}]: loading models ({'layout and cell' if cfg.cells.enabled else 'layout'} "
                    "detector pools); pages follow once they are up")
        watch = Watch(cfg, plan.split, todo, counter, log.say, t0)
        try:
            with Ticker(watch.tick, watch.period if counter is not None else 0):
                return write_lmdb(build_dataset(cfg, manifest, todo, plan.detections_in, counter), sink)
        except KeyboardInterrupt:
            if watch.stalled is None:
                raise
            raise OcrvlError(f"{watch.stalled} (full log: {log_path})") from None
        except Exception as e:  # noqa: BLE001 - one line on the console; the whole story in the log
            import traceback

            traceback.print_exc()   # into the log file while it is redirected
            err = user_error(e)
            inner = unwrap_ray(e)
            msg = str(err).splitlines()[0] if err is not None else \
                f"a stage failed: {type(inner).__name__}: {(str(inner).splitlines() or [''])[0][:300]}"
            raise OcrvlError(f"{msg} (full log: {log_path})") from e


def writer_node(cfg: LayoutConfig) -> str:
    """Where the LMDB is written: Ray runs the sink's write tasks on the driver's node, so that node must be the
    head or the node named by ``persistent_node`` (an autoscaler removes the others, disk and all; with
    ``--entrypoint-num-cpus`` on a ``CPU: 0`` head the driver lands on a worker). Returns e.g. "the head node
    10.0.0.5 (ip-10-0-0-5)"; else a one-line ``OcrvlError``."""
    import ray

    me = ray.get_runtime_context().get_node_id()
    node = next(n for n in ray.nodes() if n["NodeID"] == me)
    name = f"{node['NodeManagerAddress']} ({node['NodeManagerHostname']})"
    if "node:__internal_head__" in node["Resources"]:
        return f"the head node {name}"
    if cfg.persistent_node in (me, node["NodeManagerAddress"], node["NodeManagerHostname"]):
        return f"node {name} (persistent_node)"
    raise OcrvlError(f"the driver runs on node {name}, not the head: Ray writes the LMDB on the driver's node, and "
                     f"an autoscaler can remove this one with its disk; submit without --entrypoint-num-cpus / "
                     f"--entrypoint-resources so the driver runs on the head (docs/cluster.md), or set "
                     f"persistent_node={node['NodeManagerAddress']} if this node's disk outlives the job")


def stall_watch(cfg: LayoutConfig) -> bool:
    return cfg.stall_timeout_s > 0 and not cfg.wait_for_nodes


class Watch:
    """The driver's eye on a running split, ticked every ``period`` s on a thread: a progress line every
    ``progress_every_s`` (pages composed and written, from the counter actor) and the stall watchdog.

    A failed read of the counter prints a note and the job goes on (a restarted counter counts from zero: its
    totals are added to what was seen). The watchdog fires when no page was composed for ``stall_timeout_s``
    while Ray holds requests it cannot place and no node is being launched (``runtime.waiting_on``): it keeps
    the one line in ``stalled`` and interrupts the driver's main thread (again on every tick until the run stops),
    which turns it into an ``OcrvlError``.
    Pages it cannot count (the counter unreadable) never count as a stall."""

    def __init__(self, cfg: LayoutConfig, split: str, todo: Todo, counter, say, t0: float):
        self.cfg, self.split, self.todo, self.counter, self.say, self.t0 = cfg, split, todo, counter, say, t0
        self.watchdog = stall_watch(cfg)
        every = [cfg.progress_every_s] if cfg.progress else []
        self.period = min(every + ([max(0.5, cfg.stall_timeout_s / 5)] if self.watchdog else []) or [1.0])
        self.base = {"composed": 0, "written": 0}
        self.last = dict(self.base)
        self.moved_at = self.printed_at = t0
        self.stalled: str | None = None

    def tick(self) -> None:
        import ray

        now = time.time()
        try:
            made = ray.get(self.counter.totals.remote(), timeout=10)
        except Exception as e:  # noqa: BLE001 - progress never fails a run
            made = None
            self.moved_at = now
            if now - self.printed_at >= self.cfg.progress_every_s:
                self.printed_at = now
                self.say(f"note: layout [{self.split}]: cannot read the page counter ({type(e).__name__}); "
                         f"the job goes on ({now - self.t0:.0f} s)")
        if made is not None:
            for k in self.base:
                if made[k] < self.last[k]:   # restarted from zero
                    self.base[k] += self.last[k]
            if made["composed"] != self.last["composed"]:
                self.moved_at = now
            self.last = made
            if self.cfg.progress and now - self.printed_at >= self.cfg.progress_every_s:
                self.printed_at = now
                self.say(self.line(now))
        if self.stalled is not None:      # still running: the interrupt may have landed where it was swallowed
            interrupt_main()
        elif self.watchdog and now - self.moved_at >= self.cfg.stall_timeout_s:
            self.check_stall(now)

    def line(self, now: float) -> str:
        todo = self.todo
        composed = min(todo.pages_in - todo.already_done, self.base["composed"] + self.last["composed"])
        rate = composed / max(1e-9, now - self.t0)
        return (f"layout [{self.split}]: {todo.already_done + composed}/{todo.pages_in} pages composed, "
                f"{todo.already_done + self.base['written'] + self.last['written']} written ({rate:.1f} pages/s)")

    def check_stall(self, now: float) -> None:
        from ocrvl_ray.core.runtime import waiting_on

        try:
            wait = waiting_on()
        except Exception as e:  # noqa: BLE001 - the watchdog never fails a run by itself
            self.say(f"note: layout [{self.split}]: cannot ask Ray what it waits for ({type(e).__name__}: {e})")
            self.moved_at = now
            return
        if not wait.demands or wait.launching:
            return
        self.stalled = (f"layout [{self.split}]: no page composed for {now - self.moved_at:.0f} s while Ray cannot "
                        f"place {', '.join(wait.demands[:4])} and launches no node for it (nodes: {wait.nodes}); "
                        f"give the cluster a node type that offers it (`ocrvl cluster-check CLUSTER.yaml "
                        f"LAYOUT.yaml`) or lower the request, or set wait_for_nodes=true to keep waiting "
                        f"(stall_timeout_s={self.cfg.stall_timeout_s:g})")
        interrupt_main()


def interrupt_main() -> None:
    """SIGINT to the driver's main thread. A real signal wakes the main thread where it blocks on a lock or a
    queue inside Ray Data; ``_thread.interrupt_main`` only sets a flag that such a wait never looks at."""
    import signal
    import threading

    signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)


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
