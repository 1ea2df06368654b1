"""Scoring text on NFC-normalised characters (pure; rapidfuzz's C++ Levenshtein).

Per sample (after NFC): ``distance`` = Levenshtein(ref, hyp) in characters; ``ned`` = distance / max(len(ref),
len(hyp)), 0 when both are empty; ``exact`` = ref == hyp. Over a set of samples: ``cer`` = Σ distance / Σ len(ref)
(None when Σ len(ref) = 0), ``ned`` = mean per-sample ned, ``exact_match`` = mean exact, ``n``.
"""
from __future__ import annotations

import unicodedata
from bisect import bisect_right
from typing import Sequence

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from ocrvl_ray.report.inspect.collect import char_class

#: character classes that get a slice (a sample belongs to every class its reference contains)
SLICE_CHAR_CLASSES = ("hangul", "latin", "digit", "symbol")
#: reference length buckets (characters after NFC): "0", "1-4", "5-9", ..., ">=100"
LENGTH_EDGES = (1, 5, 10, 20, 50, 100)
SLICE_COLUMNS = ("dataset", "kind", "layout_label")


def nfc(text: str | None) -> str:
    return unicodedata.normalize("NFC", text or "")


def distances(refs: Sequence[str], hyps: Sequence[str]) -> np.ndarray:
    """Element-wise Levenshtein distances (characters) of already-normalised pairs, int64."""
    if not len(refs):
        return np.zeros(0, dtype=np.int64)
    return np.asarray(process.cpdist(list(refs), list(hyps), scorer=Levenshtein.distance, workers=1),
                      dtype=np.int64)


def sample_scores(refs: Sequence[str], hyps: Sequence[str]) -> dict[str, np.ndarray]:
    """Per-sample ``distance``, ``ref_len``, ``hyp_len``, ``ned``, ``exact`` for NFC-normalised pairs."""
    refs = [nfc(r) for r in refs]
    hyps = [nfc(h) for h in hyps]
    dist = distances(refs, hyps)
    ref_len = np.fromiter((len(r) for r in refs), dtype=np.int64, count=len(refs))
    hyp_len = np.fromiter((len(h) for h in hyps), dtype=np.int64, count=len(hyps))
    denom = np.maximum(ref_len, hyp_len)
    ned = np.divide(dist, denom, out=np.zeros(len(refs), dtype=np.float64), where=denom > 0)
    exact = np.fromiter((r == h for r, h in zip(refs, hyps)), dtype=bool, count=len(refs))
    return {"distance": dist, "ref_len": ref_len, "hyp_len": hyp_len, "ned": ned, "exact": exact}


def aggregate(distance: np.ndarray, ref_len: np.ndarray, ned: np.ndarray, exact: np.ndarray) -> dict:
    """``cer``, ``ned``, ``exact_match``, ``n`` over the given samples."""
    n = int(len(distance))
    total = int(ref_len.sum())
    return {"cer": float(distance.sum() / total) if total else None,
            "ned": float(ned.mean()) if n else None,
            "exact_match": float(exact.mean()) if n else None,
            "n": n}


def char_classes(text: str) -> set[str]:
    """The slice character classes present in ``text``."""
    return {c for c in map(char_class, set(text)) if c in SLICE_CHAR_CLASSES}


def length_bucket(n: int) -> str:
    """``0``, ``1-4``, ``5-9``, ``10-19``, ``20-49``, ``50-99``, ``>=100``."""
    i = bisect_right(LENGTH_EDGES, n)
    if i == 0:
        return "0"
    if i == len(LENGTH_EDGES):
        return f">={LENGTH_EDGES[-1]}"
    return f"{LENGTH_EDGES[i - 1]}-{LENGTH_EDGES[i] - 1}"


def length_bucket_order() -> list[str]:
    return ["0"] + [f"{a}-{b - 1}" for a, b in zip(LENGTH_EDGES, LENGTH_EDGES[1:])] + [f">={LENGTH_EDGES[-1]}"]


def slice_members(refs: Sequence[str], columns: dict[str, Sequence]) -> dict[str, dict[str, np.ndarray]]:
    """``{slice family: {value: sample indices}}`` for the given slice columns, char class and length bucket.

    Missing/empty column values are left out of that family (the sample still counts in ``overall``).
    """
    out: dict[str, dict[str, list[int]]] = {}
    for name, values in columns.items():
        fam = out.setdefault(name, {})
        for i, v in enumerate(values):
            if v is None or v == "" or (isinstance(v, float) and v != v):
                continue
            fam.setdefault(str(v), []).append(i)
    cls: dict[str, list[int]] = {c: [] for c in SLICE_CHAR_CLASSES}
    lengths: dict[str, list[int]] = {b: [] for b in length_bucket_order()}
    for i, r in enumerate(refs):
        r = nfc(r)
        for c in char_classes(r):
            cls[c].append(i)
        lengths[length_bucket(len(r))].append(i)
    out["char_class"] = cls
    out["length"] = lengths
    return {fam: {k: np.asarray(v, dtype=np.int64) for k, v in sorted(vals.items(), key=_order(fam)) if v}
            for fam, vals in out.items()}


def _order(family: str):
    if family == "length":
        rank = {b: i for i, b in enumerate(length_bucket_order())}
        return lambda kv: rank[kv[0]]
    if family == "char_class":
        return lambda kv: SLICE_CHAR_CLASSES.index(kv[0])
    return lambda kv: kv[0]


def find_loop(seq: Sequence, max_period: int, min_repeats: int) -> int | None:
    """Start of a repetition loop at the end of ``seq`` (a unit of 1..max_period items repeated at least
    ``min_repeats`` times back to back), else None. Works on strings and token-id lists alike."""
    n = len(seq)
    best = None
    for p in range(1, max_period + 1):
        if p * min_repeats > n:
            break
        unit = list(seq[n - p:])
        start = n - p
        while start - p >= 0 and list(seq[start - p:start]) == unit:
            start -= p
        if (n - start) // p >= min_repeats and (best is None or start < best):
            best = start
    return best


def cut_loop(text: str, max_period: int, min_repeats: int) -> tuple[str, bool]:
    """``text`` with a trailing repetition loop reduced to one unit, and whether one was found."""
    start = find_loop(text, max_period, min_repeats)
    if start is None:
        return text, False
    tail = text[start:]
    for p in range(1, max_period + 1):  # the shortest unit that tiles the tail
        if len(tail) % p == 0 and tail[:p] * (len(tail) // p) == tail:
            return text[:start + p], True
    return text[:start], True

