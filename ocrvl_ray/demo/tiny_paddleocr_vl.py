"""A tiny random PaddleOCR-VL base folder that PaddleFormers 1.x loads like the real one (tests, demos).

``build_tiny_paddleocr_vl(out, generation)`` writes, fully offline:
  tokenizer.json / tokenizer_config.json   a byte-level BPE with the real special tokens, whose
                                           ``chat_template`` is the generation's (v1 or 1.5+)
  config.json                              the real PaddleOCR-VL config scaled down (hidden 64, 2 LLM
                                           layers, 1 vision layer of width 32), ``fuse_rms_norm: false``
  model.safetensors                        random fp32 weights in Hugging Face layout
  preprocessor_config.json                 the real one with small min/max pixels (short sequences)

``save_random_model(out)`` writes the same kind of folder with transformers' own model code (flat hub config,
untied ``lm_head``; ``tiny=False``: the real sizes for ``bench/gpu_check.py``).

Needs the ``paddleformers`` extra (PaddleFormers 1.x), or ``.venv-torch`` for ``save_random_model``; imports are
inside the functions.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ocrvl_ray.export import DATA


#: The shipped PaddleOCR-VL files: the real config.json, preprocessor_config.json and the base's tensor table
#: (``paddleocr-vl.base_keys.tsv``; the export's key checks).
SPECIAL_TOKENS = ["<unk>", "<pad>", "<|begin_of_sentence|>", "<|end_of_sentence|>", "<|IMAGE_START|>",
                  "<|IMAGE_END|>", "<|IMAGE_PLACEHOLDER|>", "<|VIDEO_PLACEHOLDER|>"]
VOCAB = 320
#: Small enough for fast steps, large enough for the 28x28 minimum of patch 14 x merge 2.
MIN_PIXELS, MAX_PIXELS = 28 * 28 * 4, 28 * 28 * 16


def chat_template(assistant: str) -> str:
    """A Jinja chat template of the PaddleOCR-VL shape whose assistant turn opens with ``assistant``."""
    a = json.dumps(assistant)
    return ("{{- '<|begin_of_sentence|>' -}}{%- for m in messages -%}{%- if m['role'] == 'user' -%}"
            "{{- 'User: ' -}}{%- for c in m['content'] -%}{%- if c['type'] == 'image' -%}"
            "{{- '<|IMAGE_START|><|IMAGE_PLACEHOLDER|><|IMAGE_END|>' -}}{%- else -%}{{- c['text'] -}}{%- endif -%}"
            "{%- endfor -%}{{- '\\n' -}}{%- else -%}{{- " + a + " + m['content'][0]['text'] + "
            "'<|end_of_sentence|>' -}}{%- endif -%}{%- endfor -%}"
            "{%- if add_generation_prompt -%}{{- " + a + " -}}{%- endif -%}")


def _tokenizer(out: Path, template: str, corpus: list[str], vocab: int) -> dict[str, int]:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainer=trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                                   bos_token="<|begin_of_sentence|>", eos_token="<|end_of_sentence|>",
                                   cls_token="<|begin_of_sentence|>")
    fast.chat_template = template
    fast.save_pretrained(str(out))
    return {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}


def tiny_config(ids: dict[str, int], vocab: int = VOCAB) -> dict:
    cfg = json.loads((DATA / "paddleocr-vl.config.json").read_text())
    for c in (cfg, cfg["vision_config"]):
        c.pop("auto_map", None)
        c["torch_dtype"] = "float32"
    cfg.update(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
               num_hidden_layers=2, vocab_size=vocab, max_position_embeddings=4096, fuse_rms_norm=False,
               pad_token_id=ids["<pad>"], bos_token_id=ids["<|begin_of_sentence|>"],
               eos_token_id=ids["<|end_of_sentence|>"], image_token_id=ids["<|IMAGE_PLACEHOLDER|>"],
               video_token_id=ids["<|VIDEO_PLACEHOLDER|>"], vision_start_token_id=ids["<|IMAGE_START|>"],
               dtype="float32")
    cfg["rope_scaling"]["mrope_section"] = [2, 3, 3]
    cfg["vision_config"].update(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=1)
    return cfg


def build_tiny_paddleocr_vl(out_dir: str | os.PathLike, generation: str = "v1", seed: int = 0,
                            corpus: tuple[str, ...] = (), vocab: int = VOCAB) -> Path:
    """Write the tiny base; ``generation`` v1 or v1.5/v1.6 picks the chat template; the tokenizer is a BPE of at
    most ``vocab`` tokens learnt from ``corpus`` (texts the model will read: fewer tokens per label)."""
    import paddle
    from paddleformers.transformers import PaddleOCRVLConfig, PaddleOCRVLForConditionalGeneration

    from ocrvl_ray.core.generations import GENERATIONS

    gen = GENERATIONS[generation]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = ["User: OCR:\nAssistant: ", "번호 금액 합계 2024 text Table Recognition:", *corpus]
    ids = _tokenizer(out, chat_template(gen.assistant), text, vocab)
    cfg = tiny_config(ids, vocab)
    paddle.seed(seed)
    model = PaddleOCRVLForConditionalGeneration(PaddleOCRVLConfig(**cfg))
    model.save_pretrained(str(out), save_to_hf=True)
    (out / "config.json").write_text(json.dumps(cfg, indent=2))   # the raw dict (to_dict drops keys)
    pre = json.loads((DATA / "paddleocr-vl.preprocessor_config.json").read_text())
    pre.pop("auto_map", None)
    pre.update(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS, size={"min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS},
               image_processor_type="PaddleOCRVLImageProcessor")
    (out / "preprocessor_config.json").write_text(json.dumps(pre, indent=2))
    return out


def save_random_model(out, tiny: bool = True, seed: int = 0, dtype: str = "float32"):
    """A random PaddleOCR-VL folder in the hub layout built with transformers' own model code, offline (tests, the
    transformers demo loop, ``bench/gpu_check.py``; needs ``.venv-torch``): the real
    config (``export/data/paddleocr-vl.config.json``; ``tiny``: the demo's scaled-down one), a small byte-level BPE
    tokenizer with the real special tokens, the real image processor config (``tiny``: small pixel bounds) and
    random weights with an untied ``lm_head`` and the (unused) packing position table the hub checkpoints carry."""
    import json
    from pathlib import Path

    import torch
    from safetensors.torch import load_file, save_file
    from transformers import PaddleOCRVLConfig, PaddleOCRVLForConditionalGeneration

    from ocrvl_ray.core.generations import GENERATIONS

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ids = _tokenizer(out, chat_template(GENERATIONS["v1"].assistant),
                     ["User: OCR:\nAssistant: ", "번호 금액 합계 2024 text"], 320)
    cfg = tiny_config(ids)
    if not tiny:   # the real sizes, the tokenizer's special token ids
        real = json.loads((DATA / "paddleocr-vl.config.json").read_text())
        real.pop("auto_map", None)
        real["vision_config"].pop("auto_map", None)
        cfg = {**real, **{k: cfg[k] for k in ("pad_token_id", "bos_token_id", "eos_token_id", "image_token_id",
                                               "video_token_id", "vision_start_token_id")}}
    cfg.update(tie_word_embeddings=False, torch_dtype=dtype, dtype=dtype)
    torch.manual_seed(seed)
    config = PaddleOCRVLConfig(**cfg)
    config.tie_word_embeddings = config.text_config.tie_word_embeddings = False
    PaddleOCRVLForConditionalGeneration(config).to(getattr(torch, dtype)).save_pretrained(out)
    weights = load_file(out / "model.safetensors")
    weights["visual.vision_model.embeddings.packing_position_embedding.weight"] = torch.zeros(
        32768, cfg["vision_config"]["hidden_size"], dtype=getattr(torch, dtype))   # paddlex's shape
    save_file(weights, out / "model.safetensors", metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(cfg, indent=2))   # the flat hub layout
    pre = json.loads((DATA / "paddleocr-vl.preprocessor_config.json").read_text())
    pre.pop("auto_map", None)
    pre["image_processor_type"] = "PaddleOCRVLImageProcessor"
    if tiny:
        pre.update(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS, size={"min_pixels": MIN_PIXELS,
                                                                       "max_pixels": MAX_PIXELS})
    (out / "preprocessor_config.json").write_text(json.dumps(pre, indent=2))
    return out
