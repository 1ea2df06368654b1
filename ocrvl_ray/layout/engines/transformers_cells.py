"""RT-DETR-L table-cell detection on Hugging Face transformers: ``cells.engine=transformers``.

As paddlex's own transformers engine for these models runs them (``DetTransformersPredictor``,
paddlex/inference/models/object_detection/predictor.py): ``RTDetrForObjectDetection`` + ``RTDetrImageProcessor``
(rescale; the converter's ``preprocessor_config.json``) + its ``post_process_object_detection`` (top queries,
``score > threshold``), boxes clipped to the crop, empty boxes dropped; no layout NMS (the paddle engine runs none
for cells either). One step differs from paddlex's transformers engine: each crop is first resized to the
processor's 640x640 with OpenCV's bicubic, the Paddle pipeline's resize (``Resize interp: 2``, what the models
were trained with); the processor's torchvision resize antialiases when it shrinks, which moves a random model's
cells by a median 2-3 px and swaps near-tied queries (tests/test_detector_parity.py). With it, both engines agree
to float rounding. The result is what
``paddleocr.TableCellsDetection`` gives the cell stage: per crop ``[{"label", "score", "coordinate"}]`` in the
crop's pixels.

A folder comes from ``ocrvl convert-detector`` (paddlex's converter on a Paddle RT-DETR-L table-cell checkpoint).
No Ray, no Paddle here; torch and transformers are imported when a detector is built.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.layout.engines.transformers_detector import check_model_folder, detect, load_model

KEY = "cells.model_dir"
#: config.json ``model_type`` of the table-cell models (transformers' ``RTDetrForObjectDetection``).
MODEL_TYPES = {"rt_detr": "rt_detr"}


def check_cell_folder(model_dir: str | Path | None, model_name: str) -> Path:
    """The checked transformers folder of ``cells.model_name``, or a one-line error naming the key and the fix."""
    if model_dir is None:
        raise OcrvlError(f"cells.engine=transformers needs {KEY}=DIR, a transformers {model_name} folder "
                         f"(config.json, model.safetensors, preprocessor_config.json; `ocrvl convert-detector "
                         f"--from PADDLE_DIR --out DIR` makes one)")
    folder, _ = check_model_folder(model_dir, KEY, MODEL_TYPES, "an RT-DETR")
    yml = folder / "inference.yml"   # the converter keeps the Paddle folder's, which names the model
    if yml.is_file():
        import yaml

        named = ((yaml.safe_load(yml.read_text("utf-8")) or {}).get("Global") or {}).get("model_name")
        if named and named != model_name:
            raise OcrvlError(f"{KEY}={model_dir} holds {named}, but cells.model_name={model_name}; set "
                             f"cells.model_name={named}")
    return folder


def preflight(sec) -> None:
    """``cells.engine=transformers`` before Ray starts: torch and transformers importable, the folder checked."""
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        raise OcrvlError(f"cells.engine=transformers needs torch and transformers ({e.name} is missing here): build "
                         f".venv-torch with ./install.sh torch and run from it") from None
    check_cell_folder(sec.model_dir, sec.model_name)


class TransformersCellDetector:
    """One loaded RT-DETR table-cell model; ``predict`` runs a batch of RGB crops in one forward pass."""

    def __init__(self, model_dir: str | Path, model_name: str, *, device: str = "cpu", dtype: str = "float32",
                 threshold: float = 0.3):
        self.processor, self.model = load_model(check_cell_folder(model_dir, model_name), device, dtype, KEY)
        self.threshold = float(threshold)
        self.size = (int(self.processor.size["height"]), int(self.processor.size["width"]))
        if len(self.model.config.id2label) != 1:
            raise OcrvlError(f"{KEY}={model_dir}: a table-cell model has one label (cell), this one has "
                             f"{len(self.model.config.id2label)}")

    def predict(self, crops: Sequence[np.ndarray]) -> list[list[dict]]:
        """Cells of each RGB uint8 HxWx3 crop, highest score first, in the crop's pixels."""
        if not len(crops):
            return []
        import cv2

        h, w = self.size
        sized = [c if c.shape[:2] == (h, w) else cv2.resize(c, (w, h), interpolation=cv2.INTER_CUBIC) for c in crops]
        results = detect(self.processor, self.model, sized, self.threshold,
                         [(int(c.shape[0]), int(c.shape[1])) for c in crops])
        return [to_cells(r, int(c.shape[0]), int(c.shape[1])) for r, c in zip(results, crops)]


def to_cells(result: dict, height: int, width: int) -> list[dict]:
    """One crop's ``post_process_object_detection`` result -> paddlex's box dicts (clipped, empty ones dropped)."""
    scores = result["scores"].cpu().numpy().astype(np.float64)
    boxes = result["boxes"].cpu().numpy().astype(np.float64)
    boxes = np.clip(boxes, 0, [width, height, width, height])
    return [{"label": "cell", "score": float(s), "coordinate": [float(v) for v in b]}
            for s, b in zip(scores, boxes) if b[2] > b[0] and b[3] > b[1]]
