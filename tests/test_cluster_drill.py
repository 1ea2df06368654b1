"""The multi-node drill (issue 27): a fake autoscaling cluster on this machine, jobs through `ray job submit`.

Head with `CPU: 0`, worker types `cpu` {CPU: 1} and `gpu` {CPU: 1, GPU: 1} (fake GPUs), `min_workers: 0`,
idle nodes removed after a few seconds (:mod:`ocrvl_ray.testing.fake_cluster`: own ports, own temp dir,
own process session, stopped by its own PIDs). The layout job runs on a 60-page manifest with both
detector pools asking for a GPU (`num_gpus=1`; the demo detectors compute on the CPU: this Paddle has no
CUDA), so GPU nodes must be launched from zero. Every finished run must equal a single-node run's LMDB
(keys and value hashes).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from ocrvl_ray.testing.fake_cluster import RAY, FakeCluster

REPO = Path(__file__).resolve().parents[1]
PAGES = (400, 566)        # small pages: the template is resolution independent
N_DRAWN, COPIES = 6, 10   # 6 rendered pages, each under 10 page ids: 60 pages
MB = 1 << 20
GPU_POOLS = ["layout.device=cpu", "layout.num_gpus=1", "layout.num_cpus=0",
             "cells.device=cpu", "cells.num_gpus=1", "cells.num_cpus=0"]

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    """60 pages: the sample's report template drawn 6 times, each copied under 10 page ids, then `prepare`d."""
    from ocrvl_ray.demo.sample import make_sample_dataset
    from ocrvl_ray.ingest.prepare import PrepareConfig, prepare

    root = tmp_path_factory.mktemp("drill-data")
    data = make_sample_dataset(root / "ds", n_pages=N_DRAWN, seed=5, size=PAGES)
    images, labels = Path(data["images_dir"]), Path(data["labels_dir"])
    for page in data["pages"]:
        doc = json.loads(Path(page["label"]).read_text("utf-8"))
        for k in range(1, COPIES):
            ident = f"{page['id']}_c{k:02d}"
            doc["Images"]["identifier"] = ident
            (labels / f"{ident}.json").write_text(json.dumps(doc, ensure_ascii=False), "utf-8")
            shutil.copyfile(page["image"], images / f"{ident}.png")
    out = root / "manifest.parquet"
    prepare(PrepareConfig(dataset="ocr_public", labels=[str(labels)], images=[str(images)], out=str(out),
                          quiet=True))
    return out


def _job_args(manifest: Path, output: Path) -> list[str]:
    return [f"manifest={manifest}", f"output={output}", "demo_models=true", "report_html=false",
            "progress_every_s=1", "decode_batch_size=4", "compose_batch_size=4"]


@pytest.fixture(scope="module")
def single_node(manifest, tmp_path_factory) -> Path:
    """The reference: the same job on one local Ray (no GPU requests)."""
    root = tmp_path_factory.mktemp("drill-single")
    out = root / "single_layout.lmdb"
    env = _env(root)
    res = subprocess.run([sys.executable, str(REPO / "jobs" / "layout.py"), *_job_args(manifest, out), "num_cpus=2"],
                         env=env, capture_output=True, text=True, timeout=600, cwd=root)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    from ocrvl_ray.lmdb import completed_pages

    assert len(completed_pages(str(out))) == N_DRAWN * COPIES
    return out


def _env(root: Path) -> dict[str, str]:
    env = dict(os.environ, OCRVL_CACHE=str(root / "cache"), RAY_AUTH_MODE="disabled")
    env.pop("RAY_ADDRESS", None)
    return env


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    fc = FakeCluster({"cpu": {"resources": {"CPU": 1, "object_store_memory": 100 * MB}, "max_workers": 3},
                      "gpu": {"resources": {"CPU": 1, "GPU": 1, "object_store_memory": 100 * MB}, "max_workers": 2}},
                     head_resources={"CPU": 0}, idle_timeout_s=5, head_object_store_mb=150,
                     env={"RAY_AUTH_MODE": "disabled"})
    try:
        yield fc.start()
    finally:
        left = fc.stop()
        assert not left, f"processes of the fake cluster left running: {left}"


def _contents(path: Path) -> dict[bytes, str]:
    """Every key -> sha256 of its value; the identity record by its hash and identity (not the code's commit)."""
    from ocrvl_ray.lmdb.schema import IDENTITY_KEY, open_readonly

    env = open_readonly(str(path))
    try:
        with env.begin() as txn:
            out = {k: hashlib.sha256(v).hexdigest() for k, v in txn.cursor()}
            rec = json.loads(txn.get(IDENTITY_KEY))
    finally:
        env.close()
    out[IDENTITY_KEY] = hashlib.sha256(json.dumps([rec["hash"], rec["identity"]], sort_keys=True).encode()).hexdigest()
    return out


def _submit(fc: FakeCluster, root: Path, args: list[str], job: str = "layout.py") -> str:
    """`ray job submit --no-wait` of jobs/<job> with a PYTHONPATH runtime env (all fake nodes share this disk);
    returns the submission id."""
    sid = f"drill-{uuid.uuid4().hex[:8]}"
    runtime_env = {"env_vars": {"PYTHONPATH": str(REPO), "OCRVL_CACHE": str(root / "cache")}}
    res = subprocess.run([RAY, "job", "submit", "--address", fc.url, "--submission-id", sid, "--no-wait",
                          "--runtime-env-json", json.dumps(runtime_env), "--",
                          "python", str(REPO / "jobs" / job), *args],
                         env=fc.env, capture_output=True, text=True, timeout=120, cwd=root)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return sid


def _status(fc: FakeCluster, sid: str) -> str:
    """The job's status from the job server's REST API (what `ray job status` asks)."""
    with urllib.request.urlopen(f"{fc.url}/api/jobs/{sid}", timeout=20) as r:
        return json.loads(r.read())["status"]


def _logs(fc: FakeCluster, sid: str) -> str:
    with urllib.request.urlopen(f"{fc.url}/api/jobs/{sid}/logs", timeout=20) as r:
        return json.loads(r.read())["logs"]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _run(fc: FakeCluster, root: Path, args: list[str], during=None, timeout_s: float = 400,
         job: str = "layout.py") -> dict:
    """Submit, poll every second (``during(fc, logs)`` may act), return status, logs and the GPU nodes seen."""
    sid = _submit(fc, root, args, job)
    gpu_seen: set[str] = set()
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        status = _status(fc, sid)
        gpu_seen |= {n["node_id"] for n in fc.workers("gpu")}
        if status in ("SUCCEEDED", "FAILED", "STOPPED"):
            break
        if during is not None:
            during(fc, _logs(fc, sid))
        time.sleep(1)
    else:
        subprocess.run([RAY, "job", "stop", "--address", fc.url, sid], env=fc.env, capture_output=True, timeout=60)
        pytest.fail(f"job {sid} not finished in {timeout_s:.0f} s:\n{_logs(fc, sid)[-3000:]}")
    return {"status": status, "logs": _logs(fc, sid), "gpu_nodes": gpu_seen}


def test_layout_job_scales_from_zero_survives_a_lost_raylet_and_matches_one_node(cluster, manifest, single_node,
                                                                              tmp_path):
    """0 worker nodes at start; the GPU-requesting pools get GPU nodes launched; once pages are being composed a
    worker node's raylet is SIGKILLed (a CPU node's, else any). The job succeeds, its LMDB equals the
    single-node run's (keys and value hashes), and the idle nodes are removed afterwards."""
    import re
    import signal

    assert cluster.workers() == []                       # nothing but the CPU: 0 head at start
    killed: list[str] = []

    def kill_one(fc: FakeCluster, logs: str) -> None:
        done = [int(m) for m in re.findall(r"(\d+)/\d+ pages composed", logs)]
        if killed or not done or max(done) == 0:
            return
        victims = fc.workers("cpu") or fc.workers()
        if victims:
            node = victims[0]["node_id"]
            kind = fc.node_type(node)
            os.kill(fc.raylet_pid(node), signal.SIGKILL)
            killed.append(f"{kind} node {node} at {max(done)} pages composed")

    out = tmp_path / "drill_layout.lmdb"
    got = _run(cluster, tmp_path, _job_args(manifest, out) + GPU_POOLS, during=kill_one)
    assert got["status"] == "SUCCEEDED", got["logs"][-4000:]
    assert len(got["gpu_nodes"]) >= 1, got["logs"][-2000:]
    assert killed, "no worker node was running while pages were composed:\n" + got["logs"][-3000:]
    assert _contents(out) == _contents(single_node)
    cluster.wait(lambda: cluster.workers() == [], 90, "idle worker nodes removed")
    print(f"drill: GPU nodes launched {sorted(got['gpu_nodes'])}; raylet killed: {killed[0]}")


def test_infeasible_request_stops_with_one_line(cluster, manifest, tmp_path):
    """No node type offers 2 GPUs: the job stops within its stall timeout, naming the unmet request."""
    t0 = time.time()
    out = tmp_path / "never_layout.lmdb"
    got = _run(cluster, tmp_path, _job_args(manifest, out) + GPU_POOLS + ["layout.num_gpus=2", "stall_timeout_s=10"],
               timeout_s=240)
    took = time.time() - t0
    assert got["status"] == "FAILED", got["logs"][-3000:]
    lines = [line for line in got["logs"].splitlines() if "no page composed for" in line]
    assert len(lines) == 1 and "GPU" in lines[0] and "wait_for_nodes=true" in lines[0], got["logs"][-3000:]
    assert took < 10 + 120, took               # the timeout, plus submitting and starting the job


def test_train_two_nodes_node_lost_after_upload_resumes_from_it(cluster, tmp_path):
    """Ray Train, 2 workers on two 1-CPU nodes. Once a checkpoint is in storage, a node hosting a worker dies
    (its raylet and every process under it SIGKILLed): once Ray declares the node dead the run restarts from the
    newest complete stored checkpoint, registered or not (item 7), never from step 1, and finishes."""
    from pyarrow.fs import LocalFileSystem

    from ocrvl_ray.testing.train import build_tiny_base
    from ocrvl_ray.train.checkpoints import checkpoint_step, newest_stored

    base = build_tiny_base(tmp_path / "base")
    storage, run = tmp_path / "storage", tmp_path / "run"
    args = ["num_workers=2", "use_gpu=false", f"output_dir={run}", f"storage_path={storage}", "run_name=drill",
            "max_failures=2", "watch_interval_s=0.5", "entry=ocrvl_ray.testing.train:tiny_lora_sft",
            f"model_name_or_path={base}", "max_steps=16", "save_steps=4"]
    killed: dict = {}
    done = threading.Event()

    def kill_after_upload() -> None:
        """Find a node hosting a train worker, then kill it as soon as checkpoint-4 is in storage."""
        target = None
        while not done.is_set() and not killed:
            try:
                if target is None:
                    head = {n["node_id"] for n in cluster.nodes() if n["is_head_node"]}
                    hosts = sorted(set(cluster.actor_nodes("RayTrainWorker")) - head)
                    target = hosts[-1] if len(hosts) == 2 else None
                elif (storage / "drill" / "checkpoint-4" / "trainer_state.json").is_file():
                    stored = newest_stored(LocalFileSystem(), str(storage / "drill"), -1)
                    workers = {pid for pid in cluster.pids() if _cmdline(pid).startswith(b"ray::RayTrainWorker")}
                    doomed = cluster.kill_node(target)
                    killed.update(node=target, stored=checkpoint_step(stored), workers=len(workers & set(doomed)))
            except (OSError, ValueError, LookupError):
                pass
            time.sleep(0.1 if target else 0.5)

    killer = threading.Thread(target=kill_after_upload, daemon=True)
    killer.start()
    try:
        got = _run(cluster, tmp_path, args, timeout_s=420, job="train.py")
    finally:
        done.set()
        killer.join(30)
    assert killed, got["logs"][-3000:]
    assert killed["workers"] == 1, killed      # the node's train worker died with it (not only its raylet)
    assert got["status"] == "SUCCEEDED", got["logs"][-4000:]
    attempts = [json.loads(line) for line in (run / "attempts.jsonl").read_text().splitlines()]
    assert attempts[0]["resume_from_checkpoint"] is None and len(attempts) >= 2, attempts
    resumed = attempts[1]["resume_from_checkpoint"]
    assert resumed is not None and checkpoint_step(resumed) >= killed["stored"], (attempts, killed)
    print(f"drill: killed {killed}, resumed from {resumed}; "
          f"{sum('never registered' in line for line in got['logs'].splitlines())} unregistered-checkpoint line(s)")
    assert (storage / "drill" / "checkpoint-16" / "trainer_state.json").is_file()
