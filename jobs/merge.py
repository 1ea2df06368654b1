"""Ray job: merge a LoRA checkpoint into the base model as one Ray task.

    ray job submit --working-dir . -- python jobs/merge.py --base /models/PaddleOCR-VL \
        --lora /ckpt/checkpoint-1000 --out /exports/ocrvl-ft [--node-ip 10.0.0.5] [--no-verify]

Locally (no RAY_ADDRESS) it starts a small Ray itself. Exit code 0 = merged (and verified), 1 = verify failed,
2 = bad input (one-line error).
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo, under ray job submit

from ocrvl_ray.errors import OcrvlError  # noqa: E402
from ocrvl_ray.export.cli_merge import parse_size  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="jobs/merge.py", description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True)
    p.add_argument("--lora", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--max-shard-size", default="5GB", type=parse_size)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--no-verify", dest="verify", action="store_false", help="skip the verify pass")
    p.add_argument("--node-ip", default=None, help="run on the node whose local disk holds the files")
    args = p.parse_args(argv)

    from ray.exceptions import RayTaskError

    from ocrvl_ray.export.task import merge_on_ray
    from ocrvl_ray.runtime import init_ray

    init_ray(num_cpus=1)
    try:
        result = merge_on_ray(args.base, args.lora, args.out, max_shard_bytes=args.max_shard_size,
                              overwrite=args.overwrite, verify=args.verify, node_ip=args.node_ip)
    except RayTaskError as e:
        if isinstance(e.cause, OcrvlError):
            print(f"merge: error: {e.cause}", file=sys.stderr)
            return 2
        raise
    print("\n".join(result["log"] + result.get("verify_lines", [])))
    return 1 if result["verified"] is False else 0


if __name__ == "__main__":
    sys.exit(main())
