"""CellDetector: Ray Data actor UDF around ``paddleocr.TableCellsDetection`` (RT-DETR table cells).

Only pages with ``table`` regions do work: each table is cropped from the page (clipped to it),
downscaled to longest side <= ``max_side``, and all crops of the batch go through one predict call. A JPEG
page is decoded DCT-downscaled (1/2, 1/4, 1/8) as far as every table on it keeps ``max_side`` pixels: a
2480x3508 scan's tables come from a 1/2-scale decode at the default 1024, half the cost of a full decode.
Cell boxes are mapped back to page pixels *including* the downscale factor (the original pipeline
forgot it and shrank the cells of large tables toward the table's corner). Adds a ``cells`` column:
``Region.to_row()`` dicts with ``kind="cell"`` and ``table`` = index of the table in ``regions``.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from ocrvl_ray.core.records import Region
from ocrvl_ray.core.runtime import StageResources
from ocrvl_ray.core.skips import Skip
from ocrvl_ray.layout.stages.actors import (check_model_dir, clip_box, load_predictor, pool_resources, predict_each,
                                            with_columns)
from ocrvl_ray.layout.stages.decode import OK, page_image_at, reduction


def crop_table(page: np.ndarray, box, max_side: int) -> tuple[np.ndarray, tuple[int, int], tuple[float, float]]:
    """Crop ``box`` (page pixels, clipped) and downscale to ``max_side``.

    Returns the crop, its page-pixel origin (x0, y0) and the factors (fx, fy) that turn crop pixels
    back into page pixels: ``page_x = x0 + crop_x * fx``.
    """
    h, w = page.shape[:2]
    x1, y1, x2, y2 = clip_box(box, w, h)
    x0, y0, xe, ye = int(x1), int(y1), int(np.ceil(x2)), int(np.ceil(y2))
    crop = page[y0:ye, x0:xe]
    ch, cw = crop.shape[:2]
    s = max_side / max(ch, cw) if max(ch, cw) else 1.0
    if s >= 1:
        return crop, (x0, y0), (1.0, 1.0)
    size = (max(1, round(cw * s)), max(1, round(ch * s)))
    small = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    return small, (x0, y0), (cw / size[0], ch / size[1])


def cells_to_page(boxes: list[dict], origin: tuple[int, int], factors: tuple[float, float],
                  table_box, table_index: int) -> list[dict]:
    """Cell boxes in crop pixels -> page-pixel ``Region`` rows, clipped to their table."""
    (x0, y0), (fx, fy) = origin, factors
    tx1, ty1, tx2, ty2 = table_box
    out = []
    for b in boxes:
        cx1, cy1, cx2, cy2 = (float(v) for v in b["coordinate"])
        x1, y1 = min(max(x0 + cx1 * fx, tx1), tx2), min(max(y0 + cy1 * fy, ty1), ty2)
        x2, y2 = min(max(x0 + cx2 * fx, tx1), tx2), min(max(y0 + cy2 * fy, ty1), ty2)
        if x2 > x1 and y2 > y1:
            out.append(Region(label="cell", score=float(b["score"]), box=(x1, y1, x2, y2), kind="cell",
                              table=table_index).to_row())
    return out


READS = ("page_id", "status", "detail", "image_path", "regions", "image", "image_bytes")


def resources(cfg) -> StageResources:
    """One actor per loaded predictor; sizes, CPUs, GPUs from ``cfg.cells``."""
    return pool_resources("cells", cfg.cells, cfg.cells.device)


class CellDetector:
    def __init__(self, model_dir: str | None, model_name: str = "RT-DETR-L_wired_table_cell_det",
                 device: str = "cpu", threshold: float = 0.3, max_side: int = 1024):
        model_dir = check_model_dir(model_dir, "table-cell", "cells.model_dir")
        self.model = load_predictor("TableCellsDetection", model_name, model_dir, device, "cells")
        self.threshold = float(threshold)
        self.max_side = int(max_side)

    def __call__(self, batch):
        return with_columns(batch, self._detect, READS)

    def _detect(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        n = len(batch["page_id"])
        status, detail = list(batch["status"]), list(batch["detail"])
        cells: list[list[dict]] = [[] for _ in range(n)]
        jobs = []  # (row, table index, table box, crop, origin, factors)
        for i in range(n):
            if status[i] != OK:
                continue
            tables = [(k, r) for k, r in enumerate(batch["regions"][i]) if r["label"] == "table"]
            if not tables:
                continue
            # tables are detected at max_side: decode the page as small as every table allows
            scale = min(reduction(max(r["box"][2] - r["box"][0], r["box"][3] - r["box"][1]), self.max_side)
                        for _, r in tables)
            try:
                page, s = page_image_at(batch, i, scale)
            except Exception as e:  # noqa: BLE001
                status[i], detail[i] = Skip.ERROR.value, f"{batch['image_path'][i]}: {e}"
                continue
            for k, r in tables:
                box = clip_box(r["box"], page.shape[1] * s, page.shape[0] * s)
                crop, (x0, y0), (fx, fy) = crop_table(page, [v / s for v in box], self.max_side)
                if crop.size:
                    jobs.append((i, k, box, crop, (x0 * s, y0 * s), (fx * s, fy * s)))
        for (i, k, box, _c, origin, factors), boxes in zip(jobs, self._predict([j[3] for j in jobs])):
            if status[i] != OK:
                continue
            if isinstance(boxes, Exception):
                status[i] = Skip.DETECTOR_ERROR.value
                detail[i] = f"{batch['image_path'][i]}: cell detector failed on table {k}: {type(boxes).__name__}: {boxes}"
                cells[i] = []
                continue
            cells[i] += cells_to_page(boxes, origin, factors, box, k)
        return {"status": status, "detail": detail, "cells": cells}

    def _predict(self, crops: list[np.ndarray]) -> list:
        return predict_each(self._run, crops)

    def _run(self, crops: list[np.ndarray]) -> list:
        return [r for r in self.model.predict(crops, batch_size=len(crops), threshold=self.threshold)]
