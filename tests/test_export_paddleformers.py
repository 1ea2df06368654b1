"""A genuine paddleformers LoRA checkpoint (tiny Qwen2, fp32, CPU, a real Trainer run): our streaming merge
equals paddleformers' own ``LoRAModel.merge()`` transposed to HF layout, for both checkpoint formats; and
``ocrvl fix`` repairs the Paddle-layout file paddleformers itself writes after merge + restore."""
from __future__ import annotations

import numpy as np
import pytest

from ocrvl_ray.export.fix import fix_file
from ocrvl_ray.export.merge import merge_lora
from ocrvl_ray.export.st import TensorSet, read_tensor
from ocrvl_ray.export.verify import verify_export

TARGETS = [".*q_proj.*", ".*k_proj.*", ".*v_proj.*", ".*o_proj.*", ".*gate_proj.*", ".*up_proj.*", ".*down_proj.*"]


def _load(path):
    ts = TensorSet.open(path)
    return {k: read_tensor(v) for k, v in ts.tensors.items()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import paddle
    from paddleformers.peft import LoRAConfig, LoRAModel
    from paddleformers.trainer import Trainer, TrainingArguments
    from paddleformers.transformers import Qwen2Config, Qwen2ForCausalLM

    root = tmp_path_factory.mktemp("pf")
    paddle.seed(7)
    model = Qwen2ForCausalLM(Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64))
    model.save_pretrained(str(root / "base"), save_to_hf=True)  # the HF-layout base folder
    lm = LoRAModel(model, LoRAConfig(target_modules=TARGETS, r=4, lora_alpha=8, rslora=True, dtype="float32"))
    for name, p in lm.model.named_parameters():  # B starts at zero; give the update real size before training
        if "lora_B" in name:
            p.set_value(paddle.randn(p.shape) * 0.05)

    class Tokens(paddle.io.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            ids = (np.arange(8) * (i + 1)) % 64
            return {"input_ids": ids.astype("int64"), "labels": ids.astype("int64")}

    args = TrainingArguments(output_dir=str(root / "run"), max_steps=2, save_steps=2, per_device_train_batch_size=2,
                             unified_checkpoint=True, save_to_hf=True, device="cpu", learning_rate=0.05,
                             report_to=["none"], disable_tqdm=True, logging_steps=1)
    Trainer(model=lm, args=args, train_dataset=Tokens()).train()
    lm.save_pretrained(str(root / "pdparams"))  # the other format: lora_model_state.pdparams

    linear = {f"{n}.weight" for n, layer in lm.model.named_sublayers() if isinstance(layer, paddle.nn.Linear)}
    lm.merge()  # paddleformers' own merge, in place, fp32
    expected = {}
    for k, v in lm.model.state_dict().items():
        if "lora_" in k:
            continue
        a = v.numpy()
        expected[k] = np.ascontiguousarray(a.T) if k in linear else a  # Paddle [in,out] -> HF [out,in]
    lm.restore_original_model()
    lm.model.save_pretrained(str(root / "paddle_merged"), safe_serialization=True)  # the notebook path
    return root, expected


def test_unified_and_pdparams_checkpoints_match_paddleformers_merge(trained, tmp_path):
    root, expected = trained
    ckpt = root / "run" / "checkpoint-2"
    assert (ckpt / "peft_model.safetensors.index.json").is_file()
    assert (root / "pdparams" / "lora_model_state.pdparams").is_file()
    for name, lora in (("unified", ckpt), ("pdparams", root / "pdparams")):
        out = tmp_path / name
        res = merge_lora(root / "base", lora, out, log=lambda s: None)
        assert len(res.report["merged"]) == 14 and res.report["scaling"] == pytest.approx(8 / 2)  # rslora
        got = _load(out)
        assert set(got) == set(expected)
        for k, want in expected.items():
            assert got[k].shape == want.shape, k
            np.testing.assert_allclose(got[k], want, rtol=0, atol=1e-6, err_msg=f"{name}: {k}")
        assert verify_export(out, root / "base", lora).ok


def test_bf16_pdparams_adapter(trained, tmp_path):
    """A bf16 adapter saved by paddle.save (Paddle hands bf16 back as raw uint16) merges like its fp32 values."""
    import ml_dtypes
    import paddle

    root, _ = trained
    sd = paddle.load(str(root / "pdparams" / "lora_model_state.pdparams"))
    ckpt = tmp_path / "bf16"
    ckpt.mkdir()
    paddle.save({k: v.astype("bfloat16") for k, v in sd.items()}, str(ckpt / "lora_model_state.pdparams"))
    (ckpt / "lora_config.json").write_text((root / "pdparams" / "lora_config.json").read_text())
    merge_lora(root / "base", ckpt, tmp_path / "out", log=lambda s: None)

    base, got = _load(root / "base"), _load(tmp_path / "out")
    for k in [k for k in sd if k.endswith(".lora_A")]:
        mod = k[: -len(".lora_A")]
        A = sd[k].numpy().astype(ml_dtypes.bfloat16).astype(np.float32)
        B = sd[mod + ".lora_B"].numpy().astype(ml_dtypes.bfloat16).astype(np.float32)
        want = base[mod + ".weight"] + 8 / 2 * (A @ B).T
        np.testing.assert_allclose(got[mod + ".weight"], want, rtol=0, atol=1e-6, err_msg=mod)


def test_fix_repairs_paddleformers_paddle_layout_file(trained, tmp_path):
    root, expected = trained
    merged_file = root / "paddle_merged" / "model.safetensors"
    raw = _load(merged_file)
    square = "model.layers.0.self_attn.q_proj.weight"
    assert raw[square].shape == (32, 32)
    assert raw["model.layers.0.mlp.down_proj.weight"].shape == (48, 32)       # Paddle layout [in, out]
    assert any(k.endswith("o_proj.bias") for k in raw)                        # restore_original_model's zero bias
    res = fix_file(merged_file, root / "base", tmp_path / "fixed.safetensors", log=lambda s: None)
    assert res.square_decisions[square][0] == "transposed"
    assert res.dropped_bias and all(k.endswith(".bias") for k in res.dropped_bias)
    got = _load(tmp_path / "fixed.safetensors")
    assert set(got) == set(expected)
    for k, want in expected.items():
        np.testing.assert_allclose(got[k], want, rtol=0, atol=1e-6, err_msg=k)
