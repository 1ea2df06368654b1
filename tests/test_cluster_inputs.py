"""Inputs every node can read (issue 27, item 3): the bundled sample's manifest and the demo models were built in
the driver's temp dir, so read tasks and detector actors on other machines failed. Real Ray Data, real paddle."""
from __future__ import annotations

import shutil

import pytest

from ocrvl_ray.core.config import load_config
from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.layout.config import LayoutConfig


def test_the_sample_manifest_travels_from_the_driver(ray_local, demo_model_dirs, tmp_path, monkeypatch):
    """Without manifest= the rows go through the object store: the file may be gone (as on another node)
    once the dataset is built."""
    from ocrvl_ray.layout.job import build_dataset, pending_pages, resolve_inputs

    monkeypatch.setenv("OCRVL_CACHE", str(tmp_path / "cache"))
    layout_dir, cell_dir = demo_model_dirs
    cfg = load_config(LayoutConfig, overrides=[f"output={tmp_path / 'o.lmdb'}", f"layout.model_dir={layout_dir}",
                                               f"cells.model_dir={cell_dir}"], env={})
    cfg, manifest = resolve_inputs(cfg)
    assert cfg.manifest is None and manifest.startswith(str(tmp_path / "cache"))
    todo = pending_pages(manifest, "train", set(), 0)
    ds = build_dataset(cfg, manifest, todo, None)
    shutil.rmtree(tmp_path / "cache")
    assert todo.pages_in > 0
    assert ds.count() == todo.pages_in


def test_demo_models_are_built_on_a_node_that_lacks_them(tmp_path):
    """A worker on another machine has no copy of the driver's demo model folder: the actor's model check builds
    the same folder there (named by a content hash) instead of failing with "set demo_models=true"."""
    from ocrvl_ray.demo.models import demo_model_dirs
    from ocrvl_ray.layout.stages.actors import check_model_dir

    layout_dir, cell_dir = demo_model_dirs(tmp_path / "node-b")
    assert not layout_dir.exists()
    assert check_model_dir(str(layout_dir), "layout", "layout.model_dir") == str(layout_dir)
    assert (layout_dir / "inference.yml").is_file() and (cell_dir / "inference.yml").is_file()
    # any other missing folder is one line that names the node and does not suggest demo_models
    with pytest.raises(OcrvlError) as e:
        check_model_dir(str(tmp_path / "elsewhere"), "layout", "layout.model_dir")
    assert "no such folder on node " in str(e.value) and "every node can read" in str(e.value)
