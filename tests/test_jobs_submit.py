"""`ray job submit --working-dir . -- python jobs/layout.py` for real, against a head started with `ray start`.

The head runs with token authentication on (a token file made for the test); the submitting client
passes the same token. The head is started with `--block` in its own process group and torn down by
signalling that group, so the test never runs `ray stop` (which would kill every Ray on the machine,
including the test session's own cluster).
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from ocrvl_ray.lmdb import LmdbReader, verify_lmdb

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def head(tmp_path):
    token = tmp_path / "auth_token"
    token.write_text(secrets.token_hex(32))
    # the entrypoint's `python` is resolved on the head's PATH: this venv's interpreter
    env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token),
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    env.pop("RAY_ADDRESS", None)
    gcs, dash, agent = _free_port(), _free_port(), _free_port()
    # its own temp dir: a killed head would leave /tmp/ray/ray_current_cluster naming a dead cluster, where Ray's
    # state API (used inside Ray Train) then looks first; short, for Ray's socket paths
    temp = tempfile.mkdtemp(prefix="ocrvl-head-")
    # every Ray on a machine defaults its job agent to port 52365: pick a free one so jobs can start
    proc = subprocess.Popen([RAY, "start", "--head", "--block", f"--port={gcs}", f"--dashboard-port={dash}",
                             f"--dashboard-agent-listen-port={agent}",
                             "--dashboard-host=127.0.0.1", "--num-cpus=2", "--disable-usage-stats", f"--temp-dir={temp}"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    url = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            r = subprocess.run([RAY, "job", "list", "--address", url], env=env, capture_output=True, text=True)
            if r.returncode == 0:
                break
            if proc.poll() is not None:
                pytest.fail("ray start --head exited:\n" + proc.stdout.read()[-3000:])
            time.sleep(2)
        else:
            pytest.fail("the head's job server did not come up in 120 s")
        yield {"url": url, "env": env}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:     # a graceful head stop takes ~30 s; the test's head holds nothing
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        shutil.rmtree(temp, ignore_errors=True)


def test_submit_layout_job_with_demo_models(head, tmp_path):
    out = tmp_path / "sample_train_layout.lmdb"       # the bundled sample's train split
    cmd = [RAY, "job", "submit", "--address", head["url"], "--working-dir", str(REPO),
           "--runtime-env-json", '{"env_vars": {"OCRVL_CACHE": "%s"}}' % (tmp_path / "cache"),
           "--", "python", "jobs/layout.py", "demo_models=true", "split=train",
           f"output={tmp_path / 'sample_layout.lmdb'}", "progress=false"]
    for _ in range(30):  # the job server answers before the head's agent accepts jobs
        res = subprocess.run(cmd, env=head["env"], capture_output=True, text=True, timeout=900, cwd=REPO)
        if "No available agent" not in res.stderr + res.stdout:
            break
        time.sleep(3)
    log = res.stdout[-4000:] + res.stderr[-2000:]
    assert res.returncode == 0, log
    assert "succeeded" in res.stdout, log
    assert f"layout run [train] -> {out}" in res.stdout, log
    check = verify_lmdb(str(out))
    assert check["ok"], check["problems"]
    with LmdbReader(str(out)) as r:
        assert len(r) > 0
        assert r.meta(0)["dataset"] == "ocr_public"
    # a relative output would land in Ray's temporary copy of the working dir: refused, naming the fix
    rel = subprocess.run(cmd[:-2] + ["output=out/x_layout.lmdb", "progress=false"], env=head["env"],
                         capture_output=True, text=True, timeout=900, cwd=REPO)
    assert rel.returncode != 0
    assert "output=out/x_layout.lmdb is relative" in rel.stdout + rel.stderr and "absolute path" in rel.stdout
    assert not (REPO / "out" / "x_layout.lmdb").exists()
    # without the token the same cluster refuses the client
    no_token = dict(head["env"], RAY_AUTH_MODE="disabled")
    no_token.pop("RAY_AUTH_TOKEN_PATH")
    denied = subprocess.run([RAY, "job", "list", "--address", head["url"]], env=no_token,
                            capture_output=True, text=True, timeout=120)
    assert denied.returncode != 0
