"""compose: pure functions that turn a page + its detected regions into training samples (crop + label).

No Ray, no Paddle here: geometry (geometry.py), reading order (reading.py), recipes (recipes.py),
page rotation (orient.py), crop masking and JPEG (render.py), and the page step (page.py).
"""
from ocrvl_ray.layout.compose.orient import orient_page
from ocrvl_ray.layout.compose.page import ComposeOptions, PageResult, Sample, compose_page
from ocrvl_ray.layout.compose.recipes import ALLOWED_LABELS, Recipe, get_recipe

__all__ = ["ALLOWED_LABELS", "ComposeOptions", "PageResult", "Recipe", "Sample", "compose_page", "get_recipe",
           "orient_page"]
