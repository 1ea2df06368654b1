"""Table crops: CPU tasks between the layout and the cell detector.

For each page with ``table`` regions: decode the page (a JPEG DCT-reduced as far as every table keeps
``max_side`` pixels: a 2480x3508 scan's tables come from a 1/2-scale decode at the default 1024), crop each
table (clipped to the page) and downscale it to longest side <= ``max_side``. Adds a ``tables`` column, one
list per page of ``{table, box, origin, factors, shape, pixels}``: the table's index in ``regions``, its
clipped page box, and how crop pixels map back to page pixels (``page = origin + crop * factors``). The cell
actor then only runs the model: on a GPU node its actor holds no CPU, so this work belongs in a task.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from ocrvl_ray.core.runtime import StageResources
from ocrvl_ray.core.skips import Skip
from ocrvl_ray.layout.stages.actors import clip_box, with_columns
from ocrvl_ray.layout.stages.base import Stage
from ocrvl_ray.layout.stages.decode import OK, image_column, page_image_at, reduction

class TableCropStage(Stage):
    """CPU tasks between the two detector pools (``cfg.cells``: ``max_side``, ``batch_size``)."""
    name = "table_crops"
    writes = ("status", "detail", "tables")
    batch_format = "pyarrow"

    def __init__(self, max_side: int, batch_size: int, handoff: str):
        self.max_side, self.batch_size = max_side, batch_size
        self.reads = ("page_id", "status", "detail", "image_path", "regions", image_column(handoff))
        self.resources = StageResources("table crop task", num_cpus=1.0)

    @classmethod
    def from_config(cls, cfg) -> "TableCropStage":
        return cls(cfg.cells.max_side, cfg.cells.batch_size, cfg.handoff)

    def setup(self) -> None:
        cv2.setNumThreads(1)   # a task holds one CPU: OpenCV's own thread pool would only oversubscribe it

    def process_batch(self, batch):
        """Arrow batch in, the same batch plus ``tables`` out (a numpy batch gives a dict)."""
        return with_columns(batch, lambda b: cut_tables(b, self.max_side), self.reads)


def cut_tables(batch: dict[str, np.ndarray], max_side: int) -> dict[str, Any]:
    """``status``, ``detail`` (a page that does not decode becomes ``error``) and ``tables`` of a numpy batch."""
    n = len(batch["page_id"])
    status, detail = list(batch["status"]), list(batch["detail"])
    out: list[list[dict]] = [[] for _ in range(n)]
    for i in range(n):
        if status[i] != OK:
            continue
        tables = [(k, r) for k, r in enumerate(batch["regions"][i]) if r["label"] == "table"]
        if not tables:
            continue
        scale = min(reduction(max(r["box"][2] - r["box"][0], r["box"][3] - r["box"][1]), max_side)
                    for _, r in tables)
        try:
            page, s = page_image_at(batch, i, scale)
        except Exception as e:  # noqa: BLE001
            status[i], detail[i] = Skip.ERROR.value, f"{batch['image_path'][i]}: {e}"
            continue
        for k, r in tables:
            box = clip_box(r["box"], page.shape[1] * s, page.shape[0] * s)
            crop, (x0, y0), (fx, fy) = crop_table(page, [v / s for v in box], max_side)
            if crop.size:
                crop = np.ascontiguousarray(crop)
                out[i].append({"table": k, "box": list(box), "origin": [x0 * s, y0 * s], "factors": [fx * s, fy * s],
                               "shape": list(crop.shape), "pixels": crop.tobytes()})
    return {"status": status, "detail": detail, "tables": out}


def crop_pixels(table: dict) -> np.ndarray:
    """The crop of one ``tables`` entry (a view of its bytes)."""
    return np.frombuffer(table["pixels"], np.uint8).reshape([int(v) for v in table["shape"]])


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
