"""``ocrvl eval``: run models on an LMDB and score them, or re-score a predictions file.

    ocrvl eval --model base=/models/PaddleOCR-VL --model ft=/runs/x/export --data VAL.lmdb --out DIR [key=value ...]
    ocrvl eval run ...                                   (the same)
    ocrvl eval score --predictions FILE [--out DIR] [bootstrap=N seed=S]

Exit codes: 0 done, 2 bad input (one line naming the file or key and the fix).
"""
from __future__ import annotations

import argparse
import sys

from ocrvl_ray.core.errors import OcrvlError


def _run_parser() -> argparse.ArgumentParser:
    from ocrvl_ray.core.config import describe_keys
    from ocrvl_ray.eval.config import EvalConfig

    p = argparse.ArgumentParser(prog="ocrvl eval", description="run models on an LMDB and score them per slice",
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="config keys (key=value or a YAML with the same keys; defaults shown):\n  "
                                       + "\n  ".join(describe_keys(EvalConfig)))
    p.add_argument("--model", action="append", default=[], metavar="[NAME=]PATH[+LORA]",
                   help="a base folder, a merged export, or BASE+LORA_CHECKPOINT (merged in memory); repeat for "
                        "more models; the first is the baseline of the comparisons")
    p.add_argument("--data", default=None, metavar="LMDB[,LMDB...]", help="LMDB(s) written by the layout job")
    p.add_argument("--out", default=None, help="output folder (predictions.parquet, metrics.json, report.html)")
    p.add_argument("args", nargs="*", metavar="[config.yaml] [key=value ...]",
                   help="e.g. limit=200 engine=paddle max_new_tokens=256 template=auto device=gpu actors=2")
    return p


def _score_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ocrvl eval score", description="recompute metrics and report from predictions")
    p.add_argument("--predictions", required=True, help="JSONL or Parquet: reference + prediction:<model> columns")
    p.add_argument("--out", default=None, help="output folder (default: the predictions file's folder)")
    p.add_argument("args", nargs="*", metavar="key=value", help="bootstrap=1000 seed=0")
    return p


def _score(argv: list[str]) -> int:
    from ocrvl_ray.core.config import ConfigError, parse_overrides
    from ocrvl_ray.eval.score import headline, score_file

    a = _score_parser().parse_args(argv)
    opts = parse_overrides(a.args)
    unknown = set(opts) - {"bootstrap", "seed"}
    if unknown:
        raise ConfigError(f"unknown option {sorted(unknown)[0]!r} for eval score; valid: bootstrap, seed")
    metrics, paths = score_file(a.predictions, a.out, n_boot=int(opts.get("bootstrap", 1000)),
                                seed=int(opts.get("seed", 0)))
    print("\n".join(headline(metrics)))
    print("\n".join(f"{k}: {v}" for k, v in paths.items()))
    return 0


def _run(argv: list[str]) -> int:
    from ocrvl_ray.core.config import load_config, parse_overrides, split_cli_args
    from ocrvl_ray.eval.config import EvalConfig

    a = _run_parser().parse_args(argv)
    yaml_path, overrides = split_cli_args(a.args)
    given = {k: v for k, v in (("models", a.model or None), ("data", a.data), ("out", a.out)) if v}
    cfg = load_config(EvalConfig, yaml_path, {**parse_overrides(overrides), **given})
    from ocrvl_ray.eval.run import run_eval_job
    from ocrvl_ray.eval.score import headline

    result = run_eval_job(cfg)
    print("\n".join(headline(result["metrics"])))
    print("\n".join(f"{k}: {v}" for k, v in result["paths"].items()))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["score"]:
            return _score(argv[1:])
        return _run(argv[1:] if argv[:1] == ["run"] else argv)
    except OcrvlError as e:
        print(f"ocrvl eval: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
