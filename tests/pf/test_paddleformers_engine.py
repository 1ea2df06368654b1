"""engine=paddleformers end to end with PaddleFormers 1.x's real trainer, on CPU, in .venv-paddleformers.

A tiny random PaddleOCR-VL 1.5 base (built here), an LMDB written by our sink writer, a few LoRA steps under
Ray Train (1 worker), checkpoints in Ray storage, ``ocrvl merge``, and the merged export's logits against
PaddleFormers' own unmerged base + LoRA forward. ``tests/test_train_paddleformers.py`` runs this file in that
venv from the default test run. CPU-only settings live in ``CPU`` below.
"""
from __future__ import annotations

import json
import re
import shutil
from importlib.metadata import version

import numpy as np
import pytest

if int(version("paddleformers").split(".")[0]) < 1:
    pytest.skip("needs PaddleFormers 1.x: runs in .venv-paddleformers (tests/test_train_paddleformers.py calls it)",
                allow_module_level=True)

from safetensors.numpy import load_file  # noqa: E402

from ocrvl_ray import cli  # noqa: E402
from ocrvl_ray.lmdb.rows import SinkPage, SinkSample  # noqa: E402
from ocrvl_ray.testing.sink import tiny_jpeg  # noqa: E402
from ocrvl_ray.lmdb.writer import LmdbWriter  # noqa: E402
from ocrvl_ray.train.config import load_train_config  # noqa: E402
from ocrvl_ray.train.engines.lmdb_plugin import UPSTREAM_AUGMENT, close_envs, image_ref, plugin_class  # noqa: E402
from ocrvl_ray.train.engines.paddleformers import register_template, write_rows  # noqa: E402
from ocrvl_ray.core.generations import get  # noqa: E402
from ocrvl_ray.train.run import fit  # noqa: E402

# CPU only: no flash attention kernels, no bf16 conv2d on CPU.
CPU = ["device=cpu", "bf16=false", "fp16=false", "_attn_implementation=eager"]
LABELS = ["번호 12 금액", "합계 2024", "text 7", "번호 금액"]


def write_lmdb(path):
    pages = [SinkPage(f"p{p}", "ok", "", [SinkSample(tiny_jpeg(10 * p + j, (64 + 8 * j, 32)), LABELS[(p + j) % 4],
                                                     f"p{p}_{j}.jpg", 64 + 8 * j, 32, "{}", "word", "text")
                                          for j in range(2)])
             for p in range(3)]
    with LmdbWriter(str(path)) as w:
        assert w.write_pages(pages).samples == 6
    return path


@pytest.fixture(scope="module")
def pf_run(ray_local, tmp_path_factory):
    from ocrvl_ray.demo.tiny_paddleocr_vl import build_tiny_paddleocr_vl

    root = tmp_path_factory.mktemp("pf")
    base = build_tiny_paddleocr_vl(root / "PaddleOCR-VL-1.5-tiny", "v1.5")
    pristine = root / "base-pristine"
    shutil.copytree(base, pristine)          # PaddleFormers writes metadata into folders it loads
    lmdb = write_lmdb(root / "train_layout.lmdb")
    storage = root / "storage"
    result = fit(*load_train_config(None, [
        "engine=paddleformers", "num_workers=1", "use_gpu=false", f"output_dir={root / 'run'}",
        f"storage_path={storage}", "run_name=pf", "max_failures=0", "watch_interval_s=0.5",
        f"model_name_or_path={base}", f"train_lmdb_paths={lmdb}", "max_steps=4", "save_steps=2", "logging_steps=1",
        "per_device_train_batch_size=1", "learning_rate=2e-2", "lora_rank=4", "max_seq_len=512", "report_to=none",
        "do_eval=false", *CPU], env={}))
    return {"root": root, "base": base, "pristine": pristine, "lmdb": lmdb, "storage": storage / "pf",
            "result": result}


def test_lora_checkpoints_reported_to_storage(pf_run):
    import paddle
    from paddleformers.transformers import PaddleOCRVLForConditionalGeneration

    assert pf_run["result"].error is None
    assert pf_run["result"].metrics["step"] == 4 and np.isfinite(pf_run["result"].metrics["loss"])
    for step in (2, 4):
        d = pf_run["storage"] / f"checkpoint-{step}"
        assert {"peft_model-00001-of-00001.safetensors", "lora_config.json"} <= {p.name for p in d.iterdir()}
    ckpt = pf_run["storage"] / "checkpoint-4"
    lc = json.loads((ckpt / "lora_config.json").read_text())
    assert (lc["r"], lc["lora_alpha"]) == (4, 8)         # PaddleFormers hard-codes lora_alpha = 2 * r
    adapted = {k[: -len(".lora_A")] for k in load_file(str(ckpt / "peft_model-00001-of-00001.safetensors"))
               if k.endswith(".lora_A")}
    model = PaddleOCRVLForConditionalGeneration.from_pretrained(str(pf_run["base"]), dtype="float32")
    linears = {n for n, m in model.named_sublayers() if isinstance(m, paddle.nn.Linear)}
    assert adapted == linears - {"lm_head"}               # LoRA on every linear but the output head
    engine = json.loads((pf_run["root"] / "run.data" / "engine.json").read_text())
    assert engine["model_version"] == "v1.5" and "PaddleOCR-VL-1.5" in engine["evidence"]
    assert engine["data"]["rows"] == 6


def _inputs(base, lmdb):
    from PIL import Image
    from paddleformers.transformers import AutoProcessor

    from ocrvl_ray.lmdb.reader import LmdbReader

    reader = LmdbReader(str(lmdb))
    image: Image.Image = reader.image(0)
    reader.env.close()
    processor = AutoProcessor.from_pretrained(str(base))
    text = "<|begin_of_sentence|>User: <|IMAGE_START|><|IMAGE_PLACEHOLDER|><|IMAGE_END|>OCR:\nAssistant:\n번호"
    return dict(processor(text=[text], images=[image], return_tensors="pd"))


def _logits(model, inputs) -> np.ndarray:
    import paddle

    model.eval()
    with paddle.no_grad():
        out = model(**inputs, return_dict=True)
        return (out.logits if hasattr(out, "logits") else out[0]).astype("float32").numpy()


def test_merged_export_equals_base_plus_lora(pf_run):
    from paddleformers.peft import LoRAModel
    from paddleformers.transformers import PaddleOCRVLForConditionalGeneration as M

    ckpt, out = pf_run["storage"] / "checkpoint-4", pf_run["root"] / "export"
    assert cli.main(["merge", "--base", str(pf_run["pristine"]), "--lora", str(ckpt), "--out", str(out)]) == 0
    inputs = _inputs(pf_run["pristine"], pf_run["lmdb"])
    merged = _logits(M.from_pretrained(str(out), dtype="float32"), inputs)
    base_copy = pf_run["root"] / "base-for-lora"
    shutil.copytree(pf_run["pristine"], base_copy)
    base = _logits(M.from_pretrained(str(base_copy), dtype="float32"), inputs)
    lora = LoRAModel.from_pretrained(M.from_pretrained(str(base_copy), dtype="float32"), str(ckpt))
    want = _logits(lora, inputs)                          # PaddleFormers' own unmerged x@W + x@A@B*scaling
    assert np.abs(want - base).max() > 1e-3               # the trained adapter changes the model
    np.testing.assert_allclose(merged, want, rtol=0, atol=1e-4)


@pytest.mark.parametrize("version, assistant", [("v1", "Assistant: "), ("v1.5", "Assistant:\n"),
                                                ("v1.6", "Assistant:\n")])
def test_tokenised_sample_uses_the_generation_template(pf_run, tmp_path, version, assistant):
    from paddleformers.datasets.loader import create_dataset
    from paddleformers.datasets.template.template import get_template_and_fix_tokenizer
    from paddleformers.transformers import AutoProcessor, AutoTokenizer

    gen = get(version)
    name = register_template(gen, augment=False)
    files, stats = write_rows([str(pf_run["lmdb"])], tmp_path, gen.prompts["ocr"], clean=True, tag="t")
    base = pf_run["pristine"]
    tok = AutoTokenizer.from_pretrained(str(base))
    cfg = dict(tokenizer=tok, processor=AutoProcessor.from_pretrained(str(base)), max_seq_len=512, random_seed=1,
               num_replicas=1, rank=0, num_samples_each_epoch=10, random_shuffle=False, greedy_intokens=False,
               packing=False, mix_strategy="concat", encode_one_turn=True, use_template=True, is_pretraining=False,
               truncate_packing=False, stage="VL-SFT", template_backend="custom", split_multi_turn=False,
               dataset_type="iterable", dtype="float32", dataset_num_proc=1, template=name, tool_format=None,
               default_system=None)
    cfg["template_instance"] = get_template_and_fix_tokenizer(cfg)
    seq = next(iter(create_dataset(task_group=files[0], task_group_prob="1.0", sub_dataset_type="messages",
                                   is_valid=True, **cfg)))
    seq = seq[0] if isinstance(seq, list) else seq
    text = re.sub(r"(<\|IMAGE_PLACEHOLDER\|>)+", "<|IMAGE_PLACEHOLDER|>", tok.decode(seq.token_ids))
    assert text == ("<|begin_of_sentence|>User: <|IMAGE_START|><|IMAGE_PLACEHOLDER|><|IMAGE_END|>OCR:\n"
                    f"{assistant}{LABELS[0]}<|end_of_sentence|>")
    assert stats == {"rows": 6, "skipped": {}}


def test_eval_rows_are_never_augmented(pf_run):
    from PIL import Image
    from paddleformers.transformers import AutoProcessor

    from ocrvl_ray.lmdb.reader import LmdbReader

    proc = AutoProcessor.from_pretrained(str(pf_run["pristine"])).image_processor
    kw = dict(image_processor=proc, image_min_pixels=proc.min_pixels, image_max_pixels=proc.max_pixels)
    lmdb = str(pf_run["lmdb"])
    close_envs()                       # the plugin's handle from earlier tests (one open per path and process)
    reader = LmdbReader(lmdb)
    src = reader.image(0)
    reader.env.close()
    h, w = proc.get_smarted_resize(src.height, src.width, min_pixels=proc.min_pixels,
                                   max_pixels=proc.max_pixels)[0]
    plain = np.asarray(src.resize((w, h)))
    always = {k: 1.0 for k in UPSTREAM_AUGMENT if k.endswith("_p")}
    cls = plugin_class()
    on = cls("<|IMAGE_PLACEHOLDER|>", augment=always)
    off = cls("<|IMAGE_PLACEHOLDER|>", augment=False)

    def pixels(plugin, ref):
        img: Image.Image = plugin._regularize_images([ref], **kw)["images"][0]
        return np.asarray(img)

    clean, train = image_ref(lmdb, 1, clean=True), image_ref(lmdb, 1)
    for _ in range(3):
        np.testing.assert_array_equal(pixels(on, clean), plain)      # eval rows: resize only
    assert any(pixels(on, train).shape != plain.shape or (pixels(on, train) != plain).any() for _ in range(3))
    np.testing.assert_array_equal(pixels(off, train), plain)         # augment=false: training rows too



def test_no_paddleformers_argument_is_taken_for_a_typo_of_our_keys():
    import dataclasses

    from paddleformers.cli.hparams.parser import _TRAIN_ARGS

    from ocrvl_ray.train.config import OUR_KEYS, typos_of_ours
    from ocrvl_ray.train.engines.paddleformers import ENGINE_KEYS

    fields = {f.name for cls in _TRAIN_ARGS for f in dataclasses.fields(cls)} | set(ENGINE_KEYS)
    assert len(fields) > 400 and "lora_rank" in fields
    assert typos_of_ours(sorted(fields - OUR_KEYS)) == []
