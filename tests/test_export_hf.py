"""A merged tiny PaddleOCR-VL export loads in Hugging Face transformers' native model, and its logits equal
those of a reference checkpoint built independently (numpy math, safetensors' own writer) from base + deltas.

Needs the ``hf`` extra (transformers >= 5 with ``models.paddleocr_vl`` + torch). That extra cannot share an
environment with paddleformers 0.3.1 (tokenizers < 0.22 vs >= 0.22), so run this file in its own venv:
``pip install -e ".[hf]" pytest && pytest tests/test_export_hf.py`` (see docs/export.md).
"""
from __future__ import annotations

import json

import numpy as np
import pytest

try:
    import torch
    from transformers import PaddleOCRVLForConditionalGeneration
except ImportError as e:  # the dev environment pins transformers 4.x for paddleformers
    pytest.skip(f"needs the 'hf' extra (transformers>=5 native PaddleOCR-VL + torch): {e}", allow_module_level=True)

from safetensors.numpy import save_file as reference_save_file

from ocrvl_ray.export.merge import merge_lora
from ocrvl_ray.export.st import TensorSet, read_tensor
from ocrvl_ray.export.verify import verify_export
from ocrvl_ray.testing import export as sy

SPEC = sy.model_spec(sy.TINY_DIMS, max_layers=2)
IMAGE, VSTART = 250, 252


def tiny_config() -> dict:
    """The real PaddleOCR-VL config.json, scaled to TINY_DIMS (native class, so no auto_map)."""
    cfg = json.loads((sy.DATA / "paddleocr-vl.config.json").read_text())
    cfg.pop("auto_map")
    cfg["vision_config"].pop("auto_map")
    cfg.update(hidden_size=64, intermediate_size=96, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
               num_hidden_layers=2, vocab_size=256, image_token_id=IMAGE, video_token_id=251,
               vision_start_token_id=VSTART)
    cfg["rope_scaling"]["mrope_section"] = [2, 3, 3]
    cfg["vision_config"].update(hidden_size=32, intermediate_size=48, num_attention_heads=2, num_hidden_layers=2,
                                patch_size=2, image_size=8)
    return cfg


def _logits(folder) -> np.ndarray:
    model = PaddleOCRVLForConditionalGeneration.from_pretrained(str(folder), dtype=torch.float32).eval()
    ids = torch.tensor([[5, 6, VSTART, IMAGE, IMAGE, IMAGE, IMAGE, 7, 8]])
    pixels = torch.from_numpy(np.random.default_rng(3).standard_normal((16, 3, 2, 2), dtype=np.float32))
    with torch.no_grad():  # one 4x4-patch image -> 4 merged image tokens, so vision + projector run too
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pixels,
                    image_grid_thw=torch.tensor([[1, 4, 4]]), mm_token_type_ids=(ids == IMAGE).int())
    return out.logits.numpy()


def test_export_loads_in_transformers_with_reference_logits(tmp_path):
    base = sy.write_base(tmp_path / "base", SPEC, dtype=np.float32, std=0.05)
    (base / "config.json").write_text(json.dumps(tiny_config()))
    lora = sy.write_adapter(tmp_path / "lora", SPEC, r=4, lora_alpha=8, dtype=np.float32, std=0.1)
    merge_lora(base, lora, tmp_path / "export", log=lambda s: None)
    assert verify_export(tmp_path / "export", base, lora).ok

    # reference: base + scaling * (A @ B).T in plain numpy, written by the safetensors library itself
    ref = {k: read_tensor(v) for k, v in TensorSet.open(base).tensors.items()}
    ad = {k: read_tensor(v) for k, v in TensorSet.open(lora, "peft_model").tensors.items()}
    for k in [k for k in ad if k.endswith(".lora_A")]:
        mod = k[: -len(".lora_A")]
        ref[mod + ".weight"] = ref[mod + ".weight"] + 2.0 * (ad[k] @ ad[mod + ".lora_B"]).T
    (tmp_path / "ref").mkdir()
    reference_save_file({k: np.ascontiguousarray(v) for k, v in ref.items()},
                        str(tmp_path / "ref" / "model.safetensors"), metadata={"format": "pt"})
    (tmp_path / "ref" / "config.json").write_text((base / "config.json").read_text())

    got, want, before = _logits(tmp_path / "export"), _logits(tmp_path / "ref"), _logits(base)
    assert np.abs(want - before).max() > 1e-2          # the adapter really changes the model
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
