"""`ocrvl fix`: a Paddle-layout merged file (the notebook path) back to HF layout, by evidence."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from safetensors import safe_open

from ocrvl_ray.cli import main as ocrvl
from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.export.fix import fix_file
from ocrvl_ray.export.merge import merge_lora
from ocrvl_ray.export.st import TensorSet, read_tensor, save_file
from ocrvl_ray.export.verify import verify_export
from ocrvl_ray.testing import export as sy

SPEC = sy.model_spec(sy.TINY_DIMS, max_layers=2)
SQUARES = [n for n, s in SPEC if sy.is_linear(n, s) and s[0] == s[1]]


def _load(path):
    ts = TensorSet.open(path)
    return {k: read_tensor(v) for k, v in ts.tensors.items()}


@pytest.fixture(scope="module")
def merged(tmp_path_factory):
    root = tmp_path_factory.mktemp("fix")
    base = sy.write_base(root / "base", SPEC)
    lora = sy.write_adapter(root / "lora", SPEC, r=4, lora_alpha=8)
    merge_lora(base, lora, root / "export")
    return root, base, lora, _load(root / "export")


def _paddle_layout(hf: dict) -> dict:
    """What paddleformers' save_pretrained writes: Linear weights [in, out], plus zero biases on LoRA'd LLM linears."""
    out = {}
    for k, a in hf.items():
        out[k] = np.ascontiguousarray(a.T) if sy.is_linear(k, a.shape) else a
        if k.startswith("model.layers.") and k.endswith("_proj.weight"):
            out[k[: -len("weight")] + "bias"] = np.zeros(a.shape[0], dtype=a.dtype)
    return out


def test_fix_restores_hf_layout_including_square_matrices(merged, tmp_path, capsys):
    root, base, lora, hf = merged
    assert "mlp_AR.linear_1.weight" in SQUARES and len(SQUARES) >= 5
    paddle_file = save_file(_paddle_layout(hf), tmp_path / "merged_paddle.safetensors", {"format": "np"})
    fixed_dir = tmp_path / "fixed"
    rc = ocrvl(["fix", "--file", str(paddle_file), "--base", str(base),
                "--out", str(fixed_dir / "model.safetensors")])
    assert rc == 0
    assert "square mlp_AR.linear_1.weight: transposed" in capsys.readouterr().out
    got = _load(fixed_dir / "model.safetensors")
    assert set(got) == set(hf)  # zero biases the base lacks are gone
    for k in hf:
        assert got[k].flags.c_contiguous
        np.testing.assert_array_equal(got[k].view(np.uint16), hf[k].view(np.uint16), err_msg=k)
    with safe_open(str(fixed_dir / "model.safetensors"), "np") as f:
        assert f.metadata() == {"format": "pt"}

    res = fix_file(fixed_dir / "model.safetensors", base, tmp_path / "again.safetensors", log=lambda s: None)
    assert res.transposed == [] and res.dropped_bias == []                 # already HF layout: idempotent
    assert all(v[0] == "kept" for v in res.square_decisions.values())
    sy.write_support_files(fixed_dir)
    assert verify_export(fixed_dir, base, lora).ok


def test_fix_refuses_ambiguous_and_foreign_tensors(merged, tmp_path):
    root, base, lora, hf = merged
    # a base whose square matrix is symmetric: no evidence which way round the merged one is
    sym_base = tmp_path / "sym_base"
    sym_base.mkdir()
    b = _load(base)
    w = b["mlp_AR.linear_1.weight"].astype(np.float32)
    b["mlp_AR.linear_1.weight"] = ((w + w.T) / 2).astype(ml_dtypes.bfloat16)
    save_file(b, sym_base / "model.safetensors")
    with pytest.raises(OcrvlError, match=r"cannot tell the orientation of square tensor 'mlp_AR.linear_1.weight'"):
        fix_file(save_file(_paddle_layout(hf), tmp_path / "p.safetensors"), sym_base, tmp_path / "o.safetensors")

    bad = _paddle_layout(hf)
    bad["model.layers.0.self_attn.q_proj.bias"][0] = 1
    with pytest.raises(OcrvlError, match=r"'model.layers.0.self_attn.q_proj.bias' .* not a zero bias"):
        fix_file(save_file(bad, tmp_path / "b.safetensors"), base, tmp_path / "o.safetensors")

    short = dict(hf)
    del short["model.norm.weight"]
    with pytest.raises(OcrvlError, match=r"lacks base tensor 'model.norm.weight'"):
        fix_file(save_file(short, tmp_path / "s.safetensors"), base, tmp_path / "o.safetensors")
    assert not (tmp_path / "o.safetensors").exists()
