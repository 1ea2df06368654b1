"""Eval job: models x validation LMDB -> predictions.parquet, metrics.json, report.html.

    ray job submit --working-dir . -- python jobs/eval.py --model base=/models/PaddleOCR-VL \
        --model ft=/runs/x/export --data /data/out/x_valid_layout.lmdb --out /runs/x/eval device=gpu actors=4
    python jobs/eval.py score --predictions preds.jsonl --out DIR

Connects to the cluster in ``RAY_ADDRESS`` (set by ``ray job submit``), else starts a local Ray.
Exit code 0 = done, 2 = bad input (one-line error).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ocrvl_ray.cli import main as ocrvl  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    return ocrvl(["eval", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
