"""Connecting to Ray the same way under ``ray job submit`` and on a laptop; what a stage asks Ray for."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Optional

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


@dataclass(frozen=True)
class StageResources:
    """What one copy of a stage asks Ray for, declared once next to the stage's code.

    ``actors`` is the (min, max) actor-pool size, None for stateless tasks. The Ray Data graph passes
    ``map_batches_args()`` and the cluster fit check (``ocrvl cluster-check``) reads the same fields.
    """
    name: str
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    memory: int = 0                       # bytes reserved per copy; 0 = none
    actors: Optional[tuple[int, int]] = None

    def map_batches_args(self) -> dict[str, Any]:
        """Ray 2.60 named ``map_batches`` parameters (no ``concurrency=``, no ``**ray_remote_args``)."""
        args: dict[str, Any] = {"num_cpus": self.num_cpus}
        if self.num_gpus > 0:
            args["num_gpus"] = self.num_gpus
        if self.memory:
            args["memory"] = self.memory
        if self.actors:
            from ray.data import ActorPoolStrategy

            args["compute"] = ActorPoolStrategy(min_size=self.actors[0], max_size=self.actors[1])
        return args

    def remote_args(self) -> dict[str, Any]:
        """The same request as ``ray_remote_args`` (e.g. for a datasink's write tasks)."""
        args: dict[str, Any] = {"num_cpus": self.num_cpus}
        if self.num_gpus > 0:
            args["num_gpus"] = self.num_gpus
        if self.memory:
            args["memory"] = self.memory
        return args
