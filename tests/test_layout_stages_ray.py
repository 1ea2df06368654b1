"""Decode + both detectors as a real Ray Data pipeline (actor pools), and the GPU scheduling path."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from ocrvl_ray.core.records import Page, Region, Word, make_page_id, pages_to_table
from ocrvl_ray.core.skips import Skip
from ocrvl_ray.demo.sample import TEMPLATE_CELLS, TEMPLATE_REGIONS, make_sample_dataset
from ocrvl_ray.layout.config import LayoutConfig
from ocrvl_ray.layout.job import add_stage, stages
from ocrvl_ray.layout.stages.decode import OK


def sample_pages(root: Path, n: int) -> list[Page]:
    """Page rows straight from the generated label files (what `ocrvl prepare` produces)."""
    d = make_sample_dataset(root, n_pages=n, seed=5, size=(620, 877))
    pages = []
    for p in d["pages"]:
        doc = json.loads(Path(p["label"]).read_text("utf-8"))
        words = [Word(str(b["id"]), [b["x"][0], b["y"][0], b["x"][2], b["y"][0], b["x"][2], b["y"][1],
                                     b["x"][0], b["y"][1]], b["data"]) for b in doc["bbox"]]
        pages.append(Page(make_page_id("ocr_public", "train", p["id"]), "ocr_public", "train", p["id"], p["image"],
                          doc["Images"]["width"], doc["Images"]["height"], words, p["label"]))
    return pages


def test_pipeline_with_actor_pools(ray_local, tmp_path, capsys, demo_model_dirs):
    import ray

    pages = sample_pages(tmp_path / "data", 3)
    assert max(len(p.words) for p in pages) > 50
    pages.append(Page("gone", "ocr_public", "train", "gone.png", str(tmp_path / "gone.png"), 100, 100, [], "x.json"))
    layout_dir, cell_dir = demo_model_dirs
    cfg = LayoutConfig.model_validate({"handoff": "bytes", "layout": {"model_dir": str(layout_dir), "batch_size": 2},
                                       "cells": {"model_dir": str(cell_dir), "batch_size": 2}})
    ds = ray.data.from_arrow(pages_to_table(pages))
    for stage in stages(cfg, None)[:-1]:          # every stage but compose, as the job adds them
        ds = add_stage(ds, stage)
    ds.explain()
    plan = capsys.readouterr().out.split("Physical Plan (Optimized)")[1]
    assert "TaskPoolMapOperator[ReadArrow->MapBatches(decode)]" in plan or \
        "TaskPoolMapOperator[MapBatches(decode)]" in plan, plan
    assert "ActorPoolMapOperator[MapBatches(detect_layout)]" in plan, plan
    assert "ActorPoolMapOperator[MapBatches(detect_cells)]" in plan, plan

    rows = {r["page_id"]: r for r in ds.drop_columns(["image_bytes"]).take_all()}
    assert rows["gone"]["status"] == Skip.IMAGE_MISSING.value and len(rows["gone"]["regions"]) == 0
    for page in pages[:3]:
        row = rows[page.page_id]
        assert row["status"] == OK, row["detail"]
        w, h = page.width, page.height
        regions = [Region.from_row(r) for r in row["regions"]]
        assert [r.label for r in regions] == [t[0] for t in TEMPLATE_REGIONS]
        for r, (_l, _s, x1, y1, x2, y2, _o) in zip(regions, TEMPLATE_REGIONS):
            assert np.allclose(r.box, (x1 * w, y1 * h, x2 * w, y2 * h), atol=3), (r.label, r.box)
        cells = [Region.from_row(c) for c in row["cells"]]
        table_index = [r.label for r in regions].index("table")
        table = regions[table_index].box
        assert len(cells) == len(TEMPLATE_CELLS) and {c.table for c in cells} == {table_index}
        assert all(table[0] <= c.box[0] < c.box[2] <= table[2] and table[1] <= c.box[1] < c.box[3] <= table[3]
                   for c in cells)
        assert len(row["words"]) == len(page.words)


GPU_SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    import ray
    from ocrvl_ray.layout.config import LayoutConfig
    from ocrvl_ray.layout.stages.detect_layout import LayoutDetectStage
    from ocrvl_ray.layout.stages.actors import resolve_device

    class Probe:  # stands in for a detector: records what the actor was given, never touches CUDA
        def __init__(self, device):
            self.device = device
        def __call__(self, batch):
            time.sleep(0.5)  # slow enough that both actors get batches
            n = len(batch["id"])
            batch["cuda"] = [os.environ.get("CUDA_VISIBLE_DEVICES", "")] * n
            batch["device"] = [resolve_device(self.device)] * n
            batch["pid"] = [os.getpid()] * n
            return batch

    ray.init(address="local", num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.wait_for_min_actors_s = 60
    ctx.enable_progress_bars = False
    cfg = LayoutConfig.model_validate({"layout": {"device": "gpu:1", "min_actors": 2, "max_actors": 2,
                                                  "num_cpus": 0.5, "batch_size": 1}})
    args = LayoutDetectStage.from_config(cfg).resources.map_batches_args()
    rows = (ray.data.range(8, override_num_blocks=8)
            .map_batches(Probe, fn_constructor_kwargs={"device": cfg.layout.device}, batch_size=1, **args).take_all())
    print(json.dumps({"num_gpus": args["num_gpus"], "rows": rows}))
""")


def test_gpu_actors_get_one_logical_gpu_each(tmp_path):
    env = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    env.pop("CUDA_VISIBLE_DEVICES", None)
    proc = subprocess.run([sys.executable, "-c", GPU_SCRIPT], env=env, capture_output=True, text=True, timeout=240,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["num_gpus"] == 1.0
    by_pid = {}
    for r in out["rows"]:
        by_pid.setdefault(r["pid"], set()).add(r["cuda"])
        assert r["device"] == "gpu:0"  # Ray narrowed CUDA_VISIBLE_DEVICES: config "gpu:1" is local gpu:0
    assert len(by_pid) == 2 and sorted(v.pop() for v in by_pid.values()) == ["0", "1"]
