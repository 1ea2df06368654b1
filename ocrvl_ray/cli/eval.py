"""``ocrvl eval``: run models on an LMDB and score them, or re-score a predictions file.

    ocrvl eval --model base=/models/PaddleOCR-VL --model ft=/runs/x/export --data VAL.lmdb --out DIR [key=value ...]
    ocrvl eval run ...                                   (the same)
    ocrvl eval score --predictions FILE [--out DIR] [bootstrap=N seed=S]

Exit codes: 0 done, 2 bad input (one line naming the file or key and the fix).
"""
from __future__ import annotations

import sys

from ocrvl_ray.cli import Spec


def _run(cfg) -> int:
    from ocrvl_ray.eval.run import run_eval_job
    from ocrvl_ray.eval.score import headline

    result = run_eval_job(cfg)
    print("\n".join(headline(result["metrics"])))
    print("\n".join(f"{k}: {v}" for k, v in result["paths"].items()))
    return 0


def _score(cfg) -> int:
    from ocrvl_ray.eval.score import headline, score_file

    metrics, paths = score_file(cfg.predictions, cfg.out, cfg)
    print("\n".join(headline(metrics)))
    print("\n".join(f"{k}: {v}" for k, v in paths.items()))
    return 0


SPECS = {
    "run": Spec("ocrvl_ray.eval.config:EvalConfig", _run, yaml=True, aliases={"--model": "models"},
                usage="[run] --model [NAME=]PATH[+LORA] ... --data LMDB[,LMDB] --out DIR [config.yaml] [key=value ...]",
                help="run models on an LMDB and score them per slice",
                note="--model: a base folder, a merged export, or BASE+LORA_CHECKPOINT (merged in memory); repeat for "
                     "more models; the first is the baseline of the comparisons. e.g. limit=200 engine=paddle "
                     "max_new_tokens=256 model_version=1.5 device=gpu actors=2"),
    "score": Spec("ocrvl_ray.eval.config:EvalScoreConfig", _score, usage="--predictions FILE [--out DIR] [key=value ...]",
                  help="recompute metrics and report from predictions"),
}
DEFAULT = "run"


def main(argv: list[str] | None = None) -> int:
    """``ocrvl eval ...`` (tests and ``jobs/eval.py`` call it with the arguments after ``eval``)."""
    from ocrvl_ray.cli import main as ocrvl

    return ocrvl(["eval", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
