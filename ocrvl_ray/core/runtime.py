"""Connecting to Ray the same way under ``ray job submit`` and on a laptop."""
from __future__ import annotations

import logging
import os

log = logging.getLogger("ocrvl")


def init_ray(num_cpus: int | None = None, num_gpus: int | None = None, quiet: bool = True):
    """Join the cluster named by ``RAY_ADDRESS`` (set by ``ray job submit``), else start a local Ray.

    A local start uses ``address="local"`` so a stale ``/tmp/ray/ray_current_cluster`` can never make
    ``ray.init()`` hang; resources are only passed when starting, never when connecting.
    """
    import ray

    if ray.is_initialized():
        return ray
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=not quiet)
    else:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                 log_to_driver=not quiet)
    return ray
