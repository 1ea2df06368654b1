"""orient_page: text_in_wild pages turned upright, image and word polygons together."""
import numpy as np
import pytest

from ocrvl_ray.layout.compose import orient_page
from ocrvl_ray.core.records import Page, Word


def tiw_page(orientation, w=100, h=50):
    word = Word("1", [0, 0, 10, 0, 10, 20, 0, 20], "box")
    return Page("p", "text_in_wild", "train", "sign.jpg", None, w, h, [word], attrs={"orientation": orientation})


@pytest.mark.parametrize("flag,points,shape", [
    ("du", [30, 0, 50, 0, 50, 10, 30, 10], (100, 50)),
    ("ud", [0, 90, 20, 90, 20, 100, 0, 100], (100, 50)),
    ("usd", [90, 30, 100, 30, 100, 50, 90, 50], (50, 100)),
])
def test_rotation_of_image_and_words(flag, points, shape):
    img = np.zeros((50, 100, 3), np.uint8)
    img[0:20, 0:10] = 255                        # the word's pixels
    page, out = orient_page(tiw_page(flag), img)
    assert page.words[0].points == points        # clockwise from the new top-left
    assert out.shape[:2] == shape and (page.height, page.width) == shape
    x1, y1, x2, y2 = page.words[0].aabb
    assert (out[int(y1):int(y2), int(x1):int(x2)] == 255).all()
    assert int((out == 255).sum()) == 200 * 3    # the word moved with its box, nothing else is white
    assert page.attrs["orientation"] == flag and page.attrs["oriented"] is True
    again, out2 = orient_page(page, out)         # already turned: identity
    assert again is page and out2 is out


@pytest.mark.parametrize("value,expected", [
    (["du", "ud"], [0, 90, 20, 90, 20, 100, 0, 100]),           # ud beats du
    ({"usd": "1", "ud": True}, [90, 30, 100, 30, 100, 50, 90, 50]),  # usd beats ud
    ({"ud": "false", "du": 1}, [30, 0, 50, 0, 50, 10, 30, 10]),
    ("UD", [0, 90, 20, 90, 20, 100, 0, 100]),
])
def test_flag_priority_and_forms(value, expected):
    page, _ = orient_page(tiw_page(value), np.zeros((50, 100, 3), np.uint8))
    assert page.words[0].points == expected


def test_character_boxes_turn_with_the_page():
    page = tiw_page("du")
    page.attrs["chars"] = [[0, 0, 10, 0, 10, 20, 0, 20]]
    turned, _ = orient_page(page, np.zeros((50, 100, 3), np.uint8))
    assert turned.attrs["chars"] == [[30, 0, 50, 0, 50, 10, 30, 10]]
    assert page.attrs["chars"] == [[0, 0, 10, 0, 10, 20, 0, 20]]   # the input page is not modified


def test_upright_pages_are_untouched():
    img = np.zeros((50, 100, 3), np.uint8)
    for value in (None, "", [], {"ud": False}):
        page = tiw_page(value)
        same, out = orient_page(page, img)
        assert same is page and out is img
