"""The function every Ray Train worker runs: restore, run the entry, report what it writes.

1. If Ray Train has a checkpoint (a restart after a failure, or a re-run with the same run name) it is
   copied back to ``output_dir/checkpoint-N`` and ``resume_from_checkpoint`` points at it; else rank 0
   decides from its output_dir (:func:`~ocrvl_ray.train.checkpoints.start_from`). Sharded
   ``train_lmdb_paths`` become this rank's shards (:mod:`ocrvl_ray.train.rank_data`).
2. The entry runs in a thread (in-process) or as ``paddle.distributed.launch`` (launcher mode).
3. Meanwhile rank 0 scans ``output_dir`` every ``watch_interval_s``; each finished ``checkpoint-N`` is
   reported with ``ray.train.report(metrics, checkpoint=...)`` as ``checkpoint-N`` in storage. Log lines
   of a paddleformers Trainer (step, loss, learning rate) stream as one metric-only report per cycle
   (latest values + ``log_history``). Every rank takes part in each report (it is a barrier); rank 0
   broadcasts what to report.
"""
from __future__ import annotations

import logging
import os
import queue
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any, Callable

import yaml

from ocrvl_ray.train import checkpoints as ck

log = logging.getLogger("ocrvl.train")
_LOGS: "queue.Queue[dict]" = queue.Queue()


class EntryRunner(threading.Thread):
    """Runs ``fn(config)`` once; keeps its exception for :meth:`raise_if_failed`."""

    def __init__(self, fn: Callable[[dict], Any], config: dict):
        super().__init__(name="ocrvl-entry", daemon=True)
        self.fn, self.config, self.error = fn, config, None

    def run(self) -> None:
        try:
            self.fn(self.config)
        except BaseException as e:  # noqa: BLE001 - re-raised in the reporting thread
            self.error = e

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error


def run_launcher(payload: dict, config: dict) -> None:
    """Launcher mode: write the resolved config, run this node's ``paddle.distributed.launch``."""
    from ocrvl_ray.train.entries import launcher_command

    out = Path(config["output_dir"])
    meta = ck.side_dir(out, "launch")
    meta.mkdir(parents=True, exist_ok=True)
    node = os.environ["PADDLE_RANK"]
    cfg_file = meta / f"train_config.node{node}.yaml"
    cfg_file.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    logs = meta / f"launch_logs.node{node}"
    cmd = launcher_command(payload["entry"], str(cfg_file), os.environ, str(logs))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PADDLE_TRAINER", "PADDLE_CURRENT"))}
    proc = subprocess.run(cmd, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"paddle.distributed.launch exited with {proc.returncode} on node {node}; see {logs}")


def rank_config(config: dict, rank: int, world: int) -> dict:
    """This rank's ``train_lmdb_paths`` (its shards), logged; done before any entry sees the config."""
    from ocrvl_ray.train.rank_data import for_rank

    config, lines = for_rank(config, rank, world)
    for line in lines:
        print(f"ocrvl train: {line}", flush=True)
    return config


def _install_log_stream() -> None:
    """Every paddleformers Trainer created in this process also puts its log entries on ``_LOGS``."""
    import importlib.util

    if importlib.util.find_spec("paddleformers") is None:
        return
    from paddleformers.trainer import trainer as pf_trainer
    from paddleformers.trainer.trainer_callback import TrainerCallback

    class StreamLogs(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and state.is_world_process_zero:
                _LOGS.put(ck.log_metrics(state.global_step, logs))

    if not any(getattr(c, "__name__", "") == "StreamLogs" for c in pf_trainer.DEFAULT_CALLBACKS):
        pf_trainer.DEFAULT_CALLBACKS.append(StreamLogs)


def _drain() -> list[dict]:
    out = []
    while True:
        try:
            out.append(_LOGS.get_nowait())
        except queue.Empty:
            return out


def _restore(config: dict, rank: int, local_rank: int) -> int:
    """Decide where the entry starts, the same on every rank; returns the step resumed from or -1.

    Ray Train's latest checkpoint is copied back into output_dir, or a newer complete one in storage
    that Ray never registered (:func:`ocrvl_ray.train.checkpoints.newest_stored`; one line says so).
    Without either (a first start, or a failure before the first upload) rank 0 looks at its
    output_dir: :func:`ocrvl_ray.train.checkpoints.start_from`."""
    import ray.train
    from ray.train import Checkpoint
    from ray.train.collective import barrier, broadcast_from_rank_zero

    checkpoint = ray.train.get_checkpoint()
    storage = ray.train.get_context().get_storage()
    newer = None
    if rank == 0:
        registered = ck.checkpoint_step(checkpoint.path) if checkpoint is not None else -1
        newer = ck.newest_stored(storage.storage_filesystem, storage.experiment_fs_path, registered)
        if newer is not None:
            print(f"ocrvl train: resuming from {newer}: stored but never registered by Ray Train, newer than "
                  f"{checkpoint.path if checkpoint is not None else 'no registered checkpoint'}", flush=True)
    newer = broadcast_from_rank_zero(newer)
    if newer is not None:
        checkpoint = Checkpoint(newer, filesystem=storage.storage_filesystem)
    out = Path(config["output_dir"])
    if checkpoint is None:
        plan = None
        if rank == 0:
            plan = ck.start_from(out, config.get("logging_dir"))
            if config.get("resume_from_checkpoint"):        # the user's own starting point wins
                plan[0].pop("resume_from_checkpoint", None)
            elif "resume_from_checkpoint" in plan[0]:
                plan[1].append(f"resuming from {plan[0]['resume_from_checkpoint']} (on disk; Ray Train stored "
                               "no checkpoint)")
        updates, notes = broadcast_from_rank_zero(plan)
        for note in notes if rank == 0 else ():
            print(f"ocrvl train: {note}", flush=True)
        config.update(updates)
        return ck.checkpoint_step(updates["resume_from_checkpoint"]) if "resume_from_checkpoint" in updates else -1
    step = ck.checkpoint_step(checkpoint.path)
    if local_rank == 0:
        with checkpoint.as_directory() as d:
            ck.restore(d, out, step)
    barrier()
    config["resume_from_checkpoint"] = str(out / f"checkpoint-{step}")
    log.info("resuming from %s (stored at %s)", config["resume_from_checkpoint"], checkpoint.path)
    return step


def train_loop_per_worker(payload: dict) -> None:
    """``payload``: entry, args (the entry's config dict), mode, watch_interval_s, ernie_root."""
    import ray.train
    from ray.train import Checkpoint
    from ray.train.collective import broadcast_from_rank_zero

    from ocrvl_ray.train.entries import load_entry

    ctx = ray.train.get_context()
    rank, local_rank = ctx.get_world_rank(), ctx.get_local_rank()
    config = dict(payload["args"])
    out = Path(config["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    if payload.get("ernie_root"):
        os.environ["ERNIE_ROOT"] = payload["ernie_root"]
    resumed = _restore(config, rank, local_rank)
    if payload.get("mode") != "launcher":     # launcher mode: per launched process, in child.py
        config = rank_config(config, rank, ctx.get_world_size())

    if payload.get("mode") == "launcher":
        runner = EntryRunner(lambda cfg: run_launcher(payload, cfg), config)
    else:
        _install_log_stream()
        _drain()
        runner = EntryRunner(load_entry(payload["entry"]), config)
    watcher = ck.CheckpointWatcher(out, after_step=resumed)
    staging = ck.side_dir(out, "staging")
    if rank == 0:
        shutil.rmtree(staging, ignore_errors=True)  # leftovers of a failed attempt
    logs: list[dict] = []
    runner.start()
    while True:
        runner.join(payload.get("watch_interval_s", 2.0))
        runner.raise_if_failed()
        news, staged = None, {}
        fresh = _drain()
        if rank == 0:
            logs = (logs + fresh)[-200:]
            exited = not runner.is_alive()
            for step in watcher.poll(trainer_exited=exited):
                path = ck.stage(out / f"checkpoint-{step}", staging)
                if path is not None:
                    staged[step] = path
            news = {"done": exited, "logs": len(fresh), "steps": sorted(staged)}
        news = broadcast_from_rank_zero(news)
        # As few reports as possible: Ray Train's result queue holds one and is polled every ~2 s.
        # Streamed log lines ride along with the first checkpoint, else go as one metric-only report.
        if news["logs"] and not news["steps"]:
            ray.train.report(ck.log_report(fresh) if rank == 0 else {})
        for i, step in enumerate(news["steps"]):
            if rank == 0:
                metrics = ck.checkpoint_metrics(staged[step], logs)
                if i == 0 and fresh:
                    metrics["log_history"] = ck.log_report(fresh)["log_history"]
                ray.train.report(metrics, checkpoint=Checkpoint.from_directory(str(staged[step])),
                                 checkpoint_dir_name=f"checkpoint-{step}")
                shutil.rmtree(staged[step], ignore_errors=True)
                log.info("reported checkpoint-%d step=%s loss=%s", step, metrics["step"], metrics.get("loss"))
            else:
                ray.train.report({}, checkpoint_dir_name=f"checkpoint-{step}")
        if news["done"]:
            break
    runner.join()
    runner.raise_if_failed()
    if rank == 0:
        for path in ck.unfinished(out):
            print(f"ocrvl train: warning: {path} has no {ck.STATE_FILE}; not reported", flush=True)
