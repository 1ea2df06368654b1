"""The files bundled in ``ocrvl_ray/assets``, by path: production code finds them here, never in ``demo/``.

    from ocrvl_ray.core.assets import font_path
    ImageFont.truetype(font_path(), 24)
"""
from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "assets"
#: A NanumGothic subset: ASCII and the Hangul of the demo sample (SIL OFL 1.1, ``assets/FONT-NOTICE.md``).
FONT = ASSETS / "sample-gothic.ttf"
#: The shipped sample dataset, one folder per page family (``python -m ocrvl_ray.demo.sample DIR`` writes it).
SAMPLE_DATASET = ASSETS / "sample"
#: The real PP-DocLayoutV2 ``inference.yml``, verbatim (the demo models' config and label list).
LAYOUT_INFERENCE_YML = ASSETS / "pp-doclayoutv2.inference.yml"


def font_path() -> str:
    """The bundled font as a string path (what PIL and paddlex take)."""
    return str(FONT)


def layout_inference_yml() -> dict:
    """The bundled PP-DocLayoutV2 ``inference.yml``, parsed."""
    import yaml

    return yaml.safe_load(LAYOUT_INFERENCE_YML.read_text("utf-8"))


def layout_labels() -> list[str]:
    """PP-DocLayoutV2's 25 labels, in the model's class order."""
    return list(layout_inference_yml()["label_list"])
