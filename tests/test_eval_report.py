"""``report.html`` reads without the code: the run's models as a table (not a Python dict), the number beside
each example prediction labelled (issue 26 item 9)."""
from __future__ import annotations

import re

from ocrvl_ray.eval.config import ScoreOptions
from ocrvl_ray.eval.predictions import Predictions
from ocrvl_ray.eval.score import score, write_outputs

COLS = {"key": ["v/1", "v/2"], "dataset": ["fin", "fin"], "kind": ["word", "cell"], "layout_label": ["text", "table"],
        "reference": ["합계 100", "abc"], "prediction:base": ["합게 10", "abc"], "prediction:ft": ["합계 100", "abd"]}
RUN = {"data": ["/data/a_valid_layout.lmdb", "/data/b_valid_layout.lmdb"], "engine": "paddle", "limit": 0,
       "models": [{"name": "base", "kind": "base", "path": "/models/PaddleOCR-VL", "lora": None,
                   "model_version": "v1", "seconds": 12.5, "samples_per_s": 0.16},
                  {"name": "ft", "kind": "export", "path": "/runs/x/export", "lora": None,
                   "model_version": "v1", "seconds": 11.0, "samples_per_s": 0.18}]}


def test_run_models_are_a_table_and_example_numbers_are_labelled(tmp_path):
    opts = ScoreOptions(bootstrap=20, examples=4)
    metrics, cols = score(Predictions(dict(COLS), ["base", "ft"]), opts)
    paths = write_outputs(metrics, cols, tmp_path / "o", opts, extra={"run": RUN})
    html = open(paths["report"], encoding="utf-8").read()
    assert "{'name'" not in html and "[{" not in html and "['/data" not in html
    assert "<th>model</th><th>kind</th><th>model_version</th><th>folder</th>" in html
    assert "<td>ft</td><td>export</td><td>v1</td><td>/runs/x/export</td>" in html
    assert "<td>data</td><td>/data/a_valid_layout.lmdb, /data/b_valid_layout.lmdb</td>" in html
    # sample 1: base is 2 edits away (게→계, a missing 0), ft exact: a gain, both distances labelled
    gain = html.split("best gains", 1)[1]
    assert re.search(r"<b>base</b> <span class=\"muted\">\(edit distance 2\)</span>: 합게 10", gain)
    assert re.search(r"<b>ft</b> <span class=\"muted\">\(edit distance 0\)</span>: 합계 100", gain)
