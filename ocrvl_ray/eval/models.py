"""What ``--model`` names: a base folder, a merged export, or a base + LoRA checkpoint merged in memory.

``[NAME=]PATH`` or ``[NAME=]BASE+LORA``; NAME defaults to the folder name (the LoRA's for BASE+LORA). LORA is any
checkpoint ``ocrvl merge`` reads: paddleformers/erniekit's (``lora_config.json``) or a PEFT adapter
(``adapter_config.json``, e.g. ``ocrvl train engine=transformers``'s output_dir).
The LoRA update is the export's merge math (``ocrvl_ray.export.merge.lora_delta_rows``), applied to the
loaded weights; nothing is written.

:func:`check_model` runs before Ray starts and reads only small files and safetensors headers: the folder is
a PaddleOCR-VL (``config.json`` ``model_type``), its weights, tokenizer and image processor are there, and its
tensor names are the ones the model class builds for that config. The SigLIP pooling head
(``visual.vision_model.head.*``, unused by PaddleOCR-VL) is optional: the hub checkpoints carry it,
PaddleFormers 1.x builds its model without it and saves none (nor does an ``ocrvl merge`` export of such a base);
the paddle engine builds the head only when the checkpoint has it.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.export import DATA
from ocrvl_ray.export.adapter import adapter_dir

_NAME = re.compile(r"^([A-Za-z0-9_.\-]+)=(.+)$")
MODEL_TYPE = "paddleocr_vl"
VISION_HEAD = "visual.vision_model.head."
TOKENIZERS = ("tokenizer.model", "tokenizer.json")   # sentencepiece (hub) or a fast tokenizer (PaddleFormers 1.x)
_LAYER = re.compile(r"^(model|visual\.vision_model\.encoder)\.layers\.(\d+)\.")
_FILES = "config.json, model.safetensors or its index, tokenizer.model or tokenizer.json, preprocessor_config.json"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    path: str                    # base folder or merged export (what the engine loads)
    lora: Optional[str] = None   # LoRA checkpoint merged in memory on top of ``path``

    @property
    def kind(self) -> str:
        if self.lora:
            return "base+lora"
        return "export" if (Path(self.path) / "merge_report.json").is_file() else "base"

    def describe(self) -> dict:
        return {"name": self.name, "kind": self.kind, "path": self.path, "lora": self.lora}


def parse_model(text: str, engine: str = "paddle") -> ModelSpec:
    """``[NAME=]PATH[+LORA]`` -> a :class:`ModelSpec` checked for ``engine``."""
    m = _NAME.match(text)
    name, rest = (m.group(1), m.group(2)) if m else (None, text)
    base, _, lora = rest.partition("+")
    spec = ModelSpec(name or Path(lora or base).resolve().name, base, lora or None)
    check_model(spec, text)
    if engine == "transformers":
        check_transformers_folder(spec, text)
    return spec


def parse_models(texts: list[str], engine: str = "paddle") -> list[ModelSpec]:
    if not texts:
        raise OcrvlError("no --model given; pass --model [NAME=]PATH (base folder, merged export or BASE+LORA)")
    if engine == "transformers":
        check_transformers_env()
    specs = [parse_model(t, engine) for t in texts]
    seen: dict[str, str] = {}
    for s, t in zip(specs, texts):
        if s.name in seen:
            raise OcrvlError(f"--model {t!r} and --model {seen[s.name]!r} are both named {s.name!r}; "
                             "name them, e.g. --model base=PATH --model ft=PATH")
        seen[s.name] = t
    return specs


def check_model(spec: ModelSpec, given: str) -> None:
    """One :class:`OcrvlError` line naming ``given``, the folder and what is wrong; reads no tensor data."""
    p = Path(spec.path)
    what = f"--model {given!r}: {p}"
    if adapter_dir(p) == p and not spec.lora:
        raise OcrvlError(f"{what} is a LoRA checkpoint; pass it with its base: BASE+{p}")
    if not p.is_dir():
        raise OcrvlError(f"{what} does not exist or is not a folder; pass a model folder ({_FILES})")
    if not (p / "config.json").is_file():
        raise OcrvlError(f"{what} is not a model folder: no config.json (expected {_FILES})")
    try:
        config = json.loads((p / "config.json").read_text("utf-8"))
        model_type = config.get("model_type")
    except (OSError, ValueError, AttributeError) as e:
        raise OcrvlError(f"{what}/config.json is not a JSON object ({e}); re-copy the model folder") from None
    if model_type != MODEL_TYPE:
        arch = ", ".join(config.get("architectures") or []) or "no architectures"
        raise OcrvlError(f"{what} is a {model_type!r} model ({arch}), not PaddleOCR-VL (model_type "
                         f"{MODEL_TYPE!r}); eval runs PaddleOCR-VL folders: a base or an `ocrvl merge` export of one")
    try:
        have = set(_tensor_names(p))
    except OcrvlError as e:
        raise OcrvlError(f"{what}: {e}") from None
    missing = [f for f in ("preprocessor_config.json",) if not (p / f).is_file()]
    if not any((p / t).is_file() for t in TOKENIZERS):
        missing.append(" or ".join(TOKENIZERS))
    if missing:
        raise OcrvlError(f"{what} has no {', '.join(missing)}; copy the whole model folder (expected {_FILES})")
    required, optional = expected_tensors(config)
    if have & optional:
        required |= optional           # the pooling head is all there or all absent
    lacking, extra = sorted(required - have), sorted(have - required - optional)
    if lacking or extra:
        def few(names: list[str]) -> str:
            return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        parts = ([f"{len(lacking)} tensor(s) missing ({few(lacking)})"] if lacking else []) + \
                ([f"{len(extra)} unexpected ({few(extra)})"] if extra else [])
        raise OcrvlError(f"{what}: its weights do not match its config.json (LLM layers: "
                         f"{config.get('num_hidden_layers')}, vision layers: "
                         f"{(config.get('vision_config') or {}).get('num_hidden_layers')}): "
                         f"{'; '.join(parts)}; is it a complete PaddleOCR-VL checkpoint?")
    if spec.lora and adapter_dir(spec.lora) is None:
        raise OcrvlError(f"--model {given!r}: {spec.lora} has no lora_config.json or adapter_config.json; pass the "
                         "LoRA checkpoint folder (checkpoint-N, the training output dir or a PEFT adapter folder)")


#: transformers that has PaddleOCR-VL and reads the hub's flat config.json.
TRANSFORMERS_MIN = (5, 13)


def check_transformers_env() -> None:
    """``engine=transformers`` needs torch and transformers >= 5.13 in this Python (``.venv-torch``)."""
    try:
        import torch  # noqa: F401
        import transformers
    except ImportError as e:
        raise OcrvlError(f"engine=transformers needs torch and transformers >= 5.13 in this Python ({e}); "
                         "run it from .venv-torch (./install.sh torch)") from None
    version = tuple(int(v) for v in re.findall(r"\d+", transformers.__version__)[:2])
    if version < TRANSFORMERS_MIN:
        raise OcrvlError(f"engine=transformers needs transformers >= 5.13 (PaddleOCR-VL), this Python has "
                         f"{transformers.__version__}; run it from .venv-torch (./install.sh torch)")


def check_transformers_folder(spec: ModelSpec, given: str) -> None:
    """What ``engine=transformers`` needs beyond :func:`check_model`: a folder with only the sentencepiece
    ``tokenizer.model`` is converted by transformers, which needs the ``sentencepiece`` package."""
    p = Path(spec.path)
    if not (p / "tokenizer.json").is_file():
        try:
            import sentencepiece  # noqa: F401
        except ImportError:
            raise OcrvlError(f"--model {given!r}: {p} has tokenizer.model but no tokenizer.json; engine=transformers "
                             "converts it with the sentencepiece package: pip install sentencepiece") from None


def _tensor_names(path: Path) -> list[str]:
    from ocrvl_ray.export.st import TensorSet

    return list(TensorSet.open(path).tensors)


def expected_tensors(config: dict) -> tuple[set[str], set[str]]:
    """(required, optional) tensor names of a PaddleOCR-VL checkpoint with ``config``'s layer counts: the real
    model's names (``export/data/paddleocr-vl.base_keys.tsv``) per layer; the vision pooling head is optional."""
    layers = {"model": int(config.get("num_hidden_layers") or 0),
              "visual.vision_model.encoder": int((config.get("vision_config") or {}).get("num_hidden_layers") or 0)}
    names: set[str] = set()
    table = DATA / "paddleocr-vl.base_keys.tsv"
    for line in table.read_text().splitlines():
        name = line.split("\t", 1)[0]
        m = _LAYER.match(name)
        if not m:
            names.add(name)
        elif m.group(2) == "0":
            names.update(name.replace(".layers.0.", f".layers.{i}.", 1) for i in range(layers[m.group(1)]))
    optional = {n for n in names if n.startswith(VISION_HEAD)}
    return names - optional, optional


def has_vision_head(path: str) -> bool:
    """Whether the checkpoint carries the (unused) SigLIP pooling head the hub checkpoints have."""
    return any(n.startswith(VISION_HEAD) for n in _tensor_names(Path(path)))


def lora_updates(spec: ModelSpec) -> Iterator[tuple[str, np.ndarray]]:
    """``(base weight name, update)`` per adapted Linear, the update in Paddle layout ``[in, out]`` fp32:
    ``scaling · A @ B`` (the transpose of the export's HF-layout ``lora_delta_rows``)."""
    from ocrvl_ray.export.adapter import load_adapter, pair_adapter
    from ocrvl_ray.export.merge import lora_delta_rows
    from ocrvl_ray.export.st import TensorSet

    base = TensorSet.open(Path(spec.path))
    for pair in pair_adapter(load_adapter(Path(spec.lora)), base):
        out_features = pair.B.shape[1]
        yield pair.base_key, np.ascontiguousarray(lora_delta_rows(pair, 0, out_features).T)


def read_chat_template(path: str) -> str:
    """The model folder's chat template text (``chat_template.jinja`` or tokenizer_config's), else ""."""
    p = Path(path)
    if (p / "chat_template.jinja").is_file():
        return (p / "chat_template.jinja").read_text("utf-8", errors="replace")
    try:
        return str(json.loads((p / "tokenizer_config.json").read_text("utf-8")).get("chat_template") or "")
    except (OSError, ValueError):
        return ""
