"""``ocrvl fix --file merged.safetensors --base BASE --out fixed.safetensors``: Paddle layout -> HF layout."""
from __future__ import annotations

from pydantic import Field

from ocrvl_ray.cli import Spec
from ocrvl_ray.core.config import JobConfig


class FixConfig(JobConfig):
    file: str = Field(description="merged safetensors file in Paddle layout (or its index.json)")
    base: str = Field(description="the Hugging Face base model folder it was fine-tuned from")
    out: str = Field(description="fixed safetensors file to write (atomically)")
    overwrite: bool = Field(False, description="replace an existing out file")


def run(cfg: FixConfig) -> int:
    from ocrvl_ray.export.fix import fix_file

    res = fix_file(cfg.file, cfg.base, cfg.out, overwrite=cfg.overwrite)
    for key, (choice, d_keep, d_t) in res.square_decisions.items():
        print(f"  square {key}: {choice} (distance to base {d_keep:.3g} as stored, {d_t:.3g} transposed)")
    return 0


SPEC = Spec("ocrvl_ray.cli.fix:FixConfig", run, usage="--file MERGED --base BASE --out FIXED [--overwrite] [key=value ...]")
