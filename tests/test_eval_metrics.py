"""Eval metrics, slices, repetition guard and paired bootstrap against hand-computed values."""
from __future__ import annotations

import unicodedata

import numpy as np
import pytest

from ocrvl_ray.eval.compare import paired_bootstrap
from ocrvl_ray.eval.metrics import aggregate, cut_loop, find_loop, length_bucket, sample_scores, slice_members


def test_sample_scores_by_hand():
    s = sample_scores(["abc", "abcd", "", "", "가나다"], ["abd", "", "", "xy", "가다"])
    assert s["distance"].tolist() == [1, 4, 0, 2, 1]
    assert s["ref_len"].tolist() == [3, 4, 0, 0, 3]
    np.testing.assert_allclose(s["ned"], [1 / 3, 1.0, 0.0, 1.0, 1 / 3])
    assert s["exact"].tolist() == [False, False, True, False, False]
    agg = aggregate(s["distance"], s["ref_len"], s["ned"], s["exact"])
    assert agg["n"] == 5
    assert agg["cer"] == pytest.approx(8 / 10)                      # (1+4+0+2+1) / (3+4+0+0+3)
    assert agg["ned"] == pytest.approx((1 / 3 + 1 + 0 + 1 + 1 / 3) / 5)
    assert agg["exact_match"] == pytest.approx(1 / 5)


def test_empty_references_only_have_no_cer():
    s = sample_scores(["", ""], ["", "a"])
    agg = aggregate(s["distance"], s["ref_len"], s["ned"], s["exact"])
    assert agg == {"cer": None, "ned": 0.5, "exact_match": 0.5, "n": 2}


def test_nfd_hangul_is_normalised():
    nfd = unicodedata.normalize("NFD", "한국어")
    assert len(nfd) == 8 and nfd != "한국어"                        # 3 syllables as 8 jamo
    s = sample_scores(["한국어"], [nfd])
    assert s["distance"].tolist() == [0] and s["exact"].tolist() == [True] and s["ref_len"].tolist() == [3]
    s = sample_scores([nfd], ["한국"])                               # NFD reference: 3 characters after NFC
    assert s["distance"].tolist() == [1] and s["ref_len"].tolist() == [3]
    assert s["ned"][0] == pytest.approx(1 / 3)


def test_slices():
    refs = ["한글 12", "abc", "", "!!"]
    m = slice_members(refs, {"dataset": ["fin", "fin", "pub", None]})
    assert {k: v.tolist() for k, v in m["dataset"].items()} == {"fin": [0, 1], "pub": [2]}
    assert {k: v.tolist() for k, v in m["char_class"].items()} == {"hangul": [0], "latin": [1], "digit": [0],
                                                                  "symbol": [3]}
    assert {k: v.tolist() for k, v in m["length"].items()} == {"0": [2], "1-4": [1, 3], "5-9": [0]}
    assert [length_bucket(n) for n in (0, 1, 4, 5, 99, 100, 5000)] == ["0", "1-4", "1-4", "5-9", "50-99",
                                                                       ">=100", ">=100"]


def test_repetition_guard():
    assert find_loop("abc" + "12" * 8, max_period=8, min_repeats=8) == 3
    assert cut_loop("abc" + "12" * 8, 8, 8) == ("abc12", True)
    assert cut_loop("0" * 10, 8, 8) == ("0", True)
    assert cut_loop("1,000,000", 8, 8) == ("1,000,000", False)
    assert cut_loop("x" * 7, 8, 8) == ("x" * 7, False)
    assert find_loop([5, 7, 9, 9, 9, 9], max_period=2, min_repeats=4) == 2   # token ids too


def _scores(dist, ref_len):
    dist, ref_len = np.asarray(dist), np.asarray(ref_len)
    return {"distance": dist, "ref_len": ref_len, "ned": dist / np.maximum(ref_len, 1), "exact": dist == 0}


def test_paired_counts_and_point_difference():
    a = _scores([1, 2, 0, 3], [4, 4, 4, 4])
    b = _scores([0, 2, 1, 1], [4, 4, 4, 4])
    r = paired_bootstrap(a, b, n_boot=200, seed=1)
    assert (r["improved"], r["regressed"], r["same"], r["n"]) == (2, 1, 1, 4)
    assert r["cer"]["a"] == pytest.approx(6 / 16) and r["cer"]["b"] == pytest.approx(4 / 16)
    assert r["cer"]["diff"] == pytest.approx(-2 / 16)
    assert r["exact_match"]["diff"] == pytest.approx(0.0)            # one exact each
    assert r["cer"]["lo"] <= r["cer"]["diff"] <= r["cer"]["hi"]


def test_bootstrap_interval_contains_true_difference():
    """Population: b fixes one error on 30 % of samples (true CER difference -0.03 with len 10); the
    intervals computed from random samples of it contain the truth about 95 % of the time."""
    rng = np.random.default_rng(0)
    hits, n, trials = 0, 300, 60
    for t in range(trials):
        da = rng.integers(1, 4, n)
        fixed = rng.random(n) < 0.3
        db = da - fixed
        true = -0.3 / 10
        r = paired_bootstrap(_scores(da, np.full(n, 10)), _scores(db, np.full(n, 10)), n_boot=400, seed=t)
        hits += r["cer"]["lo"] <= true <= r["cer"]["hi"]
        if t == 0:
            assert r["cer"]["significant"] and r["cer"]["hi"] < 0
    assert hits >= 0.85 * trials


def test_no_difference_is_not_significant():
    a = _scores([1, 0, 2, 1, 0, 1], [5] * 6)
    r = paired_bootstrap(a, a, n_boot=100, seed=0)
    assert r["ned"]["diff"] == 0 and not r["ned"]["significant"] and r["same"] == 6
