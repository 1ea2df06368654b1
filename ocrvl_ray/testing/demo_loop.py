"""What every engine's demo-loop test checks first in the run manifest (tests/pf, tests/torch_env, tests/erniekit_env)."""
from __future__ import annotations

import json
from pathlib import Path


def finished_stages(run: Path) -> dict:
    """The run manifest's stages after asserting that the four stages finished, the layout wrote the train and
    valid LMDBs under ``run``, training read the train one and eval the valid one (never the training LMDB)."""
    stages = json.loads((run / "run_manifest.json").read_text())["stages"]
    assert [stages[s]["status"] for s in ("layout", "train", "merge", "eval")] == ["done"] * 4
    lmdbs = stages["layout"]["outputs"]["lmdb"]
    assert lmdbs == {"train": str(run / "sample_train_layout.lmdb"), "valid": str(run / "sample_valid_layout.lmdb")}
    assert stages["train"]["inputs"]["train_lmdb_paths"] == lmdbs["train"]
    assert stages["eval"]["inputs"]["data"] == lmdbs["valid"]
    return stages
