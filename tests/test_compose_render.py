"""hide_words: inpaint only around hidden polygons, never the kept ones; recipes: overrides and errors."""
import numpy as np
import pytest

from ocrvl_ray.layout.compose import get_recipe
from ocrvl_ray.layout.compose.render import hide_words
from ocrvl_ray.core.errors import OcrvlError


def rect(x1, y1, x2, y2):
    return np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], dtype=float)


def test_hidden_pixels_change_kept_and_far_pixels_do_not():
    rng = np.random.default_rng(1)
    crop = rng.integers(100, 156, (120, 200, 3), dtype=np.uint8)
    crop[40:60, 100:140] = 0                     # a dark word to hide
    crop[40:60, 60:96] = 255                     # a bright label word right next to it
    hide = [rect(100, 40, 140, 60)]
    keep = [rect(60, 40, 96, 60)]
    out = hide_words(crop, hide, keep, dilate=5)
    assert out is not crop and crop[45, 110, 0] == 0      # input untouched
    assert out[42:58, 102:138].mean() > 80                 # the dark word is filled from its surroundings
    assert np.array_equal(out[40:61, 60:97], crop[40:61, 60:97])  # label word (even inside the dilation)
    # outside the window (polygon + dilation + radius + 1 = 9 px) nothing changes
    assert np.array_equal(out[:30], crop[:30]) and np.array_equal(out[71:], crop[71:])
    assert np.array_equal(out[:, :90], crop[:, :90]) and np.array_equal(out[:, 151:], crop[:, 151:])


def test_overlapping_windows_and_polygons_at_the_border():
    crop = np.full((60, 80, 3), 200, np.uint8)
    crop[10:20, 0:15] = 0
    crop[10:20, 18:30] = 0
    out = hide_words(crop, [rect(-5, 10, 15, 20), rect(18, 10, 30, 20)], [], dilate=2)
    assert out[10:20, 0:30].min() > 150
    assert np.array_equal(hide_words(crop, [], [rect(0, 0, 5, 5)], dilate=2), crop)


def test_recipe_defaults_per_dataset():
    assert get_recipe("finance_logistics").layout is False
    hw = get_recipe("handwriting")
    assert (hw.cell_threshold, hw.word_fallback, hw.word_pad) == (0.5, True, 2)
    tiw = get_recipe("text_in_wild")
    assert (tiw.crop, tiw.layout_threshold, tiw.layout_min_coverage, tiw.center_inside, tiw.cells) == \
        ("words", 0.15, 0.6, True, False)
    other = get_recipe("my_scans")
    assert (other.name, other.layout_threshold, other.cell_threshold, other.crop) == ("my_scans", 0.3, 0.2, "region")
    assert "table" in other.labels and "header" not in other.labels and len(other.labels) == 11


def test_recipe_overrides_and_errors():
    r = get_recipe("ocr_public", {"cells_replace": "table", "labels": ["text"]})
    assert (r.cells_replace, r.labels) == ("table", ("text",))
    with pytest.raises(OcrvlError, match="'layout_treshold'.*did you mean 'layout_threshold'"):
        get_recipe("ocr_public", {"layout_treshold": 0.2})
    with pytest.raises(OcrvlError, match=r"recipes\.handwriting\.crop"):
        get_recipe("handwriting", {"crop": "page"})


def test_compose_imports_neither_ray_nor_paddle():
    import subprocess
    import sys
    code = ("import sys, ocrvl_ray.layout.compose; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'ray', 'paddle', 'paddlex', 'paddleocr'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
