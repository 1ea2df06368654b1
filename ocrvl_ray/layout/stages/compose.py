"""Compose stage: pages with regions and cells -> one LMDB sink row per page (CPU tasks).

The pure work is ``layout/compose`` (``compose_page``); ``ComposeStage`` is its stage (config, resources, columns).
"""
from __future__ import annotations

import json

import numpy as np

from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.core.records import PAGE_FIELDS, Page, Region
from ocrvl_ray.core.runtime import StageResources
from ocrvl_ray.core.skips import Skip
from ocrvl_ray.layout.stages.base import Stage
from ocrvl_ray.layout.stages.decode import image_column
from ocrvl_ray.lmdb.rows import SINK_ROW_SCHEMA, SinkPage, SinkSample


class ComposeStage(Stage):
    """CPU tasks: pages with regions and cells -> one sink row per page (``SINK_ROW_SCHEMA``), never an exception.

    Built from the top-level ``recipes``, ``jpeg_quality``, ``mask`` and the ``compose`` section. ``detections``
    (a detections file replacing the detectors, or None) names what found the regions in each page's detections
    record; ``progress`` (a ``console.page_counter``) is told how many pages each batch composed."""
    name = "compose"
    writes = tuple(SINK_ROW_SCHEMA.names)
    passes_through = False
    batch_format = "numpy"

    def __init__(self, recipes: dict, options, batch_size: int, reads: tuple[str, ...], models: str, progress):
        self.recipes, self.options, self.batch_size = recipes, options, batch_size
        self.reads, self.models, self.progress = reads, models, progress
        self.resources = StageResources("compose task", num_cpus=1.0)

    @classmethod
    def from_config(cls, cfg, detections: str | None, progress) -> "ComposeStage":
        from ocrvl_ray.layout.compose import ComposeOptions

        with_cells = bool(detections) or cfg.cells.enabled
        reads = (*PAGE_FIELDS, "status", "detail", "regions", *(("cells",) if with_cells else ()),
                 image_column(cfg.handoff))
        return cls(cfg.recipes, ComposeOptions.from_config(cfg.jpeg_quality, cfg.mask, cfg.compose),
                   cfg.compose_batch_size, reads, detector_identities(cfg, detections), progress)

    def setup(self) -> None:
        import cv2

        cv2.setNumThreads(1)   # a task holds one CPU: OpenCV's own thread pool would only oversubscribe it

    def process_batch(self, batch: dict[str, np.ndarray]):
        import pyarrow as pa

        from ocrvl_ray.layout.compose import compose_page, get_recipe
        from ocrvl_ray.layout.detections import page_record
        from ocrvl_ray.layout.stages.decode import page_image

        rows = []
        for i, pid in enumerate(batch["page_id"]):
            row = SinkPage(page_id=str(pid), status=str(batch["status"][i]), detail=str(batch["detail"][i]))
            if row.status == "ok":
                try:
                    region_rows = _items(batch["regions"][i])
                    cell_rows = _items(batch["cells"][i]) if "cells" in batch else []
                    row.detections = page_record(row.page_id, batch["width"][i], batch["height"][i], region_rows,
                                                 cell_rows, self.models)
                    page = Page.from_row({k: batch[k][i] for k in PAGE_FIELDS})
                    regions = [Region.from_row(r) for r in region_rows]
                    cells = [Region.from_row(r) for r in cell_rows]
                    recipe = get_recipe(page.dataset, self.recipes.get(page.dataset))
                    result = compose_page(page, page_image(batch, i), regions, cells, recipe, self.options)
                    row.status = result.status.value if isinstance(result.status, Skip) else str(result.status)
                    row.skips = json.dumps(result.skips.to_dict(), ensure_ascii=False) if result.skips.total else ""
                    row.samples = [SinkSample(image=s.image, label=s.text, filename=s.filename, width=s.width,
                                              height=s.height, meta=_meta(page, s), kind=s.kind,
                                              layout_label=s.layout_label) for s in result.samples]
                except OcrvlError:
                    raise  # a configuration problem (e.g. a bad recipe key) must stop the run, not skip every page
                except Exception as e:  # noqa: BLE001 - a bad page must never kill the run
                    row.status, row.detail = Skip.ERROR.value, f"{page_label(batch, i)}: {type(e).__name__}: {e}"
                    row.samples = []
            rows.append(row.to_row())
        if self.progress is not None:
            self.progress.add.remote("composed", len(rows))
        return pa.Table.from_pylist(rows, schema=SINK_ROW_SCHEMA)


def detector_identities(cfg, detections: str | None) -> str:
    """JSON of what found each page's regions (goes with its detections record)."""
    if detections:
        return json.dumps({"detections": detections})
    from ocrvl_ray.layout.outputs import engine_identity

    return json.dumps({"layout": {"name": cfg.layout.model_name, "dir": cfg.layout.model_dir,
                                  **engine_identity(cfg.layout)},
                       "cells": {"name": cfg.cells.model_name, "dir": cfg.cells.model_dir,
                                 **engine_identity(cfg.cells)}
                       if cfg.cells.enabled else None})


def _items(v) -> list:
    return [] if v is None else list(v)


def page_label(batch, i) -> str:
    return str(batch["image_path"][i] or batch["image_name"][i])


def _meta(page: Page, s) -> str:
    """The sample's ``meta-%09d`` JSON; ``region_polygon`` (page pixels, 0.01 px) only for polygon regions."""
    meta = {"page_id": page.page_id, "dataset": page.dataset, "split": page.split,
            "source_image": page.image_path or page.image_name, "region_box": list(s.box),
            "layout_label": s.layout_label, "sample_kind": s.kind, "recipe": s.recipe}
    if s.polygon is not None:
        meta["region_polygon"] = [[round(x, 2), round(y, 2)] for x, y in s.polygon]
    return json.dumps(meta, ensure_ascii=False)
