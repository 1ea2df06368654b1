"""A PEFT adapter (``PeftModel.save_pretrained`` on transformers' PaddleOCR-VL, what ``ocrvl train
engine=transformers`` writes) through ``ocrvl merge`` and ``ocrvl eval engine=transformers``, on a tiny random
PaddleOCR-VL built offline: the export equals PEFT's own ``merge_and_unload`` tensor for tensor, keeps the hub key
layout and config.json, loads in transformers and decodes greedily like base + adapter under PEFT; eval scores the
base, base + adapter in memory and the export; LoRA variants that are not W + scaling·B@A are one line."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ocrvl_ray.cli import main
from ocrvl_ray.demo.tiny_paddleocr_vl import save_random_model
from ocrvl_ray.eval.engines.transformers import load_config, model_param_name

ROOT = Path(__file__).resolve().parents[2]
#: LLM, vision and projector Linears, and lm_head: every part whose names transformers renames at load time
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "fc1", "fc2", "linear_1",
           "linear_2", "lm_head"]


def load(folder):
    from transformers import PaddleOCRVLForConditionalGeneration

    return PaddleOCRVLForConditionalGeneration.from_pretrained(folder, config=load_config(str(folder))).eval()


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """The base, a PEFT rsLoRA adapter with random A and B on every target (B = 0 would change nothing), and
    ``ocrvl merge``'s export of the two."""
    from peft import LoraConfig, get_peft_model

    root = tmp_path_factory.mktemp("peft")
    base = save_random_model(root / "base")
    torch.manual_seed(3)
    peft = get_peft_model(load(base), LoraConfig(r=4, lora_alpha=6, use_rslora=True, target_modules=TARGETS,
                                                 init_lora_weights=False))
    peft.save_pretrained(root / "adapter")
    assert main(["merge", "--base", str(base), "--lora", str(root / "adapter"), "--out", str(root / "export")]) == 0
    return {"base": base, "adapter": root / "adapter", "export": root / "export"}


def test_the_export_equals_peft_merge_and_unload_in_the_hub_layout(made):
    from peft import PeftModel
    from safetensors.torch import load_file

    base_w, export_w = load_file(made["base"] / "model.safetensors"), load_file(made["export"] / "model.safetensors")
    assert list(export_w) == list(base_w)                    # the hub names, in the base's order
    assert {k.split(".", 1)[0] for k in export_w} == {"model", "visual", "mlp_AR", "lm_head"}
    pos = "visual.vision_model.embeddings.packing_position_embedding.weight"
    assert torch.equal(export_w[pos], base_w[pos])           # kept (PaddleFormers #3680)
    merged = PeftModel.from_pretrained(load(made["base"]), made["adapter"]).merge_and_unload().state_dict()
    changed = 0
    for key, w in export_w.items():
        if key == pos:                                      # not a parameter of transformers' model
            continue
        ref = merged[model_param_name(key)]
        assert torch.allclose(w, ref, rtol=1e-5, atol=1e-6), (key, (w - ref).abs().max())
        changed += not torch.equal(w, base_w[key])
    # 2 LLM layers x 7, 1 vision layer x 5 (q, k, v, fc1, fc2), the projector's 2, lm_head
    assert changed == 2 * 7 + 5 + 2 + 1
    report = json.loads((made["export"] / "merge_report.json").read_text())
    assert report["rslora"] is True and report["scaling"] == pytest.approx(6 / 2)
    assert set(report["module_families"]) >= {"llm:q_proj", "vision:fc1", "projector:linear_1", "llm:lm_head"}
    # the base's config.json as is (its tie_word_embeddings is already a bool), the rest of the folder too
    for name in ("config.json", "tokenizer.json", "preprocessor_config.json"):
        assert (made["export"] / name).read_bytes() == (made["base"] / name).read_bytes(), name


def test_the_export_loads_in_transformers_and_decodes_like_base_plus_adapter(made):
    from PIL import Image
    from peft import PeftModel
    from transformers import PaddleOCRVLForConditionalGeneration

    _, info = PaddleOCRVLForConditionalGeneration.from_pretrained(made["export"], output_loading_info=True)
    assert not info["missing_keys"] and not info["mismatched_keys"], info
    from ocrvl_ray.eval.engines.transformers import TransformersGenerator
    from ocrvl_ray.eval.models import parse_model

    g = TransformersGenerator(parse_model(str(made["base"]), "transformers"), "v1", "OCR:", 8, 8, 16)
    enc = g.inputs([Image.new("RGB", (200, 60), (250, 250, 240)), Image.new("RGB", (90, 300), (90, 20, 140))])

    def greedy(model):
        with torch.inference_mode():
            return model.generate(**enc, max_new_tokens=8, do_sample=False, use_cache=True,
                                  pad_token_id=g.tokenizer.pad_token_id)

    base_ids = greedy(g.model)
    peft_ids = greedy(PeftModel.from_pretrained(g.model, made["adapter"]))
    export_ids = greedy(load(made["export"]))
    assert torch.equal(export_ids, peft_ids)
    assert not torch.equal(peft_ids, base_ids)               # the adapter changes what the model says


@pytest.mark.parametrize("setting", [{"use_dora": True}, {"init_lora_weights": "pissa"},
                                     {"modules_to_save": ["lm_head"]}, {"rank_pattern": {"q_proj": 8}},
                                     {"peft_type": "LOHA"}])
def test_a_lora_variant_merge_cannot_fold_is_one_line(made, tmp_path, capsys, setting):
    adapter = shutil.copytree(made["adapter"], tmp_path / "adapter")
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**cfg, **setting}))
    assert main(["merge", "--base", str(made["base"]), "--lora", str(adapter), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    key = next(iter(setting))
    assert len(err.splitlines()) == 1 and "adapter_config.json" in err and "plain LoRA" in err, err
    assert key in err or setting[key] in err, err
    assert not (tmp_path / "x").exists()


def test_an_adapter_module_the_base_lacks_is_named_in_the_bases_layout(made, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    adapter = shutil.copytree(made["adapter"], tmp_path / "adapter")
    weights = load_file(adapter / "adapter_model.safetensors")
    save_file({k.replace("layers.1.self_attn.q_proj", "layers.1.self_attn.qq_proj"): v for k, v in weights.items()},
              adapter / "adapter_model.safetensors", metadata={"format": "pt"})
    assert main(["merge", "--base", str(made["base"]), "--lora", str(adapter), "--out", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.strip() == (
        "ocrvl merge: error: adapter module 'base_model.model.model.language_model.layers.1.self_attn.qq_proj' has "
        "no base weight 'model.layers.1.self_attn.qq_proj.weight' (closest base key: "
        "'model.layers.1.self_attn.q_proj.weight'); is this adapter for this base model?")


def test_an_lm_head_copy_that_is_not_the_bases_is_refused(made, tmp_path, capsys):
    """PEFT saves the frozen lm_head beside its LoRA (save_embedding_layers); one from another base is refused."""
    from safetensors.torch import load_file, save_file

    adapter = shutil.copytree(made["adapter"], tmp_path / "adapter")
    weights = load_file(adapter / "adapter_model.safetensors")
    weights["base_model.model.lm_head.base_layer.weight"] += 1
    save_file(weights, adapter / "adapter_model.safetensors", metadata={"format": "pt"})
    assert main(["merge", "--base", str(made["base"]), "--lora", str(adapter), "--out", str(tmp_path / "x")]) == 2
    assert capsys.readouterr().err.strip() == (
        "ocrvl merge: error: adapter tensor 'base_model.model.lm_head.base_layer.weight' is a copy of base weight "
        "'lm_head.weight' with other values; ocrvl merge folds LoRA A/B into this base only: pass the base the "
        "adapter was trained on")


def test_eval_scores_base_the_adapter_in_memory_and_the_export(made, tmp_path):
    """The adapter as the trainer's Ray checkpoint holds it (``<checkpoint>/adapter``), merged in memory."""
    import pyarrow.parquet as pq

    from ocrvl_ray.testing.sink import EVAL_LABELS, tiny_eval_lmdb

    ckpt = tmp_path / "checkpoint_000001"
    shutil.copytree(made["adapter"], ckpt / "adapter")
    lmdb = tiny_eval_lmdb(tmp_path / "valid_layout.lmdb")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    out = tmp_path / "eval"
    p = subprocess.run([sys.executable, "-m", "ocrvl_ray.cli", "eval", "--model", f"base={made['base']}",
                        "--model", f"lora={made['base']}+{ckpt}", "--model", f"ft={made['export']}", "--data",
                        str(lmdb), "--out", str(out), "engine=transformers", "batch_size=4", "max_new_tokens=4",
                        "bootstrap=20"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert p.returncode == 0, (p.stdout[-2000:], p.stderr[-3000:])
    t = pq.read_table(out / "predictions.parquet").to_pydict()
    assert sorted(t["reference"]) == sorted(EVAL_LABELS[(p + j) % 4] for p in range(2) for j in range(2))
    assert t["prediction:lora"] == t["prediction:ft"] != t["prediction:base"]
    m = json.loads((out / "metrics.json").read_text())
    assert [x["kind"] for x in m["run"]["models"]] == ["base", "base+lora", "export"]
    assert {(c["a"], c["b"]) for c in m["comparisons"]} >= {("base", "ft")}
