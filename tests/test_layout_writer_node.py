"""The layout job writes the LMDB only from the head or a node marked ``persistent_node`` (issue 27 item 4): the
check run on each node of a real two-node local Ray (``ray.cluster_utils.Cluster``, in a subprocess with its own
temp dir, so the session Ray is untouched)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import json
import ray
from ray.cluster_utils import Cluster
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.layout.config import LayoutConfig
from ocrvl_ray.layout.job import writer_node

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
worker = cluster.add_node(num_cpus=1, include_dashboard=False)
try:
    ray.init(address=cluster.address, log_to_driver=False)

    @ray.remote(num_cpus=0)
    def check(persistent):      # writer_node reads the node it runs on, as the driver does in the job
        try:
            return ["ok", writer_node(LayoutConfig(persistent_node=persistent))]
        except OcrvlError as e:
            return ["refused", str(e)]

    def on(node_id, persistent=None):
        strategy = NodeAffinitySchedulingStrategy(node_id, soft=False)
        return ray.get(check.options(scheduling_strategy=strategy).remote(persistent))

    info = next(n for n in ray.nodes() if n["NodeID"] == worker.node_id)
    print(json.dumps({"head": on(cluster.head_node.node_id), "worker": on(worker.node_id),
                      "by_id": on(worker.node_id, worker.node_id), "ip": info["NodeManagerAddress"],
                      "host": info["NodeManagerHostname"]}))
finally:
    ray.shutdown()
    cluster.shutdown()
"""


def test_writer_refused_off_the_head_unless_persistent():
    tmp = tempfile.mkdtemp(prefix="ocrvl-wn-")        # short: Ray's socket paths live under it
    try:
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env.update(RAY_TMPDIR=tmp, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        proc = subprocess.run([sys.executable, "-c", PROBE], cwd=tmp, env=env, capture_output=True, text=True,
                              timeout=300)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    name = f"{got['ip']} ({got['host']})"
    assert got["head"] == ["ok", f"the head node {name}"]
    assert got["worker"] == ["refused", (
        f"the driver runs on node {name}, not the head: Ray writes the LMDB on the driver's node, and an autoscaler "
        "can remove this one with its disk; submit without --entrypoint-num-cpus / --entrypoint-resources so the "
        f"driver runs on the head (docs/cluster.md), or set persistent_node={got['ip']} if this node's disk outlives "
        "the job")]
    assert got["by_id"] == ["ok", f"node {name} (persistent_node)"]
