"""The merge as a Ray task (jobs/merge.py) on the session's local Ray."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from ocrvl_ray.testing import export as sy
from ocrvl_ray.export.task import merge_on_ray

SPEC = sy.model_spec(sy.TINY_DIMS, max_layers=1)
JOB = Path(__file__).resolve().parents[1] / "jobs" / "merge.py"


def _job_main():
    spec = importlib.util.spec_from_file_location("ocrvl_job_merge", JOB)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("job")
    return sy.write_base(root / "base", SPEC), sy.write_adapter(root / "lora", SPEC, r=2, lora_alpha=4)


def test_merge_task_on_ray(ray_local, model, tmp_path):
    base, lora = model
    result = merge_on_ray(str(base), str(lora), str(tmp_path / "out"), max_shard_bytes=10**9)
    assert result["verified"] is True
    assert result["report"]["r"] == 2 and len(result["report"]["merged"]) == sum(sy.is_linear(n, s) for n, s in SPEC)
    assert (tmp_path / "out" / "model.safetensors").is_file()


def test_job_entry_point(ray_local, model, tmp_path, capsys):
    base, lora = model
    main = _job_main()
    assert main(["--base", str(base), "--lora", str(lora), "--out", str(tmp_path / "out")]) == 0
    assert "OK: export matches its base and adapter" in capsys.readouterr().out
    # bad input inside the task comes back as the one-line error, exit 2
    assert main(["--base", str(base), "--lora", str(base), "--out", str(tmp_path / "out2")]) == 2
    assert "has no lora_config.json" in capsys.readouterr().err
