"""engine=transformers from the default venv (no torch, no peft): one line naming .venv-torch, before Ray starts.
The engine itself is tested in .venv-torch (tests/torch_env/test_train_transformers.py)."""
from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="torch is installed here")
def test_engine_transformers_without_torch_names_the_torch_venv(tmp_path):
    argv = ["train", "engine=transformers", f"model_name_or_path={tmp_path}", f"train_lmdb_paths={tmp_path}",
            f"output_dir={tmp_path / 'out'}"]
    code = ("import sys; from ocrvl_ray.cli import main; rc = main(sys.argv[1:]); import ray; "
            "print(rc, ray.is_initialized())")     # a fresh process: no Ray started by another test
    res = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=300)
    assert res.stdout.split() == ["2", "False"], res.stdout + res.stderr
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1 and ".venv-torch" in err and "torch" in err, err
