"""Disjoint data per rank: the shard contract, per-rank train_lmdb_paths before any entry, the pre-flight
checks for the erniekit fork's traps that need no fork environment, and why no checkpoint was reported."""
from __future__ import annotations

import json
from pathlib import Path

import lmdb
import pytest

from ocrvl_ray import cli
from ocrvl_ray.lmdb.reader import LmdbReader
from ocrvl_ray.testing.shards import write_sharded
from ocrvl_ray.train import checkpoints as ck
from ocrvl_ray.train import preflight
from ocrvl_ray.train.engines import erniekit as fork
from ocrvl_ray.train.rank_data import for_rank
from ocrvl_ray.lmdb.shards import ShardError, assign, expand

SPY = "tests.train_entries:record_config"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    a, b = root / "a_train_layout.lmdb", root / "b_train_layout.lmdb"
    return {"root": root, "a": a, "b": b, "a_labels": write_sharded(a, 4, 2), "b_labels": write_sharded(b, 2, 3)}


def test_expand_orders_shards_and_refuses_incomplete_outputs(data, tmp_path):
    a = data["a"]
    assert expand(a) == [str(a / f"shard-0000{i}-of-00004") for i in range(4)]
    single = a / "shard-00002-of-00004"
    assert expand(single) == [str(single)]                       # an LMDB is one shard
    assert expand(tmp_path / "missing.lmdb") == [str(tmp_path / "missing.lmdb")]
    with LmdbReader(str(single)) as r:
        assert [r.label(i) for i in range(len(r))] == data["a_labels"][2]

    gap = tmp_path / "gap.lmdb"
    for i in (0, 2):
        (gap / f"shard-0000{i}-of-00003").mkdir(parents=True)
    with pytest.raises(ShardError, match=r"gap.lmdb: 1 of 3 shards missing .*shard-00001-of-00003"):
        expand(gap)
    mixed = tmp_path / "mixed.lmdb"
    for name in ("shard-00000-of-00001", "shard-00000-of-00002", "shard-00001-of-00002"):
        (mixed / name).mkdir(parents=True)
    with pytest.raises(ShardError, match="2 different counts"):
        expand(mixed)


def test_assign_is_rank_strided_and_needs_a_shard_per_rank():
    shards = ["s0", "s1", "s2", "s3", "s4"]
    assert [assign(shards, r, 2) for r in range(2)] == [["s0", "s2", "s4"], ["s1", "s3"]]
    assert assign(shards, 4, 5) == ["s4"]
    with pytest.raises(ShardError, match=r"2 shard.* for 3 training ranks.*`ocrvl reshard IN --shards 3 --out OUT`"):
        assign(["s0", "s1"], 0, 3)


def test_for_rank_gives_each_rank_its_shards_and_weights_by_samples(data):
    a, b = data["a"], data["b"]
    cfg = {"train_lmdb_paths": f"{a},{b}", "train_lmdb_prob": "0.6,0.4", "max_steps": 3}
    r0, lines0 = for_rank(cfg, 0, 2)
    r1, lines1 = for_rank(cfg, 1, 2)
    assert r0["train_lmdb_paths"].split(",") == [str(a / "shard-00000-of-00004"), str(a / "shard-00002-of-00004"),
                                                 str(b / "shard-00000-of-00002")]
    assert r1["train_lmdb_paths"].split(",") == [str(a / "shard-00001-of-00004"), str(a / "shard-00003-of-00004"),
                                                 str(b / "shard-00001-of-00002")]
    # a's 0.6 split over two shards of 2 samples each; b's 0.4 on its one shard
    assert [float(p) for p in r0["train_lmdb_prob"].split(",")] == pytest.approx([0.3, 0.3, 0.4])
    assert r0["max_steps"] == 3 and cfg["train_lmdb_paths"] == f"{a},{b}"      # input untouched
    assert lines0 == [f"rank 0/2: {a} -> shard-00000-of-00004, shard-00002-of-00004 (4 samples)",
                      f"rank 0/2: {b} -> shard-00000-of-00002 (3 samples)"]
    assert lines1[1] == f"rank 1/2: {b} -> shard-00001-of-00002 (3 samples)"

    one = {"train_lmdb_paths": str(a / "shard-00000-of-00004"), "train_lmdb_prob": "1.0"}
    assert for_rank(one, 0, 1) == (one, [])                       # nothing to split: unchanged
    with pytest.raises(ShardError, match=r"train_lmdb_paths: .*shard-00000-of-00004: 1 shard\(s\) for 2 training"):
        for_rank(one, 1, 2)
    assert for_rank({"output_dir": "/x"}, 0, 2) == ({"output_dir": "/x"}, [])


def test_preflight_counts_shards_per_rank(data, tmp_path):
    a, b = data["a"], data["b"]
    base = {"output_dir": str(tmp_path / "out"), "fine_tuning": "LoRA", "stage": "OCR-VL-SFT",
            "use_huggingface_model": True}
    ok = {**base, "train_lmdb_paths": f"{a},{b}", "train_lmdb_prob": "0.5,0.5"}
    assert preflight.audit(ok, world=2) == []
    found = [str(f) for f in preflight.audit(ok, world=3)]
    assert found == [f"error: train_lmdb_paths: {b}: 2 shard(s) for 3 training ranks: ranks would read the same "
                     "samples; copy it into 3 shards with `ocrvl reshard IN --shards 3 --out OUT` (or write it "
                     "with shards=3 or a multiple), or train with 2 rank(s)"]
    single = str(a / "shard-00000-of-00004")
    assert "1 shard(s) for 2 training ranks" in preflight.audit({**base, "train_lmdb_paths": single}, world=2)[0].message
    sharded_eval = preflight.audit({**base, "train_lmdb_paths": str(a), "eval_dataset_path": str(b)}, world=2)
    assert [f.message for f in sharded_eval] == [
        f"eval_dataset_path: {b} is a sharded output; the reader takes one LMDB there: give one shard, "
        f"e.g. {b / 'shard-00000-of-00002'}"]
    no_prob = preflight.audit({**base, "train_lmdb_paths": f"{single},{b / 'shard-00000-of-00002'}"})
    assert [f.message for f in no_prob] == ["train_lmdb_prob is not set: the reader would use only the first of "
                                            "the 2 LMDBs in train_lmdb_paths; give one probability per LMDB (e.g. 0.5,0.5)"]


def test_fork_traps_found_without_the_fork(data):
    """Items 2, 4 and 6 of the issue that need no fork code: ignored train_dataset_path, do_eval=False
    overridden, one LMDB opened twice under py-lmdb >= 2, VisualDL with protobuf 7."""
    shard = str(data["a"] / "shard-00000-of-00004")
    args = {"train_lmdb_paths": shard, "train_dataset_path": "/data/other_layout.lmdb", "do_eval": False,
            "evaluation_strategy": "steps", "eval_dataset_path": shard}
    ignored = [str(f) for f in fork.check_ignored(args)]
    assert ignored == [f"error: train_dataset_path=/data/other_layout.lmdb is ignored: train_lmdb_paths is set ({shard}) "
                       "and wins; pass the LMDB as train_lmdb_paths=/data/other_layout.lmdb",
                       "warning: do_eval=False does not stop evaluation while evaluation_strategy=steps; set "
                       "evaluation_strategy='no' as well"]
    twice = fork.check_double_open(args, "3.0.0")
    assert len(twice) == 1 and shard in twice[0].message and "lmdb 1.7.5" in twice[0].message
    assert fork.check_double_open(args, "1.7.5") == []
    assert fork.check_double_open({**args, "evaluation_strategy": "no"}, "3.0.0") == []
    report = fork.check_reporting({}, "7.36.2")
    assert len(report) == 1 and "report_to=visualdl (the default)" in report[0].message
    assert "report_to=none" in report[0].message
    assert fork.check_reporting({"report_to": "none"}, "7.36.2") == []
    assert fork.check_reporting({}, "6.33.6") == []


def test_lmdb_2_refuses_the_second_open_the_check_prevents(data):
    """The fact behind check_double_open, on the installed py-lmdb."""
    shard = str(data["a"] / "shard-00001-of-00004")
    first = lmdb.open(shard, readonly=True, lock=False)
    try:
        if int(lmdb.__version__.split(".")[0]) >= 2:
            with pytest.raises(lmdb.Error, match="already open"):
                lmdb.open(shard, readonly=True, lock=False)
        else:
            lmdb.open(shard, readonly=True, lock=False).close()
    finally:
        first.close()


def test_each_rank_entry_gets_only_its_shards_and_a_missing_trainer_state_is_explained(data, ray_local, tmp_path,
                                                                                       capsys, monkeypatch):
    """2 real Ray Train workers, a custom entry: each receives its own shards; the checkpoint-1 it writes
    without trainer_state.json is named as the reason nothing was reported."""
    monkeypatch.chdir(Path(__file__).parent.parent)           # workers import tests.train_entries from here
    a = data["a"]
    out = tmp_path / "run"
    rc = cli.main(["train", "num_workers=2", "use_gpu=false", f"entry={SPY}", f"output_dir={out}",
                   f"storage_path={tmp_path / 'store'}", "max_failures=0", "watch_interval_s=0.5",
                   f"train_lmdb_paths={a}", "train_lmdb_prob=1.0", f"record_dir={tmp_path / 'seen'}"])
    err = capsys.readouterr().err
    assert rc == 0, err
    seen = {r: json.loads((tmp_path / "seen" / f"rank{r}.json").read_text()) for r in range(2)}
    assert seen[0]["train_lmdb_paths"] == f"{a / 'shard-00000-of-00004'},{a / 'shard-00002-of-00004'}"
    assert seen[1]["train_lmdb_paths"] == f"{a / 'shard-00001-of-00004'},{a / 'shard-00003-of-00004'}"
    assert seen[0]["labels"] == data["a_labels"][0] + data["a_labels"][2]
    assert seen[1]["labels"] == data["a_labels"][1] + data["a_labels"][3]
    assert err.strip().splitlines()[-1] == (
        f"ocrvl train: done; no checkpoint reported: checkpoint-1 in {out} has no trainer_state.json, so the "
        "trainer never finished saving it (it stopped while saving, or saves no trainer state)")


def test_why_none_without_any_checkpoint(tmp_path):
    assert "wrote no checkpoint-N" in ck.why_none(tmp_path)
    assert "not on this machine" in ck.why_none(tmp_path / "elsewhere")


def _checkpoint(out: Path, step: int, finished: bool = True) -> Path:
    d = out / f"checkpoint-{step}"
    d.mkdir(parents=True)
    (d / "model.safetensors").write_bytes(b"w")
    if finished:
        (d / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return d


def test_start_without_a_ray_checkpoint(tmp_path):
    """A save cut off by the crash is removed, the newest finished checkpoint resumed; a folder with only
    logs in it starts fresh on every rank; a folder with other files is left to the entry."""
    out = tmp_path / "run"
    _checkpoint(out, 2), _checkpoint(out, 1), _checkpoint(out, 4, finished=False)
    updates, notes = ck.start_from(out)
    assert updates == {"resume_from_checkpoint": str(out / "checkpoint-2")}
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-1", "checkpoint-2"]
    assert notes[0] == f"removed {out / 'checkpoint-4'}: no trainer_state.json, a save cut off by the failure"

    logs = tmp_path / "fresh" / "tensorboard_logs" / "Dec01_vm"
    logs.mkdir(parents=True)
    (logs / "events.out.tfevents.1").write_bytes(b"e")
    assert ck.start_from(tmp_path / "fresh", logs.parent) == ({"overwrite_output_dir": True}, [])
    assert ck.start_from(tmp_path / "never-made") == ({"overwrite_output_dir": True}, [])
    assert ck.start_from(tmp_path / "fresh", tmp_path / "logs") == ({}, [])    # logs elsewhere: not ours
    default = tmp_path / "default" / "runs" / "Dec01_vm"                           # the trainer's default
    default.mkdir(parents=True)
    assert ck.start_from(tmp_path / "default") == ({"overwrite_output_dir": True}, [])


def test_preflight_refuses_a_full_output_dir_without_checkpoints(tmp_path):
    out = tmp_path / "run"
    (out / "tensorboard_logs").mkdir(parents=True)
    base = {"output_dir": str(out), "logging_dir": str(out / "tensorboard_logs")}
    assert preflight.check_output_dir(base) == []
    for name in ("model.safetensors", "a.json", "b.json", "c.json"):
        (out / name).write_text("x")
    found = preflight.check_output_dir(base)
    assert [str(f) for f in found] == [
        f"error: output_dir {out} already holds a.json, b.json, c.json and 1 more but no checkpoint-N to resume "
        "from; choose a new output_dir, or set overwrite_output_dir=true to train over it"]
    assert preflight.check_output_dir({**base, "overwrite_output_dir": True}) == []
    _checkpoint(out, 2)
    assert preflight.check_output_dir(base) == []
