"""``ocrvl layout [config.yaml] [key=value ...]``: the same job as ``jobs/layout.py``."""
from __future__ import annotations

from ocrvl_ray.cli import Spec


def run(cfg) -> int:
    from ocrvl_ray.layout.job import run_layout
    from ocrvl_ray.layout.scale import gpu_plan

    plan = gpu_plan(cfg)
    if plan:
        print(plan)
    report = run_layout(cfg)   # checks everything it can, then starts (or joins) Ray
    return 0 if report["pages_processed"] + report["pages_already_done"] >= report["pages_in"] else 1


SPEC = Spec("ocrvl_ray.layout.config:LayoutConfig", run, usage="[config.yaml] [key=value ...]", yaml=True,
            note="e.g. demo_models=true output=out/x_layout.lmdb layout.device=gpu:0 (FAST_* environment variables "
                 "also apply)")
