"""``ocrvl fix --file merged.safetensors --base BASE --out fixed.safetensors``: Paddle layout -> HF layout."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--file", required=True, help="merged safetensors file in Paddle layout (or its index.json)")
    p.add_argument("--base", required=True, help="the Hugging Face base model folder it was fine-tuned from")
    p.add_argument("--out", required=True, help="fixed safetensors file to write (atomically)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def run(args: argparse.Namespace) -> int:
    from ocrvl_ray.export.fix import fix_file

    res = fix_file(args.file, args.base, args.out, overwrite=args.overwrite)
    for key, (choice, d_keep, d_t) in res.square_decisions.items():
        print(f"  square {key}: {choice} (distance to base {d_keep:.3g} as stored, {d_t:.3g} transposed)")
    return 0
