"""``ocrvl train engine=transformers`` on CPU: Ray Train TorchTrainer (2 gloo workers) + PEFT LoRA on a tiny random
PaddleOCR-VL built offline, a 2-shard LMDB written with the shard contract: disjoint shards per rank, the loss goes
down on a memorisable set, checkpoints in Ray storage, a worker killed after the first checkpoint resumes to the
same adapter as an uninterrupted run; config errors are one line before Ray starts."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ocrvl_ray.cli import main

LABELS = ["12", "ab", "7 7", "번호"]
N = 8


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(base folder, 2-shard train LMDB, 1-shard eval LMDB): pages hashed to shards as the layout job does."""
    from ocrvl_ray.demo.tiny_paddleocr_vl import save_random_model
    from ocrvl_ray.lmdb.rows import SinkPage, SinkSample
    from ocrvl_ray.lmdb.shards import shard_of, shard_paths
    from ocrvl_ray.lmdb.writer import LmdbWriter
    from ocrvl_ray.testing.sink import tiny_jpeg

    root = tmp_path_factory.mktemp("train-tf")
    base = save_random_model(root / "base")
    pages = [SinkPage(f"p{p}", "ok", "", [SinkSample(tiny_jpeg(p, (48, 32)), LABELS[p % 4], f"p{p}.jpg", 48, 32, "{}",
                                                     "word", "text")]) for p in range(N)]
    train = root / "train_layout.lmdb"
    for i, path in enumerate(shard_paths(str(train), 2)):
        with LmdbWriter(path) as w:
            w.write_pages([pg for pg in pages if shard_of(pg.page_id, 2) == i])
    valid = root / "valid_layout.lmdb"
    with LmdbWriter(str(valid)) as w:
        w.write_pages(pages[:2])
    return base, train, valid


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray with room for 2 workers; Ray Train's controller polls the workers every 0.2 s instead of 2 s
    (every report waits for a poll: a CPU test of a few steps, not a property of the engine)."""
    import ray

    from ocrvl_ray.core.runtime import init_ray

    if ray.is_initialized():
        ray.shutdown()
    os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] = "0.2"
    try:
        yield init_ray(num_cpus=4)
    finally:
        ray.shutdown()
        os.environ.pop("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", None)


def overrides(tiny, tmp: Path, name: str, *extra: str) -> list[str]:
    base, train, valid = tiny
    return ["engine=transformers", f"model_name_or_path={base}", f"train_lmdb_paths={train}",
            f"eval_lmdb_paths={valid}", f"output_dir={tmp / name}", f"storage_path={tmp / 'ray'}",
            f"metrics_log={tmp / (name + '.jsonl')}", "num_workers=2", "use_gpu=false", "cpus_per_worker=1",
            "max_steps=4", "save_steps=2", "logging_steps=2", "eval_steps=4", "learning_rate=0.03",
            "per_device_train_batch_size=2", "augment=false", "lr_scheduler_type=constant", "seed=3", *extra]


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_an_example_has_loss_on_the_answer_only_and_a_long_sample_is_skipped_and_counted(tiny):
    from PIL import Image

    from ocrvl_ray.core.generations import EOS, GENERATIONS
    from ocrvl_ray.train.engines.transformers.data import Encoder, Stream, collate, rank_shards

    base, train, _ = tiny
    enc = Encoder(str(base), GENERATIONS["v1.5"], "OCR:", 4096)
    ex = enc(enc.resize(Image.new("RGB", (48, 32), (200, 10, 10))), "ab")
    answer = enc.tokenizer("ab" + EOS, add_special_tokens=False)["input_ids"]
    k = len(ex["input_ids"]) - len(answer)
    assert ex["input_ids"][k:] == answer and ex["labels"][k:] == answer and set(ex["labels"][:k]) == {-100}
    prompt = enc.tokenizer.decode(ex["input_ids"][:k])
    assert prompt.startswith("<|begin_of_sentence|>User: <|IMAGE_START|><|IMAGE_PLACEHOLDER|>")
    assert prompt.endswith("<|IMAGE_END|>OCR:\nAssistant:\n")      # 1.5's assistant opener, not v1's
    assert sum(ex["mm_token_type_ids"]) == int(ex["image_grid_thw"].prod()) // 4
    short = enc(enc.resize(Image.new("RGB", (48, 32))), "7")
    batch = collate([ex, short], enc.pad_id)
    n = len(short["input_ids"])
    assert batch["attention_mask"][1, n:].sum() == 0 and set(batch["labels"][1, n:].tolist()) == {-100}
    assert batch["pixel_values"].shape[0] == ex["pixel_values"].shape[0] + short["pixel_values"].shape[0]

    shard = rank_shards([str(train)], 0, 2)
    lengths = []
    stream = Stream(shard, enc, seed=1, rank=0, augment_params=None)
    for _ in range(len(stream)):
        lengths.append(len(stream.next()["input_ids"]))
    stream.close()                        # py-lmdb opens a path once per process
    assert len(set(lengths)) > 1, lengths
    enc.max_seq_len = min(lengths)        # every longer sample is skipped, none cut
    stream = Stream(shard, enc, seed=1, rank=0, augment_params=None)
    got = [len(stream.next()["input_ids"]) for _ in range(3)]
    assert set(got) == {min(lengths)}
    assert stream.position.skipped["too_long"] >= sum(1 for n in lengths if n > min(lengths))
    stream.close()


def test_a_rank_reads_its_own_shards_and_a_stream_resumed_at_its_position_continues_the_same(tiny):
    import random

    import torch
    from PIL import Image

    from ocrvl_ray.core.generations import GENERATIONS
    from ocrvl_ray.lmdb.shards import ShardError
    from ocrvl_ray.train.engines.lmdb_plugin import augment_params
    from ocrvl_ray.train.engines.transformers.data import Encoder, Position, Stream, augment, rank_shards

    base, train, _ = tiny
    assert [Path(p).name for p in rank_shards([str(train)], 1, 2)] == ["shard-00001-of-00002"]
    with pytest.raises(ShardError, match="reshard"):
        rank_shards([str(train)], 0, 3)
    enc = Encoder(str(base), GENERATIONS["v1"], "OCR:", 4096)
    params = augment_params(True)

    def run(position=None, n=6):
        stream = Stream(rank_shards([str(train)], 0, 2), enc, seed=5, rank=0, augment_params=params,
                        position=position)
        out = [stream.next() for _ in range(n)]
        stream.close()
        return out, stream.position

    whole, _ = run(n=9)                      # past the end of the 4-sample shard: a second, reshuffled epoch
    head, pos = run(n=5)
    tail, _ = run(Position(**pos.to_dict()), n=4)
    for a, b in zip(whole, head + tail):
        assert a["input_ids"] == b["input_ids"] and torch.equal(a["pixel_values"], b["pixel_values"])

    image = Image.new("RGB", (60, 40), (30, 120, 200))
    assert augment(image, None, random.Random(0)) is image
    every = {**params, **{k: 1.0 for k in params if k.endswith("_p")}, "rotation_degrees": [90]}
    one, two = augment(image, every, random.Random(7)), augment(image, every, random.Random(7))
    assert one.tobytes() == two.tobytes() and one.size != image.size


def test_config_errors_are_one_line_before_ray(tiny, tmp_path, capsys):
    import ray

    base, train, _ = tiny
    ray_before = ray.is_initialized()     # an earlier module of the suite may have left its Ray up
    cases = {
        "lora_rnak=4": "did you mean 'lora_rank'",
        "template=paddleocr_vl model_version=v1.5": "v1 chat template",
        "num_workers=3": "reshard",
        "use_gpu=true": "use_gpu=true",
        "augment.blur_p=0.3": "blur_p",
        "strategy=fsdp use_gpu=false": "strategy=fsdp",
    }
    for extra, expected in cases.items():
        argv = ["train", "engine=transformers", f"model_name_or_path={base}", f"train_lmdb_paths={train}",
                f"output_dir={tmp_path / 'o'}", "num_workers=2", *extra.split()]
        assert main(argv) == 2, extra
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err and "Traceback" not in err, (extra, err)
    assert ray.is_initialized() == ray_before


def test_two_gloo_workers_train_disjoint_shards_and_a_killed_worker_resumes_to_the_same_adapter(
        tiny, tmp_path, ray_cluster, capfd):
    import ray.cloudpickle
    import torch
    from safetensors.torch import load_file

    from ocrvl_ray.train.config import load_train_config
    from ocrvl_ray.train.run import check, fit
    from tests.torch_env import train_faults

    assert main(["train", *overrides(tiny, tmp_path, "plain")]) == 0
    console = capfd.readouterr().out.splitlines()
    assert any(line.startswith("ocrvl train: step 2 loss ") for line in console), console
    assert any(line.startswith("ocrvl train: checkpoint stored: ") for line in console), console
    plain = records(tmp_path / "plain.jsonl")

    # checkpoint in Ray storage: adapter/ + optimizer, scheduler, per-rank data position and RNG
    ckpt = Path([r["checkpoint"] for r in plain if "checkpoint" in r][-1])
    assert ckpt.parent.parent == tmp_path / "ray"
    for name in ("adapter/adapter_config.json", "adapter/adapter_model.safetensors", "optimizer.pt", "scheduler.pt",
                 "state.json", "rank-0.json", "rank-1.json", "rank-0.rng", "rank-1.rng"):
        assert (ckpt / name).is_file(), name
    ranks = [json.loads((ckpt / f"rank-{r}.json").read_text()) for r in range(2)]
    assert [Path(s).name for r in ranks for s in r["shards"]] == ["shard-00000-of-00002", "shard-00001-of-00002"]
    assert sum(r["samples"] for r in ranks) == N
    # the final adapter in output_dir is the last checkpoint's, in PEFT's layout
    out = tmp_path / "plain"
    final = load_file(out / "adapter_model.safetensors")
    assert final.keys() == load_file(ckpt / "adapter/adapter_model.safetensors").keys()
    assert all(torch.equal(v, load_file(ckpt / "adapter/adapter_model.safetensors")[k]) for k, v in final.items())
    assert any(".language_model.layers.1.self_attn.q_proj.lora_B." in k for k in final)
    assert json.loads((out / "adapter_config.json").read_text())["peft_type"] == "LORA"
    # the loss goes down on the memorisable set; metrics every logging_steps, eval loss at the end
    losses = [(r["step"], r["loss"]) for r in plain if "loss" in r]
    assert [s for s, _ in losses] == [2, 4]
    assert losses[-1][1] < losses[0][1] - 0.2, losses
    assert all(r["samples_skipped"] == 0 and r["tokens_per_s"] > 0 for r in plain if "loss" in r)
    assert any("eval_loss" in r for r in plain)

    # the same run, rank 1 killed right after the first checkpoint: the group restarts from it
    ray.cloudpickle.register_pickle_by_value(train_faults)
    ours, args = load_train_config(None, overrides(tiny, tmp_path, "crashed", "max_failures=1",
                                                   "entry=tests.torch_env.train_faults:crash_after_first_checkpoint"))
    check(ours, args)
    fit(ours, args)
    assert (tmp_path / "crashed.crashed").read_text() == "2"
    crashed = records(tmp_path / "crashed.jsonl")
    # step 2 and its checkpoint, the failure (one record per failed rank), then step 4 only: the new group started
    # at step 3, not from scratch
    seq = [("error" if r.get("error") else r["step"]) for r in crashed if "loss" in r or r.get("error")]
    assert [x for i, x in enumerate(seq) if x != "error" or seq[i - 1] != "error"] == [2, "error", 4], crashed
    after = {r["step"]: r["loss"] for r in crashed if "loss" in r}
    assert after == pytest.approx(dict(losses), rel=1e-5)
    resumed = load_file(tmp_path / "crashed" / "adapter_model.safetensors")
    assert resumed.keys() == final.keys()
    for k, v in final.items():
        torch.testing.assert_close(resumed[k], v, rtol=1e-5, atol=1e-6)


def test_gpu_check_smoke_prints_the_lora_training_lines():
    """bench/gpu_check.py's lora part runs this engine's collate and train_step; on CPU only SMOKE lines."""
    script = Path(__file__).resolve().parents[2] / "bench" / "gpu_check.py"
    res = subprocess.run([sys.executable, str(script), "--smoke", "--parts", "lora"], capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert not [ln for ln in res.stdout.splitlines() if ln.startswith("FIGURE")], res.stdout
    rates = dict(re.findall(r"^SMOKE FIGURE lora_train_tokens_per_s_b(\d) ([\d.]+)$", res.stdout, re.M))
    assert sorted(rates) == ["1", "2"] and all(float(v) > 0 for v in rates.values()), res.stdout
