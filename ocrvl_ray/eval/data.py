"""Evaluation samples from our LMDBs (``ocrvl_ray.lmdb.reader``): image bytes, reference, slice columns."""
from __future__ import annotations

import os
from pathlib import Path

from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.lmdb.reader import LmdbReader


def split_paths(data: str | list[str]) -> list[str]:
    paths = [p.strip() for p in (data.split(",") if isinstance(data, str) else data) if p and p.strip()]
    if not paths:
        raise OcrvlError("no --data given; pass the validation LMDB (e.g. --data out/x_valid_layout.lmdb[,shard2])")
    for p in paths:
        if not os.path.isfile(os.path.join(p, "data.mdb")):
            raise OcrvlError(f"--data {p}: no LMDB here (expected a folder with data.mdb written by the layout job)")
    return paths


def read_samples(paths: list[str], limit: int) -> dict[str, list]:
    """Columns ``key``, ``dataset``, ``kind``, ``layout_label``, ``reference``, ``lmdb``, ``index``, ``image``;
    ``limit`` > 0 keeps the first ``limit`` samples of each LMDB."""
    cols: dict[str, list] = {k: [] for k in ("key", "dataset", "kind", "layout_label", "reference", "lmdb",
                                             "index", "image")}
    for path in paths:
        with LmdbReader(path) as r:
            n = len(r) if not limit else min(limit, len(r))
            for i in range(n):
                meta = r.meta(i)
                cols["key"].append(f"{Path(path).name}/{i + r.index_base}")
                cols["dataset"].append(str(meta.get("dataset") or ""))
                cols["kind"].append(str(meta.get("sample_kind") or ""))
                cols["layout_label"].append(str(meta.get("layout_label") or ""))
                cols["reference"].append(r.label(i))
                cols["lmdb"].append(os.path.abspath(path))
                cols["index"].append(i)
                cols["image"].append(r.image_bytes(i))
    if not cols["key"]:
        raise OcrvlError(f"--data {','.join(paths)}: no samples (num-samples is 0)")
    return cols
