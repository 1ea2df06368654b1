"""The merge as a Ray task, and ``jobs/merge.py`` = ``ocrvl merge`` (same export, output, exit codes)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from ocrvl_ray.cli import main as ocrvl
from ocrvl_ray.export.task import merge_on_ray
from ocrvl_ray.testing import export as sy

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
    result = merge_on_ray(str(base), str(lora), str(tmp_path / "out"), max_shard_bytes=10**9, overwrite=False,
                          verify=True)
    assert result["verified"] is True
    assert result["report"]["r"] == 2 and len(result["report"]["merged"]) == sum(sy.is_linear(n, s) for n, s in SPEC)
    assert (tmp_path / "out" / "model.safetensors").is_file()


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != "merge_report.json"}


def test_job_script_is_the_merge_command(model, tmp_path, capsys):
    base, lora = model
    job = _job_main()
    runs = {}
    for name, run in (("job", job), ("ocrvl", lambda argv: ocrvl(["merge", *argv]))):
        out = tmp_path / name
        ok = run(["--base", str(base), "--lora", str(lora), "--out", str(out), "--max-shard-size", "40KB"])
        ok_out = capsys.readouterr().out
        bad = run(["--base", str(base), "--lora", str(base), "--out", str(tmp_path / f"{name}-bad")])
        bad_err = capsys.readouterr().err
        again = run(["--base", str(base), "--lora", str(lora), "--out", str(out)])   # exists, no --overwrite
        again_err = capsys.readouterr().err
        runs[name] = (ok, bad, again, _files(out))
        # verified by default; bad input inside the merge is the one-line error, exit 2
        assert "OK: export matches its base and adapter" in ok_out
        assert "has no lora_config.json" in bad_err and bad_err.count("\n") == 1
        assert "already exists; pass --overwrite" in again_err
    assert runs["job"][:3] == runs["ocrvl"][:3] == (0, 2, 2)
    assert len(runs["job"][3]) > 3 and runs["job"][3] == runs["ocrvl"][3]   # byte-identical shards and files
