"""Inference engines behind one contract: rows with ``image`` (JPEG bytes) in, ``hyp``/``loop``/``tokens`` out.

Prompt text per model generation (v1 vs 1.5+) is defined here once and used by both engines.
"""
from __future__ import annotations

import re

from ocrvl_ray.eval.metrics import cut_loop

IMAGE = "<|IMAGE_START|><|IMAGE_PLACEHOLDER|><|IMAGE_END|>"
IMAGE_TOKEN = "<|IMAGE_PLACEHOLDER|>"
#: generation -> prompt format; v1 = PaddleOCR-VL (2025-10), 1.5 = PaddleOCR-VL-1.5 and later
TEMPLATES = {"v1": "<|begin_of_sentence|>User: {image}{prompt}\nAssistant: ",
             "1.5": "<|begin_of_sentence|>User: {image}{prompt}\nAssistant:\n"}
_V15 = re.compile(r"Assistant:(\\n|\n)")


def detect_generation(chat_template: str) -> str:
    """``1.5`` when the model's chat template ends the assistant tag with a newline, else ``v1``."""
    return "1.5" if _V15.search(chat_template) else "v1"


def resolve_template(setting: str, chat_template: str) -> str:
    return detect_generation(chat_template) if setting == "auto" else setting


def render_prompt(generation: str, prompt: str) -> str:
    """The full prompt text with one image placeholder (engines expand it to the image's token count)."""
    return TEMPLATES[generation].format(image=IMAGE, prompt=prompt)


def finish(text: str, max_period: int, min_repeats: int) -> tuple[str, bool]:
    """Strip the generated text and cut a trailing repetition loop (counted in the report)."""
    return cut_loop(text.strip(), max_period, min_repeats)
