"""Test-only Ray Train entries for engine=transformers: the production loop with a worker killed on cue.

The test pickles this module by value (``ray.cloudpickle.register_pickle_by_value``), so workers need no
``tests`` on their path.
"""
from __future__ import annotations

import os
from pathlib import Path


def crash_after_first_checkpoint(config: dict) -> None:
    """``loop.train_loop``, but rank 1 dies (``os._exit``, as a killed process) right after the run's first
    checkpointed report; the marker beside output_dir makes the restarted group run through."""
    import ray.train

    from ocrvl_ray.train.engines.transformers import loop

    marker = Path(str(config["output_dir"]).rstrip("/") + ".crashed")
    real = ray.train.report

    def report(metrics, checkpoint=None, **kw):
        real(metrics, checkpoint=checkpoint, **kw)
        if checkpoint is not None and ray.train.get_context().get_world_rank() == 1 and not marker.exists():
            marker.write_text(str(metrics.get("step")))
            os._exit(1)

    ray.train.report = report
    try:
        loop.train_loop(config)
    finally:
        ray.train.report = real
