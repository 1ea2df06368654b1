"""A tiny random PaddleOCR-VL folder for the user's erniekit fork (tests, the demo loop): config.json,
preprocessor_config.json and a synthetic SentencePiece tokenizer (vocab 103424, the image placeholder
at id 100295 as in PaddleOCR-VL; every special token the fork's data processor looks up is one piece).
``build_tiny_model`` writes no weights (the fork trains it ``from_scratch``); ``build_tiny_fork_base`` adds
random weights made by the fork's own model code, saved in Hugging Face layout like the real base (the fork
loads them with ``convert_from_hf=True``; ``ocrvl merge`` and ``ocrvl eval`` read them)."""
from __future__ import annotations

import json
from pathlib import Path

VOCAB = 103424
IMAGE_PLACEHOLDER_ID = 100295
LOW_SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<cls>", "<sep>", "<mask:0>", "<mask:1>", "<mask:4>", "<mask:5>",
                "<mask:7>", "<|endofprompt|>", "<|begin_of_sentence|>", "<|end_of_sentence|>"]
HIGH_SPECIALS = (["<|IMAGE_START|>", "<|IMAGE_END|>", "<|VIDEO_START|>", "<|VIDEO_END|>", "<|image|>",
                  "<|AUDIO_PLACEHOLDER|>", "<|LOC_BEGIN|>", "<|LOC_END|>", "<|LOC_SEP|>", "<|BOI|>", "<|EOI|>",
                  "<|BOA|>", "<|EOA|>", "<|BOV|>", "<|EOV|>", "<|im_start|>", "<|im_end|>", "<|ASR_START|>",
                  "<|ASR_END|>", "<special_token_1>"] + [f"<|LOC_{i}|>" for i in range(1001)])
TEXT_CHARS = "0123456789-.:,!?() abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZOCRAssistantUser"
#: Std of the base's random ``lm_head``. The fork's init (~0.004 at hidden size 64) keeps the 103424 logits nearly
#: uniform, and LoRA leaves ``lm_head`` frozen, so the demo loop's loss could barely move (11.53 -> 11.47).
LM_HEAD_STD = 0.2


NORMAL, UNKNOWN, CONTROL, USER_DEFINED, BYTE = 1, 2, 3, 4, 6      # sentencepiece_model.proto piece types


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(num: int, value) -> bytes:
    """One protobuf field: bytes/str (length-delimited), float (fixed32), bool/int (varint)."""
    import struct

    if isinstance(value, (bytes, str)):
        raw = value.encode() if isinstance(value, str) else value
        return _varint(num << 3 | 2) + _varint(len(raw)) + raw
    if isinstance(value, float):
        return _varint(num << 3 | 5) + struct.pack("<f", value)
    return _varint(num << 3) + _varint(int(value))


def build_tokenizer(out: Path, extra_text: str = "") -> None:
    """``tokenizer.model`` (unigram, byte fallback; the ModelProto written field by field) +
    ``tokenizer_config.json`` + ``special_tokens_map.json``."""
    pieces: list[tuple[str, int]] = [("<unk>", UNKNOWN)] + [(t, CONTROL) for t in LOW_SPECIALS[1:]]
    pieces += [(f"<0x{b:02X}>", BYTE) for b in range(256)]
    chars = sorted(set(TEXT_CHARS + extra_text) - {" "})
    pieces += [("\u2581", NORMAL)] + [(c, NORMAL) for c in chars] + [("\u2581" + c, NORMAL) for c in chars]
    special_at = {IMAGE_PLACEHOLDER_ID: "<|IMAGE_PLACEHOLDER|>"}
    special_at.update({IMAGE_PLACEHOLDER_ID + 1 + i: t for i, t in enumerate(HIGH_SPECIALS)})
    model = bytearray()
    for i in range(VOCAB):
        if i < len(pieces):
            piece, kind = pieces[i]
        else:
            piece, kind = special_at.get(i, f"<unused_{i}>"), USER_DEFINED
        score = -float(i) / VOCAB if kind == NORMAL else 0.0
        model += _field(1, _field(1, piece) + _field(2, score) + _field(3, kind))
    trainer = (_field(3, 1) + _field(4, VOCAB) + _field(35, True) + _field(40, 0) + _field(41, 1) + _field(42, 2)
               + _field(43, 3))                                   # model_type UNIGRAM, ids of unk/bos/eos/pad
    normalizer = _field(1, "identity") + _field(3, True) + _field(4, False) + _field(5, True)
    model += _field(2, trainer) + _field(3, normalizer)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer.model").write_bytes(bytes(model))
    specials = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>",
                "cls_token": "<|begin_of_sentence|>", "sep_token": "<|end_of_sentence|>", "mask_token": "<mask:1>",
                "additional_special_tokens": ["<|IMAGE_PLACEHOLDER|>", "<|IMAGE_START|>", "<|IMAGE_END|>"]}
    (out / "special_tokens_map.json").write_text(json.dumps(specials))
    (out / "tokenizer_config.json").write_text(json.dumps({**specials, "tokenizer_class": "Ernie4_5_Tokenizer",
                                                           "model_max_length": 131072, "padding_side": "right"}))


def build_tiny_model(out: str | Path, extra_text: str = "") -> Path:
    """The whole folder; ``extra_text``: characters the labels use (each becomes one piece)."""
    out = Path(out)
    build_tokenizer(out, extra_text)
    config = {
        "architectures": ["PaddleOCRVLForConditionalGeneration"], "model_type": "paddleocr_vl",
        "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 16, "hidden_act": "silu", "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-5, "rope_theta": 500000, "vocab_size": VOCAB, "pad_token_id": 0,
        "image_token_id": IMAGE_PLACEHOLDER_ID, "video_token_id": IMAGE_PLACEHOLDER_ID + 3,
        "vision_start_token_id": IMAGE_PLACEHOLDER_ID + 1, "ignored_index": -100, "tie_word_embeddings": False,
        "use_bias": False, "use_cache": False, "use_flash_attention": False, "use_3d_rope": True,
        "rope_is_neox_style": True, "weight_share_add_bias": True, "compression_ratio": 1.0,
        "rope_scaling": {"mrope_section": [2, 3, 3], "rope_type": "default", "type": "default"},
        "torch_dtype": "float32",
        "vision_config": {"model_type": "paddleocr_vl", "hidden_act": "gelu_pytorch_tanh", "hidden_size": 32,
                          "image_size": 384, "intermediate_size": 64, "layer_norm_eps": 1e-6,
                          "num_attention_heads": 2, "num_channels": 3, "num_hidden_layers": 1, "patch_size": 14,
                          "spatial_merge_size": 2, "temporal_patch_size": 2, "tokens_per_second": 2,
                          "torch_dtype": "float32"},
    }
    (out / "config.json").write_text(json.dumps(config, indent=1))
    pre = {"do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
           "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "min_pixels": 3136, "max_pixels": 12544,
           "merge_size": 2, "patch_size": 14, "resample": 3, "rescale_factor": 1 / 255,
           "size": {"min_pixels": 3136, "max_pixels": 12544}, "temporal_patch_size": 1,
           "image_processor_type": "SiglipImageProcessor"}
    (out / "preprocessor_config.json").write_text(json.dumps(pre, indent=1))
    return out


def build_tiny_fork_base(out: str | Path, ernie_root: str | Path, extra_text: str = "", seed: int = 0) -> Path:
    """``build_tiny_model`` plus ``model.safetensors``: the fork's ``PaddleOCRVLForConditionalGeneration`` at
    random (``seed``), its Linear weights transposed to Hugging Face's [out, in] (the fork's own
    ``transpose_weight_keys``), fp32; ``lm_head`` redrawn at std ``LM_HEAD_STD``."""
    import sys

    import numpy as np
    import paddle
    from safetensors.numpy import save_file

    if str(ernie_root) not in sys.path:
        sys.path.insert(0, str(ernie_root))
    from ernie.configuration_paddleocr_vl import PaddleOCRVLConfig
    from ernie.modeling_paddleocr_vl import PaddleOCRVLForConditionalGeneration

    out = build_tiny_model(out, extra_text)
    paddle.seed(seed)
    model = PaddleOCRVLForConditionalGeneration(PaddleOCRVLConfig.from_pretrained(str(out)))
    linear = PaddleOCRVLForConditionalGeneration.transpose_weight_keys
    tensors = {}
    for name, value in model.state_dict().items():
        array = value.numpy()
        if array.ndim == 2 and name.endswith(".weight") and any(f".{k}." in f".{name}" for k in linear):
            array = array.T
        tensors[name] = np.ascontiguousarray(array)
    head = tensors["lm_head.weight"]
    tensors["lm_head.weight"] = np.random.default_rng(seed).normal(0.0, LM_HEAD_STD, head.shape).astype(head.dtype)
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out
