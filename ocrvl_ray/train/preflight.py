"""Pre-flight audit of a training config: one clear line per problem, before any worker starts.

Checks (on the driver's filesystem): every LMDB the erniekit reader will open exists, opens read-only,
has ``num-samples`` > 0 and no spaces in its path; every training source has a shard per rank;
``train_lmdb_prob`` gives one value per source; ``output_dir`` is set, writable, and empty but for logs
unless resumable; the LoRA target list is not silently reduced to ``o_proj``/``down_proj``. Checks that
need the fork's own code are in :mod:`ocrvl_ray.train.engines.erniekit`.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.lmdb.schema import NUM_SAMPLES, open_readonly
from ocrvl_ray.lmdb.shards import ShardError, assign, expand, is_sharded
from ocrvl_ray.train import checkpoints as ck
from ocrvl_ray.train.rank_data import items as _items


@dataclass(frozen=True)
class Finding:
    level: str      # "error" stops the run, "warning" is printed
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.message}"


def lmdb_paths(args: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(config key, path) of every LMDB the reader opens: ``train_lmdb_paths`` (comma-separated; a sharded
    output counts with all its shards) and ``train_dataset_path``/``eval_dataset_path`` when they end in
    ``.lmdb``."""
    out = [("train_lmdb_paths", s) for p in _items(args.get("train_lmdb_paths")) for s in _expand(p)]
    for key in ("train_dataset_path", "eval_dataset_path"):
        out += [(key, p) for p in _items(args.get(key)) if p.rstrip("/").endswith(".lmdb") and not is_sharded(p)]
    return out


def _expand(path: str) -> list[str]:
    try:
        return expand(path)
    except ShardError:
        return [path]                      # check_shards names the problem


def check_shards(args: Mapping[str, Any], world: int) -> list[Finding]:
    """Every ``train_lmdb_paths`` source has at least ``world`` shards (each rank reads its own), and
    ``eval_dataset_path`` is one LMDB, not a sharded output."""
    found = []
    for source in _items(args.get("train_lmdb_paths")):
        try:
            assign(expand(source), 0, world)
        except ShardError as e:
            found.append(Finding("error", f"train_lmdb_paths: {source}: {e}"))
    for source in _items(args.get("eval_dataset_path")):
        if is_sharded(source):
            found.append(Finding("error", f"eval_dataset_path: {source} is a sharded output; the reader takes one "
                                          f"LMDB there: give one shard, e.g. {expand(source)[0]}"))
    return found


def check_lmdb(key: str, path: str) -> list[Finding]:
    if " " in path:
        return [Finding("error", f"{key}: LMDB path {path!r} contains a space; the erniekit reader strips "
                                 "spaces from the path list, so rename the folder")]
    p = Path(path)
    if not p.is_dir():
        what = "is a file, not an LMDB directory" if p.exists() else "does not exist"
        return [Finding("error", f"{key}: LMDB {path} {what}; build it with `ocrvl layout` or fix the path")]
    try:
        env = open_readonly(p)
    except OcrvlError as e:
        return [Finding("error", f"{key}: LMDB {path} cannot be opened read-only ({e}); is it a complete LMDB?")]
    try:
        with env.begin() as txn:
            raw = txn.get(NUM_SAMPLES)
    finally:
        env.close()
    try:
        n = int(raw.decode("ascii")) if raw is not None else None
    except (UnicodeDecodeError, ValueError):
        n = None
    if n is None:
        return [Finding("error", f"{key}: LMDB {path} has no valid 'num-samples' key; it was not written by "
                                 "a finished `ocrvl layout` run")]
    if n <= 0:
        return [Finding("error", f"{key}: LMDB {path} has num-samples={n}; it holds no training samples")]
    return []


def check_output_dir(args: Mapping[str, Any]) -> list[Finding]:
    """``output_dir`` is set and writable (probing the nearest existing folder; nothing is created), and
    empty (but for logs) unless it holds a checkpoint to resume from or ``overwrite_output_dir`` is set."""
    out = args.get("output_dir")
    if not out:
        return [Finding("error", "output_dir is not set; add output_dir: /path/to/run to the YAML (or pass output_dir=...)")]
    probe = Path(out)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return [Finding("error", f"output_dir {out} is not writable ({probe} is a file); choose another path")]
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".ocrvl-write-test-"):
            pass
    except OSError as e:
        return [Finding("error", f"output_dir {out} is not writable ({probe}: {e.strerror or e}); "
                                 "choose a directory you can write")]
    others = ck.other_entries(out, args.get("logging_dir"))
    if others and not ck.list_checkpoints(out) and not args.get("overwrite_output_dir"):
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        return [Finding("error", f"output_dir {out} already holds {shown} but no checkpoint-N to resume from; "
                                 "choose a new output_dir, or set overwrite_output_dir=true to train over it")]
    return []


def check_lora_targets(args: Mapping[str, Any]) -> list[Finding]:
    """erniekit's default LoRA targets for OCR-VL-SFT (without ``use_huggingface_model``) name the fused
    ``qkv_proj``/``up_gate_proj``, which PaddleOCR-VL does not have: only o_proj and down_proj adapt."""
    lora = str(args.get("fine_tuning", "")).lower() == "lora" or args.get("lora") is True
    stage = str(args.get("stage", ""))
    if lora and "OCR-VL" in stage and not args.get("use_huggingface_model", False):
        return [Finding("warning", "LoRA will adapt only o_proj and down_proj: erniekit's default targets "
                                   "for OCR-VL-SFT expect fused qkv_proj/up_gate_proj, which PaddleOCR-VL does "
                                   "not have; set use_huggingface_model=True to adapt q/k/v/o/gate/up/down")]
    return []


def check_lmdb_probs(args: Mapping[str, Any]) -> list[Finding]:
    """One probability per source. The reader pairs them by position and defaults to "1.0", so without
    ``train_lmdb_prob`` every LMDB after the first is silently dropped."""
    paths, probs = args.get("train_lmdb_paths"), args.get("train_lmdb_prob")
    if not paths:
        return []
    n_paths, n_probs = len(_items(paths)), len(_items(probs)) if probs is not None else 0
    if probs is None and n_paths > 1:
        return [Finding("error", f"train_lmdb_prob is not set: the reader would use only the first of the {n_paths} "
                                 "LMDBs in train_lmdb_paths; give one probability per LMDB (e.g. 0.5,0.5)")]
    if probs is not None and n_paths != n_probs:
        return [Finding("error", f"train_lmdb_prob has {n_probs} value(s) for {n_paths} path(s) in "
                                 "train_lmdb_paths; give one probability per LMDB")]
    return []


def audit(args: Mapping[str, Any], world: int = 1) -> list[Finding]:
    """All findings for erniekit's config dict and ``world`` training ranks, errors first."""
    found: list[Finding] = []
    for key, path in lmdb_paths(args):
        found += check_lmdb(key, path)
    found += check_shards(args, world)
    found += check_lmdb_probs(args)
    found += check_output_dir(args)
    found += check_lora_targets(args)
    return sorted(found, key=lambda f: f.level != "error")
