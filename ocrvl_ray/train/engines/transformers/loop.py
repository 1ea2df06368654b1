"""The TorchTrainer's per-worker loop of ``engine=transformers`` (the output contract is in this package's
``__init__``).

Every rank: the base + PEFT LoRA (same seed, so the same initial adapter), ``ray.train.torch.prepare_model``
(DDP, or FSDP with ``strategy=fsdp``), AdamW + a transformers scheduler, its own :class:`data.Stream`. A step is
``gradient_accumulation_steps`` micro-batches of ``per_device_train_batch_size`` samples; the loss is the mean
over the step's answer tokens of the rank. Every ``logging_steps`` all ranks report the window's metrics
(``log_history``: step, loss, learning_rate, tokens_per_s, samples_skipped[, eval_loss]); every ``save_steps`` and
at the last step the report carries a checkpoint (adapter, optimizer, scheduler, per-rank RNG and data position).
A restarted worker group (``max_failures``) or a re-run with the same run name resumes from
``ray.train.get_checkpoint()`` and continues the same sample order, augmentation, RNG and optimizer state.
"""
from __future__ import annotations

import json
import math
import random
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from ocrvl_ray.train.engines.transformers import ADAPTER_DIR, TransformersArgs, generation, parse_args

STATE = "state.json"
OPTIMIZER, SCHEDULER = "optimizer.pt", "scheduler.pt"
SUMMARY = "ocrvl_train.json"


def rank_file(rank: int, ext: str) -> str:
    return f"rank-{rank}.{ext}"


def total_steps(args: TransformersArgs, world: int) -> int:
    """``max_steps``, else ``num_train_epochs`` over the smallest rank's sample count."""
    if args.max_steps > 0:
        return args.max_steps
    from ocrvl_ray.train.engines.transformers.data import rank_shards
    from ocrvl_ray.train.rank_data import num_samples

    smallest = min(sum(num_samples(s) for s in rank_shards(args.train_lmdb_paths, r, world)) for r in range(world))
    per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps
    return max(1, math.ceil(args.num_train_epochs * smallest / per_step))


def rng_state() -> dict:
    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _options(**kw):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True, **kw)


def save_adapter(model, peft_model, out: Path, rank: int) -> None:
    """Collective: the full adapter (gathered under FSDP) written by rank 0 as a PEFT folder under ``out``."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    state = get_model_state_dict(model, options=_options(ignore_frozen_params=True))
    if rank == 0:
        peft_model.save_pretrained(str(out), state_dict=state, safe_serialization=True)


def save_checkpoint(d: Path, model, peft_model, optimizer, scheduler, stream, step: int, rank: int,
                    world: int, shards: list[str]) -> None:
    """Collective: this rank's part of the checkpoint folder ``d`` (rank 0: adapter, optimizer, scheduler, state)."""
    import torch
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    save_adapter(model, peft_model, d / ADAPTER_DIR, rank)
    optim = get_optimizer_state_dict(model, optimizer, options=_options())
    if rank == 0:
        torch.save(optim, d / OPTIMIZER)
        torch.save(scheduler.state_dict(), d / SCHEDULER)
        (d / STATE).write_text(json.dumps({"step": step, "world": world}))
    (d / rank_file(rank, "json")).write_text(json.dumps({**stream.position.to_dict(), "shards": shards,
                                                         "samples": len(stream)}))
    torch.save(rng_state(), d / rank_file(rank, "rng"))


def reduce_sum(values: list[float], device) -> list[float]:
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def eval_loss(model, evalset, args: TransformersArgs, device, dtype, pad_id: int) -> float:
    """Mean cross-entropy over every rank's eval answer tokens. Under FSDP every rank runs the same number of
    forwards (a rank with fewer batches repeats its last one, not counted); under DDP the unwrapped module runs."""
    import torch
    import torch.distributed as dist

    from ocrvl_ray.core.errors import OcrvlError
    from ocrvl_ray.train.engines.transformers.data import collate
    from ocrvl_ray.train.engines.transformers.model import loss_sum

    bs = args.per_device_train_batch_size
    examples = list(evalset.examples())
    batches = [examples[i:i + bs] for i in range(0, len(examples), bs)]
    runs = len(batches)
    net = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
    if args.strategy == "fsdp":
        count = torch.tensor([runs], device=device)
        dist.all_reduce(count, op=dist.ReduceOp.MAX)
        runs = int(count.item())
        if runs and not batches:
            raise OcrvlError(f"eval_lmdb_paths: rank {dist.get_rank()} got no eval sample that fits max_seq_len")
    total, tokens = 0.0, 0
    net.eval()
    with torch.no_grad():
        for k in range(runs):
            batch = batches[min(k, len(batches) - 1)]
            loss, t = loss_sum(net, to_device(collate(batch, pad_id), device, dtype))
            if k < len(batches):
                total, tokens = total + float(loss), tokens + t
    net.train()
    total, tokens = reduce_sum([total, tokens], device)
    return total / tokens if tokens else float("nan")


def to_device(batch: dict[str, Any], device, dtype) -> dict[str, Any]:
    return {k: (v.to(device, dtype) if v.is_floating_point() else v.to(device)) for k, v in batch.items()}


def fsdp_kwargs(peft_model) -> dict[str, Any]:
    """FSDP over the base's own no-split blocks (decoder and vision layers); original parameters kept, since only
    the adapter trains."""
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    names = set(getattr(peft_model.get_base_model(), "_no_split_modules", None) or [])
    classes = {type(m) for m in peft_model.modules() if type(m).__name__ in names}
    return {"use_orig_params": True, **({"auto_wrap_policy": ModuleWrapPolicy(classes)} if classes else {})}


def restore(d: Path, peft_model, rank: int, world: int) -> dict[str, Any]:
    """Load the checkpoint's adapter into ``peft_model``; return step, optimizer/scheduler state, position, RNG."""
    import torch
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from ocrvl_ray.core.errors import OcrvlError

    state = json.loads((d / STATE).read_text())
    if state["world"] != world:
        raise OcrvlError(f"the checkpoint {d.name} was written by {state['world']} ranks, this run has {world}: "
                         "each rank's data position is its own; resume with num_workers="
                         f"{state['world']} or start a new run_name")
    set_peft_model_state_dict(peft_model, load_file(d / ADAPTER_DIR / "adapter_model.safetensors"))
    return {"step": state["step"], "optimizer": torch.load(d / OPTIMIZER, weights_only=False),
            "scheduler": torch.load(d / SCHEDULER, weights_only=False),
            "position": json.loads((d / rank_file(rank, "json")).read_text()),
            "rng": torch.load(d / rank_file(rank, "rng"), weights_only=False)}


def train_step(model, optimizer, micro: list[dict[str, Any]], device, dtype, max_grad_norm: float = 0.0):
    """One optimizer step over the collated micro-batches (gradients synchronised on the last one only); the loss
    is the mean over the step's answer tokens. Returns (summed loss, answer tokens, all tokens) of this rank."""
    import torch

    from ocrvl_ray.train.engines.transformers.data import IGNORE
    from ocrvl_ray.train.engines.transformers.model import loss_sum

    answer = sum(int((b["labels"][:, 1:] != IGNORE).sum()) for b in micro)
    total = 0.0
    for j, batch in enumerate(micro):
        last = j == len(micro) - 1
        with nullcontext() if last or not hasattr(model, "no_sync") else model.no_sync():
            loss, _ = loss_sum(model, to_device(batch, device, dtype))
            (loss / answer).backward()
        total += float(loss.detach())
    if max_grad_norm > 0:
        if hasattr(model, "clip_grad_norm_"):      # FSDP: the norm over every shard
            model.clip_grad_norm_(max_grad_norm)
        else:
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total, float(answer), float(sum(int(b["attention_mask"].sum()) for b in micro))


def train_loop(config: dict[str, Any]) -> None:
    """Ray Train worker function: train the adapter of ``config`` (engine keys) from the latest checkpoint on."""
    import ray.train
    import ray.train.torch
    import torch
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict
    from transformers import get_scheduler

    from ocrvl_ray.train.engines.lmdb_plugin import augment_params
    from ocrvl_ray.train.engines.transformers.data import (SKIPS, Encoder, EvalSet, Position, Stream, collate,
                                                           eval_shards, rank_shards)
    from ocrvl_ray.train.engines.transformers.model import load_model

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    args = parse_args(config)
    gen, evidence = generation(args)
    prompt = args.prompt or gen.prompts["ocr"]
    device = ray.train.torch.get_device()
    dtype = torch.bfloat16 if (args.bf16 if args.bf16 is not None else device.type == "cuda") else torch.float32
    total = total_steps(args, world)
    shards = rank_shards(args.train_lmdb_paths, rank, world)

    torch.manual_seed(args.seed)                       # the same initial adapter on every rank
    peft_model = load_model(args, device, dtype)
    restored: dict[str, Any] = {}
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            restored = restore(Path(d), peft_model, rank, world)
    model = ray.train.torch.prepare_model(
        peft_model, parallel_strategy=args.strategy,
        parallel_strategy_kwargs=fsdp_kwargs(peft_model) if args.strategy == "fsdp" else None)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.learning_rate,
                                  weight_decay=args.weight_decay)
    scheduler = get_scheduler(args.lr_scheduler_type, optimizer, num_warmup_steps=args.warmup_steps,
                              num_training_steps=total)
    if restored:
        set_optimizer_state_dict(model, optimizer, restored["optimizer"], options=_options())
        scheduler.load_state_dict(restored["scheduler"])
        set_rng_state(restored["rng"])

    encoder = Encoder(args.model_name_or_path, gen, prompt, args.max_seq_len)
    evalset = EvalSet(eval_shards(args.eval_lmdb_paths), encoder, rank, world) if args.eval_lmdb_paths else None
    position = Position(**{k: restored["position"][k] for k in ("epoch", "offset", "skipped")}) if restored else None
    stream = Stream(shards, encoder, args.seed, rank, augment_params(args.augment), position)
    step = restored.get("step", 0)
    print(f"ocrvl train: rank {rank}/{world}: PaddleOCR-VL {gen.name} ({evidence}), {len(stream)} samples in "
          f"{', '.join(shards)}; step {step} of {total}" + (" (resumed)" if restored else ""), flush=True)

    bs, accum = args.per_device_train_batch_size, args.gradient_accumulation_steps
    window, history, t0 = [0.0, 0.0, 0.0], [], time.perf_counter()   # loss sum, answer tokens, all tokens
    model.train()
    while step < total:
        micro = [collate([stream.next() for _ in range(bs)], encoder.pad_id) for _ in range(accum)]
        window = [a + b for a, b in zip(window, train_step(model, optimizer, micro, device, dtype,
                                                            args.max_grad_norm))]
        scheduler.step()
        step += 1
        entry: dict[str, Any] = {}
        if step % args.logging_steps == 0 or step == total:
            loss_sum_, answer_, tokens_, skipped = reduce_sum(
                [*window, sum(stream.position.skipped.values())], device)
            entry = {"step": step, "loss": loss_sum_ / max(answer_, 1), "learning_rate": scheduler.get_last_lr()[0],
                     "tokens_per_s": tokens_ / (time.perf_counter() - t0), "samples_skipped": int(skipped),
                     "epoch": stream.position.epoch}
            window, t0 = [0.0, 0.0, 0.0], time.perf_counter()
        if evalset is not None and (step % args.eval_steps == 0 or step == total):
            entry = {"step": step, **entry,
                     "eval_loss": eval_loss(model, evalset, args, device, dtype, encoder.pad_id)}
        if entry:
            history.append(entry)
        if step % args.save_steps == 0 or step == total:
            from ray.train import Checkpoint

            with tempfile.TemporaryDirectory(prefix="ocrvl-ckpt-") as tmp:
                save_checkpoint(Path(tmp), model, peft_model, optimizer, scheduler, stream, step, rank, world, shards)
                ray.train.report({"step": step, "log_history": history}, checkpoint=Checkpoint.from_directory(tmp))
            history = []
        elif history:
            ray.train.report({"step": step, "log_history": history})
            history = []

    out = Path(args.output_dir)
    save_adapter(model, peft_model, out, rank)
    skipped = {why: int(reduce_sum([stream.position.skipped.get(why, 0)], device)[0]) for why in SKIPS}
    if rank == 0:
        (out / SUMMARY).write_text(json.dumps({"model_version": gen.name, "evidence": evidence, "prompt": prompt,
                                               "steps": total, "seed": args.seed, "world": world,
                                               "samples_skipped": skipped}, indent=2))
    stream.close()
    if evalset is not None:
        evalset.close()
