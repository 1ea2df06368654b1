"""``engine=paddle``: PaddleOCR-VL in Paddle dynamic graph, greedy decoding, one Ray Data actor per replica.

The model class is paddlex's ``PaddleOCRVLForConditionalGeneration`` (shipped with paddleocr in the default
environment; paddleformers 0.3.1 has none) loaded from the HF folder with ``convert_from_hf``; the tokenizer is
the folder's sentencepiece ``tokenizer.model`` (as PaddleX loads it) or, for a folder saved by PaddleFormers 1.x,
its ``tokenizer.json``; the image processor is its ``preprocessor_config.json``. The class builds the unused SigLIP
pooling head only when the checkpoint has one (PaddleFormers 1.x saves none; see ``eval/models.py``). The model
takes one image per forward, so a batch is generated crop by crop.
"""
from __future__ import annotations

import io
import time

import numpy as np

from ocrvl_ray.eval.engines import IMAGE_TOKEN, finish, render_prompt
from ocrvl_ray.eval.metrics import find_loop
from ocrvl_ray.eval.models import ModelSpec, has_vision_head, lora_updates
from ocrvl_ray.core.errors import OcrvlError


def apply_lora(model, spec: ModelSpec) -> int:
    """Adds the LoRA updates to the loaded weights in memory; returns how many weights changed."""
    import paddle

    sd = model.get_hf_state_dict()   # un-fused HF names, Paddle layout [in, out]
    changed = 0
    for key, delta in lora_updates(spec):
        if key not in sd:
            raise OcrvlError(f"{spec.lora}: adapter weight {key!r} is not a weight of the loaded model {spec.path}")
        w = sd[key]
        if tuple(w.shape) != delta.shape:
            raise OcrvlError(f"{spec.lora}: update for {key!r} is {delta.shape}, the loaded weight is {tuple(w.shape)}")
        sd[key] = paddle.to_tensor(w.astype("float32").numpy() + delta).astype(w.dtype)
        changed += 1
    model.set_hf_state_dict(sd)
    return changed


class Tokenizer:
    """The folder's sentencepiece ``tokenizer.model`` (paddlex's ``LlamaTokenizer``) or else its fast
    ``tokenizer.json``: ``encode(text)`` -> the model's input tensors, ``decode(ids)`` without special tokens."""

    def __init__(self, path: str):
        import os

        if os.path.isfile(os.path.join(path, "tokenizer.model")):
            from paddlex.inference.models.common.tokenizer import LlamaTokenizer

            self.sp = LlamaTokenizer.from_pretrained(path, vocab_file=os.path.join(path, "tokenizer.model"))
            self.fast, self.eos_token_id = None, self.sp.eos_token_id
            return
        import json

        from tokenizers import Tokenizer as Fast

        self.sp, self.fast = None, Fast.from_file(os.path.join(path, "tokenizer.json"))
        try:
            eos = json.loads(open(os.path.join(path, "tokenizer_config.json"), encoding="utf-8").read())["eos_token"]
        except (OSError, ValueError, KeyError):
            eos = "<|end_of_sentence|>"
        self.eos_token_id = self.fast.token_to_id(eos["content"] if isinstance(eos, dict) else eos)

    def encode(self, text: str) -> dict:
        if self.sp is not None:
            return self.sp([text], padding=False, return_tensors="pd")
        import paddle

        ids = self.fast.encode(text, add_special_tokens=False).ids
        return {"input_ids": paddle.to_tensor([ids], dtype="int64"),
                "position_ids": paddle.arange(len(ids), dtype="int64").unsqueeze(0),
                "attention_mask": paddle.ones([1, len(ids)], dtype="int64")}

    def decode(self, ids: list[int]) -> str:
        if self.sp is not None:
            return self.sp.decode(ids, skip_special_tokens=True)
        return self.fast.decode(ids, skip_special_tokens=True)


class PaddlePredictor:
    """Ray Data actor: ``{"row", "image"}`` batches -> ``{"row", "hyp", "loop", "tokens", "seconds"}``."""

    def __init__(self, spec: ModelSpec, generation: str, prompt: str, max_new_tokens: int, loop_max_period: int,
                 loop_min_repeats: int, device: str = "cpu"):
        import paddle
        from paddlex.inference.models.doc_vlm.modeling import PaddleOCRVLForConditionalGeneration
        from paddlex.inference.models.doc_vlm.modeling.paddleocr_vl._config import PaddleOCRVLConfig
        from paddlex.inference.models.doc_vlm.processors import SiglipImageProcessor

        paddle.set_device("gpu" if device == "gpu" else "cpu")
        config = PaddleOCRVLConfig.from_pretrained(spec.path)
        config.vision_config.vision_use_head = has_vision_head(spec.path)
        self.model = PaddleOCRVLForConditionalGeneration.from_pretrained(
            spec.path, config=config, dtype="bfloat16" if device == "gpu" else "float32", convert_from_hf=True)
        self.model.eval()
        if spec.lora:
            apply_lora(self.model, spec)
        self.images = SiglipImageProcessor.from_pretrained(spec.path)
        self.tokenizer = Tokenizer(spec.path)
        self.text = render_prompt(generation, prompt)
        self.max_new_tokens = max_new_tokens
        self.loop = (loop_max_period, loop_min_repeats)

    def _stop_on_loop(self, prompt_len: int):
        period, repeats = self.loop

        def stop(input_ids, scores, **kwargs) -> bool:
            return find_loop(input_ids[0, prompt_len:].tolist(), period, repeats) is not None
        return stop

    def generate(self, image) -> tuple[str, bool, int]:
        """Greedy decoding of one PIL image: (text, repetition loop cut, generated tokens)."""
        import paddle
        from paddlex.inference.models.common.transformers.generation import StoppingCriteriaList
        from paddlex.inference.models.doc_vlm.modeling import PaddleOCRVLForConditionalGeneration

        vis = self.images(images=[image], return_tensors="pd")
        merge = self.images.merge_size
        n = int(vis["image_grid_thw"][0].prod()) // (merge * merge)
        text = self.text.replace(IMAGE_TOKEN, IMAGE_TOKEN * n, 1)
        enc = self.tokenizer.encode(text)
        prompt_len = enc["input_ids"].shape[1]
        with paddle.no_grad():   # the class's own generate() drops stopping criteria: call the mixin's
            ids = super(PaddleOCRVLForConditionalGeneration, self.model).generate(
                **enc, **vis, max_new_tokens=self.max_new_tokens, use_cache=True, decode_strategy="greedy_search",
                stopping_criteria=StoppingCriteriaList([self._stop_on_loop(prompt_len)]))[0]
        tokens = [t for t in ids[0].tolist() if t != self.tokenizer.eos_token_id]
        raw = self.tokenizer.decode(tokens)
        hyp, loop = finish(raw, *self.loop)
        return hyp, loop, len(tokens)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from PIL import Image

        hyps, loops, tokens, secs = [], [], [], []
        for data in batch["image"]:
            t0 = time.perf_counter()
            h, lp, nt = self.generate(Image.open(io.BytesIO(bytes(data))).convert("RGB"))
            hyps.append(h)
            loops.append(lp)
            tokens.append(nt)
            secs.append(time.perf_counter() - t0)
        return {"row": np.asarray(batch["row"]), "hyp": np.asarray(hyps, dtype=object),
                "loop": np.asarray(loops, dtype=bool), "tokens": np.asarray(tokens, dtype=np.int64),
                "seconds": np.asarray(secs, dtype=np.float64)}
