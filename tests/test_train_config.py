"""Training config, pre-flight audit, erniekit entry and backend env: no Ray cluster needed."""
from __future__ import annotations

import json
import os
import sys
import time
from importlib.metadata import version
from pathlib import Path

import lmdb
import pytest
import yaml
from omegaconf import OmegaConf

from ocrvl_ray import cli
from ocrvl_ray.core.config import ConfigError
from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.train import checkpoints as ck
from ocrvl_ray.train import entries, preflight
from ocrvl_ray.train.config import DEFAULT_ENTRY, OUR_KEYS, load_train_config, run_name_for

USER_YAML = Path(__file__).parent / "data" / "run_ocr_vl_sft_16k.yaml"


def erniekit_reference(yaml_path: Path, overrides: list[str]) -> dict:
    """erniekit/hparams/parser.py::read_args, written out: YAML via safe_load, overrides via from_cli."""
    base = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    return OmegaConf.to_container(OmegaConf.merge(base, OmegaConf.from_cli(overrides)))


def test_user_yaml_is_accepted_unchanged(tmp_path):
    ours, args = load_train_config(USER_YAML, [], env={}, cwd=tmp_path)
    raw = yaml.safe_load(USER_YAML.read_text(encoding="utf-8"))
    assert ours.num_workers == 1 and ours.mode == "in-process" and ours.entry.endswith(":erniekit")
    # only the two output paths are made absolute (workers do not share the driver's cwd)
    assert args["output_dir"] == str(tmp_path / "PaddleOCR-VL-SFT-Bengali")
    assert args["logging_dir"] == str(tmp_path / "PaddleOCR-VL-SFT-Bengali" / "tensorboard_logs")
    rest = {k: v for k, v in args.items() if k not in ("output_dir", "logging_dir")}
    assert rest == {k: v for k, v in raw.items() if k not in ("output_dir", "logging_dir")}
    assert run_name_for(ours, args) == "PaddleOCR-VL-SFT-Bengali"


def test_overrides_match_erniekit(tmp_path):
    overrides = ["max_steps=100", "learning_rate=1e-4", "do_eval=False", "amp_custom_white_list=[matmul,softmax]",
                 "train_lmdb_paths=/data/a_layout.lmdb,/data/b_layout.lmdb", "train_lmdb_prob=0.7,0.3",
                 "extra.nested.key=3", "min_lr=null", "seed='7'", "output_dir=/abs/run",
                 "num_workers=8", "storage_path=s3://bucket/runs", "mode=launcher", "max_failures=3"]
    ours, args = load_train_config(USER_YAML, overrides, env={}, cwd=tmp_path)
    expected = erniekit_reference(USER_YAML, overrides)
    expected["logging_dir"] = str(tmp_path / expected["logging_dir"])
    for k in OUR_KEYS:
        expected.pop(k, None)
    assert args == expected
    # the types erniekit's parser gives, written out by hand
    assert args["max_steps"] == 100 and args["learning_rate"] == 1e-4 and args["do_eval"] is False
    assert args["amp_custom_white_list"] == ["matmul", "softmax"]
    assert args["train_lmdb_paths"] == "/data/a_layout.lmdb,/data/b_layout.lmdb"
    assert args["extra"] == {"nested": {"key": 3}} and args["min_lr"] is None and args["seed"] == "7"
    assert (ours.num_workers, ours.storage_path, ours.mode, ours.max_failures) == (8, "s3://bucket/runs", "launcher", 3)
    assert not OUR_KEYS & set(args)


def test_our_keys_precedence_and_errors(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("output_dir: out\nernie_root: /from/yaml\nnum_workers: 2\n")
    ours, _ = load_train_config(cfg, [], env={}, cwd=tmp_path)
    assert ours.ernie_root == "/from/yaml" and ours.num_workers == 2
    ours, _ = load_train_config(cfg, [], env={"ERNIE_ROOT": "/from/env"}, cwd=tmp_path)
    assert ours.ernie_root == "/from/env"
    ours, _ = load_train_config(cfg, ["ernie_root=/from/cli"], env={"ERNIE_ROOT": "/from/env"}, cwd=tmp_path)
    assert ours.ernie_root == "/from/cli"
    with pytest.raises(ConfigError, match="num_workers"):
        load_train_config(cfg, ["num_workers=two"], env={}, cwd=tmp_path)
    with pytest.raises(ConfigError, match="mode"):
        load_train_config(cfg, ["mode=torchrun"], env={}, cwd=tmp_path)
    with pytest.raises(ConfigError, match="key=value"):
        load_train_config(cfg, ["max_steps"], env={}, cwd=tmp_path)


def _lmdb(path: Path, entries_: dict[bytes, bytes]) -> str:
    env = lmdb.open(str(path), map_size=1 << 20)
    with env.begin(write=True) as txn:
        for k, v in entries_.items():
            txn.put(k, v)
    env.close()
    return str(path)


def test_preflight_one_line_per_problem(tmp_path):
    good = _lmdb(tmp_path / "good_layout.lmdb", {b"num-samples": b"3", b"image-000000001": b"x"})
    empty = _lmdb(tmp_path / "empty_layout.lmdb", {b"num-samples": b"0"})
    nokey = _lmdb(tmp_path / "nokey_layout.lmdb", {b"image-000000001": b"x"})
    spaced = tmp_path / "with space_layout.lmdb"
    spaced.mkdir()
    not_lmdb = tmp_path / "plain_layout.lmdb"
    not_lmdb.mkdir()
    missing = str(tmp_path / "missing_layout.lmdb")
    args = {"train_lmdb_paths": ",".join([good, empty, nokey, str(spaced), str(not_lmdb), missing]),
            "train_lmdb_prob": "0.5,0.5", "eval_dataset_path": good, "output_dir": str(tmp_path / "out"),
            "fine_tuning": "LoRA", "stage": "OCR-VL-SFT"}
    found = preflight.audit(args)
    lines = [str(f) for f in found]
    assert all("\n" not in line for line in lines)
    errors = [f.message for f in found if f.level == "error"]
    assert len(errors) == 6, lines
    assert any(empty in m and "num-samples=0" in m for m in errors)
    assert any(nokey in m and "num-samples" in m for m in errors)
    assert any(str(spaced) in m and "space" in m for m in errors)
    assert any(str(not_lmdb) in m and "read-only" in m for m in errors)
    assert any(missing in m and "does not exist" in m for m in errors)
    assert any("train_lmdb_prob has 2 value(s) for 6 path(s)" in m for m in errors)
    warnings = [f.message for f in found if f.level == "warning"]
    assert len(warnings) == 1 and "o_proj and down_proj" in warnings[0] and "use_huggingface_model" in warnings[0]
    assert not (tmp_path / "out").exists()      # the audit creates nothing

    ok = preflight.audit({"train_lmdb_paths": good, "train_lmdb_prob": "1.0", "output_dir": str(tmp_path / "o2"),
                          "fine_tuning": "LoRA", "stage": "OCR-VL-SFT", "use_huggingface_model": True})
    assert ok == []
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    bad_out = preflight.audit({"output_dir": str(blocker / "sub")})
    assert len(bad_out) == 1 and "not writable" in bad_out[0].message
    assert "output_dir is not set" in preflight.audit({})[0].message


def test_cli_preflight_on_user_yaml_lists_problems(tmp_path, capsys, monkeypatch):
    """Every pre-flight problem in one run: the missing checkout is listed with the LMDB errors (it used to
    appear only once they were fixed), and the hub id in model_name_or_path is named as unchecked."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ERNIE_ROOT", raising=False)
    rc = cli.main(["train", str(USER_YAML)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[0].startswith("ocrvl train: error: train_lmdb_paths: LMDB /mnt/nas/ocr_dataset/ocr_public_train_layout")
    assert err[1].startswith("ocrvl train: error: eval_dataset_path: LMDB /mnt/nas/ocr_dataset/public_admin_train")
    assert err[2].startswith("ocrvl train: error: the erniekit entry needs the ERNIE checkout: set ernie_root=")
    errors = 3
    if int(version("protobuf").split(".")[0]) >= 7:     # erniekit's default VisualDL reporting would crash
        assert err[3].startswith("ocrvl train: error: report_to=visualdl (the default) crashes with protobuf 7")
        errors = 4
    assert err[errors].startswith("ocrvl train: warning: LoRA will adapt only o_proj and down_proj")
    assert err[errors + 1] == ("ocrvl train: warning: model_name_or_path=PaddlePaddle/PaddleOCR-VL is not a folder "
                               "on this machine: erniekit will download it from the model hub on each worker (needs "
                               "network access), so it cannot be checked here; give a local model folder to check it")
    assert err[errors + 2] == (f"ocrvl train: error: pre-flight found {errors} problem(s) listed above; fix them "
                               "(or skip the audit with preflight=false)")
    assert len(err) == errors + 3


def test_erniekit_preflight_checks_the_model_folder(tmp_path):
    """model_name_or_path: a missing local folder, one without config.json or weights, a file: one error line
    each; a complete folder and a hub id give no error."""
    from ocrvl_ray.train.engines.erniekit import check_model

    def errors(value):
        return [f.message for f in check_model({"model_name_or_path": value}) if f.level == "error"]

    bare, full = tmp_path / "bare", tmp_path / "full"
    bare.mkdir()
    full.mkdir()
    (full / "config.json").write_text("{}")
    (full / "model.safetensors").write_bytes(b"x")
    (tmp_path / "a_file").write_text("x")
    missing = str(tmp_path / "PaddleOCR-VL")
    assert errors(missing) == [f"model_name_or_path: model folder {missing} does not exist; fix the path (a folder "
                               "with config.json and the weights)"]
    assert "./models/PaddleOCR-VL does not exist" in errors("./models/PaddleOCR-VL")[0]     # a path, not a hub id
    assert errors(str(bare)) == [f"model_name_or_path: model folder {bare} has no config.json and no weights "
                                 "(*.safetensors or *.pdparams); point it at a complete model folder"]
    (bare / "config.json").write_text("{}")
    assert "has no weights" in errors(str(bare))[0]
    assert "is a file" in errors(str(tmp_path / "a_file"))[0]
    assert errors(str(full)) == [] and check_model({"model_name_or_path": str(full)}) == []
    hub = check_model({"model_name_or_path": "PaddlePaddle/PaddleOCR-VL"})
    assert [f.level for f in hub] == ["warning"] and "download" in hub[0].message
    assert "model_name_or_path is not set" in errors(None)[0]


def test_erniekit_preflight_names_an_ignored_lr_scheduler_type():
    """The fork's OCR-VL trainer schedules by lr_scheduler (default cosine): lr_scheduler_type=constant left the
    demo loop's learning rate decaying."""
    from ocrvl_ray.train.engines.erniekit import check_ignored

    found = check_ignored({"stage": "OCR-VL-SFT", "lr_scheduler_type": "constant"})
    assert [str(f) for f in found] == ["warning: lr_scheduler_type=constant is ignored: the fork's OCR-VL trainer "
                                       "reads lr_scheduler (cosine); set lr_scheduler=constant"]
    assert check_ignored({"stage": "OCR-VL-SFT", "lr_scheduler_type": "cosine"}) == []      # the user's YAML
    assert check_ignored({"stage": "OCR-VL-SFT", "lr_scheduler_type": "constant", "lr_scheduler": "constant"}) == []


def test_erniekit_entry_without_checkout_is_one_clear_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ERNIE_ROOT", raising=False)
    rc = cli.main(["train", str(USER_YAML), "preflight=false"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "ernie_root=" in err[0] and "ERNIE_ROOT" in err[0] and "data_processor" in err[0]
    with pytest.raises(OcrvlError, match="not an ERNIE checkout"):
        entries.ernie_checkout(str(tmp_path))


def _stub_checkout(root: Path, record: Path) -> Path:
    """Stands in for the user's ERNIE clone: its tuner records how it was called."""
    for pkg in ("ernie", "data_processor", "erniekit", "erniekit/train"):
        (root / pkg).mkdir(parents=True, exist_ok=True)
        (root / pkg / "__init__.py").write_text("")
    (root / "erniekit" / "launcher.py").write_text("")
    (root / "erniekit" / "train" / "tuner.py").write_text(
        "import json, os, sys\n"
        "def run_tuner(args=None):\n"
        f"    json.dump({{'args': args, 'sys_path0': sys.path[0], 'FLAGS_set_to_1d': os.environ.get('FLAGS_set_to_1d')}},"
        f" open({str(record)!r}, 'w'))\n")
    return root


def test_erniekit_entry_builds_the_in_process_call(tmp_path, monkeypatch):
    root = _stub_checkout(tmp_path / "ERNIE", tmp_path / "called.json")
    _, args = load_train_config(USER_YAML, ["max_steps=5", f"ernie_root={root}"], env={}, cwd=tmp_path)
    call = entries.erniekit_call(args, str(root))
    assert (call.sys_path, call.module, call.function) == (str(root), "erniekit.train.tuner", "run_tuner")
    assert call.args == args and call.env["FLAGS_set_to_1d"] == "False"

    monkeypatch.setenv("ERNIE_ROOT", str(root))
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in [m for m in sys.modules if m == "erniekit" or m.startswith("erniekit.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setenv("FLAGS_set_to_1d", "True")
    entries.erniekit(args)
    called = json.loads((tmp_path / "called.json").read_text())
    assert called["args"] == json.loads(json.dumps(args))
    assert called["sys_path0"] == str(root) and called["FLAGS_set_to_1d"] == "False"
    for name in [m for m in sys.modules if m == "erniekit" or m.startswith("erniekit.")]:
        del sys.modules[name]

    env = {"MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "6170", "NNODES": "2", "PADDLE_RANK": "1",
           "POD_IP": "10.0.0.2", "FLAGS_selected_gpus": "0,1"}
    cmd = entries.launcher_command(DEFAULT_ENTRY, "/run/cfg.yaml", env, "/run/logs")
    assert cmd[1:4] == ["-u", "-m", "paddle.distributed.launch"]
    flags = dict(zip(cmd[4:-3:2], cmd[5:-3:2]))
    assert flags == {"--master": "10.0.0.1:6170", "--nnodes": "2", "--rank": "1", "--host": "10.0.0.2",
                     "--log_dir": "/run/logs", "--devices": "0,1"}
    # every launched process runs child.py (its own shards, ernie_root on sys.path), not erniekit/launcher.py
    assert cmd[-3:] == [str(Path(entries.__file__).with_name("child.py")), DEFAULT_ENTRY, "/run/cfg.yaml"]


def test_load_entry_errors():
    assert entries.load_entry("ocrvl_ray.testing.train:allreduce_check").__name__ == "allreduce_check"
    for spec, msg in [("nocolon", "module:function"), ("no_such_mod_xyz:f", "cannot import"),
                      ("ocrvl_ray.testing.train:nope", "no function nope")]:
        with pytest.raises(OcrvlError, match=msg):
            entries.load_entry(spec)


def test_backend_env_cpu_and_gpu():
    from ocrvl_ray.train.backend import collective_env, launcher_env

    cpu = [{"ip": "10.0.0.1", "port": 4000 + r, "local_rank": r, "local_world_size": 2, "gpu_ids": [],
            "cuda_visible": ""} for r in range(2)]
    e1 = collective_env(1, cpu, "10.0.0.1:5000", None)
    assert e1["PADDLE_TRAINER_ID"] == "1" and e1["PADDLE_TRAINERS_NUM"] == "2"
    assert e1["PADDLE_TRAINER_ENDPOINTS"] == "10.0.0.1:4000,10.0.0.1:4001"
    assert e1["PADDLE_CURRENT_ENDPOINT"] == "10.0.0.1:4001" and e1["PADDLE_MASTER"] == "10.0.0.1:5000"
    assert e1["PADDLE_DISTRI_BACKEND"] == "gloo" and "FLAGS_selected_gpus" not in e1
    assert (e1["PADDLE_LOCAL_RANK"], e1["PADDLE_LOCAL_SIZE"], e1["PADDLE_NNODES"]) == ("1", "2", "1")
    # two nodes x 2 GPUs; Ray shares the node's GPUs "4,6" with both of its workers
    gpu = [{"ip": f"10.0.0.{1 + r // 2}", "port": 4000, "local_rank": r % 2, "local_world_size": 2,
            "gpu_ids": [["4", "6"][r % 2]], "cuda_visible": "4,6"} for r in range(4)]
    e3 = collective_env(3, gpu, "10.0.0.1:5000", None)
    assert e3["PADDLE_DISTRI_BACKEND"] == "nccl" and e3["FLAGS_selected_gpus"] == "1"
    assert e3["PADDLE_NNODES"] == "2" and e3["PADDLE_CURRENT_ENDPOINT"] == "10.0.0.2:4000"
    nodes = [{"ip": f"10.0.0.{r + 1}", "port": 1, "local_rank": 0, "local_world_size": 1,
              "gpu_ids": ["0", "1"], "cuda_visible": "0,1"} for r in range(2)]
    l1 = launcher_env(1, nodes, 6170)
    assert (l1["MASTER_ADDR"], l1["MASTER_PORT"], l1["NNODES"], l1["PADDLE_RANK"], l1["POD_IP"]) == \
        ("10.0.0.1", "6170", "2", "1", "10.0.0.2")
    assert l1["FLAGS_selected_gpus"] == "0,1" and not any(k.startswith("PADDLE_TRAINER") for k in l1)


def test_checkpoint_watcher_reports_each_finished_write_once(tmp_path):
    out = tmp_path / "out"
    old = out / "checkpoint-2"
    old.mkdir(parents=True)
    (old / ck.STATE_FILE).write_text("{}")
    w = ck.CheckpointWatcher(out, after_step=-1, settle_s=0.3)
    assert w.poll() == []                       # on disk before the start: not ours
    c4 = out / "checkpoint-4"
    c4.mkdir()
    (c4 / "peft_model-00001-of-00001.safetensors").write_bytes(b"w")
    assert w.poll() == []                       # no trainer state yet
    (c4 / ck.STATE_FILE).write_text(json.dumps({"global_step": 4, "epoch": 1.0}))
    assert w.poll() == []                       # scheduler (written last) missing
    (c4 / ck.LAST_FILE).write_bytes(b"s")
    assert w.poll() == []                       # not settled yet
    time.sleep(0.4)
    assert w.poll() == [4]
    assert w.poll() == []                       # once
    c8 = out / "checkpoint-8"
    c8.mkdir()
    (c8 / ck.STATE_FILE).write_text("{}")
    assert w.poll() == []
    assert w.poll(trainer_exited=True) == [8]   # the trainer exited: the state file suffices
    (c8 / ck.LAST_FILE).write_bytes(b"s")
    os.utime(c8 / ck.LAST_FILE, ns=(1, 1))
    assert not ck.is_finished(c8, settled_before=time.time() + 10, newer_exists=False, trainer_exited=False)
    os.utime(old / ck.STATE_FILE, ns=(1, 1))    # rewritten after a resume -> a new write
    assert ck.CheckpointWatcher(out, after_step=4).poll(trainer_exited=True) == []
    assert w.poll(trainer_exited=True) == [2]

    staging = ck.side_dir(out, "staging")
    assert staging == tmp_path / "out.staging"
    staged = ck.stage(c4, staging)
    # the staged copy: the checkpoint's files plus their list (a stored copy counts only when all are there)
    assert sorted(p.name for p in staged.iterdir()) == sorted([ck.FILES_LIST] + [p.name for p in c4.iterdir()])
    assert ck.stage(out / "checkpoint-99", staging) is None
    again = tmp_path / "again"
    for stale in ("checkpoint-4", "checkpoint-6", "checkpoint-2"):
        (again / stale).mkdir(parents=True)
        (again / stale / "x").write_text(stale)
    restored = ck.restore(staged, again, 4)
    assert restored.name == "checkpoint-4" and (restored / ck.LAST_FILE).read_bytes() == b"s"
    assert sorted(ck.list_checkpoints(again)) == [2, 4] and not (restored / "x").exists()
    logs = [{"step": 3, "loss": 2.0}, {"step": 4, "loss": 1.5, "learning_rate": 0.1}, {"step": 5, "loss": 1.0}]
    assert ck.checkpoint_metrics(c4, logs) == {"step": 4, "loss": 1.5, "learning_rate": 0.1, "epoch": 1.0}
    assert ck.log_report(logs) == {"step": 5, "loss": 1.0, "log_history": logs}


def test_job_script_dry_run(tmp_path):
    """``jobs/train.py`` takes the ``ocrvl train`` arguments (run from any directory, no Ray needed)."""
    import subprocess

    root = _stub_checkout(tmp_path / "ERNIE", tmp_path / "unused.json")
    job = Path(__file__).resolve().parents[1] / "jobs" / "train.py"
    proc = subprocess.run([sys.executable, str(job), str(USER_YAML), f"ernie_root={root}", "num_workers=4",
                           "preflight=false", "--dry-run"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    shown = yaml.safe_load(proc.stdout)
    assert shown["run_name"] == "PaddleOCR-VL-SFT-Bengali" and shown["ocrvl"]["num_workers"] == 4
    assert shown["erniekit"]["output_dir"] == str(tmp_path / "PaddleOCR-VL-SFT-Bengali")
    assert "num_workers" not in shown["erniekit"] and shown["erniekit"]["stage"] == "OCR-VL-SFT"


def test_cli_failure_summary_names_rank_and_cause():
    from ray.train import ControllerError, WorkerGroupError

    from ocrvl_ray.cli.train import _cause

    assert _cause(WorkerGroupError("failed", {1: KeyError("model_name_or_path"), 0: RuntimeError("a\nboom")})) \
        == "rank 0: RuntimeError: boom"
    assert _cause(ControllerError(TimeoutError("workers did not start"))) == "TimeoutError: workers did not start"


def test_a_near_miss_of_our_keys_gets_a_did_you_mean_and_erniekit_keys_pass(tmp_path, capsys):
    for typo, ours_key in (("num_worker=2", "num_workers"), ("use_gpus=false", "use_gpu"),
                           ("storage_pth=/s", "storage_path"), ("ernie_rot=/e", "ernie_root")):
        with pytest.raises(ConfigError, match=f"unknown config key '{typo.split('=')[0]}'; did you mean '{ours_key}'"):
            load_train_config(USER_YAML, [typo], env={}, cwd=tmp_path)
    # genuine erniekit / PaddleFormers keys, also those sharing words with ours, pass to the entry untouched
    keys = ["dataloader_num_workers=2", "lora_path=/l", "muon_version=1", "logging_steps=3", "model_name_or_path=/m"]
    ours, args = load_train_config(USER_YAML, keys, env={}, cwd=tmp_path)
    assert ours.num_workers == 1 and args["dataloader_num_workers"] == 2 and args["muon_version"] == 1
    # a key the YAML itself holds is the entry's, however close to ours
    cfg = tmp_path / "c.yaml"
    cfg.write_text("num_worker: 4\n")
    assert load_train_config(cfg, ["num_worker=5"], env={}, cwd=tmp_path)[1]["num_worker"] == 5
    assert cli.main(["train", str(USER_YAML), "num_worker=2", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did you mean 'num_workers'?" in err[0], err
