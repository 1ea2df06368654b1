"""What a layout output is and what made it: per-split output paths, paths under ``ray job submit``, and the
output identity (the resolved snapshot of everything that shapes an LMDB's content: recipes, compose options,
detectors and their model file hashes, ``COMPOSE_VERSION``) kept inside the LMDB so a rerun resumes only under
the same hash.

    outputs = split_outputs("out/finance_layout.lmdb", ["train", "valid"])
    # {"train": "out/finance_train_layout.lmdb", "valid": "out/finance_valid_layout.lmdb"}
    ident = layout_identity(cfg, manifest, "train")       # plain JSON-able dict (lmdb/identity.py stores it)
"""
from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

from ocrvl_ray.core.errors import OcrvlError

_LAYOUT_SUFFIX = "_layout.lmdb"
#: Ray extracts a job's ``--working-dir`` package below this folder of its session directory.
_RAY_WORKING_DIR = os.sep + os.path.join("runtime_resources", "working_dir_files") + os.sep


# --------------------------------------------------------------------------------------------------
# paths
# --------------------------------------------------------------------------------------------------
def split_outputs(output: str, splits: list[str]) -> dict[str, str]:
    """One output per split: ``{split}`` in ``output`` is replaced; else a single split keeps ``output`` as is and
    several get the split inserted before ``_layout.lmdb`` (``x_layout.lmdb`` -> ``x_train_layout.lmdb``) or
    before the extension (``x.lmdb`` -> ``x_train.lmdb``)."""
    if "{split}" in output:
        return {s: output.replace("{split}", s) for s in splits}
    if len(splits) == 1:
        return {splits[0]: output}
    head, name = os.path.split(output.rstrip("/\\"))
    if name.endswith(_LAYOUT_SUFFIX):
        stem, tail = name[:-len(_LAYOUT_SUFFIX)], _LAYOUT_SUFFIX
    else:
        stem, tail = os.path.splitext(name)
    return {s: os.path.join(head, f"{stem}_{s}{tail}") for s in splits}


def in_ray_job_copy(cwd: str | None = None) -> bool:
    """True when this process runs inside the temporary copy Ray made of a job's ``--working-dir``."""
    return _RAY_WORKING_DIR in os.path.join(cwd or os.getcwd(), "")


def resolve_path(path: str | None, key: str, data_root: str | None, *, output: bool) -> str | None:
    """``path`` made absolute on the machine running the driver: against ``data_root`` when given, else the
    working directory. Relative outputs are refused inside a Ray job's working-dir copy (they would vanish)."""
    if path is None or os.path.isabs(path):
        return path
    if data_root:
        return os.path.join(os.path.abspath(data_root), path)
    if output and in_ray_job_copy():
        raise OcrvlError(f"{key}={path} is relative, and this job runs in Ray's temporary copy of --working-dir "
                         f"where it would vanish; pass an absolute path on storage the cluster can reach "
                         f"(or data_root=/abs/path to resolve relative paths against)")
    return os.path.abspath(path)


# --------------------------------------------------------------------------------------------------
# identity
# --------------------------------------------------------------------------------------------------
def file_identity(path: str) -> dict:
    """A file or a folder of files by path, total size and newest mtime (cheap; content changes move mtime)."""
    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    stats = [f.stat() for f in files if f.exists()]
    return {"path": str(p.resolve()), "size": sum(s.st_size for s in stats),
            "mtime_ns": max((s.st_mtime_ns for s in stats), default=0)}


@lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    """A file's content hash (16 hex digits), computed once per (path, size, mtime) in this process."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def model_identity(name: str, model_dir: str | None) -> dict:
    """A detector by name plus the content hash of every model file its folder holds (``actors.MODEL_FILES``:
    static export, dynamic weights and configs alike); official weights: by name only."""
    from ocrvl_ray.layout.stages.actors import MODEL_FILES

    if model_dir is None:
        return {"name": name, "weights": "official"}
    files = {}
    for f in (Path(model_dir) / n for n in MODEL_FILES):
        if f.is_file():
            st = f.stat()
            files[f.name] = _sha256(str(f.resolve()), st.st_size, st.st_mtime_ns)
    return {"name": name, "files": files}


def engine_identity(section) -> dict:
    """The detector engine and dtype of a non-default engine; nothing for ``engine=paddle`` (the identity of every
    LMDB written before engines existed stays valid). Either way, a rerun with the other engine differs."""
    return {} if section.engine == "paddle" else {"engine": section.engine, "dtype": section.dtype}


def layout_identity(cfg, manifest: str, split: str) -> dict:
    """Everything that shapes the content of the split's LMDB, resolved (not batch sizes, actors or hand-off):
    the recipe of every dataset the split holds with all its keys, the compose options, the detectors with
    their settings and model file hashes (or the detections file), ``COMPOSE_VERSION`` and the schema version.
    Key names follow the config's (``recipes.ocr_public.cells_replace``, ``compose.dilate_min``)."""
    from ocrvl_ray.layout.compose import COMPOSE_VERSION, get_recipe
    from ocrvl_ray.layout.preflight import manifest_datasets
    from ocrvl_ray.lmdb.schema import SCHEMA_VERSION

    if cfg.detections:
        detect: dict[str, Any] = {"detections": file_identity(cfg.detections.replace("{split}", split))}
    else:
        lay, cel = cfg.layout, cfg.cells
        detect = {"layout": {**model_identity(lay.model_name, lay.model_dir), **engine_identity(lay),
                             "threshold": lay.threshold, "table_threshold": lay.table_threshold,
                             "layout_nms": lay.layout_nms, "shape_mode": lay.shape_mode},
                  "cells": {**model_identity(cel.model_name, cel.model_dir), **engine_identity(cel),
                            "threshold": cel.threshold,
                            "max_side": cel.max_side} if cel.enabled else None}
    recipes = {d: get_recipe(d, cfg.recipes.get(d)).model_dump(mode="json") for d in manifest_datasets(manifest, split)}
    return {"schema_version": SCHEMA_VERSION, "compose_version": COMPOSE_VERSION, "manifest": file_identity(manifest),
            "split": split, **detect, "recipes": recipes, "mask": cfg.mask, "jpeg_quality": cfg.jpeg_quality,
            "compose": cfg.compose.model_dump(mode="json"), "index_base": cfg.index_base,
            "label_format": cfg.label_format, "max_pixels": cfg.max_pixels}
