"""``ocrvl merge --base BASE --lora CKPT --out EXPORT``: streaming LoRA merge into an HF-layout export, verified.
CKPT: a paddleformers/erniekit checkpoint or a PEFT adapter folder (``export/adapter.py``).

Runs in this process; as a Ray task when ``node_ip`` is given or under ``ray job submit`` (``RAY_ADDRESS``),
so it lands on the node whose disk holds the files. ``jobs/merge.py`` is this command.
Exit 0 = merged (and verified), 1 = verify failed, 2 = bad input (one-line error).
"""
from __future__ import annotations

import os

from ocrvl_ray.cli import Spec


def run(cfg) -> int:
    from ocrvl_ray.export.task import merge_and_verify

    if cfg.node_ip or os.environ.get("RAY_ADDRESS"):
        from ocrvl_ray.core.runtime import init_ray
        from ocrvl_ray.export.task import merge_on_ray

        init_ray(num_cpus=1)
        result = merge_on_ray(cfg.base, cfg.lora, cfg.out, max_shard_bytes=cfg.max_shard_bytes,
                              overwrite=cfg.overwrite, verify=cfg.verify, node_ip=cfg.node_ip)
        print("\n".join(result["log"]))
    else:
        result = merge_and_verify(cfg.base, cfg.lora, cfg.out, cfg.max_shard_bytes, cfg.overwrite, cfg.verify,
                                  log=print)
    if result.get("verify_lines"):
        print("\n".join(result["verify_lines"]))
    return 1 if result["verified"] is False else 0


SPEC = Spec("ocrvl_ray.export.config:MergeConfig", run, yaml=True,
            usage="--base BASE --lora CKPT --out EXPORT [--max-shard-size 5GB] [--overwrite] [--no-verify] "
                  "[key=value ...]")
