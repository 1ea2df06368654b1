"""``ocrvl cluster-check cluster.yaml [LAYOUT.yaml] [--train-workers N]``: offline fit of the jobs on a cluster.

Exit 0 = OK, 1 = problems (one line each), 2 = Ray rejects the cluster config or a file is missing.
"""
from __future__ import annotations

from typing import Optional

from pydantic import Field

from ocrvl_ray.cli import Spec
from ocrvl_ray.core.config import JobConfig


class ClusterCheckConfig(JobConfig):
    cluster: str = Field(description="the cluster.yaml given to `ray up`")
    layout: Optional[str] = Field(None, description="a LayoutConfig YAML to fit (e.g. configs/cluster_layout.yaml)")
    train_workers: int = Field(0, ge=0, description="Ray Train workers (num_workers) to fit")
    gpus_per_worker: float = Field(1, ge=0, description="1 in-process; GPUs per node in launcher mode")
    cpus_per_worker: float = Field(1, ge=0, description="CPUs per training worker")


def run(cfg: ClusterCheckConfig) -> int:
    from ocrvl_ray.cluster import check_cluster

    problems = check_cluster(cfg.cluster, cfg.layout, cfg.train_workers, cfg.gpus_per_worker, cfg.cpus_per_worker)
    for p in problems:
        print(f"problem: {p}")
    print(f"{cfg.cluster}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


SPEC = Spec("ocrvl_ray.cli.cluster_check:ClusterCheckConfig", run,
            usage="CLUSTER.yaml [LAYOUT.yaml] [--train-workers N] [key=value ...]", positionals=("cluster", "layout"))
