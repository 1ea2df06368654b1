"""The layout job with ``layout.engine=transformers`` in .venv-torch (no Paddle installed at all): the bundled sample
through tiny random PP-DocLayoutV2/V3 folders built offline, real Ray, real LMDB; and the output identity that
refuses a rerun with the other engine (or dtype) unless overwrite=true."""
from __future__ import annotations

import importlib.util
import json
import sys

import pyarrow.parquet as pq
import pytest

from ocrvl_ray.core.config import load_config
from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.layout.config import LayoutConfig
from ocrvl_ray.layout.engines.configs import save_random_detector


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-hf-detectors")
    return {v: save_random_detector(root / v, v, tiny=True) for v in ("v2", "v3")}


def _cfg(out, model_dir, version, *over):
    return load_config(LayoutConfig, overrides=[
        f"output={out}", "split=train", "limit=1", "cells.enabled=false", "progress=false", "report_html=false",
        "layout.engine=transformers", f"layout.model_dir={model_dir}",
        f"layout.model_name=PP-DocLayout{version.upper()}",
        "layout.threshold=0.0", "mask=none", *over], env={})


def _lmdb_metas(path) -> list[dict]:
    from ocrvl_ray.lmdb.reader import LmdbReader

    with LmdbReader(str(path)) as r:
        return [r.meta(i) for i in range(len(r))]


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_layout_job_composes_from_transformers_detections(ray_local, tiny, tmp_path, version):
    from ocrvl_ray.layout.detections import detections_path, load
    from ocrvl_ray.layout.job import run_layout

    assert importlib.util.find_spec("paddle") is None   # so no actor of this job can have imported Paddle
    report = run_layout(_cfg(tmp_path / f"{version}_layout.lmdb", tiny[version], version))
    # the tiny random V3 finds one page-sized box on this page, which makes no layout sample (no_regions)
    assert report["pages_in"] == 1 and (report["pages_ok"] == 1 or version == "v3"), report
    out = report["output"]   # the split's LMDB
    assert not {"paddle", "paddleocr", "paddlex"} & set(sys.modules)

    det = detections_path(str(out))
    [models] = {json.loads(m)["layout"]["engine"] + "|" + json.loads(m)["layout"]["name"] + "|" +
                json.loads(m)["layout"]["dir"] for m in pq.read_table(det, columns=["models"]).column(0).to_pylist()}
    assert models == f"transformers|PP-DocLayout{version.upper()}|{tiny[version]}"
    [(_, _, regions, cells)] = load(det).values()
    assert regions and cells == []
    ranks = sorted(r["order"] for r in regions if r["order"] != -1)   # -1: unranked (the row form)
    assert ranks == list(range(1, len(ranks) + 1))
    if version == "v2":
        assert all(not r["polygon"] for r in regions)

    metas = [m for m in _lmdb_metas(out) if m.get("layout_label")] if report["pages_ok"] else []
    assert metas or version == "v3", "the tiny V2's regions over the page's words make layout samples"
    for m in metas:   # every layout sample is one of the transformers detections: its label and box (whole px)
        same = [r for r in regions if r["label"] == m["layout_label"] and
                max(abs(a - b) for a, b in zip(r["box"], m["region_box"])) < 1]
        assert same, m
        assert ("region_polygon" in m) == any(r["polygon"] for r in same)


def test_layout_job_with_both_detectors_on_transformers(ray_local, tiny, tmp_path):
    """cells.engine=transformers too: the cell actor pool loads a tiny RT-DETR and the job imports no Paddle. The
    tiny random V2 finds no table on this page, so no cells: the cell stage's own work on transformers is tested
    in-process (test_transformers_detector.py) and against the paddle engine (tests/test_detector_parity.py)."""
    from ocrvl_ray.layout.detections import detections_path, load
    from ocrvl_ray.layout.engines.configs import save_random_cell_detector
    from ocrvl_ray.layout.job import run_layout

    cells_dir = save_random_cell_detector(tmp_path / "cells")
    report = run_layout(_cfg(tmp_path / "cells_layout.lmdb", tiny["v2"], "v2", "cells.enabled=true",
                             "cells.engine=transformers", f"cells.model_dir={cells_dir}"))
    assert report["pages_in"] == 1 and report["pages_ok"] == 1, report
    assert not {"paddle", "paddleocr", "paddlex"} & set(sys.modules)
    det = detections_path(str(report["output"]))
    [models] = {m for m in pq.read_table(det, columns=["models"]).column(0).to_pylist()}
    assert json.loads(models)["cells"] == {"name": "RT-DETR-L_wired_table_cell_det", "dir": str(cells_dir),
                                           "engine": "transformers", "dtype": "float32"}
    [(_, _, regions, cells)] = load(det).values()
    assert regions and not [r for r in regions if r["label"] == "table"] and cells == []


def test_rerun_with_the_other_engine_or_dtype_is_refused_unless_overwrite(ray_local, tiny, tmp_path):
    from ocrvl_ray.demo.sample import sample_manifest
    from ocrvl_ray.layout.job import resolve_inputs, run_layout
    from ocrvl_ray.layout.outputs import layout_identity
    from ocrvl_ray.lmdb.identity import identity_state

    first = _cfg(tmp_path / "id_layout.lmdb", tiny["v2"], "v2")
    report = run_layout(first)
    assert report["pages_ok"] == 1
    out = report["output"]
    manifest = str(sample_manifest())
    assert identity_state(str(out), layout_identity(resolve_inputs(first)[0], manifest, "train")) == "same"
    # the paddle engine on the same folder: a different identity (its run is refused at plan time, before Ray)
    paddle = resolve_inputs(first)[0]
    paddle.layout.engine = "paddle"
    differs = identity_state(str(out), layout_identity(paddle, manifest, "train"))
    assert isinstance(differs, list) and any(k.startswith("layout") for k in differs), differs
    with pytest.raises(OcrvlError, match="made with another config .*layout.*overwrite=true"):
        run_layout(_cfg(tmp_path / "id_layout.lmdb", tiny["v2"], "v2", "layout.dtype=bfloat16"))
    again = run_layout(_cfg(tmp_path / "id_layout.lmdb", tiny["v2"], "v2", "layout.dtype=bfloat16", "overwrite=true"))
    assert again["pages_in"] == 1 and again["output"] == out   # (bf16 on the tiny random V2 may find no region)
    det = pq.read_table(str(out) + ".detections.parquet", columns=["models"]).column(0).to_pylist()
    assert {json.loads(m)["layout"]["dtype"] for m in det} == {"bfloat16"}


def test_preflight_checks_the_folder_before_ray(tiny, tmp_path):
    from ocrvl_ray.layout.preflight import check_models

    assert check_models(_cfg(tmp_path / "x.lmdb", tiny["v3"], "v3")) == []
    with pytest.raises(OcrvlError, match="holds PP-DocLayoutV3, but layout.model_name=PP-DocLayoutV2"):
        check_models(_cfg(tmp_path / "x.lmdb", tiny["v3"], "v2"))
    with pytest.raises(OcrvlError, match="needs layout.model_dir=DIR"):
        check_models(load_config(LayoutConfig, overrides=["layout.engine=transformers", "cells.enabled=false"], env={}))
    (tmp_path / "paddle").mkdir()
    (tmp_path / "paddle" / "inference.yml").write_text("x")
    with pytest.raises(OcrvlError, match="convert-detector"):
        check_models(_cfg(tmp_path / "x.lmdb", tmp_path / "paddle", "v2"))
