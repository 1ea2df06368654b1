"""Test-only Ray Train entries for engine=transformers: the production loop with a worker killed on cue.

The test pickles this module by value (``ray.cloudpickle.register_pickle_by_value``), so workers need no
``tests`` on their path.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path


def crash_after_first_checkpoint(config: dict) -> None:
    """``loop.train_loop``, but rank 1 dies (``os._exit``, as a killed process) once the run's first checkpoint is
    registered by the controller (its record in the metrics log, by the test's convention ``<output_dir>.jsonl``);
    rank 0 meanwhile waits in the next step's all-reduce. The marker beside output_dir lets the restarted group
    run through."""
    import ray.train

    from ocrvl_ray.train.engines.transformers import loop

    out = str(config["output_dir"]).rstrip("/")
    marker, metrics = Path(out + ".crashed"), Path(out + ".jsonl")
    real = ray.train.report

    def registered() -> bool:
        return metrics.is_file() and any("checkpoint" in json.loads(line) for line in metrics.read_text().splitlines())

    def report(metrics_, checkpoint=None, **kw):
        real(metrics_, checkpoint=checkpoint, **kw)
        if checkpoint is not None and ray.train.get_context().get_world_rank() == 1 and not marker.exists():
            deadline = time.monotonic() + 120
            while not registered() and time.monotonic() < deadline:
                time.sleep(0.1)
            marker.write_text(str(metrics_.get("step")))
            os._exit(1)

    ray.train.report = report
    try:
        loop.train_loop(config)
    finally:
        ray.train.report = real
