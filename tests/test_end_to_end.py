"""jobs/pipeline.py: layout -> train -> merge in one job, with a run manifest that makes reruns resume."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ocrvl_ray.core.config import load_config
from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.end_to_end import PipelineConfig, run_pipeline
from ocrvl_ray.lmdb import verify_lmdb


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    from ocrvl_ray.testing.train import build_tiny_base

    return build_tiny_base(tmp_path_factory.mktemp("base") / "tiny-qwen2")


def _config(tmp: Path, base: Path, **merge) -> PipelineConfig:
    return load_config(PipelineConfig, overrides={
        "run_dir": str(tmp / "run"), "stages": ["layout", "train", "merge"],
        "layout": {"demo_models": True, "output": str(tmp / "sample_layout.lmdb"), "limit": 2, "progress": False},
        "train": {"overrides": {"entry": "ocrvl_ray.testing.train:tiny_lora_sft", "model_name_or_path": str(base),
                                "max_steps": 4, "save_steps": 2, "num_workers": 1, "use_gpu": False,
                                "storage_path": str(tmp / "storage")}},
        "merge": {"base": str(base), "out": str(tmp / "export"), "max_shard_size": "1GB", **merge},
    }, env={})


def test_three_stages_then_rerun_skips_and_a_changed_stage_reruns(ray_local, tmp_path, tiny_base):
    lines: list[str] = []
    data = run_pipeline(_config(tmp_path, tiny_base), log=lines.append)
    stages = data["stages"]
    assert [stages[s]["status"] for s in ("layout", "train", "merge")] == ["done"] * 3
    lmdb = stages["layout"]["outputs"]["lmdb"]["train"]   # the bundled sample has one split
    assert verify_lmdb(lmdb)["ok"] and stages["layout"]["outputs"]["num_samples"] > 0
    assert stages["train"]["inputs"]["train_lmdb_paths"] == lmdb          # layout output feeds training
    ckpt = Path(stages["train"]["outputs"]["checkpoint"])
    assert any(ckpt.glob("peft_model*.safetensors")) or any(ckpt.rglob("peft_model*.safetensors"))
    export = Path(stages["merge"]["outputs"]["export"])
    assert (export / "model.safetensors").is_file() and stages["merge"]["outputs"]["verified"] is True
    on_disk = json.loads((tmp_path / "run" / "run_manifest.json").read_text())
    assert on_disk["stages"]["merge"]["config_hash"] == stages["merge"]["config_hash"]

    lines.clear()
    again = run_pipeline(_config(tmp_path, tiny_base), log=lines.append)
    assert sum("skipping" in line for line in lines) == 3, lines
    assert again["stages"]["merge"]["finished"] == stages["merge"]["finished"]

    lines.clear()
    changed = run_pipeline(_config(tmp_path, tiny_base, out=str(tmp_path / "export2")), log=lines.append)
    assert [("skipping" in line) for line in lines if line.startswith("[")] == [True, True, False]
    assert (Path(changed["stages"]["merge"]["outputs"]["export"]) / "model.safetensors").is_file()


def test_merge_without_train_is_a_clear_error(tmp_path, tiny_base):
    cfg = _config(tmp_path, tiny_base)
    cfg.stages = ["merge"]
    with pytest.raises(OcrvlError, match="run the train stage first"):
        run_pipeline(cfg)


def test_jobs_pipeline_script_reports_config_errors_in_one_line(tmp_path):
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    cfg = tmp_path / "p.yaml"
    cfg.write_text("run_dir: x\nstages: [layout, training]\n")
    res = subprocess.run([sys.executable, str(repo / "jobs" / "pipeline.py"), str(cfg), "merge.bse=/m"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1] == \
        "ocrvl pipeline: error: unknown config key 'merge.bse'; did you mean 'merge.base'?"


def _eval_config(tmp: Path, stages: list[str], **layout) -> PipelineConfig:
    return load_config(PipelineConfig, overrides={
        "run_dir": str(tmp / "run"), "stages": stages, "layout": {"demo_models": True, **layout},
        "merge": {"base": str(tmp / "base")}}, env={})


def test_eval_on_a_manifest_without_validation_split_is_refused_before_anything_runs(tmp_path):
    cfg = _eval_config(tmp_path, ["layout", "train", "merge", "eval"], split="train",
                       output=str(tmp_path / "sample_layout.lmdb"))
    with pytest.raises(OcrvlError, match=r"no validation split \(only train\).*Validation/ folders.*eval\.data="):
        run_pipeline(cfg)
    assert not (tmp_path / "run").exists() and not (tmp_path / "sample_layout.lmdb").exists()


def test_eval_after_a_recorded_train_only_layout_never_scores_the_training_lmdb(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run_manifest.json").write_text(json.dumps({"stages": {
        "layout": {"status": "done", "outputs": {"lmdb": {"train": str(tmp_path / "a_train_layout.lmdb")}}},
        "merge": {"status": "done", "outputs": {"export": str(tmp_path / "export")}}}}))
    with pytest.raises(OcrvlError, match=r"run_manifest.json has no validation split \(only train\)"):
        run_pipeline(_eval_config(tmp_path, ["eval"]))
    stages = json.loads((run / "run_manifest.json").read_text())["stages"]
    assert "eval" not in stages


def test_a_changed_train_config_trains_afresh_never_on_the_old_checkpoints(ray_local, tmp_path, tiny_base):
    def cfg(steps: int, **over) -> PipelineConfig:
        return load_config(PipelineConfig, overrides={"run_dir": str(tmp_path / "run"), "stages": ["train"], "train": {
            "overrides": {"entry": "ocrvl_ray.testing.train:tiny_lora_sft", "model_name_or_path": str(tiny_base),
                          "max_steps": steps, "save_steps": 2, "num_workers": 1, "use_gpu": False,
                          "storage_path": str(tmp_path / "storage"), **over}}}, env={})

    first = run_pipeline(cfg(2))["stages"]["train"]
    second = run_pipeline(cfg(4))["stages"]["train"]
    out1, out2 = Path(first["inputs"]["output_dir"]), Path(second["inputs"]["output_dir"])
    assert out1 != out2 and {out1.parent, out2.parent} == {tmp_path / "run"} and out2.name.startswith("sft-")
    attempts = [json.loads(line) for line in (out2 / "attempts.jsonl").read_text().splitlines()]
    assert [a["resume_from_checkpoint"] for a in attempts] == [None]          # not resumed from out1's checkpoint
    assert Path(second["outputs"]["checkpoint"]).name == "checkpoint-4"
    # a folder the user names is theirs: another config there would resume its checkpoints, so it is refused
    mine = str(tmp_path / "mine")
    run_pipeline(cfg(2, output_dir=mine, run_name="mine"))
    with pytest.raises(OcrvlError, match=f"train config changed since output_dir={mine} was trained"):
        run_pipeline(cfg(4, output_dir=mine, run_name="mine"))


def test_train_overrides_reach_the_entry_with_their_yaml_types(tmp_path):
    from ocrvl_ray.end_to_end import _train_cfg

    cfg = load_config(PipelineConfig, overrides={"run_dir": str(tmp_path / "run"), "train": {"overrides": {
        "evaluation_strategy": "no", "sharding": "", "train_lmdb_prob": "1.0", "max_steps": 4, "num_workers": 2}}},
        env={})
    ours, args = _train_cfg(cfg, None)
    assert (args["evaluation_strategy"], args["sharding"], args["train_lmdb_prob"], args["max_steps"]) == \
        ("no", "", "1.0", 4)                      # not the booleans / floats a key=value text would become
    assert ours.num_workers == 2 and "num_workers" not in args


def test_pipeline_help_names_every_stage(capsys):
    from ocrvl_ray.cli import main

    assert main(["pipeline", "--help"]) == 0
    assert "layout -> train -> merge -> eval" in capsys.readouterr().out
