"""Inference engines behind one contract: rows with ``image`` (JPEG bytes) in, ``hyp``/``loop``/``tokens`` out.

Prompt text per model generation comes from ``core.generations`` (the table training uses too).
"""
from __future__ import annotations

from typing import Optional

from ocrvl_ray.core import generations as gen
from ocrvl_ray.eval.metrics import cut_loop

IMAGE = gen.IMAGE
IMAGE_TOKEN = "<|IMAGE_PLACEHOLDER|>"


def model_generation(model_version: Optional[str], chat_template: str) -> str:
    """``model_version`` when set, else the model's from its chat template: ``v1.5`` when it opens the assistant
    turn with a newline (1.5 and 1.6 share that template and the prompts), else ``v1``."""
    if model_version:
        return gen.canonical(model_version)
    return "v1.5" if gen.template_family(chat_template) == "v1.5" else "v1"


def render_prompt(generation: str, prompt: str) -> str:
    """The full prompt text with one image placeholder (engines expand it to the image's token count)."""
    return gen.get(generation).prompt(prompt)


def finish(text: str, max_period: int, min_repeats: int) -> tuple[str, bool]:
    """Strip the generated text and cut a trailing repetition loop (counted in the report)."""
    return cut_loop(text.strip(), max_period, min_repeats)
