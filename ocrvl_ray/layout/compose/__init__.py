"""compose: pure functions that turn a page + its detected regions into training samples (crop + label).

No Ray, no Paddle here: geometry (geometry.py), reading order (reading.py), recipes (recipes.py),
page rotation (orient.py), crop masking and JPEG (render.py), and the page step (page.py).
"""
#: Changes whenever composition output changes for the same page, detections and options (bump it in the same
#: commit: tests/test_compose_version.py pins the bundled sample's output to it). Part of every LMDB's identity,
#: so a resume after an upgrade that composes differently is refused instead of mixing two compositions.
COMPOSE_VERSION = 2

from ocrvl_ray.layout.compose.orient import orient_page  # noqa: E402
from ocrvl_ray.layout.compose.page import ComposeOptions, PageResult, Sample, compose_page  # noqa: E402
from ocrvl_ray.layout.compose.recipes import ALLOWED_LABELS, Recipe, get_recipe  # noqa: E402

__all__ = ["ALLOWED_LABELS", "COMPOSE_VERSION", "ComposeOptions", "PageResult", "Recipe", "Sample", "compose_page",
           "get_recipe", "orient_page"]
