"""``ocrvl verify --export EXPORT --base BASE [--lora CKPT]``: exit 0 when the export is sound, 1 with a diff."""
from __future__ import annotations

from typing import Optional

from pydantic import Field

from ocrvl_ray.cli import Spec
from ocrvl_ray.core.config import JobConfig


class VerifyConfig(JobConfig):
    export: str = Field(description="export folder written by `ocrvl merge` (or any HF model folder)")
    base: str = Field(description="the Hugging Face base model folder")
    lora: Optional[str] = Field(None, description="LoRA checkpoint: also check merged tensors = base + delta")


def run(cfg: VerifyConfig) -> int:
    from ocrvl_ray.export.verify import verify_export

    res = verify_export(cfg.export, cfg.base, cfg.lora)
    print("\n".join(res.lines()))
    return 0 if res.ok else 1


SPEC = Spec("ocrvl_ray.cli.verify:VerifyConfig", run, usage="--export EXPORT --base BASE [--lora CKPT] [key=value ...]")
