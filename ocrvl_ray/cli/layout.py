"""``ocrvl layout [config.yaml] [key=value ...]``: the same job as ``jobs/layout.py``."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ocrvl_ray.core.config import describe_keys
    from ocrvl_ray.layout.config import LayoutConfig

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = ("config keys (key=value on the command line or key: value in the YAML; defaults shown):\n  "
                + "\n  ".join(describe_keys(LayoutConfig)))
    p.add_argument("args", nargs="*", metavar="[config.yaml] [key=value ...]",
                   help="a LayoutConfig YAML and/or overrides, e.g. demo_models=true output=out/x_layout.lmdb "
                        "layout.device=gpu:0 (FAST_* environment variables also apply)")


def run(args: argparse.Namespace) -> int:
    from ocrvl_ray.core.config import load_config, split_cli_args
    from ocrvl_ray.layout.config import LayoutConfig
    from ocrvl_ray.layout.job import run_layout

    yaml_path, overrides = split_cli_args(args.args)
    cfg = load_config(LayoutConfig, yaml_path, overrides)
    from ocrvl_ray.layout.scale import gpu_plan

    plan = gpu_plan(cfg.layout.device, cfg.layout.batch_size, max(1, cfg.layout.max_actors))
    if plan:
        print(plan)
    report = run_layout(cfg)   # checks everything it can, then starts (or joins) Ray
    return 0 if report["pages_processed"] + report["pages_already_done"] >= report["pages_in"] else 1
