"""``ocrvl merge --base BASE --lora CKPT --out EXPORT``: streaming LoRA merge into an HF-layout export, verified.

Runs in this process; as a Ray task when ``--node-ip`` is given or under ``ray job submit`` (``RAY_ADDRESS``),
so it lands on the node whose disk holds the files. ``jobs/merge.py`` is this command.
Exit 0 = merged (and verified), 1 = verify failed, 2 = bad input (one-line error).
"""
from __future__ import annotations

import argparse
import os

from ocrvl_ray.core.config import parse_size

def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base", required=True, help="Hugging Face model folder (config.json + model.safetensors or shards)")
    p.add_argument("--lora", required=True, help="LoRA checkpoint folder (peft_model*.safetensors or "
                                                 "lora_model_state.pdparams, plus lora_config.json)")
    p.add_argument("--out", required=True, help="export folder to create (written atomically)")
    p.add_argument("--max-shard-size", default="5GB", type=parse_size,
                   help="split model.safetensors into shards above this size (default 5GB)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.add_argument("--verify", action=argparse.BooleanOptionalAction, default=True,
                   help="check the export against its base and adapter afterwards (default: on)")
    p.add_argument("--node-ip", default=None, help="run as a Ray task on the node whose local disk holds the files")


def run(args: argparse.Namespace) -> int:
    from ocrvl_ray.export.task import merge_and_verify

    if args.node_ip or os.environ.get("RAY_ADDRESS"):
        from ocrvl_ray.core.runtime import init_ray
        from ocrvl_ray.export.task import merge_on_ray

        init_ray(num_cpus=1)
        result = merge_on_ray(args.base, args.lora, args.out, max_shard_bytes=args.max_shard_size,
                              overwrite=args.overwrite, verify=args.verify, node_ip=args.node_ip)
        print("\n".join(result["log"]))
    else:
        result = merge_and_verify(args.base, args.lora, args.out, args.max_shard_size, args.overwrite, args.verify,
                                  log=print)
    if result.get("verify_lines"):
        print("\n".join(result["verify_lines"]))
    return 1 if result["verified"] is False else 0
