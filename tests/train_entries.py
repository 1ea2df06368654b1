"""Entries for ``entry=tests.train_entries:...`` in Ray Train tests (workers import them from the repo root)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from ocrvl_ray.lmdb.reader import LmdbReader


def record_config(config: dict) -> None:
    """Writes the ``train_lmdb_paths`` this rank got and the labels in them to ``record_dir/rank<r>.json``;
    rank 0 leaves ``checkpoint-1`` without ``trainer_state.json`` (a save that never finished)."""
    rank = int(os.environ["PADDLE_TRAINER_ID"])
    labels = []
    for path in config["train_lmdb_paths"].split(","):
        with LmdbReader(path) as r:
            labels += [r.label(i) for i in range(len(r))]
    out = Path(config["record_dir"])
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{rank}.json").write_text(json.dumps({"train_lmdb_paths": config["train_lmdb_paths"],
                                                       "labels": labels}, ensure_ascii=False))
    if rank == 0:
        ckpt = Path(config["output_dir"]) / "checkpoint-1"
        ckpt.mkdir(parents=True)
        (ckpt / "model_state.pdparams").write_bytes(b"partial")
