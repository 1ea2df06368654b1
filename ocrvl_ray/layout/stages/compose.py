"""Compose stage: pages with regions and cells -> one LMDB sink row per page (CPU tasks).

The pure work is ``layout/compose`` (``compose_page``); this is its Ray Data wrapper and resource request.
"""
from __future__ import annotations

import json

import numpy as np

from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.core.records import PAGE_FIELDS, Page, Region
from ocrvl_ray.core.runtime import StageResources
from ocrvl_ray.core.skips import Skip

def resources(cfg) -> StageResources:
    return StageResources("compose task", num_cpus=1.0)


def compose_stage(batch: dict[str, np.ndarray], recipes: dict, jpeg_quality: int, mask: str, models: str = "",
                  progress=None):
    """Pages with regions and cells -> one sink row per page (samples + status), never an exception.

    ``models`` (JSON of the detector identities) goes with each page's detections record; ``progress`` (a
    ``console.page_counter``) is told how many pages the batch composed."""
    import cv2
    import pyarrow as pa

    from ocrvl_ray.layout.compose import ComposeOptions, compose_page, get_recipe
    from ocrvl_ray.layout.detections import page_record
    from ocrvl_ray.lmdb.rows import SINK_ROW_SCHEMA, SinkPage, SinkSample
    from ocrvl_ray.layout.stages.decode import page_image

    cv2.setNumThreads(1)   # a task holds one CPU: OpenCV's own thread pool would only oversubscribe it
    opts = ComposeOptions(jpeg_quality=jpeg_quality, mask=mask)
    rows = []
    for i, pid in enumerate(batch["page_id"]):
        row = SinkPage(page_id=str(pid), status=str(batch["status"][i]), detail=str(batch["detail"][i]))
        if row.status == "ok":
            try:
                region_rows = _items(batch["regions"][i])
                cell_rows = _items(batch["cells"][i]) if "cells" in batch else []
                row.detections = page_record(row.page_id, batch["width"][i], batch["height"][i], region_rows,
                                             cell_rows, models)
                page = Page.from_row({k: batch[k][i] for k in PAGE_FIELDS})
                regions = [Region.from_row(r) for r in region_rows]
                cells = [Region.from_row(r) for r in cell_rows]
                recipe = get_recipe(page.dataset, recipes.get(page.dataset))
                result = compose_page(page, page_image(batch, i), regions, cells, recipe, opts)
                row.status = result.status.value if isinstance(result.status, Skip) else str(result.status)
                row.skips = json.dumps(result.skips.to_dict(), ensure_ascii=False) if result.skips.total else ""
                row.samples = [SinkSample(image=s.image, label=s.text, filename=s.filename, width=s.width,
                                          height=s.height, meta=_meta(page, s)) for s in result.samples]
            except OcrvlError:
                raise  # a configuration problem (e.g. a bad recipe key) must stop the run, not skip every page
            except Exception as e:  # noqa: BLE001 - a bad page must never kill the run
                row.status, row.detail = Skip.ERROR.value, f"{page_label(batch, i)}: {type(e).__name__}: {e}"
                row.samples = []
        rows.append(row.to_row())
    if progress is not None:
        progress.add.remote(len(rows))
    return pa.Table.from_pylist(rows, schema=SINK_ROW_SCHEMA)


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
