"""CellDetectStage: the actor stage around the table-cell detector (RT-DETR-L wired/wireless):
``paddleocr.TableCellsDetection`` (``cells.engine=paddle``) or ``engines.transformers_cells.TransformersCellDetector``
(``cells.engine=transformers``, which never imports Paddle); both give the same box dicts.

Only pages with ``table`` regions do work. The table crops come from the ``tables`` column the
``table_crops`` tasks add (cut here when it is absent, e.g. in-process use); all crops of the batch go
through one predict call.
Cell boxes are mapped back to page pixels *including* the downscale factor (the original pipeline
forgot it and shrank the cells of large tables toward the table's corner). Adds a ``cells`` column:
``Region.to_row()`` dicts with ``kind="cell"`` and ``table`` = index of the table in ``regions``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ocrvl_ray.core.records import Region
from ocrvl_ray.core.skips import Skip
from ocrvl_ray.layout.stages.actors import check_model_dir, each_or_one, load_predictor, predict_each, with_columns
from ocrvl_ray.layout.stages.base import DetectorStage
from ocrvl_ray.layout.stages.decode import OK
from ocrvl_ray.layout.stages.table_crops import crop_pixels, cut_tables


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


READS = ("page_id", "status", "detail", "image_path", "regions", "image", "image_bytes")   # cuts crops itself
PIPED_READS = ("page_id", "status", "detail", "image_path", "tables")                 # after table_crops


class CellDetectStage(DetectorStage):
    """Actor pool over ``cfg.cells``. In the graph it reads the crops the ``table_crops`` tasks cut; a batch without
    ``tables`` (in-process use) has them cut here."""
    name = "detect_cells"
    section_key = "cells"
    reads = PIPED_READS
    writes = ("status", "detail", "cells")
    drops = ("tables",)

    def setup(self) -> None:
        sec = self.section
        if sec.engine == "transformers":
            from ocrvl_ray.layout.engines.transformers_cells import TransformersCellDetector

            self.torch_threads()
            self.model = TransformersCellDetector(sec.model_dir, sec.model_name, device=sec.device, dtype=sec.dtype,
                                                  threshold=sec.threshold)
            return
        model_dir = check_model_dir(sec.model_dir, "table-cell", "cells.model_dir")
        self.model = load_predictor("TableCellsDetection", sec.model_name, model_dir, sec.device, "cells")

    def process_batch(self, batch):
        piped = not isinstance(batch, dict) and "tables" in batch.column_names
        return with_columns(batch, self._detect, PIPED_READS if piped else READS, drop=("tables",))

    def _detect(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        n = len(batch["page_id"])
        if "tables" in batch:        # the pipeline: crops cut by the table_crops tasks
            status, detail, tables = list(batch["status"]), list(batch["detail"]), batch["tables"]
        else:                        # in-process use: cut them here
            cut = cut_tables(batch, self.section.max_side)
            status, detail, tables = cut["status"], cut["detail"], cut["tables"]
        cells: list[list[dict]] = [[] for _ in range(n)]
        jobs = [(i, t) for i in range(n) if status[i] == OK for t in ([] if tables[i] is None else tables[i])]
        for (i, t), boxes in zip(jobs, self._predict([crop_pixels(t) for _, t in jobs])):
            if status[i] != OK:
                continue
            if isinstance(boxes, Exception):
                status[i] = Skip.DETECTOR_ERROR.value
                detail[i] = (f"{batch['image_path'][i]}: cell detector failed on table {int(t['table'])}: "
                             f"{type(boxes).__name__}: {boxes}")
                cells[i] = []
                continue
            cells[i] += cells_to_page(boxes, t["origin"], t["factors"], t["box"], int(t["table"]))
        return {"status": status, "detail": detail, "cells": cells}

    def _predict(self, crops: list[np.ndarray]) -> list:
        """Boxes per crop: one batched call; if it fails, crop by crop so one bad crop costs only its page."""
        if self.section.engine == "transformers":   # crops are cut from decode's BGR page; the library takes RGB
            return each_or_one(self.model.predict, [np.ascontiguousarray(c[..., ::-1]) for c in crops])
        return predict_each(self._run, crops)

    def _run(self, crops: list[np.ndarray]) -> list:
        return [r for r in self.model.predict(crops, batch_size=len(crops), threshold=self.section.threshold)]
