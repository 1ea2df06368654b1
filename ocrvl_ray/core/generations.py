"""PaddleOCR-VL model generations: what each one needs from our pipeline, in one table per side.

``LAYOUT`` is the layout side (issue 16): the layout detector the generation's document pipeline runs
and the ``layout_shape_mode`` its pipeline crops regions with (paddlex ``PaddleOCRVL.predict`` defaults
to ``auto`` for every generation; with PP-DocLayoutV2, which has no masks, ``auto`` crops plain boxes).
The training/eval side (chat template, prompts) joins this module as its own table, keyed the same way.
"""
from __future__ import annotations

VERSIONS = ("v1", "v1.5", "v1.6")

#: generation -> layout preset: ``model_name`` (paddleocr ``LayoutDetection``) and ``shape_mode``
#: (paddlex ``layout_shape_mode``: rect | quad | poly | auto).
LAYOUT: dict[str, dict[str, str]] = {
    "v1": {"model_name": "PP-DocLayoutV2", "shape_mode": "auto"},
    "v1.5": {"model_name": "PP-DocLayoutV3", "shape_mode": "auto"},
    "v1.6": {"model_name": "PP-DocLayoutV3", "shape_mode": "auto"},
}
