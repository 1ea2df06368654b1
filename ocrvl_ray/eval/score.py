"""Scores a predictions set: per-sample scores, per-model metrics overall and per slice, pairwise comparisons.

``metrics.json``::

    {"n_samples": N, "definitions": {...}, "bootstrap": {"resamples", "seed", "level"},
     "models": {name: {"overall": {"cer", "ned", "exact_match", "n"}, "loops": k,
                       "slices": {"dataset"|"kind"|"layout_label"|"char_class"|"length": {value: {...}}}}},
     "comparisons": [{"a": name, "b": name, "overall": {...}, "slices": {family: {value: {...}}}}]}

Comparisons pair every model with every later one (``b`` − ``a``; the first ``--model`` is the baseline).
"""
from __future__ import annotations

import json
import os
from itertools import combinations
from pathlib import Path

import numpy as np

from ocrvl_ray.eval.compare import paired_bootstrap
from ocrvl_ray.eval.config import ScoreOptions
from ocrvl_ray.eval.metrics import SLICE_COLUMNS, aggregate, sample_scores, slice_members
from ocrvl_ray.eval.predictions import Predictions, read_predictions, write_predictions

DEFINITIONS = {
    "normalisation": "Unicode NFC on reference and prediction before scoring",
    "cer": "sum of Levenshtein(ref, hyp) / sum of len(ref) over the slice, in characters (null if sum len(ref) = 0)",
    "ned": "mean over samples of Levenshtein(ref, hyp) / max(len(ref), len(hyp)); 0 when both are empty",
    "exact_match": "share of samples with ref == hyp",
    "char_class": "samples whose reference contains at least one character of the class",
    "length": "reference length in characters",
    "comparison": "diff = metric(b) - metric(a); 95% percentile paired bootstrap over samples; "
                  "improved/regressed = b's edit distance smaller/larger than a's",
}
SCORE_KEYS = ("distance", "ned", "exact")

def score(preds: Predictions, opts: ScoreOptions) -> tuple[dict, dict[str, list]]:
    """``(metrics, scored columns)``; the columns are the input columns plus ``ref_len`` and
    ``distance:<m>``, ``ned:<m>``, ``exact:<m>`` per model. ``opts``: bootstrap resamples and seed."""
    n_boot, seed = opts.bootstrap, opts.seed
    refs = preds.columns["reference"]
    per = {m: sample_scores(refs, preds.hyps(m)) for m in preds.models}
    members = slice_members(refs, {c: preds.get(c) for c in SLICE_COLUMNS if preds.get(c) is not None})
    models = {}
    for m, s in per.items():
        models[m] = {"overall": _agg(s, None), "loops": int(sum(preds.loops(m))),
                     "slices": {fam: {v: _agg(s, idx) for v, idx in vals.items()} for fam, vals in members.items()}}
    comparisons = []
    for a, b in combinations(preds.models, 2):
        comparisons.append({
            "a": a, "b": b, "overall": paired_bootstrap(per[a], per[b], n_boot, seed),
            "slices": {fam: {v: paired_bootstrap(_take(per[a], idx), _take(per[b], idx), n_boot, seed)
                             for v, idx in vals.items()} for fam, vals in members.items()}})
    metrics = {"n_samples": len(preds), "definitions": DEFINITIONS,
               "bootstrap": {"resamples": n_boot, "seed": seed, "level": 0.95},
               "models": models, "comparisons": comparisons}
    cols = dict(preds.columns)
    if per:
        cols["ref_len"] = next(iter(per.values()))["ref_len"].tolist()
    for m, s in per.items():
        for k in SCORE_KEYS:
            cols[f"{k}:{m}"] = s[k].tolist()
    return metrics, cols

def _take(s: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[idx] for k, v in s.items()}

def _agg(s: dict[str, np.ndarray], idx: np.ndarray | None) -> dict:
    t = s if idx is None else _take(s, idx)
    return aggregate(t["distance"], t["ref_len"], t["ned"], t["exact"])

def write_outputs(metrics: dict, cols: dict[str, list], out: str | os.PathLike, opts: ScoreOptions, *,
                  extra: dict | None = None) -> dict[str, str]:
    """``predictions.parquet``, ``metrics.json`` and ``report.html`` (``opts.examples`` examples) in ``out``;
    returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"predictions": str(write_predictions(cols, out / "predictions.parquet"))}
    doc = {**(extra or {}), **metrics}
    (out / "metrics.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", "utf-8")
    paths["metrics"] = str(out / "metrics.json")
    from ocrvl_ray.eval.report import render_report

    (out / "report.html").write_text(render_report(doc, cols, opts.examples), "utf-8")
    paths["report"] = str(out / "report.html")
    return paths

def check_out_folder(out: str, what: str = "--out") -> Path:
    """Create ``out`` and prove it writable (a probe file) before any work; one line when it is not."""
    import tempfile

    from ocrvl_ray.core.errors import OcrvlError, check_output_path

    p = Path(check_output_path(out, what, folder=True))
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=p):
            pass
    except OSError as e:
        raise OcrvlError(f"{what} {out}: cannot write there ({e.strerror}); choose a writable folder") from None
    return p

def score_file(path: str | os.PathLike, out: str | os.PathLike | None, opts: ScoreOptions) -> tuple[dict, dict[str, str]]:
    """``ocrvl eval score``: recompute every metric and the report from a predictions file (``out`` None: its
    folder)."""
    preds = read_predictions(path)
    out = check_out_folder(str(out) if out else str(Path(path).resolve().parent))   # before the bootstrap
    metrics, cols = score(preds, opts)
    return metrics, write_outputs(metrics, cols, out, opts, extra={"run": {"predictions": str(Path(path).resolve())}})

def headline(metrics: dict) -> list[str]:
    """A few text lines: per model the overall metrics, per comparison the differences with intervals."""
    lines = []
    for m, r in metrics["models"].items():
        o = r["overall"]
        lines.append(f"{m}: n={o['n']} cer={_f(o['cer'])} ned={_f(o['ned'])} exact_match={_f(o['exact_match'])}"
                     + (f" loops={r['loops']}" if r["loops"] else ""))
    for c in metrics["comparisons"]:
        o = c["overall"]
        parts = [f"{k} {_f(o[k]['diff'], True)} [{_f(o[k]['lo'], True)}, {_f(o[k]['hi'], True)}]"
                 for k in ("cer", "ned", "exact_match")]
        lines.append(f"{c['b']} vs {c['a']}: " + ", ".join(parts)
                     + f"; improved {o['improved']}, regressed {o['regressed']}, same {o['same']}")
    return lines

def _f(v, signed: bool = False) -> str:
    if v is None:
        return "n/a"
    return f"{v:+.4f}" if signed else f"{v:.4f}"
