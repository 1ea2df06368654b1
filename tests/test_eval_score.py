"""``ocrvl eval score``: predictions file (JSONL / Parquet) -> metrics.json + report.html, by hand values."""
from __future__ import annotations

import json

import pytest

from ocrvl_ray.cli.eval import main

ROWS = [
    {"key": "1", "dataset": "fin", "kind": "word", "layout_label": "text", "reference": "합계 100",
     "prediction:base": "합게 100", "prediction:ft": "합계 100"},
    {"key": "2", "dataset": "fin", "kind": "cell", "layout_label": "table", "reference": "abc",
     "prediction:base": "abc", "prediction:ft": "abd"},
    {"key": "3", "dataset": "pub", "kind": "layout", "layout_label": "text", "reference": "가나다라",
     "prediction:base": "", "prediction:ft": "가나"},
]


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


def test_score_jsonl_by_hand(tmp_path, capsys):
    f = _write_jsonl(tmp_path / "p.jsonl", ROWS)
    assert main(["score", "--predictions", str(f), "--out", str(tmp_path / "o"), "bootstrap=200"]) == 0
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    base, ft = m["models"]["base"], m["models"]["ft"]
    # base: distances 1, 0, 4 over ref lengths 6, 3, 4; ned 1/6, 0, 1
    assert base["overall"]["cer"] == pytest.approx(5 / 13)
    assert base["overall"]["ned"] == pytest.approx((1 / 6 + 0 + 1) / 3)
    assert base["overall"]["exact_match"] == pytest.approx(1 / 3) and base["overall"]["n"] == 3
    # ft: distances 0, 1, 2; ned 0, 1/3, 2/4
    assert ft["overall"]["cer"] == pytest.approx(3 / 13)
    assert ft["overall"]["ned"] == pytest.approx((0 + 1 / 3 + 1 / 2) / 3)
    assert ft["slices"]["dataset"]["fin"] == {"cer": pytest.approx(1 / 9), "ned": pytest.approx(1 / 6),
                                              "exact_match": 0.5, "n": 2}
    assert set(ft["slices"]["kind"]) == {"word", "cell", "layout"}
    assert ft["slices"]["char_class"]["hangul"]["n"] == 2 and ft["slices"]["char_class"]["digit"]["n"] == 1
    (c,) = m["comparisons"]
    assert (c["a"], c["b"]) == ("base", "ft")
    assert (c["overall"]["improved"], c["overall"]["regressed"], c["overall"]["same"]) == (2, 1, 0)
    assert c["overall"]["cer"]["diff"] == pytest.approx(3 / 13 - 5 / 13)
    assert c["slices"]["dataset"]["pub"]["n"] == 1
    assert list(m["models"]) == ["base", "ft"] and m["definitions"]["cer"].startswith("sum of Levenshtein")
    html = (tmp_path / "o" / "report.html").read_text("utf-8")
    assert "<h2>Headline</h2>" in html and "worst regressions" in html and "가나다라" in html
    assert "<script" not in html and "http" not in html.replace("http-equiv", "")
    import pyarrow.parquet as pq

    t = pq.read_table(tmp_path / "o" / "predictions.parquet").to_pydict()
    assert t["distance:base"] == [1, 0, 4] and t["distance:ft"] == [0, 1, 2] and t["key"] == ["1", "2", "3"]
    out = capsys.readouterr().out
    assert "base: n=3" in out and "ft vs base:" in out


def test_rescoring_our_parquet_gives_the_same_metrics(tmp_path):
    f = _write_jsonl(tmp_path / "p.jsonl", ROWS)
    assert main(["score", "--predictions", str(f), "--out", str(tmp_path / "a")]) == 0
    assert main(["score", "--predictions", str(tmp_path / "a" / "predictions.parquet"), "--out",
                 str(tmp_path / "b")]) == 0
    a = json.loads((tmp_path / "a" / "metrics.json").read_text())
    b = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert a["models"] == b["models"] and a["comparisons"] == b["comparisons"]


def test_single_prediction_column_is_model_named_model(tmp_path):
    f = _write_jsonl(tmp_path / "p.jsonl", [{"reference": "ab", "prediction": "ab"}, {"reference": "cd",
                                                                                         "prediction": None}])
    assert main(["score", "--predictions", str(f)]) == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["models"]["model"]["overall"] == {"cer": 0.5, "ned": 0.5, "exact_match": 0.5, "n": 2}
    assert m["comparisons"] == []


@pytest.mark.parametrize("rows, needle", [
    ([{"prediction:a": "x"}], "no 'reference' column"),
    ([{"reference": "x", "hyp": "y"}], "no prediction column"),
    ([{"reference": 3, "prediction:a": "y"}], "row 1: 'reference' is int"),
])
def test_bad_predictions_one_line_exit_2(tmp_path, capsys, rows, needle):
    f = _write_jsonl(tmp_path / "p.jsonl", rows)
    assert main(["score", "--predictions", str(f)]) == 2
    err = capsys.readouterr().err
    assert needle in err and str(f) in err and len(err.strip().splitlines()) == 1


def test_not_json_names_the_line(tmp_path, capsys):
    f = tmp_path / "p.jsonl"
    f.write_text('{"reference": "a", "prediction": "a"}\n{oops\n')
    assert main(["score", "--predictions", str(f)]) == 2
    assert "line 2: not JSON" in capsys.readouterr().err
