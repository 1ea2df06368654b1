"""Ray Train end to end on CPU: real Ray workers, real Paddle gloo collectives, a genuine paddleformers
LoRA fine-tune, checkpoints reported to storage, crash + resume, re-run resume, and ``ocrvl merge``."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from ocrvl_ray import cli
from ocrvl_ray.train.config import load_train_config
from ocrvl_ray.train.run import fit

TINY = "ocrvl_ray.testing.train:tiny_lora_sft"


@pytest.fixture(scope="module")
def lora_run(ray_local, tmp_path_factory):
    """One 2-worker LoRA fine-tune (rank 1 crashes once at step 6, after checkpoint-4 is stored), then
    the same run name again with the all-reduce entry (each extra fit costs a minute on 2 cores)."""
    from ocrvl_ray.testing.train import build_tiny_base

    root = tmp_path_factory.mktemp("lora")
    base = build_tiny_base(root / "base")
    storage = root / "storage"
    common = ["num_workers=2", "use_gpu=false", f"output_dir={root / 'run'}", f"storage_path={storage}",
              "run_name=tiny", "max_failures=1", "watch_interval_s=0.5"]
    lora = [f"entry={TINY}", f"model_name_or_path={base}", "max_steps=12", "save_steps=4",
            f"metrics_log={root / 'metrics.jsonl'}"]
    crash = ["crash_at_step=6", "crash_rank=1", f"crash_marker={root / 'crashed'}",
             f"crash_when_exists={storage / 'tiny' / 'checkpoint-4' / 'trainer_state.json'}"]
    first = fit(*load_train_config(None, common + lora + crash, env={}))
    second = fit(*load_train_config(None, common + ["entry=ocrvl_ray.testing.train:allreduce_check"], env={}))
    attempts = [json.loads(line) for line in (root / "run" / "attempts.jsonl").read_text().splitlines()]
    stream = [json.loads(line) for line in (root / "metrics.jsonl").read_text().splitlines()]
    return {"root": root, "base": base, "storage": storage / "tiny", "first": first, "second": second,
            "attempts": attempts, "stream": stream}


def test_two_workers_allreduce_over_gloo(lora_run):
    assert lora_run["second"].error is None
    out = lora_run["root"] / "run"
    got = [json.loads((out / f"allreduce-rank{r}.json").read_text()) for r in range(2)]
    assert [g["sum"] for g in got] == [3.0, 3.0] and [g["world_size"] for g in got] == [2, 2]
    env0, env1 = got[0]["env"], got[1]["env"]
    assert (env0["PADDLE_TRAINER_ID"], env1["PADDLE_TRAINER_ID"]) == ("0", "1")
    assert env0["PADDLE_TRAINER_ENDPOINTS"] == env1["PADDLE_TRAINER_ENDPOINTS"]
    eps = env0["PADDLE_TRAINER_ENDPOINTS"].split(",")
    assert [env0["PADDLE_CURRENT_ENDPOINT"], env1["PADDLE_CURRENT_ENDPOINT"]] == eps and len(set(eps)) == 2
    assert env0["PADDLE_MASTER"] == env1["PADDLE_MASTER"] and env0["PADDLE_DISTRI_BACKEND"] == "gloo"
    assert (env0["PADDLE_LOCAL_RANK"], env1["PADDLE_LOCAL_RANK"], env1["PADDLE_LOCAL_SIZE"]) == ("0", "1", "2")


def test_lora_checkpoints_reported_to_storage(lora_run):
    first = lora_run["first"]
    assert first.error is None
    assert Path(first.checkpoint.path) == lora_run["storage"] / "checkpoint-12"
    for step in (4, 8, 12):
        d = lora_run["storage"] / f"checkpoint-{step}"
        names = {p.name for p in d.iterdir()}
        assert {"peft_model-00001-of-00001.safetensors", "peft_model.safetensors.index.json",
                "lora_config.json", "trainer_state.json", "scheduler.pdparams"} <= names
        index = json.loads((d / "peft_model.safetensors.index.json").read_text())
        assert index["type"] == "lora"
        assert json.loads((d / "trainer_state.json").read_text())["global_step"] == step
        adapter = load_file(str(d / "peft_model-00001-of-00001.safetensors"))
        assert any(k.endswith("q_proj.lora_A") for k in adapter) and any(k.endswith("down_proj.lora_B") for k in adapter)


def test_loss_decreases_and_metrics_stream(lora_run):
    reported = sorted((m["step"], m) for _, m in lora_run["first"].best_checkpoints)
    assert [s for s, _ in reported] == [4, 8, 12]
    losses = [m["loss"] for _, m in reported]
    assert losses[0] > losses[1] > losses[2], losses
    assert all(m["learning_rate"] == pytest.approx(5e-2) for _, m in reported)
    assert lora_run["first"].metrics["step"] == 12
    stream = lora_run["stream"]
    logged = {}
    for rec in stream:
        if "loss" in rec and "checkpoint" not in rec:
            logged[rec["step"]] = rec
    assert sorted(logged) == list(range(1, 13))          # every logging step streamed
    assert all(rec["learning_rate"] == pytest.approx(5e-2) for rec in logged.values())
    first3 = np.mean([logged[s]["loss"] for s in (1, 2, 3)])
    last3 = np.mean([logged[s]["loss"] for s in (10, 11, 12)])
    assert last3 < first3 - 0.5, (first3, last3)
    ckpt_lines = [rec for rec in stream if "checkpoint" in rec]
    assert [rec["step"] for rec in ckpt_lines] == [4, 8, 12]
    assert ckpt_lines[-1]["checkpoint"] == str(lora_run["storage"] / "checkpoint-12")
    errors = [rec["error"] for rec in stream if "error" in rec]
    assert len(errors) == 1 and errors[0].startswith("rank 1:") and "injected crash at step 6" in errors[0]


def test_crash_on_one_rank_resumes_from_last_checkpoint(lora_run):
    assert (lora_run["root"] / "crashed").read_text() == "6"
    run_dir = lora_run["root"] / "run"
    starts = [a["resume_from_checkpoint"] for a in lora_run["attempts"]]
    assert starts[:2] == [None, str(run_dir / "checkpoint-4")]
    assert lora_run["attempts"][0]["pid"] != lora_run["attempts"][1]["pid"]   # a new worker group


def test_same_run_name_again_resumes(lora_run):
    """A new fit() with the same run name gets the stored checkpoint-12 back into output_dir."""
    run = lora_run["root"] / "run"
    got = [json.loads((run / f"allreduce-rank{r}.json").read_text()) for r in range(2)]
    assert [g["resume_from_checkpoint"] for g in got] == [str(run / "checkpoint-12")] * 2
    restored = load_file(str(run / "checkpoint-12" / "peft_model-00001-of-00001.safetensors"))
    stored = load_file(str(lora_run["storage"] / "checkpoint-12" / "peft_model-00001-of-00001.safetensors"))
    assert restored.keys() == stored.keys() and all(np.array_equal(restored[k], stored[k]) for k in stored)
    assert len(lora_run["attempts"]) == 2          # the LoRA entry did not run a third time


def test_final_checkpoint_merges_with_ocrvl_merge(lora_run):
    base, ckpt = lora_run["base"], lora_run["storage"] / "checkpoint-12"
    out = lora_run["root"] / "export"
    assert cli.main(["merge", "--base", str(base), "--lora", str(ckpt), "--out", str(out)]) == 0
    merged = {}
    for f in out.glob("*.safetensors"):
        merged.update(load_file(str(f)))
    base_w = load_file(str(base / "model.safetensors"))
    adapter = load_file(str(ckpt / "peft_model-00001-of-00001.safetensors"))
    scaling = json.loads((ckpt / "lora_config.json").read_text())["scaling"]
    assert set(merged) == set(base_w)
    changed = 0
    for key, a in adapter.items():
        if not key.endswith(".lora_A"):
            continue
        b = adapter[key[:-len("lora_A")] + "lora_B"]
        w = key[:-len("lora_A")] + "weight"
        # HF layout is [out, in]; the adapter is Paddle layout A [in, r], B [r, out]
        expected = base_w[w].astype(np.float64) + (a.astype(np.float64) @ b.astype(np.float64)).T * scaling
        np.testing.assert_allclose(merged[w], expected, rtol=0, atol=1e-5)
        changed += not np.allclose(merged[w], base_w[w])
    assert changed == 7 * 2     # 7 target linears x 2 layers, all trained away from the base


def test_launcher_mode_one_worker_per_node(ray_local, tmp_path):
    """Two Ray workers act as two nodes, each running paddle.distributed.launch with the backend's
    MASTER_ADDR/PORT, NNODES, PADDLE_RANK and POD_IP; the launched processes all-reduce across nodes."""
    ours, args = load_train_config(None, [
        "num_workers=2", "use_gpu=false", "mode=launcher", "entry=ocrvl_ray.testing.train:allreduce_check",
        f"output_dir={tmp_path / 'out'}", f"storage_path={tmp_path / 'storage'}", "max_failures=0",
        "watch_interval_s=0.5"], env={})
    assert fit(ours, args).error is None
    got = [json.loads((tmp_path / "out" / f"allreduce-rank{r}.json").read_text()) for r in range(2)]
    assert [g["sum"] for g in got] == [3.0, 3.0]
    assert [g["env"]["PADDLE_RANK"] for g in got] == ["0", "1"]          # node rank from the backend
    assert got[0]["env"]["MASTER_ADDR"] == got[1]["env"]["MASTER_ADDR"]
    assert got[0]["env"]["PADDLE_NNODES"] == "2"
    assert (tmp_path / "out.launch" / "train_config.node1.yaml").is_file()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["allreduce-rank0.json", "allreduce-rank1.json"]


def test_no_placement_group_cleaner_on_a_ray_this_process_started(ray_local):
    """Ray Train's cleaner polls a state API a local Ray does not serve (a warning a second, 12 s at the end of
    every fit): our trainer leaves it out there, and only there."""
    from ray.train import ScalingConfig
    from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    from ocrvl_ray.train.backend import Trainer, started_here

    def kinds(cls):
        trainer = cls(lambda: None, scaling_config=ScalingConfig(num_workers=1))
        return {type(c) for c in trainer._create_default_callbacks()}

    assert started_here()                     # the session's ray.init(address="local")
    assert PlacementGroupCleanerCallback in kinds(DataParallelTrainer)
    assert kinds(Trainer) == kinds(DataParallelTrainer) - {PlacementGroupCleanerCallback}


def _stored(root: Path, step: int, files: dict[str, bytes], listed: dict[str, int] | None) -> Path:
    d = root / f"checkpoint-{step}"
    d.mkdir(parents=True)
    for name, data in files.items():
        (d / name).write_bytes(data)
    if listed is not None:
        (d / "ocrvl-files.json").write_text(json.dumps(listed))
    return d


def test_newest_stored_checkpoint_is_the_newest_complete_one(tmp_path):
    """Complete = every listed file there with its size (any upload order), or, unlisted, a trainer state."""
    from pyarrow.fs import LocalFileSystem

    from ocrvl_ray.train.checkpoints import newest_stored

    fs, exp = LocalFileSystem(), str(tmp_path)
    state = b'{"global_step": 1}'
    _stored(tmp_path, 4, {"trainer_state.json": state}, None)                      # not staged by us
    eight = _stored(tmp_path, 8, {"trainer_state.json": state, "w.bin": b"1234"},
                    {"trainer_state.json": len(state), "w.bin": 4})
    _stored(tmp_path, 12, {"trainer_state.json": state, "w.bin": b"12"},          # upload cut short
            {"trainer_state.json": len(state), "w.bin": 4})
    _stored(tmp_path, 16, {"w.bin": b"1234"}, {"trainer_state.json": len(state), "w.bin": 4})
    _stored(tmp_path, 20, {"w.bin": b"1234"}, None)                                 # no trainer state
    (tmp_path / "checkpoint-24").write_text("a file, not a folder")
    assert newest_stored(fs, exp, -1) == str(eight)
    assert newest_stored(fs, exp, 8) is None
    assert newest_stored(fs, exp, 3) == str(eight)
    (tmp_path / "checkpoint-8" / "w.bin").unlink()
    assert newest_stored(fs, exp, -1) == str(tmp_path / "checkpoint-4")
    assert newest_stored(fs, str(tmp_path / "missing"), -1) is None


def test_restart_uses_a_stored_checkpoint_ray_never_registered(lora_run, tmp_path):
    """Issue 27 item 7: a node dies after a checkpoint's upload but before Ray Train registers it. The
    registered checkpoint of the stored run is checkpoint-12; checkpoint-16 (a complete copy, as our upload
    leaves it) was stored after it but never registered, checkpoint-20 is a cut-off upload. The next start
    resumes from checkpoint-16 and says so."""
    import ray

    storage = tmp_path / "storage"
    shutil.copytree(lora_run["storage"], storage / "tiny")          # the run folder with Ray's bookkeeping
    shutil.copytree(storage / "tiny" / "checkpoint-12", storage / "tiny" / "checkpoint-16")
    shutil.copytree(storage / "tiny" / "checkpoint-12", storage / "tiny" / "checkpoint-20")
    next((storage / "tiny" / "checkpoint-20").glob("*.safetensors")).write_bytes(b"cut")
    out = tmp_path / "run"
    ours, args = load_train_config(None, [
        "num_workers=2", "use_gpu=false", f"output_dir={out}", f"storage_path={storage}", "run_name=tiny",
        "max_failures=0", "watch_interval_s=0.5", "entry=ocrvl_ray.testing.train:allreduce_check"], env={})
    assert fit(ours, args).error is None
    got = [json.loads((out / f"allreduce-rank{r}.json").read_text()) for r in range(2)]
    assert [g["resume_from_checkpoint"] for g in got] == [str(out / "checkpoint-16")] * 2
    restored = load_file(str(out / "checkpoint-16" / "peft_model-00001-of-00001.safetensors"))
    assert restored.keys() == load_file(str(storage / "tiny" / "checkpoint-12" /
                                             "peft_model-00001-of-00001.safetensors")).keys()
    logs = Path(ray._private.worker.global_worker.node.get_session_dir_path()) / "logs"
    said = [line for f in logs.glob("worker-*.out") for line in f.read_text(errors="replace").splitlines()
            if "never registered" in line and str(storage) in line]
    assert said == [f"ocrvl train: resuming from {storage / 'tiny' / 'checkpoint-16'}: stored but never "
                    f"registered by Ray Train, newer than {storage / 'tiny' / 'checkpoint-12'}"], said
