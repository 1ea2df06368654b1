"""A tiny random PaddleOCR-VL (HF folder) that the real paddlex model class, tokenizer and image processor
load offline, plus a LoRA of it — for eval tests and the eval benchmark.

Weights come from ``ocrvl_ray.testing.export`` (real tensor names, tiny shapes; the packing position
table keeps its hard-coded 32768 rows); the tokenizer is a sentencepiece character model over Hangul, Latin,
digits and the PaddleOCR-VL special tokens, trained here in memory; the vocabulary is its size.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from ocrvl_ray.export import DATA
from ocrvl_ray.testing import export as sy

SPECIAL = ["<|begin_of_sentence|>", "<|end_of_sentence|>", "<|IMAGE_START|>", "<|IMAGE_PLACEHOLDER|>",
           "<|IMAGE_END|>", "<|video_pad|>"]
CHARS = "".join(chr(c) for c in range(0xAC00, 0xAC00 + 120)) + "합계금액번호날짜은행ABCDEFGHIJabcdefghij0123456789.,:;()-/%"
#: v1-style template text (what ``template=auto`` reads; "Assistant: " without newline)
CHAT_TEMPLATE_V1 = "{{ '<|begin_of_sentence|>' }}User: {{ content }}\\nAssistant: "


def _tokenizer(folder: Path) -> dict[str, int]:
    import sentencepiece as spm

    buf = io.BytesIO()
    corpus = [CHARS, "OCR: User: Assistant:", "번호 합계 12,345 abc"] * 4
    spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus), model_writer=buf, vocab_size=256,
                                   model_type="char", user_defined_symbols=SPECIAL, character_coverage=1.0,
                                   unk_id=0, bos_id=1, eos_id=2, pad_id=-1, hard_vocab_limit=False,
                                   add_dummy_prefix=False, minloglevel=2)
    (folder / "tokenizer.model").write_bytes(buf.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": False}))
    return {"vocab": sp.get_piece_size(), **{s: sp.piece_to_id(s) for s in SPECIAL}}


def build_tiny_ocrvl(folder: str | Path, seed: int = 0, std: float = 0.5) -> Path:
    """Writes the model folder; ``std`` is large so greedy decoding emits varied, non-empty text."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ids = _tokenizer(folder)
    sy.write_base(folder, spec(ids["vocab"]), dtype=np.float32, std=std, seed=seed)
    cfg = json.loads((DATA / "paddleocr-vl.config.json").read_text())
    cfg.pop("auto_map")
    cfg["vision_config"].pop("auto_map")
    cfg.update(hidden_size=64, intermediate_size=96, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
               num_hidden_layers=2, vocab_size=ids["vocab"], image_token_id=ids["<|IMAGE_PLACEHOLDER|>"],
               video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|IMAGE_START|>"],
               torch_dtype="float32")
    cfg["rope_scaling"]["mrope_section"] = [2, 3, 3]
    cfg["vision_config"].update(hidden_size=32, intermediate_size=48, num_attention_heads=2, num_hidden_layers=2,
                                patch_size=2, image_size=8, torch_dtype="float32")
    (folder / "config.json").write_text(json.dumps(cfg, indent=2))
    pp = json.loads((DATA / "paddleocr-vl.preprocessor_config.json").read_text())
    pp.pop("auto_map")
    pp.update(patch_size=2, min_pixels=64, max_pixels=1024, size={"min_pixels": 64, "max_pixels": 1024})
    (folder / "preprocessor_config.json").write_text(json.dumps(pp, indent=2))
    (folder / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": 2}))
    (folder / "chat_template.jinja").write_text(CHAT_TEMPLATE_V1)
    return folder


def spec(vocab: int) -> list[tuple[str, tuple[int, ...]]]:
    """(name, HF shape) of the tiny model: 2 LLM layers, 2 vision layers."""
    scale = {**sy.TINY_DIMS, 103424: vocab}
    scale.pop(32768)
    return sy.model_spec(scale, max_layers=2)


def build_tiny_lora(folder: str | Path, base: str | Path, seed: int = 1, std: float = 0.3) -> Path:
    """A unified-checkpoint LoRA (r=4) on every LLM and projector Linear of ``base``."""
    vocab = json.loads((Path(base) / "config.json").read_text())["vocab_size"]
    return sy.write_adapter(folder, spec(vocab), r=4, lora_alpha=8, dtype=np.float32, seed=seed, std=std,
                            select=lambda n, s: sy.is_linear(n, s) and not n.startswith("visual."))
