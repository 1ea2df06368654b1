"""The user's erniekit fork, for real, inside ``.venv-erniekit``: run by tests/test_train_erniekit.py as
``.venv-erniekit/bin/python -m pytest tests/erniekit_env/fork_checks.py`` (not collected by the default run).

A tiny random PaddleOCR-VL (built here), LMDB shards written by our LmdbWriter, the fork's own reader,
trainer and LoRA; CPU-only workarounds in tests/erniekit_env/cpu_fork.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.erniekit_env.fork import FORK_TARBALL, unpack
from ocrvl_ray.demo.tiny_fork_model import build_tiny_model

if not FORK_TARBALL.is_file():
    pytest.skip(f"the erniekit fork tarball is absent ({FORK_TARBALL})", allow_module_level=True)

ENTRY = "tests.erniekit_env.cpu_fork:run"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from ocrvl_ray.testing.shards import write_sharded

    root = tmp_path_factory.mktemp("fork")
    ernie = unpack(root / "ERNIE")
    labels = write_sharded(root / "a_train_layout.lmdb", 2, 4)
    model = build_tiny_model(root / "model", extra_text="".join("".join(s) for s in labels))
    return {"root": root, "ernie": ernie, "lmdb": root / "a_train_layout.lmdb", "labels": labels, "model": model}


def fork_args(world, out: Path, **over) -> list[str]:
    """erniekit keys for a few LoRA steps of the tiny model (fp32 on CPU, no eval, no reporting)."""
    keys = dict(stage="OCR-VL-SFT", fine_tuning="LoRA", lora=True, model_name_or_path=world["model"], from_scratch=1,
                train_dataset_type="erniekit", multimodal=True, train_lmdb_paths=world["lmdb"], train_lmdb_prob="1.0",
                max_seq_len=256, use_flash_attention=False, use_sparse_head_and_loss_fn=False, fuse_rope=False,
                seed=23, do_train=True, do_eval=False, evaluation_strategy="'no'", batch_size=1, max_steps=4,
                save_steps=2, save_strategy="steps", logging_steps=1, learning_rate=0.001, warmup_steps=0,
                output_dir=out, report_to="none", recompute=False, sharding="''", unified_checkpoint=True,
                device="cpu", disable_tqdm=True)
    keys.update(over)
    return [f"{k}={v}" for k, v in keys.items()]


def test_trap1_fork_imports_its_data_processor(world, monkeypatch):
    """decord, imgaug (scikit-image, imageio) are installed: the fork's modules import."""
    monkeypatch.syspath_prepend(str(world["ernie"]))
    import data_processor.steps.end2end_processing  # noqa: F401
    import erniekit.train.ocr_vl_sft.workflow  # noqa: F401


def test_trap2_visualdl_reporting_works_with_the_pinned_protobuf(tmp_path):
    from importlib.metadata import version

    from visualdl import LogWriter

    from ocrvl_ray.train.engines import erniekit as fork

    assert int(version("protobuf").split(".")[0]) < 7
    with LogWriter(logdir=str(tmp_path)) as w:        # what erniekit's VisualDL callback records first
        w.add_hparams({"do_train": True, "learning_rate": 0.1, "max_steps": 3}, ["loss"])
    assert fork.check_reporting({}, version("protobuf")) == []


def test_trap4_the_fork_reader_opens_one_lmdb_for_train_and_eval(world, monkeypatch):
    """The fork's SFTMultimodalDatasetLmdb twice on one path (its train and eval readers), under the pinned lmdb."""
    import lmdb

    monkeypatch.syspath_prepend(str(world["ernie"]))
    from ernie.dataset.vl_sft_reader.vl_sft_dataset_json import SFTMultimodalDatasetLmdb
    from ernie.tokenizer import Ernie4_5_Tokenizer

    assert lmdb.version()[0] < 2
    tok = Ernie4_5_Tokenizer.from_pretrained(str(world["model"]))
    shard = str(world["lmdb"] / "shard-00001-of-00002")
    readers = [SFTMultimodalDatasetLmdb(None, shard, "1.0", tok, None, 23, 64, 256, max_samples_per_source=cap)
               for cap in (None, 5)]
    for r in readers:
        r._load()
    assert [r.length for r in readers] == [4, 4]
    assert [readers[1]._read_sample(0, i)["text_info"][1]["text"] for i in range(4)] == world["labels"][1]


def test_trap5_launcher_mode_imports_erniekit(world, ray_local, tmp_path):
    """mode=launcher with the default entry reaches erniekit's dispatch (an unknown stage fails there, after
    `import erniekit` and the fork's argument parsing) instead of `No module named 'erniekit'`."""
    from ray.train import TrainingFailedError

    from ocrvl_ray.train.config import load_train_config
    from ocrvl_ray.train.run import fit

    out = tmp_path / "out"
    ours, args = load_train_config(None, ["num_workers=1", "use_gpu=false", "mode=launcher", f"ernie_root={world['ernie']}",
                                          f"storage_path={tmp_path / 'store'}", "max_failures=0",
                                          *fork_args(world, out, stage="NOPE-VL")], env={})
    with pytest.raises(TrainingFailedError):
        fit(ours, args)
    logs = "".join(p.read_text(errors="replace") for p in (tmp_path / "out.launch").rglob("*") if p.is_file())
    assert "Unknown task: NOPE-VL" in logs, logs[-3000:]
    assert "No module named 'erniekit'" not in logs


@pytest.fixture(scope="module")
def two_ranks(world, ray_local, tmp_path_factory):
    """2 Ray Train workers (gloo), 2 shards, 6 LoRA steps, checkpoint every 2. Rank 1 crashes at step 1,
    before any checkpoint (output_dir then holds only the first logs: the restart must start fresh), and
    at step 3 after checkpoint-2 is stored (the restart resumes from it)."""
    from ocrvl_ray.train.config import load_train_config
    from ocrvl_ray.train.run import check, fit

    root = tmp_path_factory.mktemp("ranks")
    store = root / "store"
    ours, args = load_train_config(None, [
        "num_workers=2", "use_gpu=false", f"entry={ENTRY}", f"ernie_root={world['ernie']}", f"storage_path={store}",
        "run_name=fork", "max_failures=2", "watch_interval_s=1", f"metrics_log={root / 'metrics.jsonl'}",
        *fork_args(world, root / "out", max_steps=6), f"test_record_dir={root / 'seen'}", "test_crash_at_step=3",
        "test_crash_rank=1", f"test_crash_marker={root / 'crashed'}", "test_early_crash_at_step=1",
        f"test_crash_when_exists={store / 'fork' / 'checkpoint-2' / 'trainer_state.json'}"], env={})
    check(ours, args)                                  # pre-flight: 2 shards for 2 ranks
    result = fit(ours, args)
    reads = {r: [json.loads(line) for line in (root / "seen" / f"reads-rank{r}.jsonl").read_text().splitlines()]
             for r in range(2)}
    stream = [json.loads(line) for line in (root / "metrics.jsonl").read_text().splitlines()]
    return {"root": root, "store": store / "fork", "result": result, "reads": reads, "stream": stream}


def test_trap3_two_ranks_read_disjoint_shards(world, two_ranks):
    reads = two_ranks["reads"]
    for rank in range(2):
        shard = str(world["lmdb"] / f"shard-0000{rank}-of-00002")
        assert reads[rank], f"rank {rank} read nothing"
        assert {r["path"] for r in reads[rank]} == {shard}
        assert {r["label"] for r in reads[rank]} <= set(world["labels"][rank])
    assert not {r["label"] for r in reads[0]} & {r["label"] for r in reads[1]}


def test_lora_checkpoints_in_ray_storage_after_a_crash_and_resume(two_ranks):
    result = two_ranks["result"]
    assert result.error is None
    assert Path(result.checkpoint.path) == two_ranks["store"] / "checkpoint-6"
    for step in (2, 4, 6):
        d = two_ranks["store"] / f"checkpoint-{step}"
        assert json.loads((d / "trainer_state.json").read_text())["global_step"] == step
        assert {"peft_model-00001-of-00001.safetensors", "lora_config.json"} <= {p.name for p in d.iterdir()}
    assert (two_ranks["root"] / "crashed.early").read_text() == "1"
    assert (two_ranks["root"] / "crashed").read_text() == "3"
    stream = two_ranks["stream"]
    failures = [i for i, rec in enumerate(stream) if "error" in rec]
    assert len(failures) == 2 and all(stream[i]["error"].startswith("rank 1:") for i in failures)
    assert ["injected crash at step 1" in stream[failures[0]]["error"],
            "injected crash at step 3" in stream[failures[1]]["error"]] == [True, True]
    logged = [rec for rec in stream if "loss" in rec and "checkpoint" not in rec]
    first_after = [next(rec["step"] for rec in stream[i + 1:] if "loss" in rec) for i in failures]
    assert first_after == [1, 3]              # no checkpoint yet: from step 1; then from checkpoint-2
    assert logged and all(0 < rec["loss"] < 20 for rec in logged)


def test_no_fork_argument_is_taken_for_a_typo_of_our_keys(world):
    from ocrvl_ray.train.config import OUR_KEYS, typos_of_ours
    from ocrvl_ray.train.engines.erniekit import fork_fields

    fields = fork_fields(world["ernie"])
    assert len(fields) > 300 and "train_lmdb_paths" in fields
    assert typos_of_ours(sorted(set(fields) - OUR_KEYS)) == []


def test_demo_loop_closes_with_the_fork(world, ray_address, tmp_path):
    """`ocrvl demo-loop erniekit` (docs/quickstart-loop.md): a base built with the fork's model code, the fork's
    LoRA on the bundled sample's train LMDB with a falling loss, merge, eval of base vs fine-tuned on the valid
    LMDB, the report."""
    import os
    import subprocess
    import sys

    import pyarrow.parquet as pq

    run = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "ocrvl_ray.cli", "demo-loop", "erniekit", f"run_dir={run}"],
                         capture_output=True, text=True, timeout=1500, cwd=Path(__file__).resolve().parents[2],
                         env={**os.environ, "RAY_ADDRESS": ray_address, "ERNIE_ROOT": str(world["ernie"])})
    lines = (res.stdout + res.stderr).strip().splitlines()
    assert res.returncode == 0, lines[-30:]
    stages = json.loads((run / "run_manifest.json").read_text())["stages"]
    assert [stages[s]["status"] for s in ("layout", "train", "merge", "eval")] == ["done"] * 4
    assert stages["eval"]["inputs"]["data"] == str(run / "sample_valid_layout.lmdb")
    assert stages["train"]["inputs"]["train_lmdb_paths"] == str(run / "sample_train_layout.lmdb")
    sft = Path(stages["train"]["inputs"]["output_dir"])
    curve = [(r["step"], r["loss"]) for r in map(json.loads, sft.with_name(sft.name + ".metrics.jsonl").read_text()
                                                 .splitlines()) if "loss" in r and "checkpoint" not in r]
    # the tiny base's lm_head (std 0.2) lets LoRA move the logits: the loss falls visibly, each 5-step mean
    # below the first step's by more than a nat (it fell 11.53 -> 11.47 with the fork's near-uniform init)
    assert [s for s, _ in curve] == [1, 5, 10, 15, 20] and all(x < curve[0][1] - 1 for _, x in curve[2:]), curve
    assert stages["merge"]["outputs"]["verified"] is True
    preds = pq.read_table(run / "eval" / "predictions.parquet").to_pydict()
    assert len(preds["reference"]) == 12 and {"prediction:base", "prediction:ft"} <= set(preds)
    assert res.stdout.strip().splitlines()[-1] == f"demo-loop erniekit: report {run / 'eval' / 'report.html'}"
