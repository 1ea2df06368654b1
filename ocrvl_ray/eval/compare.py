"""Paired comparison of two models on the same samples: differences (b − a) with percentile bootstrap 95 %
intervals, and per-sample improved / regressed / same counts (by edit distance). Pure numpy."""
from __future__ import annotations

import numpy as np

METRICS = ("cer", "ned", "exact_match")
_CHUNK = 64  # bootstrap draws per matrix product


def metric_values(counts: np.ndarray, dist: np.ndarray, ref_len: np.ndarray, ned: np.ndarray,
                  exact: np.ndarray) -> dict[str, np.ndarray]:
    """Metrics of resampled sets given multiplicities ``counts`` [draws, n] (or [n] for the sample itself)."""
    c = np.atleast_2d(counts)
    n = c.sum(axis=1)
    total = c @ ref_len.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"cer": np.where(total > 0, (c @ dist.astype(np.float64)) / total, np.nan),
                "ned": (c @ ned.astype(np.float64)) / n,
                "exact_match": (c @ exact.astype(np.float64)) / n}


def _resample_counts(rng: np.random.Generator, n: int, draws: int) -> np.ndarray:
    """How often each of n samples is drawn in ``draws`` resamples of size n with replacement, float [draws, n]."""
    idx = rng.integers(0, n, size=(draws, n)) + (np.arange(draws) * n)[:, None]
    return np.bincount(idx.ravel(), minlength=draws * n).reshape(draws, n).astype(np.float64)


def paired_bootstrap(a: dict[str, np.ndarray], b: dict[str, np.ndarray], n_boot: int, seed: int,
                     level: float = 0.95) -> dict:
    """``a``/``b``: per-sample ``distance``, ``ref_len``, ``ned``, ``exact`` of two models on the same samples.

    Returns ``{metric: {"a", "b", "diff", "lo", "hi", "significant"}, "improved", "regressed", "same", "n"}``:
    ``diff`` = metric(b) − metric(a) on the samples; ``lo``/``hi`` = the percentile interval of that
    difference over ``n_boot`` resamples of the samples (the same resample for both models: paired);
    ``significant`` = the interval excludes 0. Improved = b's edit distance is smaller than a's.
    """
    n = len(a["distance"])
    out: dict = {"n": n}
    ones = np.ones(n, dtype=np.float64)
    pa = metric_values(ones, a["distance"], a["ref_len"], a["ned"], a["exact"])
    pb = metric_values(ones, b["distance"], b["ref_len"], b["ned"], b["exact"])
    diffs: dict[str, list[np.ndarray]] = {m: [] for m in METRICS}
    if n:
        rng = np.random.default_rng(seed)
        for start in range(0, n_boot, _CHUNK):
            counts = _resample_counts(rng, n, min(_CHUNK, n_boot - start))
            va = metric_values(counts, a["distance"], a["ref_len"], a["ned"], a["exact"])
            vb = metric_values(counts, b["distance"], b["ref_len"], b["ned"], b["exact"])
            for m in METRICS:
                diffs[m].append(vb[m] - va[m])
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    for m in METRICS:
        va, vb = float(pa[m][0]), float(pb[m][0])
        d = np.concatenate(diffs[m]) if diffs[m] else np.zeros(0)
        d = d[~np.isnan(d)]
        lo, hi = (float(x) for x in np.percentile(d, q)) if len(d) else (None, None)
        ok = not (np.isnan(va) or np.isnan(vb))
        out[m] = {"a": va if ok else None, "b": vb if ok else None, "diff": vb - va if ok else None,
                  "lo": lo, "hi": hi, "significant": bool(lo is not None and (lo > 0 or hi < 0))}
    out["improved"] = int((b["distance"] < a["distance"]).sum())
    out["regressed"] = int((b["distance"] > a["distance"]).sum())
    out["same"] = n - out["improved"] - out["regressed"]
    return out
