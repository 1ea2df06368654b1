"""Connecting to Ray the same way under ``ray job submit`` and on a laptop; what a stage asks Ray for."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Optional

from ocrvl_ray.core.errors import OcrvlError

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
        return ray
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    try:
        ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                 log_to_driver=not quiet)
    except Exception as e:
        err = start_timeout_error(e)
        if err is None:
            raise
        raise err from e
    return ray


#: What Ray 2.60 raises when a local start runs out of time: the GCS port file, the GCS connection, the raylet's
#: registration, the object store's.
_START_TIMEOUTS = ("Timed out waiting for file", "Failed to start GCS", "timed out during startup",
                   "while waiting for node to startup")


def start_timeout_error(e: BaseException) -> OcrvlError | None:
    """One line for a local Ray that did not start in time (Ray's own message runs to ~30 lines), else None."""
    text = str(e).strip()
    if not any(s in text for s in _START_TIMEOUTS):
        return None
    said = text.splitlines()[0].rstrip(". ")
    said = said if len(said) <= 120 else said[:117] + "..."
    return OcrvlError(f"the local Ray did not start in time (Ray: {said}); the machine is probably busy: rerun when "
                      "it is less loaded (RAY_gcs_server_port_wait_time_s=120 gives Ray's GCS longer than its 30 s), "
                      "or use a running cluster with RAY_ADDRESS=<head>:6379")


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


@dataclass(frozen=True)
class Waiting:
    """What the cluster cannot give a job right now (``waiting_on``): resource requests Ray holds pending or
    infeasible (``demands``, e.g. ``"{GPU: 1} x 2"``), whether an autoscaler is launching nodes for them
    (``launching``), and the nodes there are (``nodes``: their CPUs and GPUs, by node type when an autoscaler
    names them)."""
    demands: list[str]
    launching: bool
    nodes: str


def waiting_on() -> Waiting:
    """Asks the GCS (Ray 2.60's ``autoscaler.v2.sdk.get_cluster_status``, which reports task/actor and placement
    group demands with or without an autoscaler) and the v1 autoscaler's status record (pending launches and
    node types, on clusters started with ``--autoscaling-config``)."""
    import json

    import ray
    from ray._private import ray_constants
    from ray.autoscaler.v2.sdk import get_cluster_status
    from ray.experimental.internal_kv import _internal_kv_get

    status = get_cluster_status(ray.get_runtime_context().gcs_address)
    dem = status.resource_demands
    demands = [f"{_shape(b.bundle)} x {b.count}"
               for d in (*dem.ray_task_actor_demand, *dem.placement_group_demand, *dem.cluster_constraint_demand)
               for b in d.bundles_by_count]
    launching = bool(status.pending_launches or status.pending_nodes)
    raw = _internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS)
    report = (json.loads(raw) if raw else {}).get("autoscaler_report") or {}
    launching = launching or bool(report.get("pending_launches") or report.get("pending_nodes"))
    types = report.get("node_type_mapping") or {}   # node IP -> node type, from an autoscaler
    shapes: dict[str, int] = {}
    for n in ray.nodes():
        if n.get("Alive"):
            t = types.get(n["NodeManagerAddress"], "")
            s = _shape({k: v for k, v in n["Resources"].items() if k in ("CPU", "GPU")})
            s = f"{t} {s}" if t and not t.startswith("node_") else s   # without one Ray names types by node id
            shapes[s] = shapes.get(s, 0) + 1
    nodes = ", ".join(f"{s} x {c}" for s, c in sorted(shapes.items()))
    return Waiting(demands, launching, nodes)


def _shape(bundle: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(bundle.items())) + "}"
