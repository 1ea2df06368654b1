"""Each model_version has its own default output, so the docs' `model_version=v1.5` layout run after the quick
start is not refused as a rebuild of the quick start's LMDB (issue 26 item 9)."""
from __future__ import annotations

from ocrvl_ray.core.config import load_config
from ocrvl_ray.layout.config import LayoutConfig
from ocrvl_ray.layout.outputs import split_outputs


def test_each_generation_writes_its_own_default_output():
    outputs = {v: load_config(LayoutConfig, overrides={"model_version": v}).output for v in ("v1", "1.5", "v1.6")}
    assert outputs == {"v1": "./out/sample_layout.lmdb", "1.5": "./out/sample_v1.5_layout.lmdb",
                       "v1.6": "./out/sample_v1.6_layout.lmdb"}
    assert load_config(LayoutConfig, overrides={}).output == "./out/sample_layout.lmdb"
    # per split, as the quick start's two-split sample writes them
    assert split_outputs(outputs["1.5"], ["train", "valid"]) == {"train": "./out/sample_v1.5_train_layout.lmdb",
                                                                 "valid": "./out/sample_v1.5_valid_layout.lmdb"}
    # an output the user sets wins, with any version
    assert load_config(LayoutConfig, overrides={"model_version": "v1.5", "output": "/d/x_layout.lmdb"}).output == \
        "/d/x_layout.lmdb"
