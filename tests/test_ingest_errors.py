"""Ingest as a new user meets it: auto-detect of our own label files, skip examples that say what was
looked for and where the JSON breaks, and output paths checked before any work (one line, exit 2)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ocrvl_ray.ingest.prepare import PrepareConfig, prepare
from ocrvl_ray.demo.sample import make_sample_dataset, sample_dataset_dir

REPO = Path(__file__).resolve().parents[1]


def ocrvl(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_ADDRESS": ""}
    return subprocess.run([sys.executable, "-m", "ocrvl_ray.cli", *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and " INFO " not in ln]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.parametrize("family", ["ocr_public", "finance_logistics", "handwriting"])
def test_auto_detect_reads_the_label_files_we_generate(tmp_path, family):
    made = make_sample_dataset(tmp_path / family, n_pages=2, seed=3, dataset=family)
    s = prepare(PrepareConfig(dataset="auto", labels=[made["labels_dir"]], images=[made["images_dir"]],
                              out=str(tmp_path / "m.parquet"), quiet=True), use_ray=False)
    assert s["by_split"] == {f"{family}/train": 2}
    assert s["skipped"]["counts"] == {}


def test_auto_detect_reads_the_bundled_sample(tmp_path):
    root = str(sample_dataset_dir())
    s = prepare(PrepareConfig(dataset="auto", labels=[root], images=[root], out=str(tmp_path / "m.parquet"),
                              split="train", quiet=True), use_ray=False)
    # split="train" forces every page into train: the 6 Training pages and the 2 Validation ones
    assert s["by_split"] == {"ocr_public/train": 3, "finance_logistics/train": 1, "handwriting/train": 2,
                             "public_admin/train": 1, "text_in_wild/train": 1}
    assert s["skipped"]["counts"] == {}


def test_skip_examples_name_the_missing_image_and_the_json_position(tmp_path):
    made = make_sample_dataset(tmp_path / "d", n_pages=2, seed=4)
    bad = tmp_path / "d" / "bad.json"
    bad.write_text('{"Images": {"width": 10,\n  "height" 20}}', encoding="utf-8")
    only_first = made["pages"][0]["image"]
    s = prepare(PrepareConfig(dataset="ocr_public", labels=[made["labels_dir"], str(bad)], images=[only_first],
                              out=str(tmp_path / "m.parquet"), quiet=True), use_ray=False)
    missing = made["pages"][1]["id"]
    [unmatched] = s["skipped"]["examples"]["image_unmatched"]
    assert f"no image {missing}{{.png,.jpg,.jpeg}}" in unmatched and f"{missing}.json" in unmatched
    [malformed] = s["skipped"]["examples"]["malformed_json"]
    assert "bad.json" in malformed and "line 2 column 12" in malformed


def test_prepare_refuses_bad_out_paths_before_any_work(tmp_path):
    root = str(sample_dataset_dir())
    (tmp_path / "existing").mkdir()
    (tmp_path / "x.json").write_text("{}")
    for out, needle in ((tmp_path / "existing", "is a folder"),
                        (tmp_path / "x.json" / "m.parquet", "x.json is a file, not a folder")):
        t0 = time.time()
        line = one_line_error(ocrvl("prepare", "--labels", root, "--images", root, "--out", str(out)))
        assert needle in line and str(out) in line
        assert time.time() - t0 < 20  # refused up front: no Ray start, no reading
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing", "x.json"]  # no .tmp left behind
    assert list((tmp_path / "existing").iterdir()) == []


def test_merge_refuses_an_unwritable_out(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "lora").mkdir()
    line = one_line_error(ocrvl("merge", "--base", str(tmp_path / "base"), "--lora", str(tmp_path / "lora"),
                                "--out", "/proc/ocrvl/x"))
    assert "/proc/ocrvl/x" in line


def test_lookup_build_small_tree_in_process_and_empty_tree_warns(tmp_path):
    root = str(sample_dataset_dir())
    t0 = time.time()
    proc = ocrvl("lookup", "build", root, "--out", str(tmp_path / "l.parquet"))
    assert proc.returncode == 0, proc.stderr
    assert "Started a local Ray" not in proc.stderr + proc.stdout
    assert "8 images" in proc.stdout and time.time() - t0 < 20   # 6 Training + 2 Validation pages
    (tmp_path / "empty").mkdir()
    proc = ocrvl("lookup", "build", str(tmp_path / "empty"), "--out", str(tmp_path / "l2.parquet"))
    assert "0 images" in proc.stdout
    assert "warning: no .png/.jpg/.jpeg images under" in proc.stderr and str(tmp_path / "empty") in proc.stderr
    report = json.loads((tmp_path / "l2.report.json").read_text())
    assert report["images"] == 0
