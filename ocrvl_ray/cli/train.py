"""``ocrvl train CONFIG.yaml [key=value ...]``: erniekit's config and overrides, run under Ray Train."""
from __future__ import annotations

import argparse
import sys

from ocrvl_ray.core.config import ConfigError, split_cli_args
from ocrvl_ray.core.errors import unwrap_ray


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="erniekit training YAML (e.g. run_ocr_vl_sft_16k.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="erniekit keys (max_steps=100, output_dir=...) and ours (num_workers=8, "
                             "storage_path=s3://..., run_name=..., max_failures=2, entry=mod:fn, "
                             "ernie_root=..., mode=launcher); see docs/train.md")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the resolved config and the pre-flight findings, do not train")


def run(args: argparse.Namespace) -> int:
    from ocrvl_ray.train.config import DEFAULT_ENTRY, load_train_config, run_name_for
    from ocrvl_ray.train.run import check

    yaml_path, overrides = split_cli_args(([args.config] if args.config else []) + list(args.overrides))
    ours, train_args = load_train_config(yaml_path, overrides)
    if yaml_path is None and ours.entry == DEFAULT_ENTRY:   # erniekit's model, data and LoRA keys live there
        raise ConfigError("pass the erniekit YAML (e.g. ocrvl train run_ocr_vl_sft_16k.yaml output_dir=/data/run1 "
                          "max_steps=100); only a custom entry=module:function runs without one")
    if args.dry_run:
        import yaml
        print(yaml.safe_dump({"ocrvl": ours.model_dump(), "run_name": run_name_for(ours, train_args),
                              "erniekit": train_args}, allow_unicode=True, sort_keys=False), end="")
    check(ours, train_args)
    if args.dry_run:
        return 0

    from ray.train import TrainingFailedError

    from ocrvl_ray.core.runtime import init_ray
    from ocrvl_ray.train.run import fit

    init_ray(quiet=False)                       # show the trainer's log lines
    try:
        result = fit(ours, train_args)
    except TrainingFailedError as e:
        print(f"ocrvl train: error: training failed after {ours.max_failures} restart(s): {_cause(e)} "
              "(the worker traceback is in the log above)", file=sys.stderr)
        return 1
    if result.checkpoint is None:
        from ocrvl_ray.train.checkpoints import why_none

        print(f"ocrvl train: done; no checkpoint reported: {why_none(train_args['output_dir'])}", file=sys.stderr)
    else:
        print(f"ocrvl train: done; latest checkpoint {result.checkpoint.path}", file=sys.stderr)
    return 0


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
