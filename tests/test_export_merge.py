"""Streaming merge on a tiny PaddleOCR-VL-shaped bf16 base (real tensor names, scaled shapes) + verify."""
from __future__ import annotations

import json
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from safetensors import safe_open

from ocrvl_ray.cli import main as ocrvl
from ocrvl_ray.export.merge import merge_lora
from ocrvl_ray.export.st import TensorSet, file_sha256, read_tensor, save_file
from ocrvl_ray.export.verify import verify_export
from ocrvl_ray.testing import export as sy

SPEC = sy.model_spec(sy.TINY_DIMS, max_layers=2)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("ocrvl")
    base = sy.write_base(root / "base", SPEC)
    lora = sy.write_adapter(root / "lora", SPEC, r=4, lora_alpha=8)
    return root, base, lora


def _load(folder):
    ts = TensorSet.open(folder)
    return {k: read_tensor(v) for k, v in ts.tensors.items()}


def _reference(base, lora, rslora=False):
    """Expected export computed independently: whole tensors, HF layout, fp32 then one rounding."""
    W, ad = _load(base), {k: read_tensor(v) for k, v in TensorSet.open(lora, "peft_model").tensors.items()}
    cfg = json.loads((lora / "lora_config.json").read_text())
    scaling = cfg["lora_alpha"] / (np.sqrt(cfg["r"]) if rslora else cfg["r"])
    out = dict(W)
    for k in ad:
        if k.endswith(".lora_A"):
            mod = k[: -len(".lora_A")]
            A, B = ad[k].astype(np.float32), ad[mod + ".lora_B"].astype(np.float32)
            w = W[mod + ".weight"]
            out[mod + ".weight"] = (w.astype(np.float32) + scaling * (A @ B).T).astype(w.dtype)
    return out


def test_merge_all_linear_layers_matches_reference_and_verifies(model, tmp_path):
    root, base, lora = model
    before = {p.name: file_sha256(p) for p in list(base.iterdir()) + list(lora.iterdir())}
    res = merge_lora(base, lora, tmp_path / "export", chunk_bytes=4096)  # small chunks: many row blocks per tensor
    out = tmp_path / "export"

    got, want = _load(out), _reference(base, lora)
    assert set(got) == {n for n, _ in SPEC}
    for k in want:
        assert got[k].dtype == want[k].dtype == np.dtype(ml_dtypes.bfloat16)
        np.testing.assert_array_equal(got[k].view(np.uint16), want[k].view(np.uint16), err_msg=k)

    n_linear = sum(sy.is_linear(n, s) for n, s in SPEC)
    rep = json.loads((out / "merge_report.json").read_text())
    assert len(rep["merged"]) == n_linear and len(rep["untouched"]) == len(SPEC) - n_linear
    assert rep["merged"]["mlp_AR.linear_1.weight"]["rank"] == 4
    assert rep["merged"]["mlp_AR.linear_1.weight"]["scaling"] == 2.0
    ad = {k: read_tensor(v).astype(np.float32) for k, v in TensorSet.open(lora, "peft_model").tensors.items()}
    m = "model.layers.1.self_attn.q_proj"
    assert rep["merged"][m + ".weight"]["max_abs_delta"] == pytest.approx(
        2.0 * float(np.abs(ad[m + ".lora_A"] @ ad[m + ".lora_B"]).max()), rel=1e-6)
    assert rep["input_sha256"][str((base / "model.safetensors").resolve())] == file_sha256(base / "model.safetensors")
    assert "vision:q_proj" in rep["module_families"] and "projector:linear_1" in rep["module_families"]
    assert res.warnings == []

    # HF layout file set: weights as model.safetensors with format=pt, every support file copied verbatim
    with safe_open(str(out / "model.safetensors"), "np") as f:
        assert f.metadata() == {"format": "pt"}
    for name in ["config.json", "preprocessor_config.json", "generation_config.json", "tokenizer_config.json",
                 "chat_template.jinja", "modeling_paddleocr_vl.py"]:
        assert (out / name).read_bytes() == (base / name).read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers
    assert before == {p.name: file_sha256(p) for p in list(base.iterdir()) + list(lora.iterdir())}

    v = verify_export(out, base, lora)
    assert v.ok, v.lines()
    assert v.counts["merged checked"] == n_linear and v.counts["bit-identical to base"] == len(SPEC) - n_linear
    assert ocrvl(["verify", "--export", str(out), "--base", str(base), "--lora", str(lora)]) == 0


def test_sharded_export_and_rslora(model, tmp_path):
    root, base, _ = model
    lora = sy.write_adapter(tmp_path / "lora_rs", SPEC, r=4, lora_alpha=8, rslora=True, seed=7)
    out = tmp_path / "export"
    rc = ocrvl(["merge", "--base", str(base), "--lora", str(lora), "--out", str(out), "--max-shard-size", "40KB",
                "--verify"])
    assert rc == 0
    index = json.loads((out / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    assert not (out / "model.safetensors").exists()
    got, want = _load(out), _reference(base, lora, rslora=True)
    assert json.loads((out / "merge_report.json").read_text())["scaling"] == pytest.approx(8 / 2.0)
    for k in want:
        np.testing.assert_array_equal(got[k].view(np.uint16), want[k].view(np.uint16), err_msg=k)

    # a sharded base (index + shards) streams through too, with every shard hashed
    again = merge_lora(out, lora, tmp_path / "again", log=lambda s: None)
    assert sorted(Path(p).name for p in again.report["input_sha256"] if Path(p).name.startswith("model-")) == shards
    assert verify_export(tmp_path / "again", out, lora).ok


def test_adapter_key_variants_and_under_targeting_warning(model, tmp_path, capsys):
    """`base_model.model.` prefix, `.weight` suffix, HF-PEFT orientation; only o_proj/down_proj -> warning."""
    root, base, _ = model
    plain = sy.write_adapter(tmp_path / "plain", SPEC, r=4, lora_alpha=8,
                             select=lambda n, s: n.endswith(("o_proj.weight", "down_proj.weight")))
    ad = {k: read_tensor(v) for k, v in TensorSet.open(plain, "peft_model").tensors.items()}
    variant = tmp_path / "variant"
    variant.mkdir()
    (variant / "lora_config.json").write_text((plain / "lora_config.json").read_text())
    renamed = {}
    for k, a in ad.items():
        hf = "layers.0." in k  # layer 0 in HF-PEFT orientation, layer 1 Paddle with decorations
        renamed[f"base_model.model.{k}.weight"] = np.ascontiguousarray(a.T) if hf else a
    save_file(renamed, variant / "peft_model.safetensors")

    r1 = merge_lora(base, plain, tmp_path / "e1")
    r2 = merge_lora(base, variant, tmp_path / "e2")
    assert r1.warnings and "o_proj/down_proj" in r1.warnings[0]
    assert "WARNING" in capsys.readouterr().out
    assert set(r1.report["module_families"]) == {"llm:o_proj", "llm:down_proj"}
    a, b = _load(tmp_path / "e1"), _load(tmp_path / "e2")
    for k in a:
        np.testing.assert_array_equal(a[k].view(np.uint16), b[k].view(np.uint16), err_msg=k)


def test_verify_reports_readable_diffs(model, tmp_path, capsys):
    root, base, lora = model
    out = tmp_path / "export"
    merge_lora(base, lora, out)
    n_linear = sum(sy.is_linear(n, s) for n, s in SPEC)
    plain = verify_export(out, base)  # no --lora: merge_report.json says which tensors may differ
    assert plain.ok and plain.counts["changed (not judged without --lora)"] == n_linear
    t = _load(out)
    # 1) an untouched tensor changed, 2) a merged tensor left unmerged, 3) Paddle-layout Linear, 4) missing file
    t["model.norm.weight"] = (t["model.norm.weight"].astype(np.float32) + 1).astype(ml_dtypes.bfloat16)
    t["model.layers.0.mlp.up_proj.weight"] = _load(base)["model.layers.0.mlp.up_proj.weight"]
    t["model.layers.1.mlp.down_proj.weight"] = np.ascontiguousarray(t["model.layers.1.mlp.down_proj.weight"].T)
    save_file(t, out / "model.safetensors")
    (out / "chat_template.jinja").unlink()

    v = verify_export(out, base, lora)
    assert not v.ok
    assert v.problems["untouched tensors changed"] == [
        "model.norm.weight differs from the base but the adapter does not touch it"]
    assert [x.split(":")[0] for x in v.problems["merged values"]] == ["model.layers.0.mlp.up_proj.weight"]
    assert "Paddle layout" in v.problems["shape"][0] and "down_proj" in v.problems["shape"][0]
    assert v.problems["missing files"] == ["chat_template.jinja"]
    assert "untouched tensors changed" in verify_export(out, base).problems  # caught by the report alone too
    assert ocrvl(["verify", "--export", str(out), "--base", str(base), "--lora", str(lora)]) == 1
    printed = capsys.readouterr().out
    assert "FAIL missing files (1):" in printed and "FAILED" in printed


def test_unindexed_shard_name_base_and_export(model, tmp_path):
    """The upstream complaint: `model-00001-of-00001.safetensors` without an index. As a base it is read; as an
    export verify names the problem; our export always uses `model.safetensors`."""
    root, base, lora = model
    odd = tmp_path / "odd_base"
    odd.mkdir()
    for p in base.iterdir():
        (odd / ("model-00001-of-00001.safetensors" if p.name == "model.safetensors" else p.name)).write_bytes(
            p.read_bytes())
    merge_lora(odd, lora, tmp_path / "export", log=lambda s: None)
    assert (tmp_path / "export" / "model.safetensors").is_file()
    assert verify_export(tmp_path / "export", base, lora).ok

    (tmp_path / "export" / "model.safetensors").rename(tmp_path / "export" / "model-00001-of-00001.safetensors")
    v = verify_export(tmp_path / "export", base, lora)
    assert "model-00001-of-00001.safetensors" in v.problems["weights"][0]
