"""``ocrvl cluster-check cluster.yaml [LAYOUT.yaml] [--train-workers N]``: offline fit of the jobs on a cluster.

Exit 0 = OK, 1 = problems (one line each), 2 = Ray rejects the cluster config or a file is missing.
"""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("cluster", help="the cluster.yaml given to `ray up`")
    p.add_argument("layout", nargs="?", help="a LayoutConfig YAML to fit (e.g. configs/cluster_layout.yaml)")
    p.add_argument("--train-workers", type=int, default=0, help="Ray Train workers (num_workers) to fit")
    p.add_argument("--gpus-per-worker", type=float, default=1, help="1 in-process; GPUs per node in launcher mode")
    p.add_argument("--cpus-per-worker", type=float, default=1)


def run(args: argparse.Namespace) -> int:
    from ocrvl_ray.cluster import check_cluster

    problems = check_cluster(args.cluster, args.layout, args.train_workers, args.gpus_per_worker,
                             args.cpus_per_worker)
    for p in problems:
        print(f"problem: {p}")
    print(f"{args.cluster}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0
