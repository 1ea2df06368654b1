"""``ocrvl eval engine=transformers`` on a tiny random PaddleOCR-VL built offline in the hub layout (CPU): the
checkpoint's own ``lm_head`` is loaded, batched greedy text equals one-by-one, a base, the base + a LoRA in memory
and its ``ocrvl merge`` export are scored end to end, and a folder that is not PaddleOCR-VL is one line before Ray."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ocrvl_ray.cli.eval import main
from ocrvl_ray.demo.tiny_paddleocr_vl import save_random_model
from ocrvl_ray.eval.engines.transformers import TransformersGenerator
from ocrvl_ray.eval.models import parse_model
from ocrvl_ray.testing.sink import EVAL_LABELS, tiny_eval_lmdb

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    return save_random_model(tmp_path_factory.mktemp("tiny-ocrvl") / "base")


def test_the_checkpoints_lm_head_is_loaded_and_a_batch_decodes_like_single_images(tiny_base):
    import torch
    from PIL import Image
    from safetensors.torch import load_file

    g = TransformersGenerator(parse_model(str(tiny_base), "transformers"), "v1", "OCR:", 6, 8, 16)
    weights = load_file(tiny_base / "model.safetensors")
    # transformers 5.25 reads the flat config's tie_word_embeddings=false as true (tied to the embeddings)
    assert torch.equal(g.model.lm_head.weight, weights["lm_head.weight"])
    assert not torch.equal(g.model.lm_head.weight, weights["model.embed_tokens.weight"])
    images = [Image.new("RGB", (200, 60), (250, 250, 240)), Image.new("RGB", (90, 300), (90, 20, 140))]
    batched = g.generate(images)   # different image sizes: different prompt lengths, left padding
    assert batched == [g.generate([im])[0] for im in images]
    assert all(n == 6 or 0 < n < 6 for _, _, n in batched)


def test_the_repetition_guard_stops_each_row_of_a_batch(tiny_base):
    from PIL import Image

    g = TransformersGenerator(parse_model(str(tiny_base), "transformers"), "v1", "OCR:", 40, 8, 2)
    images = [Image.new("RGB", (200, 60), (250, 250, 240)), Image.new("RGB", (90, 300), (90, 20, 140)),
              Image.new("RGB", (120, 120), (10, 200, 30))]
    batched = g.generate(images)
    assert batched == [g.generate([im])[0] for im in images]   # a stopped row's padding is not counted
    assert any(loop for _, loop, _ in batched), batched        # a random model repeats itself at once
    assert all(n < 40 for _, loop, n in batched if loop), batched


def test_eval_scores_a_base_its_lora_in_memory_and_its_merged_export(tiny_base, tmp_path):
    from ocrvl_ray.export.merge import merge_lora
    from ocrvl_ray.export.st import TensorSet
    from ocrvl_ray.testing.export import is_linear, write_adapter

    spec = [(t.name, tuple(t.shape)) for t in TensorSet.open(tiny_base).tensors.values()]
    lora = write_adapter(tmp_path / "lora", spec, r=4, lora_alpha=8, dtype="float32", std=0.3,
                         select=lambda n, s: is_linear(n, s) and n != "lm_head.weight")
    export = merge_lora(tiny_base, lora, tmp_path / "export", log=lambda s: None).out
    lmdb = tiny_eval_lmdb(tmp_path / "valid_layout.lmdb")
    out = tmp_path / "eval"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    p = subprocess.run([sys.executable, "-m", "ocrvl_ray.cli", "eval", "--model", f"base={tiny_base}",
                        "--model", f"ft={tiny_base}+{lora}", "--model", f"merged={export}", "--data", str(lmdb),
                        "--out", str(out), "engine=transformers", "batch_size=3", "max_new_tokens=4",
                        "bootstrap=20"], capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, (p.stdout[-2000:], p.stderr[-3000:])
    t = pq.read_table(out / "predictions.parquet").to_pydict()
    assert sorted(t["reference"]) == sorted(EVAL_LABELS[(p + j) % 4] for p in range(2) for j in range(2))
    assert all(0 < k <= 4 for m in ("base", "ft", "merged") for k in t[f"tokens:{m}"])
    assert t["prediction:ft"] == t["prediction:merged"]       # in-memory LoRA == merged export
    assert t["prediction:ft"] != t["prediction:base"]
    m = json.loads((out / "metrics.json").read_text())
    assert m["run"]["engine"] == "transformers"
    assert [x["kind"] for x in m["run"]["models"]] == ["base", "base+lora", "export"]
    assert (out / "report.html").is_file()
    assert "engine=transformers" in p.stdout


def test_a_folder_that_is_not_paddleocr_vl_is_one_line_before_ray(tmp_path, capsys):
    folder = tmp_path / "qwen"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"]}))
    lmdb = tiny_eval_lmdb(tmp_path / "valid_layout.lmdb")
    t0 = time.monotonic()
    assert main(["--model", str(folder), "--data", str(lmdb), "--out", str(tmp_path / "o"), "engine=transformers"]) == 2
    assert time.monotonic() - t0 < 10
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is a 'qwen2' model" in err and "not PaddleOCR-VL" in err, err


def test_a_merged_export_writes_tie_word_embeddings_as_a_bool(tiny_base, tmp_path):
    """The hub's config.json has an int there (transformers 5.4-5.12 refuse it); the export writes a bool."""
    import shutil

    from ocrvl_ray.export.merge import merge_lora
    from ocrvl_ray.export.st import TensorSet
    from ocrvl_ray.export.verify import verify_export
    from ocrvl_ray.testing.export import is_linear, write_adapter

    base = tmp_path / "base"
    shutil.copytree(tiny_base, base)
    cfg = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps({**cfg, "tie_word_embeddings": 0}))
    spec = [(t.name, tuple(t.shape)) for t in TensorSet.open(base).tensors.values()]
    lora = write_adapter(tmp_path / "lora", spec, r=2, lora_alpha=4, dtype="float32", select=is_linear)
    export = merge_lora(base, lora, tmp_path / "export", log=lambda s: None).out
    written = json.loads((Path(export) / "config.json").read_text())
    assert written["tie_word_embeddings"] is False
    assert {k: v for k, v in written.items() if k != "tie_word_embeddings"} == \
        {k: v for k, v in cfg.items() if k != "tie_word_embeddings"}
    v = verify_export(Path(export), base, lora)   # the rewrite is what verify expects, not a difference
    assert v.ok, v.lines()


def test_the_engine_imports_neither_ray_nor_paddle():
    code = ("import sys, ocrvl_ray.eval.engines.transformers; "
            "print(sorted(m for m in ('ray', 'paddle', 'paddlex') if m in sys.modules))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 0 and p.stdout.strip() == "[]", (p.stdout, p.stderr[-2000:])


def test_gpu_check_smoke_prints_the_eval_lines():
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--smoke", "--parts", "eval"],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    rates = dict(re.findall(r"^SMOKE FIGURE eval_tokens_per_s_b(\d+) ([\d.]+)$", p.stdout, re.M))
    assert sorted(rates) == ["1", "2"] and all(float(r) > 0 for r in rates.values()), p.stdout
    assert not re.search(r"^FIGURE", p.stdout, re.M), "a CPU smoke run printed a GPU figure"


PADDLE_PYTHON = ROOT / ".venv" / "bin" / "python"


@pytest.mark.skipif(not PADDLE_PYTHON.exists(), reason="no default .venv (paddle engine); build it with ./install.sh")
def test_paddle_and_transformers_engines_give_the_same_greedy_text(tiny_base, tmp_path):
    """The same hub-layout folder through engine=paddle (the default venv) and engine=transformers (this one)."""
    lmdb = tiny_eval_lmdb(tmp_path / "valid_layout.lmdb")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    tables = {}
    for engine, python in (("paddle", PADDLE_PYTHON), ("transformers", Path(sys.executable))):
        out = tmp_path / engine
        p = subprocess.run([str(python), "-m", "ocrvl_ray.cli", "eval", "--model", f"m={tiny_base}", "--data",
                            str(lmdb), "--out", str(out), f"engine={engine}", "max_new_tokens=8", "bootstrap=0"],
                           capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
        assert p.returncode == 0, (engine, p.stdout[-2000:], p.stderr[-3000:])
        tables[engine] = pq.read_table(out / "predictions.parquet").to_pydict()
    a, b = tables["paddle"], tables["transformers"]
    assert a["key"] == b["key"] and sum(a["tokens:m"]) > 4   # not just end-of-sentence
    assert a["prediction:m"] == b["prediction:m"] and a["tokens:m"] == b["tokens:m"]
