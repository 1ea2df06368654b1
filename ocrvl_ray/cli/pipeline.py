"""``ocrvl pipeline CONFIG.yaml [key=value ...]``: layout -> train -> merge -> eval, the same job as ``jobs/pipeline.py``."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("args", nargs="+", metavar="CONFIG.yaml [key=value ...]",
                   help="a pipeline YAML (run_dir, layout, train, merge) and optional overrides, e.g. "
                        "stages=[layout,train]")


def run(args: argparse.Namespace) -> int:
    from ocrvl_ray.core.config import load_config, split_cli_args
    from ocrvl_ray.core.runtime import init_ray
    from ocrvl_ray.end_to_end import PipelineConfig, check_pipeline, run_pipeline

    yaml_path, overrides = split_cli_args(args.args)
    cfg = load_config(PipelineConfig, yaml_path, overrides)
    check_pipeline(cfg)   # before Ray starts
    init_ray()
    run_pipeline(cfg)
    return 0
