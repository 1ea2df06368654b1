"""Detector stand-ins for benchmarks: no model, no CPU. Each batch waits a fixed time (as a GPU would:
the actor's thread sleeps while the device works) and returns the sample template's boxes, so decode,
compose and the sink do the same work they do with the real detectors.

They subclass the real stage classes and replace only the predictor call, so batching, box mapping and
status handling are the production code. ``use_standins(batch_s)`` swaps them into the layout graph.
"""
from __future__ import annotations

import contextlib
import time

from ocrvl_ray.demo.models import layout_labels
from ocrvl_ray.demo.sample import TEMPLATE_CELLS, TEMPLATE_REGIONS
from ocrvl_ray.layout.stages.detect_cells import CellDetector
from ocrvl_ray.layout.stages.detect_layout import LayoutDetector


class StandInLayoutDetector(LayoutDetector):
    """``LayoutDetector`` whose predictor sleeps ``batch_s`` per batch and returns ``TEMPLATE_REGIONS``."""

    def __init__(self, model_dir=None, model_name="PP-DocLayoutV2", device="cpu", threshold=0.5,
                 table_threshold=0.3, layout_nms=True, shape_mode="auto", batch_s: float = 0.02):
        labels = layout_labels()
        self.shape_mode = shape_mode
        self.layout_nms, self.threshold, self.batch_s = layout_nms, float(threshold), float(batch_s)
        self.thresholds = {i: float(table_threshold if lab == "table" else threshold) for i, lab in enumerate(labels)}
        self._cls = {lab: i for i, lab in enumerate(labels)}

    def _run(self, images):
        time.sleep(self.batch_s)
        out = []
        for img in images:
            h, w = img.shape[:2]
            out.append({"boxes": [{"cls_id": self._cls[lab], "label": lab, "score": s,
                                   "coordinate": [x1 * w, y1 * h, x2 * w, y2 * h], "order": order + 1}
                                  for lab, s, x1, y1, x2, y2, order in TEMPLATE_REGIONS]})
        return out


class StandInCellDetector(CellDetector):
    """``CellDetector`` whose predictor sleeps ``batch_s`` per batch and returns ``TEMPLATE_CELLS``."""

    def __init__(self, model_dir=None, model_name="RT-DETR-L_wired_table_cell_det", device="cpu",
                 threshold=0.3, max_side=1024, batch_s: float = 0.02):
        self.threshold, self.max_side, self.batch_s = float(threshold), int(max_side), float(batch_s)

    def _run(self, crops):
        if crops:
            time.sleep(self.batch_s)
        return [{"boxes": [{"cls_id": 0, "label": "cell", "score": 0.9,
                            "coordinate": [x1 * c.shape[1], y1 * c.shape[0], x2 * c.shape[1], y2 * c.shape[0]]}
                           for x1, y1, x2, y2 in TEMPLATE_CELLS]} for c in crops]


@contextlib.contextmanager
def use_standins(batch_s: float):
    """Within the block, ``layout.job.build_dataset`` builds its detector pools from the stand-ins."""
    from ocrvl_ray.layout.stages import detect_cells, detect_layout

    saved = detect_layout.LayoutDetector, detect_cells.CellDetector
    detect_layout.LayoutDetector = _with_time(StandInLayoutDetector, batch_s)
    detect_cells.CellDetector = _with_time(StandInCellDetector, batch_s)
    try:
        yield
    finally:
        detect_layout.LayoutDetector, detect_cells.CellDetector = saved


def _with_time(cls, batch_s: float):
    """A subclass fixing ``batch_s`` (Ray builds actors from the class and the job's kwargs; being defined
    here at run time, it travels to the workers by value)."""
    return type(cls.__name__, (cls,), {"__init__": lambda self, *a, **kw: cls.__init__(self, *a, batch_s=batch_s, **kw),
                                       "__module__": __name__})
