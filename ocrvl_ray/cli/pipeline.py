"""``ocrvl pipeline CONFIG.yaml [key=value ...]``: layout -> train -> merge -> eval, the same job as ``jobs/pipeline.py``."""
from __future__ import annotations

from ocrvl_ray.cli import Spec


def run(cfg) -> int:
    from ocrvl_ray.core.runtime import init_ray
    from ocrvl_ray.end_to_end import check_pipeline, run_pipeline

    check_pipeline(cfg)   # before Ray starts
    init_ray()
    run_pipeline(cfg)
    return 0


SPEC = Spec("ocrvl_ray.end_to_end:PipelineConfig", run, usage="CONFIG.yaml [key=value ...]", yaml=True,
            note="e.g. ocrvl pipeline run.yaml stages=[layout,train] model_version=1.5")
