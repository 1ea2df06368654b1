"""Small entries for ``entry=module:function``: a genuine tiny LoRA fine-tune and a collective check.

They stand in for erniekit where no ERNIE checkout or GPU exists (tests, demos). Like erniekit they
read a plain config dict and write ``checkpoint-N/`` folders under ``output_dir``.

``tiny_lora_sft`` keys (erniekit names where one exists):
  model_name_or_path  HF-layout folder from :func:`build_tiny_base` (required)
  output_dir          where ``checkpoint-N/`` go (required)
  max_steps=12  save_steps=4  logging_steps=1  learning_rate=5e-2  batch_size=2  seed=23
  lora_rank=4  lora_alpha=-1 (-> 2*rank, erniekit's default)  save_total_limit=None
  resume_from_checkpoint  set by the wrapper after a restart
  crash_at_step, crash_rank, crash_marker   test hook: raise once on that rank at that step,
  crash_when_exists                         ... after waiting (<= 120 s) for this path to exist, + 3 s
Rank 0 appends ``{"resume_from_checkpoint": ..., "pid": ...}`` to ``output_dir/attempts.jsonl`` per start.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

TINY_QWEN2 = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                  tie_word_embeddings=False)
LORA_TARGETS = [".*q_proj.*", ".*k_proj.*", ".*v_proj.*", ".*o_proj.*",
                ".*gate_proj.*", ".*up_proj.*", ".*down_proj.*"]


def build_tiny_base(out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """Write a random tiny Qwen2 (fp32) in Hugging Face layout: ``config.json`` + ``model.safetensors``."""
    import paddle
    from paddleformers.transformers import Qwen2Config, Qwen2ForCausalLM

    paddle.seed(seed)
    model = Qwen2ForCausalLM(Qwen2Config(**TINY_QWEN2, dtype="float32"))
    out = Path(out_dir)
    model.save_pretrained(str(out), save_to_hf=True)
    return out


def _dataset(n: int, length: int, vocab: int, seed: int):
    """Arithmetic token sequences (start s, stride d): the next token is learnable from context."""
    import numpy as np
    import paddle

    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        s, d = int(rng.integers(0, vocab)), int(rng.integers(1, 4))
        seq = (s + d * np.arange(length + 1)) % vocab
        rows.append({"input_ids": seq[:-1].astype("int64"), "labels": seq[1:].astype("int64")})

    class _Rows(paddle.io.Dataset):
        def __len__(self):
            return len(rows)

        def __getitem__(self, i):
            return rows[i]

    return _Rows()


def tiny_lora_sft(config: dict[str, Any]) -> None:
    """LoRA SFT of the tiny base with the real paddleformers Trainer (fp32, unified checkpoints)."""
    import paddle
    from paddleformers.peft import LoRAConfig, LoRAModel
    from paddleformers.trainer import Trainer, TrainerCallback, TrainingArguments
    from paddleformers.transformers import Qwen2ForCausalLM

    cfg = dict(config)
    rank = int(os.environ.get("PADDLE_TRAINER_ID", "0"))
    seed = int(cfg.get("seed", 23))
    paddle.seed(seed)
    base = Qwen2ForCausalLM.from_pretrained(cfg["model_name_or_path"], convert_from_hf=True, dtype="float32")
    r = int(cfg.get("lora_rank", 4))
    alpha = int(cfg.get("lora_alpha", -1))
    model = LoRAModel(base, LoRAConfig(target_modules=LORA_TARGETS, r=r, lora_alpha=2 * r if alpha < 0 else alpha,
                                       dtype="float32", base_model_name_or_path=cfg["model_name_or_path"]))
    model.mark_only_lora_as_trainable()

    args = TrainingArguments(
        output_dir=cfg["output_dir"], max_steps=int(cfg.get("max_steps", 12)),
        save_steps=int(cfg.get("save_steps", 4)), save_strategy="steps",
        save_total_limit=cfg.get("save_total_limit"), logging_steps=int(cfg.get("logging_steps", 1)),
        learning_rate=float(cfg.get("learning_rate", 5e-2)), warmup_steps=0, lr_scheduler_type="constant",
        per_device_train_batch_size=int(cfg.get("batch_size", 2)), seed=seed, device="cpu",
        unified_checkpoint=True, save_to_hf=True, do_train=True, disable_tqdm=True, report_to=[],
        dataloader_num_workers=0, remove_unused_columns=False)

    if rank == 0:
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        with open(Path(args.output_dir) / "attempts.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps({"resume_from_checkpoint": cfg.get("resume_from_checkpoint"),
                                "pid": os.getpid()}) + "\n")
    callbacks = []
    if cfg.get("crash_at_step") is not None and rank == int(cfg.get("crash_rank", 0)):
        callbacks.append(_CrashOnce(TrainerCallback, int(cfg["crash_at_step"]), Path(cfg["crash_marker"]),
                                    cfg.get("crash_when_exists")))
    vocab = TINY_QWEN2["vocab_size"]
    trainer = Trainer(model=model, args=args, train_dataset=_dataset(8, 16, vocab, seed=1), callbacks=callbacks)
    trainer.train(resume_from_checkpoint=cfg.get("resume_from_checkpoint"))


def _CrashOnce(base: type, step: int, marker: Path, wait_for: str | None):
    """A TrainerCallback that raises once (guarded by ``marker``) when ``global_step`` reaches ``step``."""
    import time

    class CrashOnce(base):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == step and not marker.exists():
                deadline = time.time() + 120
                while wait_for and not os.path.exists(wait_for) and time.time() < deadline:
                    time.sleep(0.2)
                if wait_for:
                    time.sleep(3.0)  # let the controller register the reported checkpoint
                marker.parent.mkdir(parents=True, exist_ok=True)
                marker.write_text(str(step))
                raise RuntimeError(f"injected crash at step {step}")

    return CrashOnce()


def allreduce_check(config: dict[str, Any]) -> None:
    """All-reduce ``rank + 1`` over the collective group; write the env, the result and the
    ``resume_from_checkpoint`` it was given to ``output_dir/allreduce-rank<r>.json``."""
    import paddle
    import paddle.distributed as dist

    dist.init_parallel_env()
    rank = dist.get_rank()
    x = paddle.to_tensor([float(rank + 1)])
    dist.all_reduce(x)
    keys = [k for k in os.environ if k.startswith(("PADDLE_", "FLAGS_selected", "MASTER_"))]
    out = Path(config["output_dir"])
    out.mkdir(parents=True, exist_ok=True)
    (out / f"allreduce-rank{rank}.json").write_text(json.dumps(
        {"rank": rank, "world_size": dist.get_world_size(), "sum": float(x.numpy()[0]),
         "resume_from_checkpoint": config.get("resume_from_checkpoint"),
         "env": {k: os.environ[k] for k in sorted(keys)}}))
