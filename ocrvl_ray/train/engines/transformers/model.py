"""The base PaddleOCR-VL with transformers and its PEFT LoRA (config from :class:`TransformersArgs`), and the
loss of a batch: token cross-entropy summed over the answer tokens (the caller divides by the step's count)."""
from __future__ import annotations

from typing import Any

from ocrvl_ray.train.engines.transformers import TransformersArgs


def lora_config(args: TransformersArgs):
    from peft import LoraConfig

    return LoraConfig(r=args.lora_rank, lora_alpha=args.alpha, lora_dropout=args.lora_dropout,
                      target_modules=args.target_modules(), bias="none")


def load_model(args: TransformersArgs, device, dtype):
    """The base (the checkpoint's own ``tie_word_embeddings``, SDPA attention) wrapped in PEFT LoRA; only the
    adapter trains (kept in float32 by PEFT whatever the base's dtype)."""
    from peft import get_peft_model
    from transformers import PaddleOCRVLForConditionalGeneration

    from ocrvl_ray.eval.engines.transformers import load_config

    base = PaddleOCRVLForConditionalGeneration.from_pretrained(
        args.model_name_or_path, config=load_config(args.model_name_or_path), dtype=dtype,
        attn_implementation="sdpa")
    if args.gradient_checkpointing:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        base.enable_input_require_grads()
    model = get_peft_model(base, lora_config(args))
    model.config.use_cache = False
    return model.to(device)


def loss_sum(model, batch: dict[str, Any]):
    """(summed cross-entropy over answer tokens, number of answer tokens) of one batch."""
    import torch.nn.functional as F

    from ocrvl_ray.train.engines.transformers.data import IGNORE

    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                pixel_values=batch["pixel_values"], image_grid_thw=batch["image_grid_thw"],
                mm_token_type_ids=batch["mm_token_type_ids"], use_cache=False)
    logits = out.logits[:, :-1].float()
    target = batch["labels"][:, 1:]
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=IGNORE,
                           reduction="sum")
    return loss, int((target != IGNORE).sum())
