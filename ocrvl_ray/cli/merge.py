"""``ocrvl merge --base BASE --lora CKPT --out EXPORT``: streaming LoRA merge into an HF-layout export."""
from __future__ import annotations

import argparse
import re

from ocrvl_ray.errors import OcrvlError

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def parse_size(text: str) -> int:
    """``"5GB"`` -> 5_000_000_000, ``"500MiB"`` -> 524_288_000 (the units transformers uses)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?\s*", text, flags=re.I)
    if not m:
        raise OcrvlError(f"size {text!r} is not like 5GB, 500MB or 2GiB")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "").upper()])


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base", required=True, help="Hugging Face model folder (config.json + model.safetensors or shards)")
    p.add_argument("--lora", required=True, help="LoRA checkpoint folder (peft_model*.safetensors or "
                                                 "lora_model_state.pdparams, plus lora_config.json)")
    p.add_argument("--out", required=True, help="export folder to create (written atomically)")
    p.add_argument("--max-shard-size", default="5GB", type=parse_size,
                   help="split model.safetensors into shards above this size (default 5GB)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.add_argument("--verify", action="store_true", help="run `ocrvl verify` on the export afterwards")


def run(args: argparse.Namespace) -> int:
    from ocrvl_ray.export.merge import merge_lora

    merge_lora(args.base, args.lora, args.out, max_shard_bytes=args.max_shard_size, overwrite=args.overwrite)
    if args.verify:
        from ocrvl_ray.export.verify import verify_export

        res = verify_export(args.out, args.base, args.lora)
        print("\n".join(res.lines()))
        return 0 if res.ok else 1
    return 0
