"""CLI user errors are one line with the fix, exit 2, no traceback; ``--help`` lists config keys (issue 10)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Literal, Optional

import pytest
from pydantic import BaseModel, Field

from ocrvl_ray.cli import main
from ocrvl_ray.core.config import JobConfig, describe_keys
from ocrvl_ray.layout.config import LayoutConfig

ROOT = Path(__file__).resolve().parents[1]


def _ocrvl(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The ``ocrvl`` console script's code path in a fresh interpreter (real exit code and stderr)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", "import sys; from ocrvl_ray.cli import main; sys.exit(main())",
                           *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _one_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("ocrvl ")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


BAD_YAML = {  # text -> (line, column, problem) as an editor shows them
    "output: out/x.lmdb\nlayout: {device: cpu\nlimit: 3\n": (3, 6, "expected ',' or '}', but got ':'"),
    "output: out/x.lmdb\n\tlimit: 3\n": (2, 1, "found character '\\t' that cannot start any token"),
    "layout:\n  device: cpu\n threshold: 0.4\n": (3, 2, "expected <block end>, but found '<block mapping start>'"),
}


@pytest.mark.parametrize("text", list(BAD_YAML))
def test_invalid_yaml_names_line_and_column(text, tmp_path, capsys):
    (tmp_path / "job.yaml").write_text(text)
    assert main(["layout", str(tmp_path / "job.yaml")]) == 2
    line, col, problem = BAD_YAML[text]
    assert capsys.readouterr().err == (f"ocrvl layout: error: config file {tmp_path / 'job.yaml'} is not valid YAML "
                                       f"at line {line} column {col}: {problem}\n")


def test_cluster_yaml_error_names_line_and_column(tmp_path, capsys):
    (tmp_path / "cluster.yaml").write_text("cluster_name: x\nprovider: {type: aws\nmax_workers: 2\n")
    assert main(["cluster-check", str(tmp_path / "cluster.yaml")]) == 2
    assert capsys.readouterr().err == (f"ocrvl cluster-check: error: config file {tmp_path / 'cluster.yaml'} is not "
                                       "valid YAML at line 3 column 12: expected ',' or '}', but got ':'\n")


def test_yaml_errors_before_work_in_a_real_process(tmp_path):
    (tmp_path / "job.yaml").write_text("output: out/x.lmdb\nlayout: {device: cpu\nlimit: 3\n")
    (tmp_path / "latin1.yaml").write_bytes("output: out/caf\xe9.lmdb\n".encode("latin-1"))
    assert _one_line(_ocrvl("layout", "job.yaml", cwd=tmp_path)) == (
        "ocrvl layout: error: config file job.yaml is not valid YAML at line 3 column 6: expected ',' or '}', "
        "but got ':'")
    assert _one_line(_ocrvl("layout", "latin1.yaml", cwd=tmp_path)) == (
        "ocrvl layout: error: config file latin1.yaml is not UTF-8 text (byte 15); save it as UTF-8")
    # ocrvl train reads erniekit's YAML with the same loader
    assert "at line 3 column 6" in _one_line(_ocrvl("train", "job.yaml", cwd=tmp_path))


def test_train_without_yaml_asks_for_the_erniekit_yaml(tmp_path):
    want = ("ocrvl train: error: pass the erniekit YAML (e.g. ocrvl train run_ocr_vl_sft_16k.yaml "
            "output_dir=/data/run1 max_steps=100); only a custom entry=module:function runs without one")
    assert _one_line(_ocrvl("train", cwd=tmp_path)) == want
    assert _one_line(_ocrvl("train", "max_steps=3", "output_dir=run", cwd=tmp_path)) == want


def test_train_custom_entry_needs_no_yaml(tmp_path, capsys):
    rc = main(["train", "entry=ocrvl_ray.testing.train:allreduce_check", f"output_dir={tmp_path / 'run'}",
               "use_gpu=false", "--dry-run"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "allreduce_check" in out.out and "pass the erniekit YAML" not in out.err


class _Sub(BaseModel):
    x: int = Field(2, description="an x")
    mode: Literal["a", "b"] = "a"


class _Top(JobConfig):
    name: str = Field("n", description="the name")
    sub: _Sub = Field(default_factory=lambda: _Sub(x=5))
    opt: Optional[int] = None
    tags: list[str] = Field(default_factory=lambda: ["p", "q"])

    ENV_OVERRIDES = {"FAST_X": ("sub.x", int)}


def test_describe_keys_lists_dotted_keys_with_defaults():
    assert describe_keys(_Top) == [
        "name=n      the name",          # keys padded to the longest (10) plus two spaces
        "sub.x=5     an x; env FAST_X",
        "sub.mode=a  one of a|b",
        "opt=null",
        "tags=[p,q]",
    ]


def test_layout_help_lists_every_key_with_its_default(capsys):
    assert main(["layout", "--help"]) == 0
    text = capsys.readouterr().out
    keys = {ln.split()[0] for ln in text.split("config keys", 1)[1].splitlines()[1:]   # key lines, not wrapped text
            if ln.startswith("  ") and not ln.startswith("   ") and "=" in ln.split()[0]}
    for want in ("manifest=null", "output=./out/sample_layout.lmdb", "demo_models=false", "limit=0",
                 "layout.model_name=PP-DocLayoutV2", "layout.threshold=0.5", "layout.table_threshold=0.3",
                 "layout.max_actors=1", "cells.enabled=true", "cells.max_side=1024", "cells.threshold=0.3",
                 "jpeg_quality=80", "mask=all", "recipes={}", "index_base=1", "label_format=pickle",
                 "handoff=bytes", "report_html=true"):
        assert want in keys, want
    # every leaf key of the model is there (sections appear only as dotted keys)
    sections = ("layout", "cells", "compose")
    leaves = {k for k, f in LayoutConfig.model_fields.items() if k not in sections}
    leaves |= {f"{s}.{k}" for s in sections for k in LayoutConfig.model_fields[s].annotation.model_fields}
    assert {k.split("=", 1)[0] for k in keys} == leaves
    assert "pages to process (0 = all); env FAST_DEBUG" in text


# --- checks before the expensive part (issue 26 item 4) ---------------------------------------------------

@pytest.fixture
def no_ray(monkeypatch):
    """A tripwire: the command must fail before it starts Ray."""
    import ocrvl_ray.core.runtime as runtime

    def tripped(*a, **k):
        raise AssertionError("Ray was started")
    monkeypatch.setattr(runtime, "init_ray", tripped)


def _err_line(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"ocrvl {command}: error:") and "\n" not in err, err
    return err


@pytest.mark.parametrize("key", ["labels", "images", "lookup"])
def test_prepare_checks_its_paths_before_ray(tmp_path, capsys, no_ray, key):
    import time

    (tmp_path / "labels").mkdir()
    args = {"labels": str(tmp_path / "labels"), "images": str(tmp_path)}
    if key == "lookup":
        del args["images"]
    args[key] = str(tmp_path / "nope")
    argv = ["prepare", "--out", str(tmp_path / "m.parquet")] + [a for k, v in args.items() for a in (f"--{k}", v)]
    t0 = time.monotonic()
    assert main(argv) == 2
    assert time.monotonic() - t0 < 5
    assert f"{key}: {tmp_path / 'nope'} does not exist" in _err_line(capsys, "prepare")


@pytest.fixture
def blocker(tmp_path) -> Path:
    """A regular file: a path under it can never be created, even by root (who may write a read-only folder)."""
    f = tmp_path / "file"
    f.write_text("x")
    return f


def test_inspect_outputs_that_cannot_be_written_are_one_line(tmp_path, capsys, blocker):
    from ocrvl_ray.testing.sink import tiny_eval_lmdb as write_lmdb

    lmdb = write_lmdb(tmp_path / "x.lmdb")
    assert main(["inspect", str(lmdb), "--html", str(blocker / "r.html")]) == 2
    assert f"--html={blocker / 'r.html'}: {blocker} is a file" in _err_line(capsys, "inspect")
    assert main(["inspect", str(lmdb), "--json", str(blocker / "r.json")]) == 2
    assert f"--json={blocker / 'r.json'}: {blocker} is a file" in _err_line(capsys, "inspect")


def test_eval_score_out_that_cannot_be_written_is_one_line(tmp_path, capsys, blocker):
    import json

    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps({"reference": r, "prediction": h}) + "\n" for r, h in [("ab", "ab"), ("c", "d")]))
    assert main(["eval", "score", "--predictions", str(preds), "--out", str(blocker / "o")]) == 2
    assert f"--out={blocker / 'o'}: {blocker} is a file" in _err_line(capsys, "eval")


def test_eval_out_that_cannot_be_written_fails_before_inference(tmp_path, capsys, blocker, no_ray):
    from ocrvl_ray.testing.tiny_vl import build_tiny_ocrvl
    from ocrvl_ray.testing.sink import tiny_eval_lmdb as write_lmdb

    base = build_tiny_ocrvl(tmp_path / "base")
    lmdb = write_lmdb(tmp_path / "x.lmdb")
    assert main(["eval", "--model", str(base), "--data", str(lmdb), "--out", str(blocker / "eval")]) == 2
    assert f"--out={blocker / 'eval'}: {blocker} is a file" in _err_line(capsys, "eval")


def test_inspect_into_a_closed_pipe_ends_quietly(tmp_path):
    """``ocrvl inspect X | head``: the reader is gone before the summary is written."""
    from ocrvl_ray.testing.sink import tiny_eval_lmdb as write_lmdb

    lmdb = write_lmdb(tmp_path / "x.lmdb")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    r, w = os.pipe()
    os.close(r)                                  # no reader: the first write gets EPIPE
    try:
        p = subprocess.run([sys.executable, "-m", "ocrvl_ray.cli", "inspect", str(lmdb)], stdout=w,
                           stderr=subprocess.PIPE, text=True, env=env, timeout=300)
    finally:
        os.close(w)
    assert p.returncode == 0 and "BrokenPipe" not in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_local_ray_start_timeout_is_one_line(tmp_path):
    """A local Ray that does not start in time (provoked: no wait at all for the GCS's port file) is one line
    naming what to do, not Ray's ~30-line traceback (issue 26 item 6)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_gcs_server_port_wait_time_s="0",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", "import sys; from ocrvl_ray.cli import main; sys.exit(main())",
                           "layout", "demo_models=true", f"output={tmp_path / 'x_layout.lmdb'}"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    line = _one_line(proc)
    assert line.startswith("ocrvl layout: error: the local Ray did not start in time (Ray: Timed out waiting for "
                           "file "), line
    assert line.endswith("rerun when it is less loaded (RAY_gcs_server_port_wait_time_s=120 gives Ray's GCS longer "
                         "than its 30 s), or use a running cluster with RAY_ADDRESS=<head>:6379")
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
