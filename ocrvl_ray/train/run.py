"""Driver side: build the Ray Train trainer for a training config and run it (``DataParallelTrainer`` with the
Paddle backend; ``TorchTrainer`` for engine=transformers)."""
from __future__ import annotations

import logging
import os
import sys
from typing import Any

from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.train.config import DEFAULT_ENTRY, TrainConfig, run_name_for
from ocrvl_ray.train.preflight import audit

log = logging.getLogger("ocrvl.train")


def check(ours: TrainConfig, args: dict[str, Any]) -> None:
    """Pre-flight: print every finding on its own line (stderr); raise when any is an error."""
    if ours.engine == "transformers":
        check_transformers(ours, args)
        return
    if ours.engine == "paddleformers":
        from ocrvl_ray.train.engines.paddleformers import check_config, check_installed

        check_config(args)
        check_installed()
    findings = []
    if ours.preflight:
        findings = audit(args, world_size(ours))
        if ours.entry == DEFAULT_ENTRY:
            from ocrvl_ray.train.engines import erniekit

            findings += erniekit.audit(args, ours.ernie_root or os.environ.get("ERNIE_ROOT"))  # checkout too
        findings.sort(key=lambda f: f.level != "error")
    for f in findings:
        print(f"ocrvl train: {f}", file=sys.stderr)
    errors = [f for f in findings if f.level == "error"]
    if errors:
        raise OcrvlError(f"pre-flight found {len(errors)} problem(s) listed above; fix them "
                         "(or skip the audit with preflight=false)")
    if ours.entry == DEFAULT_ENTRY and not ours.preflight:   # the audit checked the checkout with the rest
        from ocrvl_ray.train.entries import ernie_checkout

        if not (ours.ernie_root or os.environ.get("ERNIE_ROOT")):
            ernie_checkout(None)                      # raises the one-line "set ernie_root" error
        try:
            ernie_checkout(ours.ernie_root)
        except OcrvlError as e:                       # the workers may still have it
            print(f"ocrvl train: warning: on this machine {e}", file=sys.stderr)


def check_transformers(ours: TrainConfig, args: dict[str, Any]) -> None:
    """engine=transformers: torch/peft here, the engine keys, the LMDBs and shards for the workers; use_gpu=true
    on a local run needs CUDA here (a cluster's GPUs are checked when Ray is up, ``build_trainer``)."""
    from ocrvl_ray.train.engines import transformers as engine

    engine.check_installed()
    if engine.check_config(args, world_size(ours)).strategy == "fsdp" and ours.use_gpu is False:
        raise OcrvlError("strategy=fsdp needs GPUs (Ray Train's FSDP is GPU-only); use strategy=ddp on CPU")
    if ours.use_gpu and not os.environ.get("RAY_ADDRESS"):
        import torch

        if not torch.cuda.is_available():
            raise OcrvlError("use_gpu=true, but torch sees no CUDA GPU on this machine; set use_gpu=false (CPU, gloo) "
                             "or use_gpu=null (GPUs when the cluster has them)")


def world_size(ours: TrainConfig) -> int:
    """Training processes: one per worker, or per GPU of each node in launcher mode."""
    if ours.mode == "launcher" and ours.use_gpu is not False:
        return ours.num_workers * ours.gpus_per_worker
    return ours.num_workers


def run_config(ours: TrainConfig, args: dict[str, Any]):
    from ray.train import CheckpointConfig, FailureConfig, RunConfig
    from ocrvl_ray.train.callbacks import MetricsLog

    return RunConfig(name=run_name_for(ours, args), storage_path=ours.storage_path,
                     failure_config=FailureConfig(max_failures=ours.max_failures),
                     checkpoint_config=CheckpointConfig(num_to_keep=ours.num_to_keep),
                     callbacks=[MetricsLog(ours.metrics_log)] if ours.metrics_log else None,
                     # print() in workers once, not also through Ray Train's patched logger
                     worker_runtime_env={"env_vars": {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}})


def build_trainer(ours: TrainConfig, args: dict[str, Any]):
    """The Ray Train trainer for our keys + the entry's config dict: ``backend.Trainer`` (Paddle backend), or
    ``TorchTrainer`` (``ours.entry`` as the per-worker loop, gloo on CPU) for engine=transformers."""
    import ray
    from ray.train import ScalingConfig

    use_gpu = ours.use_gpu if ours.use_gpu is not None else ray.cluster_resources().get("GPU", 0) > 0
    resources = {"CPU": ours.cpus_per_worker}
    if use_gpu:
        resources["GPU"] = ours.gpus_per_worker if ours.mode == "launcher" else 1
    if ours.engine == "transformers":
        from ray.train.torch import TorchTrainer

        from ocrvl_ray.train.entries import load_entry

        if use_gpu and ray.cluster_resources().get("GPU", 0) < 1:
            raise OcrvlError("use_gpu=true, but the Ray cluster has no GPU; set use_gpu=false (CPU, gloo) or "
                             "use_gpu=null")
        if not use_gpu and args.get("strategy") == "fsdp":
            raise OcrvlError("strategy=fsdp needs GPUs and the Ray cluster has none; use strategy=ddp on CPU")
        return TorchTrainer(load_entry(ours.entry), train_loop_config=args,
                            scaling_config=ScalingConfig(num_workers=ours.num_workers, use_gpu=use_gpu,
                                                         resources_per_worker=resources),
                            run_config=run_config(ours, args))
    from ocrvl_ray.train.backend import PaddleConfig, Trainer
    from ocrvl_ray.train.worker import train_loop_per_worker

    payload = {"entry": ours.entry, "args": args, "mode": ours.mode,
               "watch_interval_s": ours.watch_interval_s, "ernie_root": ours.ernie_root}
    return Trainer(
        train_loop_per_worker, train_loop_config=payload,
        backend_config=PaddleConfig(mode=ours.mode),
        scaling_config=ScalingConfig(num_workers=ours.num_workers, use_gpu=use_gpu,
                                     resources_per_worker=resources,
                                     placement_strategy="SPREAD" if ours.mode == "launcher" else "PACK"),
        run_config=run_config(ours, args))


def fit(ours: TrainConfig, args: dict[str, Any]):
    """Run training to the end; returns Ray Train's ``Result`` (``.checkpoint`` = latest checkpoint-N)."""
    result = build_trainer(ours, args).fit()
    if result.checkpoint is not None:
        log.info("latest checkpoint: %s", result.checkpoint.path)
    return result
