"""A fake multi-node autoscaling Ray cluster on one machine, for drills (``tests/test_cluster_drill.py``).

Ray's fake provider (``RAY_FAKE_CLUSTER=1``, provider ``fake_multinode``) launches worker "nodes" as
extra raylets on this machine when the autoscaler sees demand, and removes them when idle. The head
runs as ``ray start --head --block`` in its own process session, on free ports and its own temp dir,
so it never touches another Ray on the machine. It is stopped by its own PIDs: every process of its
session plus every process whose command line names its GCS address or temp dir (the fake nodes'
raylets and workers). Never ``ray stop`` (it kills every Ray here) and never Ray's
``AutoscalingCluster`` (it runs ``ray stop --force``).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _proc_field(pid: int, name: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/{name}").read_bytes()
    except OSError:
        return b""


def _ppid(pid: int) -> int | None:
    stat = _proc_field(pid, "stat").decode(errors="replace")
    try:
        return int(stat.rsplit(")", 1)[1].split()[1])
    except (IndexError, ValueError):
        return None


def _sid(pid: int) -> int | None:
    stat = _proc_field(pid, "stat").decode(errors="replace")
    try:
        return int(stat.rsplit(")", 1)[1].split()[3])     # fields after "(comm)": state ppid pgrp session
    except (IndexError, ValueError):
        return None


class FakeCluster:
    """``FakeCluster(worker_types, head_resources={"CPU": 0})``; :meth:`start`, then :meth:`stop` (always).

    ``worker_types``: ``{name: {"resources": {...}, "min_workers": 0, "max_workers": N}}`` as in a
    cluster config's ``available_node_types``; ``resources`` may hold ``object_store_memory`` (bytes).
    """

    def __init__(self, worker_types: dict[str, dict[str, Any]], head_resources: dict[str, int] | None = None,
                 idle_timeout_s: float = 6.0, head_object_store_mb: int = 150, env: dict[str, str] | None = None):
        import ray._private.services

        self.worker_types = worker_types
        self.head_resources = dict(head_resources or {"CPU": 0})
        self.idle_timeout_s = idle_timeout_s
        self.head_object_store_mb = head_object_store_mb
        self.ip = ray._private.services.get_node_ip_address()
        self.gcs_port, self.dash_port = free_port(), free_port()
        self.gcs_address = f"{self.ip}:{self.gcs_port}"
        self.url = f"http://127.0.0.1:{self.dash_port}"
        # short: Ray's socket paths live under it
        self.temp_dir = tempfile.mkdtemp(prefix="ocrvl-fc-")
        # A lost node is declared dead after ~5 s (Ray's default: 5 missed health checks 3 s apart, ~15 s); a slow
        # but live one still has Ray's 10 s to answer each check.
        self.env = {"RAY_health_check_period_ms": "1000", **os.environ, **(env or {}), "RAY_FAKE_CLUSTER": "1",
                    "AUTOSCALER_UPDATE_INTERVAL_S": "1",
                    "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
        self.env.pop("RAY_ADDRESS", None)
        self.proc: subprocess.Popen | None = None
        self.log = Path(self.temp_dir) / "head.out"

    def config(self) -> dict[str, Any]:
        """The autoscaling config (fake_multinode provider) given to ``ray start --autoscaling-config``."""
        types = {name: {"resources": dict(t["resources"]), "node_config": {},
                        "min_workers": t.get("min_workers", 0), "max_workers": t.get("max_workers", 1)}
                 for name, t in self.worker_types.items()}
        types["ray.head.default"] = {"resources": self.head_resources, "node_config": {}, "max_workers": 0}
        return {
            "cluster_name": "ocrvl-fake",
            "max_workers": sum(t["max_workers"] for n, t in types.items() if n != "ray.head.default"),
            "upscaling_speed": 1.0,
            "idle_timeout_minutes": self.idle_timeout_s / 60,
            "provider": {"type": "fake_multinode", "use_node_id_as_ip": True, "disable_node_updaters": True,
                         "disable_launch_config_check": True, "gcs_address": self.gcs_address},
            "auth": {"ssh_user": "ubuntu"},
            "docker": {},
            "head_node_type": "ray.head.default",
            "available_node_types": types,
            "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
            "rsync_exclude": [], "rsync_filter": [], "initialization_commands": [], "setup_commands": [],
            "head_setup_commands": [], "worker_setup_commands": [], "head_start_ray_commands": [],
            "worker_start_ray_commands": [],
        }

    def start(self, timeout_s: float = 120) -> "FakeCluster":
        cfg = Path(self.temp_dir) / "autoscaling.json"
        cfg.write_text(json.dumps(self.config()))
        head = dict(self.head_resources)
        cmd = [RAY, "start", "--head", "--block", f"--autoscaling-config={cfg}", f"--port={self.gcs_port}",
               f"--node-ip-address={self.ip}", f"--dashboard-port={self.dash_port}", "--dashboard-host=127.0.0.1",
               f"--dashboard-agent-listen-port={free_port()}", f"--ray-client-server-port={free_port()}",
               f"--num-cpus={head.pop('CPU', 0)}", f"--num-gpus={head.pop('GPU', 0)}",
               f"--object-store-memory={self.head_object_store_mb << 20}", "--disable-usage-stats",
               f"--temp-dir={self.temp_dir}"]
        if head:
            cmd.append(f"--resources={json.dumps(head)}")
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start --head exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                self.nodes()
                r = subprocess.run([RAY, "job", "list", "--address", self.url], env=self.env,
                                   capture_output=True, text=True, timeout=60)
                if r.returncode == 0:
                    return self
            except (OSError, ValueError):
                pass
            time.sleep(1)
        raise RuntimeError(f"the fake cluster's head did not come up in {timeout_s:.0f} s")

    def nodes(self) -> list[dict[str, Any]]:
        """Alive nodes from the dashboard's state API: node_id, node_ip, is_head_node, resources_total, labels."""
        with urllib.request.urlopen(f"{self.url}/api/v0/nodes?limit=1000&detail=true", timeout=20) as r:
            data = json.loads(r.read())
        return [n for n in data["data"]["result"]["result"] if n["state"] == "ALIVE"]

    def actor_nodes(self, class_name: str) -> list[str]:
        """Node ids of the alive actors whose class name contains ``class_name``."""
        with urllib.request.urlopen(f"{self.url}/api/v0/actors?limit=10000&detail=true", timeout=20) as r:
            data = json.loads(r.read())
        return [a["node_id"] for a in data["data"]["result"]["result"]
                if a["state"] == "ALIVE" and class_name in (a.get("class_name") or "")]

    def workers(self, node_type: str | None = None) -> list[dict[str, Any]]:
        """Alive worker (non-head) nodes, optionally only those of one node type."""
        return [n for n in self.nodes() if not n["is_head_node"]
                and (node_type is None or self.node_type(n["node_id"]) == node_type)]

    def node_type(self, node_id: str) -> str | None:
        """The node type the fake provider launched ``node_id`` as (its raylet's ``RAY_NODE_TYPE_NAME``)."""
        try:
            env = _proc_field(self.raylet_pid(node_id), "environ").split(b"\0")
        except LookupError:
            return None
        return next((e.split(b"=", 1)[1].decode() for e in env if e.startswith(b"RAY_NODE_TYPE_NAME=")), None)

    def wait(self, predicate, timeout_s: float, what: str, every_s: float = 1.0):
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            got = predicate()
            if got:
                return got
            time.sleep(every_s)
        raise TimeoutError(f"fake cluster: {what} not within {timeout_s:.0f} s")

    def raylet_pid(self, node_id: str) -> int:
        """PID of the raylet of the node ``node_id`` (hex)."""
        for pid in self.pids():
            cmd = _proc_field(pid, "cmdline")
            if b"raylet" in cmd.split(b"\0")[0] and node_id.encode() in _proc_field(pid, "environ") + cmd:
                return pid
        raise LookupError(f"no raylet of node {node_id} among this cluster's processes")

    def kill_node(self, node_id: str) -> list[int]:
        """A node dies at once: SIGKILL its raylet and every process under it (its workers and agents)."""
        raylet = self.raylet_pid(node_id)
        ours = set(self.pids())
        parent = {pid: _ppid(pid) for pid in ours}
        doomed = {raylet}
        while True:
            more = {pid for pid, pp in parent.items() if pp in doomed} - doomed
            if not more:
                break
            doomed |= more
        for pid in sorted(doomed):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return sorted(doomed)

    def pids(self) -> list[int]:
        """Every live process of this cluster: the head's session, and processes naming its GCS or temp dir."""
        if self.proc is None:
            return []
        marks = (self.gcs_address.encode(), self.temp_dir.encode())
        me = os.getpid()
        out = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == me:
                continue
            pid = int(entry)
            cmd = _proc_field(pid, "cmdline")
            if not cmd or _proc_field(pid, "stat").split(b") ")[-1][:1] == b"Z":
                continue
            if _sid(pid) == self.proc.pid or any(m in cmd for m in marks):
                out.append(pid)
        return sorted(out)

    def stop(self, grace_s: float = 5.0) -> list[int]:
        """SIGTERM, then SIGKILL, every process of :meth:`pids`; returns those still alive after (none)."""
        if self.proc is None:
            return []
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
            for pid in self.pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.time() + wait_s
            while time.time() < deadline and self.pids():
                self.proc.poll()
                time.sleep(0.2)
        self.proc.poll()
        left = self.pids()
        if not left:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
        return left

    def __enter__(self) -> "FakeCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

