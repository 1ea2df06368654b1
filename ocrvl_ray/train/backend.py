"""Paddle collective backend for Ray Train v2: sets the environment Paddle's ``init_parallel_env`` /
``fleet.init`` read, on every worker, before the training function runs (and again, with new ports,
after every worker-group restart).

Two modes:
  in-process  one worker per GPU; PADDLE_TRAINER_ID/TRAINERS_NUM/TRAINER_ENDPOINTS/CURRENT_ENDPOINT,
              PADDLE_MASTER, PADDLE_DISTRI_BACKEND (nccl on GPU, gloo on CPU), FLAGS_selected_gpus,
              local rank and size — what ``paddle.distributed.launch`` would give each process.
  launcher    one worker per node that runs ``paddle.distributed.launch`` itself; MASTER_ADDR/PORT,
              NNODES, PADDLE_RANK (node rank) and POD_IP (else the launcher may not recognise its own IP).
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any, Optional

from ray.train.backend import Backend, BackendConfig
from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

IN_PROCESS, LAUNCHER = "in-process", "launcher"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def collective_env(rank: int, infos: list[dict[str, Any]], master: str, backend: Optional[str]) -> dict[str, str]:
    """In-process mode: the Paddle collective environment of world rank ``rank``; ``master`` is the
    ``ip:port`` of the TCP store rank 0 serves.

    ``infos[r]`` holds ``ip``, ``port``, ``local_rank``, ``local_world_size``, ``gpu_ids`` (Ray's ids of
    the worker's GPUs) and ``cuda_visible`` (the worker's CUDA_VISIBLE_DEVICES) of rank r.
    """
    me = infos[rank]
    eps = [f"{i['ip']}:{i['port']}" for i in infos]
    use_gpu = bool(me["gpu_ids"])
    env = {
        "PADDLE_TRAINER_ID": rank, "PADDLE_TRAINERS_NUM": len(infos), "PADDLE_GLOBAL_SIZE": len(infos),
        "PADDLE_GLOBAL_RANK": rank,
        "PADDLE_TRAINER_ENDPOINTS": ",".join(eps), "PADDLE_CURRENT_ENDPOINT": eps[rank],
        "PADDLE_MASTER": master,
        "PADDLE_DISTRI_BACKEND": backend or ("nccl" if use_gpu else "gloo"),
        "PADDLE_LOCAL_RANK": me["local_rank"], "PADDLE_RANK_IN_NODE": me["local_rank"],
        "PADDLE_LOCAL_SIZE": me["local_world_size"],
        "PADDLE_NNODES": len({i["ip"] for i in infos}),
        # what erniekit's CLI sets before launching
        "FLAGS_set_to_1d": "False", "NVIDIA_TF32_OVERRIDE": "0", "FLAGS_dataloader_use_file_descriptor": "False",
    }
    if use_gpu:
        env["FLAGS_selected_gpus"] = _gpu_indices(me)
    return {k: str(v) for k, v in env.items()}


def launcher_env(rank: int, infos: list[dict[str, Any]], master_port: int) -> dict[str, str]:
    """Launcher mode: worker ``rank`` is node ``rank`` of a ``paddle.distributed.launch`` job."""
    me = infos[rank]
    env = {"MASTER_ADDR": infos[0]["ip"], "MASTER_PORT": master_port, "NNODES": len(infos),
           "PADDLE_NNODES": len(infos), "PADDLE_RANK": rank, "POD_IP": me["ip"],
           "FLAGS_set_to_1d": "False", "NVIDIA_TF32_OVERRIDE": "0",
           "FLAGS_dataloader_use_file_descriptor": "False"}
    if me["gpu_ids"]:
        env["FLAGS_selected_gpus"] = _gpu_indices(me)
    return {k: str(v) for k, v in env.items()}


def _gpu_indices(info: dict[str, Any]) -> str:
    """Indices of the worker's GPUs within its CUDA_VISIBLE_DEVICES (what Paddle calls gpu:N)."""
    visible = [v for v in (info.get("cuda_visible") or "").split(",") if v != ""]
    if not visible:
        return ",".join(str(i) for i in range(len(info["gpu_ids"])))
    return ",".join(str(visible.index(g)) for g in info["gpu_ids"])


def _worker_info() -> dict[str, Any]:
    import ray
    import ray.train

    ctx = ray.train.get_context()
    return {"world_rank": ctx.get_world_rank(), "local_rank": ctx.get_local_rank(),
            "local_world_size": ctx.get_local_world_size(), "ip": ray.util.get_node_ip_address(),
            "port": free_port(), "gpu_ids": [str(g) for g in ray.get_runtime_context().get_accelerator_ids()
                                             .get("GPU", [])],
            "cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES", "")}


def _set_env(env: dict[str, str]) -> None:
    os.environ.update(env)


@dataclass
class PaddleConfig(BackendConfig):
    """``backend``: None = nccl with GPUs, gloo without. ``mode``: in-process or launcher."""
    backend: Optional[str] = None
    mode: str = IN_PROCESS

    @property
    def backend_cls(self):
        return PaddleBackend


class PaddleBackend(Backend):
    # All GPUs a node's workers hold stay visible to each of them, like paddle.distributed.launch.
    share_cuda_visible_devices = True

    def on_start(self, worker_group, backend_config: PaddleConfig) -> None:
        import ray

        infos = worker_group.execute(_worker_info)
        assert [i["world_rank"] for i in infos] == list(range(len(infos))), "workers not in world-rank order"
        port = worker_group.execute_single(0, free_port)
        if backend_config.mode == LAUNCHER:
            envs = [launcher_env(r, infos, port) for r in range(len(infos))]
        else:
            master = f"{infos[0]['ip']}:{port}"
            envs = [collective_env(r, infos, master, backend_config.backend) for r in range(len(infos))]
        ray.get([worker_group.execute_single_async(r, _set_env, env) for r, env in enumerate(envs)])


class Trainer(DataParallelTrainer):
    """Ray Train's ``DataParallelTrainer``; on a Ray this process started, without the placement-group cleaner.

    The cleaner (a detached actor, Ray 2.60) asks Ray's state API every second whether the controller lives. A
    local Ray does not serve that API: the cleaner logged "Failed to query Ray Train Controller actor state"
    every second of training and each fit ended with a 12 s wait for it (each ask hangs 40 s when
    ``/tmp/ray/ray_current_cluster`` names a dead cluster). A local Ray and its placement groups end with this
    process anyway; on a cluster (``ray job submit``, ``RAY_ADDRESS``) the cleaner stays."""

    def _create_default_callbacks(self):
        from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback

        callbacks = super()._create_default_callbacks()
        if not started_here():
            return callbacks
        return [c for c in callbacks if not isinstance(c, PlacementGroupCleanerCallback)]


def started_here() -> bool:
    """Whether this process started the Ray it is connected to (``ray.init(address="local")``)."""
    from ray._private import worker

    return bool(worker._global_node is not None and worker._global_node.head)
