"""Detector stand-ins for benchmarks: no model, no CPU. Each batch waits a fixed time (as a GPU would:
the actor's thread sleeps while the device works) and returns the sample template's boxes, so decode,
compose and the sink do the same work they do with the real detectors.

They subclass the real stage classes and replace only the predictor call, so batching, box mapping and
status handling are the production code. ``use_standins(batch_s)`` swaps them into the layout graph.
"""
from __future__ import annotations

import contextlib
import time

from ocrvl_ray.core.assets import layout_labels
from ocrvl_ray.demo.sample import TEMPLATE_CELLS, TEMPLATE_REGIONS
from ocrvl_ray.layout.stages.detect_cells import CellDetectStage
from ocrvl_ray.layout.stages.detect_layout import LayoutDetectStage


class StandInLayoutDetector(LayoutDetectStage):
    """``LayoutDetectStage`` whose predictor sleeps ``batch_s`` per batch and returns ``TEMPLATE_REGIONS``."""

    def __init__(self, section, batch_s: float):
        super().__init__(section)
        self.batch_s = float(batch_s)

    def setup(self) -> None:
        labels = layout_labels()
        self.thresholds = self.class_thresholds(labels)
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


class StandInCellDetector(CellDetectStage):
    """``CellDetectStage`` whose predictor sleeps ``batch_s`` per batch and returns ``TEMPLATE_CELLS``."""

    def __init__(self, section, batch_s: float):
        super().__init__(section)
        self.batch_s = float(batch_s)

    def setup(self) -> None:
        pass

    def _run(self, crops):
        if crops:
            time.sleep(self.batch_s)
        return [{"boxes": [{"cls_id": 0, "label": "cell", "score": 0.9,
                            "coordinate": [x1 * c.shape[1], y1 * c.shape[0], x2 * c.shape[1], y2 * c.shape[0]]}
                           for x1, y1, x2, y2 in TEMPLATE_CELLS]} for c in crops]


@contextlib.contextmanager
def use_standins(batch_s: float):
    """Within the block, ``layout.job.stages`` builds its detector stages from the stand-ins."""
    from ocrvl_ray.layout.stages import detect_cells, detect_layout

    saved = detect_layout.LayoutDetectStage, detect_cells.CellDetectStage
    detect_layout.LayoutDetectStage = _with_time(StandInLayoutDetector, batch_s)
    detect_cells.CellDetectStage = _with_time(StandInCellDetector, batch_s)
    try:
        yield
    finally:
        detect_layout.LayoutDetectStage, detect_cells.CellDetectStage = saved


def _with_time(cls, batch_s: float):
    """A subclass fixing ``batch_s`` (``from_config`` builds it from the config section alone; being defined
    here at run time, it travels to the workers by value)."""
    return type(cls.__name__, (cls,), {"__init__": lambda self, *a, **kw: cls.__init__(self, *a, batch_s=batch_s, **kw),
                                       "__module__": __name__})
