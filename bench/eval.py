"""``ocrvl eval`` throughput: the Ray job (paddle engine, tiny model, CPU) vs a bare one-process generate loop
over the same samples, and the scoring rate of ``ocrvl eval score`` on synthetic pairs.

  eval      run_eval_job: LMDB read, Ray Data actor pool (1 actor), scoring, report; model load included
  bare      PaddlePredictor.generate in this process over the same crops; model load excluded
  score     score_file on a Parquet of N pairs, two models (slices + paired bootstrap + report)
Last lines: FIGURE eval_samples_per_s, FIGURE bare_samples_per_s, RATIO eval_vs_bare_generate,
FIGURE score_pairs_per_s.

    .venv/bin/python bench/eval.py [--samples 48] [--max-new-tokens 16] [--pairs 100000] [--bootstrap 1000]
"""
from __future__ import annotations

import argparse
import io
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _lmdb(path: Path, samples: int) -> None:
    from ocrvl_ray.testing.sink import synthetic_pages
    from ocrvl_ray.lmdb.writer import LmdbWriter

    with LmdbWriter(str(path)) as w:
        w.write_pages(synthetic_pages(samples, samples_per_page=1))


def _pairs(n: int, seed: int = 0) -> dict[str, list]:
    """Korean/Latin/digit references of 1..40 characters; hypotheses with ~5 % (a) and ~3 % (b) edits."""
    rnd = random.Random(seed)
    alphabet = [chr(c) for c in range(0xAC00, 0xAC00 + 400)] + list("ABCabc0123456789.,- ")
    refs = ["".join(rnd.choices(alphabet, k=rnd.randint(1, 40))) for _ in range(n)]

    def noisy(s: str, p: float) -> str:
        return "".join(rnd.choice(alphabet) if rnd.random() < p else ch for ch in s if rnd.random() > p / 3)
    return {"key": [str(i) for i in range(n)], "dataset": [f"ds{i % 3}" for i in range(n)],
            "kind": [("layout", "cell", "word")[i % 3] for i in range(n)],
            "layout_label": [("text", "table")[i % 2] for i in range(n)], "reference": refs,
            "prediction:a": [noisy(r, 0.05) for r in refs], "prediction:b": [noisy(r, 0.03) for r in refs]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=48)
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--pairs", type=int, default=100_000)
    ap.add_argument("--bootstrap", type=int, default=1000)
    a = ap.parse_args()
    os.environ.setdefault("PADDLE_PDX_CACHE_HOME", os.path.join(tempfile.gettempdir(), "ocrvl-bench-paddlex"))

    from ocrvl_ray.core.config import load_config
    from ocrvl_ray.eval.config import EvalConfig
    from ocrvl_ray.eval.data import read_samples
    from ocrvl_ray.eval.engines.paddle import PaddlePredictor
    from ocrvl_ray.eval.models import parse_model
    from ocrvl_ray.eval.predictions import write_predictions
    from ocrvl_ray.eval.run import run_eval_job
    from ocrvl_ray.eval.config import ScoreOptions
    from ocrvl_ray.eval.score import score_file
    from ocrvl_ray.core.runtime import init_ray
    from ocrvl_ray.testing.tiny_vl import build_tiny_ocrvl
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = build_tiny_ocrvl(tmp / "base")
        _lmdb(tmp / "val.lmdb", a.samples)
        init_ray(num_cpus=2)
        common = {"max_new_tokens": a.max_new_tokens, "bootstrap": 100, "batch_size": 8}
        cfg = load_config(EvalConfig, overrides={"models": [f"m={base}"], "data": str(tmp / "val.lmdb"),
                                                  "out": str(tmp / "warm"), "limit": 4, **common}, env={})
        run_eval_job(cfg, log=lambda s: None)   # warm-up: imports, Ray Data start
        cfg = cfg.model_copy(update={"out": str(tmp / "eval"), "limit": 0})
        t0 = time.perf_counter()
        res = run_eval_job(cfg, log=lambda s: None)
        eval_s = time.perf_counter() - t0
        n = res["metrics"]["n_samples"]
        eval_rate = n / eval_s

        images = [Image.open(io.BytesIO(b)).convert("RGB") for b in read_samples([str(tmp / "val.lmdb")], 0)["image"]]
        pred = PaddlePredictor(parse_model(f"m={base}"), "v1", "OCR:", a.max_new_tokens, 8, 16)
        pred.generate(images[0])
        t0 = time.perf_counter()
        for im in images:
            pred.generate(im)
        bare_s = time.perf_counter() - t0
        bare_rate = len(images) / bare_s

        write_predictions(_pairs(a.pairs), tmp / "pairs.parquet")
        t0 = time.perf_counter()
        score_file(tmp / "pairs.parquet", tmp / "scored", ScoreOptions(bootstrap=a.bootstrap))
        score_s = time.perf_counter() - t0

    print(f"eval: {n} samples in {eval_s:.2f} s (job incl. model load, scoring, report)")
    print(f"bare: {len(images)} samples in {bare_s:.2f} s (one process, model loaded)")
    print(f"score: {a.pairs} pairs x 2 models, {a.bootstrap} bootstrap resamples, in {score_s:.2f} s")
    print(f"FIGURE eval_samples_per_s {eval_rate:.2f} samples/s")
    print(f"FIGURE bare_samples_per_s {bare_rate:.2f} samples/s")
    print(f"RATIO eval_vs_bare_generate {eval_rate / bare_rate:.3f}")
    print(f"FIGURE score_pairs_per_s {a.pairs / score_s:.0f} pairs/s")


if __name__ == "__main__":
    main()
