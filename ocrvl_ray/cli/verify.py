"""``ocrvl verify --export EXPORT --base BASE [--lora CKPT]``: exit 0 when the export is sound, 1 with a diff."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--export", required=True, help="export folder written by `ocrvl merge` (or any HF model folder)")
    p.add_argument("--base", required=True, help="the Hugging Face base model folder")
    p.add_argument("--lora", default=None, help="LoRA checkpoint: also check merged tensors = base + delta")


def run(args: argparse.Namespace) -> int:
    from ocrvl_ray.export.verify import verify_export

    res = verify_export(args.export, args.base, args.lora)
    print("\n".join(res.lines()))
    return 0 if res.ok else 1
