"""Ray job: merge a LoRA checkpoint into the base model (``ocrvl merge``, as one Ray task on the cluster).

    ray job submit --working-dir . -- python jobs/merge.py --base /models/PaddleOCR-VL \
        --lora /ckpt/checkpoint-1000 --out /exports/ocrvl-ft [--node-ip 10.0.0.5] [--no-verify]

Same arguments, defaults and exit codes as ``ocrvl merge``: 0 = merged (and verified), 1 = verify failed,
2 = bad input (one-line error).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo, under ray job submit

from ocrvl_ray.cli import main as ocrvl  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    return ocrvl(["merge", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
