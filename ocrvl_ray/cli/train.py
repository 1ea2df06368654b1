"""``ocrvl train CONFIG.yaml [key=value ...]``: erniekit's config and overrides, run under Ray Train.

The one convention of every command, with one difference: keys that are not ours (:class:`TrainConfig`) are
erniekit's and go to the entry untouched; only a near miss of one of ours (``num_worker=2``) is refused here, with
a did-you-mean (``train.config.typos_of_ours``); the erniekit pre-flight checks the rest against the fork.
``engine=transformers`` (PyTorch + PEFT, run from ``.venv-torch``) needs no YAML: its keys are its own
(``train.engines.transformers.TransformersArgs``) and an unknown one is refused before Ray starts.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Optional

from pydantic import Field

from ocrvl_ray.cli import Spec
from ocrvl_ray.core.config import ConfigError
from ocrvl_ray.core.errors import unwrap_ray
from ocrvl_ray.train.config import TrainConfig


class TrainCommand(TrainConfig):
    """Our training keys plus the command's own switch."""
    dry_run: bool = Field(False, description="print the resolved config and the pre-flight findings, do not train")


@dataclass
class TrainArgs:
    ours: TrainConfig
    erniekit: dict[str, Any]
    yaml_path: Optional[str]
    dry_run: bool


def load(argv: list[str]) -> TrainArgs:
    from ocrvl_ray.core.config import parse_argv, truthy
    from ocrvl_ray.train.config import load_train_config

    yaml_path, overrides = parse_argv(TrainCommand, argv, yaml=True)
    dry_run = truthy(overrides.pop("dry_run", False))
    ours, train_args = load_train_config(yaml_path, overrides)
    return TrainArgs(ours, train_args, yaml_path, dry_run)


def run(a: TrainArgs) -> int:
    from ocrvl_ray.train.config import DEFAULT_ENTRY, run_name_for
    from ocrvl_ray.train.run import check

    ours, train_args = a.ours, a.erniekit
    if a.yaml_path is None and ours.entry == DEFAULT_ENTRY:   # erniekit's model, data and LoRA keys live there
        raise ConfigError("pass the erniekit YAML (e.g. ocrvl train run_ocr_vl_sft_16k.yaml output_dir=/data/run1 "
                          "max_steps=100); only a custom entry=module:function runs without one")
    if a.dry_run:
        import yaml
        print(yaml.safe_dump({"ocrvl": ours.model_dump(), "run_name": run_name_for(ours, train_args),
                              "erniekit": train_args}, allow_unicode=True, sort_keys=False), end="")
    check(ours, train_args)
    if a.dry_run:
        return 0

    from ray.train import TrainingFailedError

    from ocrvl_ray.train.console import fit_quietly, log_path

    try:
        result = fit_quietly(ours, train_args)   # our lines here, the workers' and Ray's in <output_dir>.log
    except TrainingFailedError as e:
        print(f"ocrvl train: error: training failed after {ours.max_failures} restart(s): {_cause(e)} "
              f"(the worker traceback is in {log_path(train_args)})", file=sys.stderr)
        return 1
    if result.checkpoint is None:
        from ocrvl_ray.train.checkpoints import why_none

        print(f"ocrvl train: done; no checkpoint reported: {why_none(train_args['output_dir'])}", file=sys.stderr)
    else:
        print(f"ocrvl train: done; latest checkpoint {result.checkpoint.path}", file=sys.stderr)
    return 0


SPEC = Spec("ocrvl_ray.cli.train:TrainCommand", run, usage="ERNIEKIT.yaml [key=value ...] [--dry-run]", yaml=True,
            load=load, note="Any other key is erniekit's and goes to the entry untouched (max_steps=100, "
                            "output_dir=..., see docs/train.md); a near miss of one of ours gets a did-you-mean. "
                            "engine=transformers (from .venv-torch) checks its own keys: docs/train_transformers.md.")


def _cause(error: Exception) -> str:
    """``rank N: Type: message`` of the first failed worker, else the error's own type and message."""
    failures = getattr(error, "worker_failures", None) or {}
    if failures:
        rank, e = sorted(failures.items())[0]
        cause = unwrap_ray(e)
        return f"rank {rank}: {type(cause).__name__}: {_last_line(cause)}"
    inner = getattr(error, "controller_failure", error)
    return f"{type(inner).__name__}: {_last_line(inner)}"


def _last_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[-1] if lines else ""
