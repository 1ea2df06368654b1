"""Bad inputs to merge: one clear error naming the key/file, and nothing written."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from ocrvl_ray.cli import main as ocrvl
from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.export.merge import merge_lora
from ocrvl_ray.export.st import TensorSet, read_tensor, save_file
from ocrvl_ray.testing import export as sy

SPEC = sy.model_spec(sy.TINY_DIMS, max_layers=1)


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    root = tmp_path_factory.mktemp("err")
    return sy.write_base(root / "base", SPEC), sy.write_adapter(root / "lora", SPEC, r=4)


def _edit_adapter(src, dst, edit, cfg_edit=None):
    dst.mkdir()
    ad = {k: read_tensor(v) for k, v in TensorSet.open(src, "peft_model").tensors.items()}
    edit(ad)
    save_file(ad, dst / "peft_model.safetensors")
    cfg = json.loads((src / "lora_config.json").read_text())
    (dst / "lora_config.json").write_text(json.dumps(cfg_edit(cfg) if cfg_edit else cfg))
    return dst


def _expect_error(base, lora, out, *fragments):
    with pytest.raises(OcrvlError) as ei:
        merge_lora(base, lora, out)
    msg = str(ei.value)
    assert "\n" not in msg
    for f in fragments:
        assert f in msg, msg
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]
    return msg


def test_adapter_module_missing_in_base(good, tmp_path):
    base, lora = good
    k = "model.layers.0.self_attn.q_proj"
    bad = _edit_adapter(lora, tmp_path / "bad", lambda ad: ad.update(
        {"model.layers.0.self_attn.qq_proj.lora_A": ad.pop(f"{k}.lora_A"),
         "model.layers.0.self_attn.qq_proj.lora_B": ad.pop(f"{k}.lora_B")}))
    msg = _expect_error(base, bad, tmp_path / "out", "'model.layers.0.self_attn.qq_proj'",
                        "closest base key: 'model.layers.0.self_attn.q_proj.weight'")
    assert msg.startswith("adapter module")


def test_shape_mismatch(good, tmp_path):
    base, lora = good
    k = "visual.vision_model.encoder.layers.0.mlp.fc1.lora_B"
    bad = _edit_adapter(lora, tmp_path / "bad", lambda ad: ad.update({k: np.concatenate([ad[k], ad[k]], axis=1)}))
    _expect_error(base, bad, tmp_path / "out", "'visual.vision_model.encoder.layers.0.mlp.fc1.lora_A'",
                  "do not fit base 'visual.vision_model.encoder.layers.0.mlp.fc1.weight'")


def test_wrong_rank(good, tmp_path):
    base, lora = good
    bad = _edit_adapter(lora, tmp_path / "bad", lambda ad: None, lambda cfg: {**cfg, "r": 8})
    _expect_error(base, bad, tmp_path / "out", "has rank 4 but lora_config.json says r=8")


def test_half_a_pair(good, tmp_path):
    base, lora = good
    bad = _edit_adapter(lora, tmp_path / "bad", lambda ad: ad.pop("lm_head.lora_B"))
    _expect_error(base, bad, tmp_path / "out", "'lm_head.lora_A' has no matching lora_B")


def test_truncated_base_and_adapter(good, tmp_path):
    base, lora = good
    tb = tmp_path / "tbase"
    shutil.copytree(base, tb)
    data = (tb / "model.safetensors").read_bytes()
    (tb / "model.safetensors").write_bytes(data[: len(data) - 1000])
    _expect_error(tb, lora, tmp_path / "out", "model.safetensors is truncated", "re-copy")

    tl = tmp_path / "tlora"
    shutil.copytree(lora, tl)
    (tl / "peft_model-00001-of-00001.safetensors").write_bytes(b"\x10\x00")
    _expect_error(base, tl, tmp_path / "out", "is not a safetensors file")


def test_config_problems(good, tmp_path):
    base, lora = good
    no_r = _edit_adapter(lora, tmp_path / "no_r", lambda ad: None,
                         lambda cfg: {k: v for k, v in cfg.items() if k != "r"} | {"lora_rank": 4})
    _expect_error(base, no_r, tmp_path / "out", "lacks the LoRA rank key 'r'", "lora_rank")
    pissa = _edit_adapter(lora, tmp_path / "pissa", lambda ad: None, lambda cfg: {**cfg, "pissa": True})
    _expect_error(base, pissa, tmp_path / "out", "pissa=true")
    unresolved = _edit_adapter(lora, tmp_path / "alpha", lambda ad: None, lambda cfg: {**cfg, "lora_alpha": -1})
    _expect_error(base, unresolved, tmp_path / "out", "lora_alpha=-1 must be positive", "means 2·r")


def test_inconsistent_stored_scaling_is_reported(good, tmp_path):
    base, lora = good
    odd = _edit_adapter(lora, tmp_path / "odd", lambda ad: None, lambda cfg: {**cfg, "scaling": 99.0})
    res = merge_lora(base, odd, tmp_path / "out", log=lambda s: None)
    assert res.report["scaling"] == 16 / 4 and "scaling=99" in res.report["warnings"][0]


def test_merge_command_starts_without_ray_or_paddle():
    code = ("import sys; from ocrvl_ray.cli import main; import ocrvl_ray.cli.merge, ocrvl_ray.cli.fix, "
            "ocrvl_ray.cli.verify, ocrvl_ray.export.merge, ocrvl_ray.export.fix, ocrvl_ray.export.verify; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'ray', 'paddle', 'paddleformers', 'torch'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cli_prints_one_line_and_keeps_existing_output(good, tmp_path, capsys):
    base, lora = good
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert ocrvl(["merge", "--base", str(base), "--lora", str(lora), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "already exists; pass --overwrite" in err
    assert (out / "keep.txt").read_text() == "x"
    assert ocrvl(["merge", "--base", str(base), "--lora", str(lora), "--out", str(base / "sub")]) == 2
    assert "overlaps the base folder" in capsys.readouterr().err
    assert ocrvl(["merge", "--base", str(base), "--lora", str(lora), "--out", str(out), "--overwrite"]) == 0
    assert (out / "model.safetensors").is_file() and not (out / "keep.txt").exists()
