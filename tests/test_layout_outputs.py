"""Issue 10: the layout job's outputs tell the truth — one LMDB per split, a recorded config identity that
guards reruns, ``overwrite=true`` rebuilds, a reusable detections file, and user errors as one line before Ray.

Real Ray Data, real paddleocr predictors (tiny offline demo models), real LMDB. Expectations come from the
inputs (which pages are in which split, the JPEG quality asked for), never from the code under test.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from ocrvl_ray.core.config import load_config
from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.demo.sample import make_sample_dataset
from ocrvl_ray.layout.config import LayoutConfig
from ocrvl_ray.layout.outputs import resolve_path, split_outputs
from ocrvl_ray.lmdb.identity import differing_keys
from ocrvl_ray.testing.sink import lmdb_contents
from ocrvl_ray.lmdb import LmdbReader

REPO = Path(__file__).resolve().parents[1]
SMALL = (620, 877)


# -- pure ------------------------------------------------------------------------------------------
def test_split_output_names():
    assert split_outputs("/d/finance_layout.lmdb", ["train", "valid"]) == {
        "train": "/d/finance_train_layout.lmdb", "valid": "/d/finance_valid_layout.lmdb"}
    assert split_outputs("/d/x.lmdb", ["train", "valid"]) == {"train": "/d/x_train.lmdb", "valid": "/d/x_valid.lmdb"}
    assert split_outputs("/d/{split}/x.lmdb", ["valid"]) == {"valid": "/d/valid/x.lmdb"}
    assert split_outputs("/d/sample_layout.lmdb", ["train"]) == {"train": "/d/sample_layout.lmdb"}


def test_relative_outputs_inside_a_ray_job_copy_are_refused(tmp_path, monkeypatch):
    copy = tmp_path / "session" / "runtime_resources" / "working_dir_files" / "_ray_pkg_abc"
    copy.mkdir(parents=True)
    monkeypatch.chdir(copy)
    with pytest.raises(OcrvlError, match="output=out/x.lmdb is relative.*absolute path"):
        resolve_path("out/x.lmdb", "output", None, output=True)
    assert resolve_path("m.parquet", "manifest", None, output=False) == str(copy / "m.parquet")
    assert resolve_path("out/x.lmdb", "output", "/data", output=True) == "/data/out/x.lmdb"
    assert resolve_path("/abs/x.lmdb", "output", None, output=True) == "/abs/x.lmdb"


def test_differing_keys_are_dotted_and_ordered():
    old = {"jpeg_quality": 80, "recipes": {"ocr_public": {"cells_replace": "table"}}, "mask": "all"}
    new = {"jpeg_quality": 30, "recipes": {"ocr_public": {"cells_replace": "page"}}, "mask": "all"}
    assert differing_keys(old, new) == ["jpeg_quality", "recipes.ocr_public.cells_replace"]


# -- the identity: what made an LMDB, resolved ------------------------------------------------------
def _model_dir(path: Path, **files: bytes) -> str:
    """A model folder the model check accepts: ``inference.yml`` plus the given files (``.`` for ``_``)."""
    path.mkdir()
    (path / "inference.yml").write_text("Global:\n  model_name: PP-DocLayoutV2\n")
    for name, data in files.items():
        (path / name.replace("__", ".")).write_bytes(data)
    return str(path)


@pytest.mark.parametrize("weights", ["model__safetensors", "model_state__pdparams"])
def test_model_identity_hashes_dynamic_weights(tmp_path, weights):
    from ocrvl_ray.layout.outputs import model_identity
    from ocrvl_ray.layout.stages.actors import check_model_dir

    a = _model_dir(tmp_path / "a", config__json=b"{}", **{weights: b"weights A"})
    b = _model_dir(tmp_path / "b", config__json=b"{}", **{weights: b"weights B"})
    assert check_model_dir(a, "layout", "layout.model_dir") == a          # both are accepted models
    assert check_model_dir(b, "layout", "layout.model_dir") == b
    assert model_identity("PP-DocLayoutV2", a) != model_identity("PP-DocLayoutV2", b)
    c = _model_dir(tmp_path / "c", config__json=b"{}", **{weights: b"weights A"})
    assert model_identity("PP-DocLayoutV2", a) == model_identity("PP-DocLayoutV2", c)   # content, not path


def test_model_identity_hashes_a_transformers_style_folder(tmp_path):
    from ocrvl_ray.layout.outputs import model_identity

    same = {"config__json": b"{}", "model__safetensors": b"w"}
    a = _model_dir(tmp_path / "a", preprocessor_config__json=b'{"max_pixels": 1000}', **same)
    b = _model_dir(tmp_path / "b", preprocessor_config__json=b'{"max_pixels": 2000}', **same)
    assert model_identity("PP-DocLayoutV2", a) != model_identity("PP-DocLayoutV2", b)


@pytest.fixture(scope="module")
def one_page(tmp_path_factory):
    """A real manifest of one ocr_public page (split train), and an accepted layout model folder."""
    from ocrvl_ray.ingest.prepare import PrepareConfig, prepare

    root = tmp_path_factory.mktemp("one")
    make_sample_dataset(root / "ds", n_pages=1, seed=7, size=SMALL, split="Training")
    manifest = root / "manifest.parquet"
    prepare(PrepareConfig(dataset="ocr_public", labels=[str(root / "ds")], images=[str(root / "ds")],
                          out=str(manifest), quiet=True), use_ray=False)
    model = _model_dir(root / "model", config__json=b"{}", model__safetensors=b"w")
    return {"root": root, "manifest": str(manifest), "model": model}


def _ident(data, **over) -> dict:
    from ocrvl_ray.layout.outputs import layout_identity

    cfg = load_config(LayoutConfig, overrides=[f"{k}={v}" for k, v in {
        "manifest": data["manifest"], "layout.model_dir": data["model"], "cells.enabled": "false", **over}.items()],
                      env={})
    return layout_identity(cfg, data["manifest"], "train")


def test_identity_follows_recipe_defaults_without_overrides(one_page, monkeypatch):
    from ocrvl_ray.layout.compose import recipes

    before = _ident(one_page)
    monkeypatch.setitem(recipes.RECIPES, "ocr_public", {"cells_replace": "page"})   # an upgrade's new default
    after = _ident(one_page)
    assert differing_keys(before, after) == ["recipes.ocr_public.cells_replace"]


def test_identity_follows_the_compose_version(one_page, monkeypatch):
    import ocrvl_ray.layout.compose as compose

    before = _ident(one_page)
    monkeypatch.setattr(compose, "COMPOSE_VERSION", compose.COMPOSE_VERSION + 1)
    assert differing_keys(before, _ident(one_page)) == ["compose_version"]


def test_record_holds_the_resolved_snapshot_and_code_outside_the_hash(one_page):
    from ocrvl_ray.core.config import config_hash
    from ocrvl_ray.layout.compose import Recipe
    from ocrvl_ray.lmdb.identity import identity_record

    rec = json.loads(identity_record(_ident(one_page, **{"recipes.ocr_public.word_pad": 5, "compose.dilate_min": 4,
                                                        "recipes.handwriting.word_pad": 9})))
    ident = rec["identity"]
    assert set(ident["recipes"]) == {"ocr_public"}                 # the datasets the split holds, no others
    ocr = ident["recipes"]["ocr_public"]
    assert set(ocr) == set(Recipe.model_fields)                   # every key, not only the overrides
    assert ocr["word_pad"] == 5 and ocr["cells_replace"] == "table" and ocr["layout_threshold"] == 0.3
    assert ident["compose"]["dilate_min"] == 4 and ident["mask"] == "all" and ident["jpeg_quality"] == 80
    assert set(ident["layout"]["files"]) == {"inference.yml", "config.json", "model.safetensors"}
    assert rec["hash"] == config_hash(ident) and rec["code"]["ocrvl_ray"] and "code" not in ident


def test_resume_under_another_compose_version_is_refused(one_page, tmp_path, monkeypatch):
    import ocrvl_ray.layout.compose as compose
    from ocrvl_ray.layout.job import plan_splits
    from ocrvl_ray.lmdb.identity import identity_record
    from ocrvl_ray.lmdb.writer import LmdbWriter

    out = tmp_path / "x_layout.lmdb"
    cfg = load_config(LayoutConfig, overrides=[f"manifest={one_page['manifest']}", f"output={out}",
                                               f"layout.model_dir={one_page['model']}", "cells.enabled=false"], env={})
    with LmdbWriter(str(out), identity=identity_record(_ident(one_page, output=out))):
        pass
    assert plan_splits(cfg, one_page["manifest"])[0].work == str(out)            # same config: resumes
    monkeypatch.setattr(compose, "COMPOSE_VERSION", compose.COMPOSE_VERSION + 1)
    with pytest.raises(OcrvlError, match=r"made with another config \(differs in compose_version\)"):
        plan_splits(cfg, one_page["manifest"])


# -- the job -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mixed(tmp_path_factory, ray_local, demo_model_dirs):
    """Two Training pages and one Validation page (AI-Hub folders) in one manifest."""
    from ocrvl_ray.ingest.prepare import PrepareConfig, prepare

    root = tmp_path_factory.mktemp("mixed")
    tr = make_sample_dataset(root / "ds", n_pages=2, seed=5, size=SMALL, split="Training")
    va = make_sample_dataset(root / "ds", n_pages=1, seed=6, size=SMALL, split="Validation")
    manifest = root / "manifest.parquet"
    prepare(PrepareConfig(dataset="ocr_public", labels=[str(root / "ds")], images=[str(root / "ds")],
                          out=str(manifest), quiet=True), use_ray=False)
    layout_dir, cell_dir = demo_model_dirs
    return {"root": root, "manifest": str(manifest), "layout": str(layout_dir), "cells": str(cell_dir),
            "train_ids": {p["id"] for p in tr["pages"]}, "valid_ids": {p["id"] for p in va["pages"]}}


def _cfg(data, out, **over) -> LayoutConfig:
    base = {"manifest": data["manifest"], "output": str(out), "progress": False, "report_html": False,
            "layout.model_dir": data["layout"], "cells.model_dir": data["cells"]}
    base.update(over)
    return load_config(LayoutConfig, overrides=[f"{k}={v}" for k, v in base.items()], env={})


def _sources(path) -> set[str]:
    with LmdbReader(str(path)) as r:
        return {Path(r.meta(i)["source_image"]).stem for i in range(len(r))}


def _mean_jpeg_quality_proxy(path) -> float:
    """Mean bytes per pixel of the crops: lower JPEG quality, fewer bytes for the same pixels."""
    with LmdbReader(str(path)) as r:
        sizes = []
        for i in range(len(r)):
            data = r.image_bytes(i)
            w, h = Image.open(io.BytesIO(data)).size
            sizes.append(len(data) / (w * h))
    return sum(sizes) / len(sizes)


def test_splits_identity_overwrite_and_detections(mixed, tmp_path):
    from ocrvl_ray.layout.detections import detections_path
    from ocrvl_ray.layout.job import run_layout

    out = tmp_path / "mixed_layout.lmdb"
    report = run_layout(_cfg(mixed, out))
    train, valid = tmp_path / "mixed_train_layout.lmdb", tmp_path / "mixed_valid_layout.lmdb"
    assert report["outputs"] == {"train": str(train), "valid": str(valid)}
    assert not out.exists()
    assert _sources(train) == mixed["train_ids"] and _sources(valid) == mixed["valid_ids"]   # never mixed
    assert set(report["splits"]) == {"train", "valid"}
    assert report["num_samples"] == sum(r["num_samples"] for r in report["splits"].values())

    # 1. a changed config is refused before any work; the LMDB keeps its crops
    before = lmdb_contents(train)
    with pytest.raises(OcrvlError, match=r"made with another config \(differs in jpeg_quality\).*overwrite=true"):
        run_layout(_cfg(mixed, out, jpeg_quality=30, split="train"))
    assert lmdb_contents(train) == before

    # overwrite=true rebuilds with the new crops and swaps them in
    q80 = _mean_jpeg_quality_proxy(train)
    rebuilt = run_layout(_cfg(mixed, out, jpeg_quality=30, split="train", overwrite="true"))
    assert rebuilt["pages_processed"] == 2 and rebuilt["output"] == str(train)
    assert _mean_jpeg_quality_proxy(train) < 0.8 * q80
    assert sorted(p.name for p in tmp_path.iterdir() if ".rebuild-" in p.name or ".old-" in p.name) == []
    assert lmdb_contents(valid) != {} and _sources(valid) == mixed["valid_ids"]    # the other split untouched

    # detections= recomposes a changed recipe without the detectors: the same samples as a full run
    det = detections_path(str(train))
    assert Path(det).is_dir()
    recipe = {"recipes.ocr_public.cells_replace": "page", "jpeg_quality": 30, "split": "train"}
    from_file = run_layout(_cfg(mixed, tmp_path / "recomposed_layout.lmdb", detections=det,
                                **{"layout.model_dir": "/nonexistent", **recipe}))
    full = run_layout(_cfg(mixed, tmp_path / "full_layout.lmdb", **recipe))
    assert from_file["output"] == str(tmp_path / "recomposed_train_layout.lmdb")   # named from the manifest's splits
    assert from_file["num_samples"] == full["num_samples"] > 0
    assert lmdb_contents(from_file["output"]) == lmdb_contents(full["output"])
    # a page missing from the detections file is counted, not dropped silently
    missing = run_layout(_cfg(mixed, tmp_path / "nodet_layout.lmdb", split="valid", detections=det))
    assert missing["pages_skipped"] == {"no_detections": 1}


def _ocrvl(*args, cwd=None, env=None) -> subprocess.CompletedProcess:
    e = {**os.environ, "PYTHONPATH": str(REPO), "RAY_ADDRESS": "", **(env or {})}
    return subprocess.run([sys.executable, "-m", "ocrvl_ray.cli", *args], capture_output=True, text=True,
                          env=e, cwd=cwd, timeout=300)


def _one_line(proc) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and " INFO " not in ln]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_user_errors_are_one_line_before_ray(mixed, tmp_path):
    from ocrvl_ray.ingest.lookup import build_lookup, write_lookup

    lookup = tmp_path / "lookup.parquet"
    write_lookup(build_lookup([str(mixed["root"])], use_ray=False)[0], str(lookup))
    good = [f"layout.model_dir={mixed['layout']}", f"cells.model_dir={mixed['cells']}", "progress=false"]
    cases = [
        ([f"manifest={REPO / 'README.md'}", f"output={tmp_path / 'a.lmdb'}"], "is not a Parquet file"),
        ([f"manifest={lookup}", f"output={tmp_path / 'a.lmdb'}"], "is a lookup index, not a manifest"),
        ([f"manifest={mixed['manifest']}", f"output={tmp_path / 'a b.lmdb'}"], "contains a space"),
        ([f"manifest={mixed['manifest']}", f"output={tmp_path / 'a.lmdb'}", "layout.model_dir=/x"],
         "layout.model_dir=/x: no such folder on node"),
        ([f"manifest={mixed['manifest']}", f"output={tmp_path / 'a.lmdb'}", "split=test"],
         "split=test is not in manifest"),
    ]
    for args, needle in cases:
        line = _one_line(_ocrvl("layout", *good, *args))
        assert needle in line, line
        assert "Started a local Ray" not in line
    assert not (tmp_path / "a.lmdb").exists()


def test_a_stage_failure_is_short_with_the_log_named(mixed, tmp_path, ray_address):
    """A model folder that passes the pre-flight but cannot load: a few lines, exit 2, the full trace in the log."""
    broken = tmp_path / "broken-model"
    broken.mkdir()
    for f in Path(mixed["layout"]).iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    (broken / "inference.pdiparams").write_bytes(b"not weights")
    out = tmp_path / "fail_layout.lmdb"
    proc = _ocrvl("layout", f"manifest={mixed['manifest']}", f"output={out}", "split=valid", "progress=false",
                  f"layout.model_dir={broken}", f"cells.model_dir={mixed['cells']}",
                  env={"RAY_ADDRESS": ray_address})
    assert proc.returncode == 2, proc.stderr
    console = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    assert len(console) <= 10, console
    assert "Traceback" not in proc.stdout + proc.stderr
    err = [ln for ln in console if ln.startswith("ocrvl layout: error:")]
    log = tmp_path / "fail_valid_layout.lmdb.log"          # the valid split's output, named from the manifest
    assert len(err) == 1 and "cannot load" in err[0] and f"full log: {log}" in err[0]
    assert "Traceback" in log.read_text()


def test_pipeline_reruns_layout_when_its_config_changes(mixed, tmp_path):
    from ocrvl_ray.end_to_end import PipelineConfig, run_pipeline

    def cfg(q):
        return load_config(PipelineConfig, overrides={
            "run_dir": str(tmp_path / "run"), "stages": ["layout"],
            "layout": {"manifest": mixed["manifest"], "output": str(tmp_path / "p_layout.lmdb"), "split": "valid",
                       "layout.model_dir": mixed["layout"], "cells.model_dir": mixed["cells"], "progress": False,
                       "report_html": False, "jpeg_quality": q}}, env={})

    lines: list[str] = []
    first = run_pipeline(cfg(80), log=lines.append)["stages"]["layout"]
    lmdb = first["outputs"]["lmdb"]["valid"]
    q80 = _mean_jpeg_quality_proxy(lmdb)
    lines.clear()
    run_pipeline(cfg(80), log=lines.append)
    assert any("skipping" in ln for ln in lines)
    lines.clear()
    second = run_pipeline(cfg(30), log=lines.append)["stages"]["layout"]
    assert any("[layout] starting" in ln for ln in lines), lines
    assert second["config_hash"] != first["config_hash"] and second["status"] == "done"
    assert _mean_jpeg_quality_proxy(lmdb) < 0.8 * q80          # the LMDB really holds the new crops
    manifest = json.loads((tmp_path / "run" / "run_manifest.json").read_text())
    assert manifest["stages"]["layout"]["config_hash"] == second["config_hash"]
