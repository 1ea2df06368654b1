"""What ``--model`` names: a base folder, a merged export, or a base + LoRA checkpoint merged in memory.

``[NAME=]PATH`` or ``[NAME=]BASE+LORA``; NAME defaults to the folder name (the LoRA's for BASE+LORA).
The LoRA update is the export's merge math (``ocrvl_ray.export.merge.lora_delta_rows``), applied to the
loaded weights; nothing is written.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from ocrvl_ray.core.errors import OcrvlError

_NAME = re.compile(r"^([A-Za-z0-9_.\-]+)=(.+)$")
_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")


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


def parse_model(text: str) -> ModelSpec:
    """``[NAME=]PATH[+LORA]`` -> a checked :class:`ModelSpec`."""
    m = _NAME.match(text)
    name, rest = (m.group(1), m.group(2)) if m else (None, text)
    base, _, lora = rest.partition("+")
    spec = ModelSpec(name or Path(lora or base).resolve().name, base, lora or None)
    check_model(spec, text)
    return spec


def parse_models(texts: list[str]) -> list[ModelSpec]:
    if not texts:
        raise OcrvlError("no --model given; pass --model [NAME=]PATH (base folder, merged export or BASE+LORA)")
    specs = [parse_model(t) for t in texts]
    seen: dict[str, str] = {}
    for s, t in zip(specs, texts):
        if s.name in seen:
            raise OcrvlError(f"--model {t!r} and --model {seen[s.name]!r} are both named {s.name!r}; "
                             "name them, e.g. --model base=PATH --model ft=PATH")
        seen[s.name] = t
    return specs


def check_model(spec: ModelSpec, given: str) -> None:
    p = Path(spec.path)
    if (p / "lora_config.json").is_file() and not spec.lora:
        raise OcrvlError(f"--model {given!r}: {p} is a LoRA checkpoint; pass it with its base: BASE+{p}")
    if not (p / "config.json").is_file() or not any((p / w).is_file() for w in _WEIGHTS):
        raise OcrvlError(f"--model {given!r}: {p} is not a model folder (expected config.json and "
                         "model.safetensors or its index)")
    if spec.lora and not (Path(spec.lora) / "lora_config.json").is_file():
        raise OcrvlError(f"--model {given!r}: {spec.lora} has no lora_config.json; pass the LoRA checkpoint folder "
                         "(checkpoint-N or the training output dir)")


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
