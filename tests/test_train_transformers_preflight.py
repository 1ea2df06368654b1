"""engine=transformers from the default venv (no torch, no peft): one line naming .venv-torch, before Ray starts.
The engine itself is tested in .venv-torch (tests/torch_env/test_train_transformers.py)."""
from __future__ import annotations

import importlib.util

import pytest

from ocrvl_ray.cli import main


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="torch is installed here")
def test_engine_transformers_without_torch_names_the_torch_venv(tmp_path, capsys):
    import ray

    argv = ["train", "engine=transformers", f"model_name_or_path={tmp_path}", f"train_lmdb_paths={tmp_path}",
            f"output_dir={tmp_path / 'out'}"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ".venv-torch" in err and "torch" in err, err
    assert not ray.is_initialized()
