"""Test-only: run the user's erniekit fork on CPU and watch what it reads.

``entry=tests.erniekit_env.cpu_fork:run`` applies the four CPU-only workarounds
(``ocrvl_ray.demo.erniekit_cpu``, the demo loop's; never in the default entry), records every sample the fork's
own LMDB reader returns, optionally crashes once, and then calls the production entry
``ocrvl_ray.train.entries:erniekit`` with the rest of the config.

Test keys (popped before erniekit sees the config):
  test_record_dir      reads-rank<r>.jsonl: {"path", "index", "label"} per sample the reader returned
  test_crash_at_step   with test_crash_rank, test_crash_marker, test_crash_when_exists: raise once
  test_early_crash_at_step  also raise once at this step, without waiting (marker ``<test_crash_marker>.early``)
"""
from __future__ import annotations

import json
import os
from pathlib import Path


def record_reads(record_dir: str, rank: int) -> None:
    """Every sample ``SFTMultimodalDatasetLmdb._read_sample`` returns is appended to a JSONL file."""
    from ernie.dataset.vl_sft_reader.vl_sft_dataset_json import SFTMultimodalDatasetLmdb

    read = getattr(SFTMultimodalDatasetLmdb._read_sample, "_ocrvl_original", SFTMultimodalDatasetLmdb._read_sample)
    path = Path(record_dir) / f"reads-rank{rank}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)

    def recorded(self, src_id, index):
        meta = read(self, src_id, index)
        if meta is not None:
            with open(path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"path": self.lmdb_sources[src_id]["path"], "index": index,
                                    "label": meta["text_info"][1]["text"]}, ensure_ascii=False) + "\n")
        return meta

    recorded._ocrvl_original = read
    SFTMultimodalDatasetLmdb._read_sample = recorded


def run(config: dict) -> None:
    from paddleformers.trainer import trainer as pf_trainer
    from paddleformers.trainer.trainer_callback import TrainerCallback

    from ocrvl_ray.demo.erniekit_cpu import cpu_workarounds
    from ocrvl_ray.train import entries
    from ocrvl_ray.testing.train import _CrashOnce

    cfg = dict(config)
    test = {k: cfg.pop(k) for k in list(cfg) if k.startswith("test_")}
    root = str(entries.ernie_checkout())
    import sys
    if root not in sys.path:
        sys.path.insert(0, root)
    rank = int(os.environ.get("PADDLE_TRAINER_ID", "0"))
    cpu_workarounds()
    if test.get("test_record_dir"):
        record_reads(test["test_record_dir"], rank)
    pf_trainer.DEFAULT_CALLBACKS[:] = [c for c in pf_trainer.DEFAULT_CALLBACKS if c.__class__.__name__ != "CrashOnce"]
    if test.get("test_crash_at_step") is not None and rank == int(test.get("test_crash_rank", 0)):
        pf_trainer.DEFAULT_CALLBACKS.append(_CrashOnce(TrainerCallback, int(test["test_crash_at_step"]),
                                                       Path(test["test_crash_marker"]),
                                                       test.get("test_crash_when_exists")))
        if test.get("test_early_crash_at_step") is not None:
            pf_trainer.DEFAULT_CALLBACKS.append(_CrashOnce(TrainerCallback, int(test["test_early_crash_at_step"]),
                                                           Path(f"{test['test_crash_marker']}.early"), None))
    entries.erniekit(cfg)
