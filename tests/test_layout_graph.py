"""The layout graph as a list of stages: column contracts checked before Ray starts, resources read from the
same list, every stage built from its config section (no Ray, no model)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ocrvl_ray.core.config import ConfigError
from ocrvl_ray.layout.config import LayoutConfig

REPO = Path(__file__).resolve().parents[1]

BROKEN = """
import sys
from ocrvl_ray.layout.config import LayoutConfig
from ocrvl_ray.layout.job import check_graph, stages
graph = [s for s in stages(LayoutConfig(), None) if s.name != "table_crops"]   # the cell crops nobody cuts
try:
    check_graph(graph)
except Exception as e:
    print(type(e).__name__, "|", str(e), "|", "ray" in sys.modules)
"""


def test_a_stage_reading_a_column_nobody_writes_fails_before_ray():
    out = subprocess.run([sys.executable, "-c", BROKEN], capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, cwd=REPO)
    kind, msg, ray_loaded = out.stdout.strip().split(" | ")
    assert kind == "ConfigError" and ray_loaded == "False", out.stderr[-2000:]
    assert "\n" not in msg and "detect_cells reads tables" in msg
    assert "manifest -> decode -> detect_layout -> detect_cells" in msg


@pytest.mark.parametrize("over", [{}, {"handoff": "array"}, {"cells": {"enabled": False}},
                                  {"detections": "x.parquet"}])
def test_every_config_builds_a_consistent_graph(over):
    from ocrvl_ray.layout.job import check_graph, stage_resources, stages

    cfg = LayoutConfig.model_validate(over)
    graph = stages(cfg, cfg.detections)
    check_graph(graph)
    assert [r for r in stage_resources(cfg)][:-1] == [s.resources for s in graph]   # cluster-check reads the list
    names = [s.name for s in graph]
    if cfg.detections:
        assert names == ["decode", "detections_lookup", "compose"]
    elif not cfg.cells.enabled:
        assert names == ["decode", "detect_layout", "compose"]
    else:
        assert names == ["decode", "detect_layout", "table_crops", "detect_cells", "compose"]


def test_mismatched_handoff_is_caught():
    """Stages built from different configs disagree on the page column: the check names it."""
    from ocrvl_ray.layout.job import check_graph, stages

    graph = stages(LayoutConfig(handoff="bytes"), None)
    graph[2] = stages(LayoutConfig(handoff="array"), None)[2]      # table crops reading `image`
    with pytest.raises(ConfigError, match="table_crops reads image that no stage before it writes"):
        check_graph(graph)


def test_stages_take_their_settings_from_the_config_only():
    """Bug 7: one default, one place. A stage's settings are its config section's (changed values included)."""
    from ocrvl_ray.layout.job import stages

    cfg = LayoutConfig.model_validate({"handoff": "array", "max_pixels": 1234, "decode_batch_size": 3,
                                       "layout": {"threshold": 0.7, "batch_size": 5},
                                       "cells": {"max_side": 640, "batch_size": 2},
                                       "compose": {"inpaint_radius": 5}, "jpeg_quality": 91, "mask": "words"})
    decode, layout, crops, cells, compose = stages(cfg, None)
    assert (decode.handoff, decode.max_pixels, decode.batch_size) == ("array", 1234, 3)
    assert layout.section is cfg.layout and layout.batch_size == 5
    assert layout.class_thresholds(["text", "table"]) == {0: 0.7, 1: cfg.layout.table_threshold}
    assert (crops.max_side, crops.batch_size, cells.section.max_side) == (640, 2, 640)
    opts = compose.options
    assert (opts.jpeg_quality, opts.mask, opts.inpaint_radius) == (91, "words", 5)
    assert (opts.dilate_factor, opts.feather_min) == (cfg.compose.dilate_factor, cfg.compose.feather_min)


def test_one_default_one_place():
    """Bug 7: the config models hold the defaults. Stage constructors and decode take required settings, and
    the sink's own defaults are the constants the config's defaults are made of."""
    import inspect

    from ocrvl_ray.layout.detections import DetectionsLookupStage
    from ocrvl_ray.layout.stages.compose import ComposeStage
    from ocrvl_ray.layout.stages.decode import DecodeStage, decode_batch
    from ocrvl_ray.layout.stages.detect_cells import CellDetectStage
    from ocrvl_ray.layout.stages.detect_layout import LayoutDetectStage
    from ocrvl_ray.layout.stages.table_crops import TableCropStage
    from ocrvl_ray.lmdb.sink import LmdbSink

    for cls in (DecodeStage, LayoutDetectStage, TableCropStage, CellDetectStage, ComposeStage, DetectionsLookupStage):
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]
        assert all(p.default is inspect.Parameter.empty for p in params), cls.__name__
    decode = inspect.signature(decode_batch).parameters
    assert decode["max_pixels"].default is decode["handoff"].default is inspect.Parameter.empty
    sink, cfg = inspect.signature(LmdbSink).parameters, LayoutConfig()
    assert sink["min_bytes_per_write"].default == cfg.write_batch_mb << 20
    assert (sink["index_base"].default, sink["label_format"].default) == (cfg.index_base, cfg.label_format)
