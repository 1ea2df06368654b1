"""``<output>.detections.parquet``: what the detectors found, one row per page, so a recipe change can be
recomposed without a GPU (``detections=PATH``) and detections made elsewhere can be brought in.

Schema (docs/detections.md): ``page_id``, ``width``, ``height``, ``regions``, ``cells``, ``models`` (JSON of the
detector identities); regions and cells are ``list<struct<label, score, box: list<float>[4] (x1, y1, x2, y2 in
page pixels), order: int32 (null = unranked), kind, table: int32 (cells: index of their table region),
polygon: list<list<float>[2]> (PP-DocLayoutV3 regions, page pixels; empty otherwise)>>``.

The layout job writes it as a folder of Parquet parts (one per sink write, written before the pages commit);
readers take the last row per ``page_id`` (a resumed run may repeat a page). A single Parquet file with the same
columns is read the same way.
"""
from __future__ import annotations

import json
import os
import uuid

import numpy as np
import pyarrow as pa

from ocrvl_ray.core.runtime import StageResources
from ocrvl_ray.core.skips import Skip
from ocrvl_ray.layout.stages.actors import with_columns
from ocrvl_ray.layout.stages.base import Stage
from ocrvl_ray.layout.stages.detect_layout import CONSUMED

REGION_TYPE = pa.struct([("label", pa.string()), ("score", pa.float32()),
                         ("box", pa.list_(pa.float32(), 4)), ("order", pa.int32()),
                         ("kind", pa.string()), ("table", pa.int32()),
                         ("polygon", pa.list_(pa.list_(pa.float64(), 2)))])
DETECTIONS_SCHEMA = pa.schema([("page_id", pa.string()), ("width", pa.int32()), ("height", pa.int32()),
                               ("regions", pa.list_(REGION_TYPE)), ("cells", pa.list_(REGION_TYPE)),
                               ("models", pa.string())],
                              metadata={b"ocrvl.schema": b"detections", b"ocrvl.version": b"1"})


def detections_path(output: str) -> str:
    """``out/x_layout.lmdb`` -> ``out/x_layout.lmdb.detections.parquet`` (beside the LMDB)."""
    return output.rstrip("/\\") + ".detections.parquet"


# -- rows: Region.to_row dicts <-> detection structs -------------------------------------------------
def _to_struct(r: dict) -> dict:
    order, table = int(r.get("order", -1)), int(r.get("table", -1))
    return {"label": r["label"], "score": float(r["score"]), "box": [float(v) for v in r["box"]],
            "order": None if order < 0 else order, "kind": r.get("kind", "layout"),
            "table": None if table < 0 else table, "polygon": _points(r.get("polygon"))}


def _to_region_row(s: dict) -> dict:
    return {"label": s["label"], "score": float(s["score"]), "box": [float(v) for v in s["box"]],
            "order": -1 if s.get("order") is None else int(s["order"]), "kind": s.get("kind") or "layout",
            "table": -1 if s.get("table") is None else int(s["table"]),
            "polygon": _points(s.get("polygon"))}


def _points(v) -> list[list[float]]:
    """A polygon as plain float pairs (it may arrive as a numpy object array, never truth-tested)."""
    return [] if v is None else [[float(pt[0]), float(pt[1])] for pt in v]


def page_record(page_id: str, width: int, height: int, regions, cells, models: str) -> str:
    """One page's detections as the JSON the sink row carries (``SinkPage.detections``)."""
    return json.dumps({"page_id": page_id, "width": int(width), "height": int(height), "models": models,
                       "regions": [_to_struct(r) for r in regions], "cells": [_to_struct(r) for r in cells]},
                      ensure_ascii=False)


class PartWriter:
    """The sink's ``before_commit`` hook: the pages' detections as one Parquet part in ``folder``, written
    before the pages commit (so a committed page always has its detections on disk)."""

    def __init__(self, folder: str):
        self.folder = folder

    def __call__(self, pages) -> None:
        write_part(self.folder, [p.detections for p in pages if p.detections])


def write_part(folder: str, records: list[str]) -> str | None:
    """Writes the pages' JSON records as one new Parquet part (atomically); returns its path."""
    if not records:
        return None
    os.makedirs(folder, exist_ok=True)
    table = pa.Table.from_pylist([json.loads(r) for r in records], schema=DETECTIONS_SCHEMA)
    import pyarrow.parquet as pq

    name = os.path.join(folder, f"part-{uuid.uuid4().hex}.parquet")
    pq.write_table(table, name + ".tmp")
    os.replace(name + ".tmp", name)
    return name


def load(path: str) -> dict[str, tuple[int, int, list[dict], list[dict]]]:
    """page_id -> (width, height, region rows, cell rows), the last record of a page winning."""
    import pyarrow.dataset as pads

    files = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(".parquet")) \
        if os.path.isdir(path) else [path]
    out: dict = {}
    for row in pads.dataset(files, format="parquet").to_table().to_pylist():
        out[row["page_id"]] = (row["width"], row["height"], [_to_region_row(r) for r in row["regions"] or []],
                               [_to_region_row(r) for r in row["cells"] or []])
    return out


# -- the stage that replaces both detectors (``detections=PATH``) ------------------------------------
class DetectionsLookupStage(Stage):
    """Adds ``regions`` and ``cells`` from a detections file (loaded once per actor); pages missing from it
    become ``no_detections``."""
    name = "detections_lookup"
    reads = ("page_id", "status", "detail")
    writes = ("status", "detail", "regions", "cells")
    drops = CONSUMED   # the layout detector's input, unused here
    batch_format = "pyarrow"

    def __init__(self, path: str, batch_size: int):
        self.path, self.batch_size = path, batch_size
        self.resources = StageResources("detections lookup actor", num_cpus=0.25, actors=(1, 1))
        self.by_page: dict = {}

    @classmethod
    def from_config(cls, cfg, detections: str) -> "DetectionsLookupStage":
        return cls(detections, cfg.compose_batch_size)

    def setup(self) -> None:
        self.by_page = load(self.path)

    def process_batch(self, batch):
        return with_columns(batch, self._attach, self.reads, drop=self.drops)

    def _attach(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        n = len(batch["page_id"])
        status, detail = list(batch["status"]), list(batch["detail"])
        regions, cells = [[] for _ in range(n)], [[] for _ in range(n)]
        for i, pid in enumerate(batch["page_id"]):
            found = self.by_page.get(str(pid))
            if status[i] != "ok":
                continue
            if found is None:
                status[i], detail[i] = Skip.NO_DETECTIONS.value, f"{pid}: not in the detections file"
                continue
            regions[i], cells[i] = found[2], found[3]
        return {"status": status, "detail": detail, "regions": regions, "cells": cells}
