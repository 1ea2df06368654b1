"""``ocrvl eval`` end to end on CPU: a tiny random PaddleOCR-VL, a LoRA of it merged in memory and the same
LoRA merged into an export by ``ocrvl merge``, on a validation LMDB written by the layout job; real Ray Data
actor pool, real paddlex model class, real LMDB. Also through ``jobs/eval.py`` (its own local Ray)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ocrvl_ray.cli.eval import main

REPO = Path(__file__).resolve().parents[1]
LIMIT = 4


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from ocrvl_ray.export.merge import merge_lora
    from ocrvl_ray.testing.tiny_vl import build_tiny_lora, build_tiny_ocrvl

    root = tmp_path_factory.mktemp("vl")
    base = build_tiny_ocrvl(root / "base")
    lora = build_tiny_lora(root / "lora", base)
    export = merge_lora(base, lora, root / "export", log=lambda s: None).out
    return base, lora, export


@pytest.fixture(scope="module")
def valid_lmdb(bundled_sample_run):
    """The bundled sample's valid split from the session's quick-start run (read only here)."""
    report, _ = bundled_sample_run
    assert report["splits"]["valid"]["num_samples"] >= LIMIT
    return Path(report["outputs"]["valid"])


def test_eval_base_lora_and_export(models, valid_lmdb, tmp_path, capsys):
    from ocrvl_ray.lmdb.reader import LmdbReader

    base, lora, export = models
    out = tmp_path / "eval"
    rc = main(["--model", f"base={base}", "--model", f"ft={base}+{lora}", "--model", f"merged={export}",
               "--data", str(valid_lmdb), "--out", str(out), f"limit={LIMIT}", "max_new_tokens=10",
               "bootstrap=100", "batch_size=2"])
    assert rc == 0
    t = pq.read_table(out / "predictions.parquet").to_pydict()
    with LmdbReader(str(valid_lmdb)) as r:   # every sample, in LMDB order, with its label and slices
        assert t["reference"] == [r.label(i) for i in range(LIMIT)]
        assert t["kind"] == [r.meta(i)["sample_kind"] for i in range(LIMIT)]
        assert t["dataset"] == [r.meta(i)["dataset"] for i in range(LIMIT)]
    for m in ("base", "ft", "merged"):
        assert len(t[f"prediction:{m}"]) == LIMIT and all(0 < k <= 10 for k in t[f"tokens:{m}"])
        assert t[f"distance:{m}"] and f"loop:{m}" in t
    assert t["prediction:ft"] == t["prediction:merged"]        # in-memory LoRA == merged export
    assert t["prediction:ft"] != t["prediction:base"]          # and the LoRA changes the model

    m = json.loads((out / "metrics.json").read_text())
    assert set(m["models"]) == {"base", "ft", "merged"} and m["n_samples"] == LIMIT
    assert {k for k in m["models"]["ft"]["overall"]} == {"cer", "ned", "exact_match", "n"}
    assert [(c["a"], c["b"]) for c in m["comparisons"]] == [("base", "ft"), ("base", "merged"), ("ft", "merged")]
    assert m["comparisons"][2]["overall"]["same"] == LIMIT
    assert [x["kind"] for x in m["run"]["models"]] == ["base", "base+lora", "export"]
    assert {x["model_version"] for x in m["run"]["models"]} == {"v1"}
    assert "<h2>Headline</h2>" in (out / "report.html").read_text("utf-8")
    assert "ft vs base:" in capsys.readouterr().out

    # random models rarely differ per sample; make ft read sample 1 right and re-score our own file:
    # the gain is shown with its crop, read back from the LMDB named in the predictions file
    t["prediction:ft"][1] = t["reference"][1]
    import pyarrow as pa

    pq.write_table(pa.table(t), tmp_path / "edited.parquet")
    assert main(["score", "--predictions", str(tmp_path / "edited.parquet"), "--out", str(tmp_path / "re")]) == 0
    m2 = json.loads((tmp_path / "re" / "metrics.json").read_text())
    assert m2["models"]["ft"]["overall"]["exact_match"] >= 1 / LIMIT
    assert m2["comparisons"][0]["overall"]["improved"] >= 1
    html = (tmp_path / "re" / "report.html").read_text("utf-8")
    assert re.search(r"best gains \([1-9]", html) and "data:image/jpeg;base64," in html


@pytest.mark.parametrize("args, needle", [
    (["--data", "{lmdb}", "--out", "{tmp}"], "no --model given"),
    (["--model", "{lora}", "--data", "{lmdb}", "--out", "{tmp}"], "is a LoRA checkpoint; pass it with its base"),
    (["--model", "{base}", "--data", "{tmp}/nope.lmdb", "--out", "{tmp}"], "no LMDB here"),
    (["--model", "{base}+{lora}", "--data", "{lmdb}", "--out", "{tmp}", "engine=vllm"], "merge BASE+LORA first"),
    (["--model", "{base}", "--data", "{lmdb}", "--out", "{tmp}", "max_new_token=3"], "did you mean 'max_new_tokens'"),
])
def test_bad_input_is_one_line_exit_2(models, valid_lmdb, tmp_path, capsys, args, needle):
    base, lora, _ = models
    argv = [a.format(lmdb=valid_lmdb, tmp=tmp_path, base=base, lora=lora) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1, err


def test_jobs_eval_script_on_its_own_local_ray(models, valid_lmdb, tmp_path):
    base, lora, _ = models
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("RAY_ADDRESS", None)
    p = subprocess.run([sys.executable, str(REPO / "jobs" / "eval.py"), "--model", f"base={base}",
                        "--model", f"ft={base}+{lora}", "--data", str(valid_lmdb), "--out", str(tmp_path / "o"),
                        "limit=2", "max_new_tokens=6", "bootstrap=50"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "ft vs base:" in p.stdout
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())
    assert m["models"]["ft"]["overall"]["n"] == 2


def test_pipeline_eval_stage(models, valid_lmdb, tmp_path):
    """`ocrvl pipeline`'s eval stage: base vs export on the validation LMDB, recorded in the run manifest."""
    from ocrvl_ray.core.config import load_config
    from ocrvl_ray.end_to_end import PipelineConfig, run_pipeline

    base, _, export = models
    cfg = load_config(PipelineConfig, overrides={
        "run_dir": str(tmp_path / "run"), "stages": ["eval"], "merge": {"base": str(base)},
        "eval": {"export": str(export), "data": str(valid_lmdb),
                 "options": {"limit": 2, "max_new_tokens": 5, "bootstrap": 50}}}, env={})
    lines: list[str] = []
    stage = run_pipeline(cfg, log=lines.append)["stages"]["eval"]
    assert stage["status"] == "done" and stage["inputs"] == {"base": str(base), "export": str(export),
                                                             "data": str(valid_lmdb)}
    metrics = json.loads(Path(stage["outputs"]["metrics"]).read_text())
    assert set(metrics["models"]) == {"base", "ft"} and metrics["n_samples"] == 2
    assert Path(stage["outputs"]["report"]).is_file() and "cer" in stage["outputs"]["base_vs_ft"]
    lines.clear()
    run_pipeline(cfg, log=lines.append)
    assert any("[eval] done before" in ln for ln in lines)
