"""Synthetic PaddleOCR-VL-shaped models and adapters for tests, the benchmark and demos (offline, no Paddle).

Names and shapes come from ``data/paddleocr-vl.base_keys.tsv`` (the real 620 tensors, shapes as loaded in
Paddle: Linear ``[in, out]``); the HF file stores Linear weights ``[out, in]``. ``scale`` maps each real
dimension to a small one so square matrices stay square and the model stays consistent.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import ml_dtypes
import numpy as np

from ocrvl_ray.export import DATA
from ocrvl_ray.export.st import DTYPES, StreamWriter, save_file

#: real dimension -> tiny dimension (keeps hidden*4 = projector width and q/k/v/out squares square)
TINY_DIMS = {1024: 64, 103424: 256, 4608: 128, 3072: 96, 2048: 64, 256: 32, 1152: 32, 4304: 48, 3456: 96,
             32768: 64, 729: 16, 14: 2}
_LAYER = re.compile(r"\.layers\.(\d+)\.")


def base_keys() -> list[tuple[str, tuple[int, ...]]]:
    """(name, Paddle shape) of all 620 PaddleOCR-VL tensors."""
    rows = []
    for line in (DATA / "paddleocr-vl.base_keys.tsv").read_text().splitlines():
        name, shape, _ = line.split("\t")
        rows.append((name, tuple(json.loads(shape))))
    return rows


def is_linear(name: str, shape: tuple[int, ...]) -> bool:
    """A Linear weight (stored transposed between Paddle and HF): 2-D ``*.weight`` that is not an embedding."""
    return len(shape) == 2 and name.endswith(".weight") and "embed" not in name


def hf_shape(name: str, paddle_shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(reversed(paddle_shape)) if is_linear(name, paddle_shape) else paddle_shape


def model_spec(scale: dict[int, int] | None = None, max_layers: int | None = None) -> list[tuple[str, tuple[int, ...]]]:
    """(name, HF shape) of the model, optionally scaled down and with fewer layers per stack."""
    out = []
    for name, shape in base_keys():
        m = _LAYER.search(name)
        if max_layers is not None and m and int(m.group(1)) >= max_layers:
            continue
        if scale:
            shape = tuple(scale.get(d, d) for d in shape)
        out.append((name, hf_shape(name, shape)))
    return out


def write_base(folder: str | Path, spec: list[tuple[str, tuple[int, ...]]], *, dtype=ml_dtypes.bfloat16,
               seed: int = 0, std: float = 0.02, extra_files: bool = True, pool: int = 0) -> Path:
    """Write ``model.safetensors`` (random normal weights, tensor by tensor) and the HF support files.

    ``pool > 0``: each tensor repeats a random slice of one pool of that many values (fast for GB-sized models).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    dt = next(k for k, v in DTYPES.items() if v == np.dtype(dtype))
    values = (rng.standard_normal(pool, dtype=np.float32) * np.float32(std)).astype(dtype) if pool else None
    w = StreamWriter(folder / "model.safetensors", [(n, dt, s) for n, s in spec], {"format": "pt"})
    try:
        for name, shape in spec:
            if values is not None:
                w.write(name, np.resize(values[rng.integers(pool // 2):], shape))
                continue
            a = rng.standard_normal(shape, dtype=np.float32)
            a *= np.float32(std)
            w.write(name, a.astype(dtype))
        tmp = w.close()
    except BaseException:
        w.abort()
        raise
    tmp.replace(folder / "model.safetensors")
    if extra_files:
        write_support_files(folder)
    return folder


def write_support_files(folder: Path) -> None:
    """The real HF config + preprocessor config, and small stand-ins for tokenizer/template/remote code."""
    for src, dst in (("paddleocr-vl.config.json", "config.json"),
                     ("paddleocr-vl.preprocessor_config.json", "preprocessor_config.json")):
        shutil.copyfile(str(DATA / src), folder / dst)
    (folder / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": 2}) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 131072}) + "\n")
    (folder / "chat_template.jinja").write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}\n")
    (folder / "modeling_paddleocr_vl.py").write_text("# remote code stand-in\n")


def write_adapter(folder: str | Path, spec: list[tuple[str, tuple[int, ...]]], *, r: int = 8, lora_alpha: float = 16,
                  rslora: bool = False, dtype=ml_dtypes.bfloat16, seed: int = 1, std: float = 0.02,
                  select=lambda name, shape: is_linear(name, shape)) -> Path:
    """A unified-checkpoint-style LoRA (``peft_model-00001-of-00001.safetensors`` + index + lora_config.json).

    Tensors are Paddle layout like erniekit's: ``<module>.lora_A`` [in, r], ``<module>.lora_B`` [r, out].
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, (out_f, in_f) in ((n, s) for n, s in spec if select(n, s)):
        module = name[: -len(".weight")]
        tensors[f"{module}.lora_A"] = (rng.standard_normal((in_f, r), dtype=np.float32) * std).astype(dtype)
        tensors[f"{module}.lora_B"] = (rng.standard_normal((r, out_f), dtype=np.float32) * std).astype(dtype)
    fname = "peft_model-00001-of-00001.safetensors"
    save_file(tensors, folder / fname, {"format": "np"})
    index = {"metadata": {"total_size": sum(a.nbytes for a in tensors.values())},
             "weight_map": {k: fname for k in tensors}, "type": "lora"}
    (folder / "peft_model.safetensors.index.json").write_text(json.dumps(index) + "\n")
    cfg = {"r": r, "lora_alpha": lora_alpha, "rslora": rslora, "dtype": np.dtype(dtype).name,
           "scaling": lora_alpha / (r ** 0.5 if rslora else r),
           "target_modules": sorted({k.rsplit(".", 2)[-2] for k in tensors})}
    (folder / "lora_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    return folder
