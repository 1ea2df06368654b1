"""``engine=transformers``: PaddleOCR-VL through Hugging Face transformers (``PaddleOCRVLForConditionalGeneration``),
batched greedy decoding, one Ray Data actor per replica; no Paddle anywhere (torch + transformers from PyPI).

The folder is loaded as is: a hub checkpoint or an ``ocrvl merge`` export (transformers renames the hub keys at
load time: ``mlp_AR`` -> ``model.projector``, ``visual`` -> ``model.visual``, ``model.*`` ->
``model.language_model.*``). The prompt is the paddle engine's (``render_prompt`` per model generation, the image
placeholder expanded to the image's token count), tokenized without added special tokens; a batch is left-padded
and generated in one ``generate`` call with SDPA attention. The repetition guard stops a row once its generated
tokens loop and the text is cut as the paddle engine cuts it. A base + LoRA is merged into the loaded weights
in memory with the export's merge math (``eval.models.lora_updates``); nothing is written.

This module imports neither Ray nor Paddle (``bench/gpu_check.py`` uses it on a bare CUDA machine).
"""
from __future__ import annotations

import io
import re
import time
from typing import Optional

import numpy as np

from ocrvl_ray.eval.engines import IMAGE_TOKEN, finish, render_prompt
from ocrvl_ray.eval.metrics import find_loop

#: The hub checkpoint's names -> the loaded model's parameter names (transformers' ``conversion_mapping``
#: for ``paddleocr_vl``, applied in order).
HUB_TO_MODEL = ((re.compile(r"^mlp_AR"), "model.projector"), (re.compile(r"^visual"), "model.visual"),
                (re.compile(r"^model(?!(\.visual|\.projector|\.language_model))"), "model.language_model"))


def model_param_name(hub_name: str) -> str:
    for pattern, target in HUB_TO_MODEL:
        hub_name = pattern.sub(target, hub_name)
    return hub_name


def apply_lora(model, spec) -> int:
    """Adds ``spec.lora``'s updates to the loaded weights in memory; returns how many weights changed."""
    import torch

    from ocrvl_ray.core.errors import OcrvlError
    from ocrvl_ray.eval.models import lora_updates

    params = dict(model.named_parameters())
    changed = 0
    for key, delta in lora_updates(spec):
        w = params.get(model_param_name(key))
        if w is None:
            raise OcrvlError(f"{spec.lora}: adapter weight {key!r} is not a weight of the loaded model {spec.path}")
        if tuple(w.shape) != delta.shape[::-1]:
            raise OcrvlError(f"{spec.lora}: update for {key!r} is {delta.shape[::-1]}, the loaded weight is "
                             f"{tuple(w.shape)}")
        with torch.no_grad():   # delta is Paddle layout [in, out]; torch's Linear weight is [out, in]
            w.copy_((w.float() + torch.from_numpy(delta.T).to(w.device)).to(w.dtype))
        changed += 1
    return changed


def load_config(path: str):
    """The folder's ``PaddleOCRVLConfig`` with the checkpoint's own ``tie_word_embeddings``: transformers (5.25)
    turns a flat hub config's ``false`` into ``true`` (its pre-v5 compatibility step reads the text sub-config's
    default), which would replace the checkpoint's ``lm_head.weight`` by the input embeddings."""
    import json
    import os

    from transformers import PaddleOCRVLConfig

    config = PaddleOCRVLConfig.from_pretrained(path)
    with open(os.path.join(path, "config.json"), encoding="utf-8") as f:
        tie = json.load(f).get("tie_word_embeddings")
    if tie is not None:
        config.tie_word_embeddings = config.text_config.tie_word_embeddings = bool(tie)
    return config


class TransformersGenerator:
    """The model (``spec.path``, plus ``spec.lora`` when set), its image processor and tokenizer from a PaddleOCR-VL
    folder: ``generate(images)`` -> ``[(text, loop cut, generated tokens)]`` for PIL images, greedy, one batch."""

    def __init__(self, spec, generation: str, prompt: str, max_new_tokens: int, loop_max_period: int,
                 loop_min_repeats: int, device: str = "cpu", dtype: Optional[str] = None):
        import torch
        from transformers import AutoTokenizer, PaddleOCRVLForConditionalGeneration, PaddleOCRVLImageProcessor

        self.device = torch.device("cuda" if device in ("gpu", "cuda") else "cpu")
        self.dtype = getattr(torch, dtype or ("bfloat16" if self.device.type == "cuda" else "float32"))
        self.model = PaddleOCRVLForConditionalGeneration.from_pretrained(
            spec.path, config=load_config(spec.path), dtype=self.dtype, attn_implementation="sdpa").to(self.device)
        self.model.eval()
        if spec.lora:
            apply_lora(self.model, spec)
        self.images = PaddleOCRVLImageProcessor.from_pretrained(spec.path)
        self.tokenizer = AutoTokenizer.from_pretrained(spec.path)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token_id = self.model.config.get_text_config().pad_token_id or 0
        self.eos = self.model.config.get_text_config().eos_token_id
        self.text = render_prompt(generation, prompt)
        self.max_new_tokens = max_new_tokens
        self.loop = (loop_max_period, loop_min_repeats)

    def inputs(self, images: list) -> dict:
        """The model's inputs for ``images``: pixel patches, grids and the left-padded prompts."""
        vis = self.images(images=images, return_tensors="pt")
        merge = self.images.merge_size
        texts = [self.text.replace(IMAGE_TOKEN, IMAGE_TOKEN * (int(g.prod()) // (merge * merge)), 1)
                 for g in vis["image_grid_thw"]]
        enc = self.tokenizer(texts, padding=True, add_special_tokens=False, return_tensors="pt")
        out = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
               "pixel_values": vis["pixel_values"].to(self.dtype), "image_grid_thw": vis["image_grid_thw"]}
        return {k: v.to(self.device) for k, v in out.items()}

    def _stop_on_loop(self, prompt_len: int):
        import torch
        from transformers import StoppingCriteria

        period, repeats = self.loop

        class Loop(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return torch.tensor([find_loop(row[prompt_len:].tolist(), period, repeats) is not None
                                     for row in input_ids], dtype=torch.bool, device=input_ids.device)
        return Loop()

    def generate(self, images: list) -> list[tuple[str, bool, int]]:
        import torch
        from transformers import StoppingCriteriaList

        enc = self.inputs(images)
        prompt_len = enc["input_ids"].shape[1]
        with torch.inference_mode():
            ids = self.model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False, num_beams=1,
                                      use_cache=True, eos_token_id=self.eos, pad_token_id=self.tokenizer.pad_token_id,
                                      stopping_criteria=StoppingCriteriaList([self._stop_on_loop(prompt_len)]))
        results = []
        for row in ids[:, prompt_len:].tolist():
            if self.eos in row:    # after EOS comes padding
                row = row[:row.index(self.eos)]
            while row and row[-1] == self.tokenizer.pad_token_id:   # a row the loop guard stopped early
                row.pop()
            hyp, loop = finish(self.tokenizer.decode(row, skip_special_tokens=True), *self.loop)
            results.append((hyp, loop, len(row)))
        return results


class TransformersPredictor:
    """Ray Data actor: ``{"row", "image"}`` batches -> ``{"row", "hyp", "loop", "tokens", "seconds"}``
    (``seconds``: the batch's time shared evenly by its rows)."""

    def __init__(self, spec, generation: str, prompt: str, max_new_tokens: int, loop_max_period: int,
                 loop_min_repeats: int, device: str = "cpu", dtype: Optional[str] = None):
        self.generator = TransformersGenerator(spec, generation, prompt, max_new_tokens, loop_max_period,
                                               loop_min_repeats, device, dtype)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from PIL import Image

        t0 = time.perf_counter()
        images = [Image.open(io.BytesIO(bytes(data))).convert("RGB") for data in batch["image"]]
        out = self.generator.generate(images)
        n = len(out)
        return {"row": np.asarray(batch["row"]), "hyp": np.asarray([o[0] for o in out], dtype=object),
                "loop": np.asarray([o[1] for o in out], dtype=bool),
                "tokens": np.asarray([o[2] for o in out], dtype=np.int64),
                "seconds": np.full(n, (time.perf_counter() - t0) / max(n, 1), dtype=np.float64)}
