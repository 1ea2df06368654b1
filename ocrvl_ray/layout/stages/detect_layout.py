"""LayoutDetectStage: the actor stage around the layout detector: ``paddleocr.LayoutDetection`` (PP-DocLayoutV2 or
V3; ``layout.engine=paddle``) or ``engines.transformers_detector.TransformersDetector`` (V2/V3/V4 on torch;
``layout.engine=transformers``, which never imports Paddle).

Loads the predictor once per actor (``setup``); each batch runs ONE pass over the batch's ``det_image`` column with
a per-class threshold (``table`` at ``table_threshold``, every other class at ``threshold``), maps the
boxes from detector pixels back to page pixels and adds a ``regions`` column (``Region.to_row()`` dicts
with the model's reading ``order``). Tables scoring between ``table_threshold`` and ``threshold`` get
``kind="table_only"``: the cell detector uses them, compose does not make layout samples of them (as the
original, which ran a second pass at 0.3 for tables only). A mask model (PP-DocLayoutV3) also returns each
region's outline shaped by ``shape_mode`` (paddlex ``layout_shape_mode``); it is kept as ``Region.polygon``
in page pixels. The transformers engine's regions are put in paddleocr's box form (``_paddle_form``), so both
engines go through the same mapping.
Rows whose ``status`` is not "ok" pass through. The detector input columns (``CONSUMED``) are not passed on.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ocrvl_ray.core.records import Region
from ocrvl_ray.core.skips import Skip
from ocrvl_ray.layout.config import LayoutModelConfig
from ocrvl_ray.layout.stages.actors import (check_model_dir, clip_box, each_or_one, load_predictor, predict_each,
                                            with_columns)
from ocrvl_ray.layout.stages.base import DetectorStage
from ocrvl_ray.layout.stages.decode import OK


#: Decode's columns for this detector alone; dropped from its output so they do not travel further.
CONSUMED = ("det_image", "det_sx", "det_sy")
READS = ("page_id", "status", "detail", "image_path", "width", "height", *CONSUMED)


class LayoutDetectStage(DetectorStage):
    """Actor pool over ``cfg.layout``."""
    name = "detect_layout"
    section_key = "layout"
    reads = READS
    writes = ("status", "detail", "regions")
    drops = CONSUMED

    def __init__(self, section: LayoutModelConfig):
        super().__init__(section)
        self.thresholds: dict[int, float] = {}

    def setup(self) -> None:
        sec = self.section
        if sec.engine == "transformers":
            from ocrvl_ray.layout.engines.transformers_detector import TransformersDetector

            self.torch_threads()
            self.model = TransformersDetector(sec.model_dir, device=sec.device, dtype=sec.dtype,
                                              threshold=sec.threshold, thresholds={"table": sec.table_threshold},
                                              layout_nms=sec.layout_nms)
            return
        model_dir = check_model_dir(sec.model_dir, "layout", "layout.model_dir")
        self.model = load_predictor("LayoutDetection", sec.model_name, model_dir, sec.device, "layout")
        # paddlex keeps the model's label_list on the wrapped predictor's config
        self.thresholds = self.class_thresholds(list(self.model.paddlex_predictor.config["label_list"]))

    def class_thresholds(self, labels: list[str]) -> dict[int, float]:
        """Class id -> score threshold: ``table`` at ``table_threshold``, every other class at ``threshold``."""
        sec = self.section
        return {i: float(sec.table_threshold if lab == "table" else sec.threshold) for i, lab in enumerate(labels)}

    def process_batch(self, batch):
        return with_columns(batch, self._detect, READS, drop=CONSUMED)

    def _detect(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        n = len(batch["page_id"])
        status, detail = list(batch["status"]), list(batch["detail"])
        regions: list[list[dict]] = [[] for _ in range(n)]
        todo = [i for i in range(n) if status[i] == OK]
        for i, boxes in zip(todo, self._predict(batch, todo)):
            if isinstance(boxes, Exception):
                status[i] = Skip.DETECTOR_ERROR.value
                detail[i] = f"{batch['image_path'][i]}: layout detector failed: {type(boxes).__name__}: {boxes}"
                continue
            regions[i] = self._to_regions(boxes, batch, i, self.section.threshold)
        return {"status": status, "detail": detail, "regions": regions}

    def _predict(self, batch, rows: list[int]) -> list:
        """Boxes per row: one batched call; if it fails, row by row so one bad page costs only itself."""
        images = [np.asarray(batch["det_image"][i]) for i in rows]
        if self.section.engine == "transformers":   # decode's det_image is BGR; the library takes RGB
            return each_or_one(self._run_transformers, [np.ascontiguousarray(im[..., ::-1]) for im in images])
        return predict_each(self._run, images)

    def _run_transformers(self, images: list[np.ndarray]) -> list:
        return [[_paddle_form(r) for r in regions] for regions in self.model.predict(images)]

    def _run(self, images: list[np.ndarray]) -> list:
        return self.model.predict(images, batch_size=len(images), threshold=self.thresholds,
                                  layout_nms=self.section.layout_nms, layout_shape_mode=self.section.shape_mode)

    @staticmethod
    def _to_regions(boxes: list[dict], batch, i: int, threshold: float) -> list[dict]:
        sx, sy = float(batch["det_sx"][i]), float(batch["det_sy"][i])
        w, h = int(batch["width"][i]), int(batch["height"][i])
        out = []
        for b in boxes:
            x1, y1, x2, y2 = b["coordinate"]
            box = clip_box((x1 * sx, y1 * sy, x2 * sx, y2 * sy), w, h)
            if box[2] <= box[0] or box[3] <= box[1]:
                continue
            score = float(b["score"])
            kind = "table_only" if b["label"] == "table" and score < threshold else "layout"
            poly = b.get("polygon_points")
            if poly is not None:  # detector pixels -> page pixels; not clamped (that would bend its edges)
                poly = (np.asarray(poly, dtype=np.float64).reshape(-1, 2) * (sx, sy)).tolist()
            out.append(Region(label=b["label"], score=score, box=box, order=b.get("order"), kind=kind,
                              polygon=poly).to_row())
        return out


def _paddle_form(r: dict) -> dict:
    """A transformers-engine region -> the box dict paddleocr gives (``coordinate``, ``order`` None when
    unranked, ``polygon_points`` None without an outline)."""
    return {"label": r["label"], "score": r["score"], "coordinate": r["box"],
            "order": None if r["order"] == -1 else r["order"], "polygon_points": r["polygon"] or None}
