"""compose_page on synthetic pages: assignment thresholds, masking, recipes, statuses, crops and JPEGs."""
import cv2
import numpy as np
import pytest

from ocrvl_ray.layout.compose import ComposeOptions, compose_page, get_recipe
from ocrvl_ray.core.records import Page, Region, Word
from ocrvl_ray.core.skips import Skip

WHITE, INK = 255, 0


def word(i, x1, y1, x2, y2, text=None, **attrs):
    return Word(str(i), [x1, y1, x2, y1, x2, y2, x1, y2], f"w{i}" if text is None else text, attrs)


def page_of(words, dataset="ocr_public", w=400, h=300, name="scan_001.png", **attrs):
    """A white page with every word box painted black; returns (page, image)."""
    img = np.full((h, w, 3), WHITE, np.uint8)
    for wd in words:
        x1, y1, x2, y2 = (int(round(v)) for v in wd.aabb)
        img[max(0, y1):max(0, y2), max(0, x1):max(0, x2)] = INK
    return Page("p1", dataset, "train", name, None, w, h, list(words), source="labels.json", attrs=attrs), img


def layout(x1, y1, x2, y2, label="text", order=None):
    return Region(label, 0.9, (x1, y1, x2, y2), order=order)


def cell(x1, y1, x2, y2, table):
    return Region("cell", 0.9, (x1, y1, x2, y2), kind="cell", table=table)


def run(page, img, regions, cells=(), dataset=None, overrides=None, **opts):
    recipe = get_recipe(dataset or page.dataset, overrides)
    return compose_page(page, img, list(regions), list(cells), recipe, ComposeOptions(**opts))


def decode(sample):
    img = cv2.imdecode(np.frombuffer(sample.image, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (sample.height, sample.width, 3)
    return img


def texts(result):
    return [s.text for s in result.samples]


# ---------------------------------------------------------------- assignment + the 0.5 fix

def test_partial_word_is_masked_not_visible_but_missing():
    inside = word(1, 10, 10, 40, 30, "in")
    partial = word(2, 75, 40, 135, 60, "half")   # 25 of 60 px inside the region: 0.42 (>= 0.3, < 0.5)
    mostly = word(3, 85, 70, 110, 90, "most")    # 15 of 25 px inside: 0.6
    page, img = page_of([inside, partial, mostly])
    res = run(page, img, [layout(0, 0, 100, 100)], jpeg_quality=95)
    assert res.status == "ok"
    [s] = res.samples
    assert s.text == "in\nmost"
    assert (s.kind, s.layout_label, s.box, s.recipe) == ("layout", "text", (0, 0, 100, 100), "ocr_public")
    crop = decode(s).astype(float)
    assert crop[42:58, 78:98].mean() > 200      # the unlabelled word's visible part is gone
    assert crop[12:28, 12:38].mean() < 40       # label words untouched
    assert crop[72:88, 87:98].mean() < 40
    assert res.skips.counts[Skip.WORD_UNUSED.value] == 1

    plain = run(page, img, [layout(0, 0, 100, 100)], jpeg_quality=95, mask="none")
    assert plain.samples[0].text == "in\nmost"
    assert decode(plain.samples[0]).astype(float)[42:58, 78:98].mean() < 40   # toggle off: left as is


def test_neighbour_region_word_is_hidden_in_overlapping_crop():
    a = word(1, 10, 10, 50, 30, "left")
    b = word(2, 70, 10, 110, 30, "right")        # owned by the right region, but inside the left box too
    page, img = page_of([a, b])
    res = run(page, img, [layout(0, 0, 100, 50, order=1), layout(60, 0, 160, 50, order=2)], jpeg_quality=95)
    assert texts(res) == ["left", "right"]
    left = decode(res.samples[0]).astype(float)
    assert left[12:28, 72:98].mean() > 200 and left[12:28, 12:48].mean() < 40
    right = decode(res.samples[1]).astype(float)
    assert right[12:28, 12:48].mean() < 40       # "right" at x 70..110 -> crop x 10..50


@pytest.mark.parametrize("region_order", ["rank", "detector"])
def test_best_region_wins_and_ties_go_to_the_first_the_detector_returned(region_order):
    """Bug 6: on a tie the region first in the detector's output wins (the original), under either region_order:
    that key numbers and orders the samples, it never moves a word."""
    w = word(1, 40, 10, 60, 30, "mid")           # half in each region
    page, img = page_of([w])
    regions = [layout(0, 0, 50, 50, order=2), layout(50, 0, 100, 50, order=1)]
    res = run(page, img, regions, overrides={"region_order": region_order})
    number = "01" if region_order == "rank" else "00"
    assert [(s.box, s.filename) for s in res.samples] == [((0, 0, 50, 50), f"scan_001_layout_{number}.jpg")]
    assert res.skips.counts[Skip.EMPTY_LABEL.value] == 1
    both = word(2, 40, 60, 60, 80, "both")       # fully inside a region and a smaller one inside it
    page, img = page_of([both])
    res = run(page, img, [layout(0, 50, 100, 100, order=2), layout(30, 55, 70, 95, order=1)],
              overrides={"region_order": region_order})
    assert [(s.text, s.box) for s in res.samples] == [("both", (0, 50, 100, 100))]
    skew = word(3, 30, 10, 60, 30, "skew")       # 20 px in the left region, 10 px in the right one
    page, img = page_of([skew])
    res = run(page, img, regions[::-1], overrides={"region_order": region_order})
    assert [s.box for s in res.samples] == [(0, 0, 50, 50)]


@pytest.mark.parametrize("text_first", [True, False])
def test_a_word_is_labelled_once_when_a_text_region_lies_inside_a_table(text_first):
    """Bug 6: a ranked text region inside an (unranked) table, cells_replace: table. Whichever region owns the
    words, the cells label them; a layout sample never labels a word a cell sample of the page holds."""
    words = [word(1, 110, 110, 140, 130, "k1"), word(2, 160, 110, 190, 130, "v1"), word(3, 10, 10, 90, 30, "para"),
             word(4, 110, 145, 190, 160, "note")]
    page, img = page_of(words, h=300)
    table = layout(100, 100, 200, 140, "table")
    inner = layout(105, 105, 195, 165, order=2)       # covers both cells' words and a line under the table
    regions = [inner, table, layout(0, 0, 200, 50, order=1)]
    if not text_first:
        regions[:2] = regions[1::-1]
    t = regions.index(table)
    cells = [cell(100, 100, 150, 140, table=t), cell(150, 100, 200, 140, table=t)]
    res = run(page, img, regions, cells)
    assert [(s.kind, s.text) for s in res.samples] == [
        ("layout", "para"), ("layout", "note"), ("cell", "k1"), ("cell", "v1")]
    crop = decode(res.samples[1])   # the inner region shows its own word only: the cells' words are masked out
    assert crop[5:25, 5:85].min() > 200 and crop[40:55, 5:85].max() < 60


@pytest.mark.parametrize("dataset,inside,expected", [
    ("ocr_public", 0.35, True), ("ocr_public", 0.25, False),
    ("text_in_wild", 0.2, True), ("text_in_wild", 0.1, False),
])
def test_layout_ownership_thresholds(dataset, inside, expected):
    # coverage/centre checks off: only the ownership threshold (0.3; text_in_wild 0.15) decides
    w = word(1, 100 - 100 * inside, 10, 200 - 100 * inside, 30, "w")
    page, img = page_of([w], dataset=dataset, w=300)
    res = run(page, img, [layout(0, 0, 100, 50)],
              overrides={"layout_min_coverage": 0.0, "center_inside": False, "crop": "region"})
    assert texts(res) == (["w"] if expected else [])


@pytest.mark.parametrize("dataset,inside,expected", [
    ("ocr_public", 0.55, True), ("text_in_wild", 0.55, False), ("text_in_wild", 0.65, True),
])
def test_label_coverage_layout_vs_text_in_wild(dataset, inside, expected):
    w = word(1, 100 - 100 * inside, 10, 200 - 100 * inside, 30, "w")
    page, img = page_of([w], dataset=dataset, w=300)
    res = run(page, img, [layout(0, 0, 100, 50)])
    assert texts(res) == (["w"] if expected else [])


def test_text_in_wild_requires_the_word_centre_inside():
    w = word(1, 0, 10, 100, 30, "long")          # 40% inside (60..200), centre x=50 outside
    page, img = page_of([w], dataset="text_in_wild", w=300)
    res = run(page, img, [layout(60, 0, 200, 50)], overrides={"layout_min_coverage": 0.2})
    assert texts(res) == []
    page.dataset = "ocr_public"
    assert texts(run(page, img, [layout(60, 0, 200, 50)], overrides={"layout_min_coverage": 0.2})) == ["long"]


@pytest.mark.parametrize("dataset,inside,expected", [
    ("ocr_public", 0.3, True), ("ocr_public", 0.15, False), ("finance_logistics", 0.3, True),
    ("handwriting", 0.3, False), ("handwriting", 0.55, True),
])
def test_cell_ownership_thresholds(dataset, inside, expected):
    w = word(1, 100 - 100 * inside, 110, 200 - 100 * inside, 130, "c")
    page, img = page_of([w], dataset=dataset, w=300)
    res = run(page, img, [layout(0, 100, 250, 200, label="table")], [cell(0, 100, 100, 150, table=0)],
              overrides={"cell_min_coverage": 0.0, "word_fallback": False})
    cells = [s for s in res.samples if s.kind == "cell"]
    assert [s.text for s in cells] == (["c"] if expected else [])


# ---------------------------------------------------------------- recipes

def table_page(dataset):
    words = [word(1, 10, 10, 90, 30, "para"), word(2, 110, 110, 140, 130, "k1"), word(3, 160, 110, 190, 130, "v1")]
    page, img = page_of(words, dataset=dataset)
    regions = [layout(0, 0, 200, 50, "paragraph_title", order=1), layout(100, 100, 200, 140, "table", order=2)]
    cells = [cell(150, 100, 200, 140, table=1), cell(100, 100, 150, 140, table=1)]
    return page, img, regions, cells


def test_cells_replace_layout_samples_of_the_page():
    page, img, regions, cells = table_page("ocr_public")
    res = run(page, img, regions, cells, overrides={"cells_replace": "page"})   # the original
    assert [(s.kind, s.text, s.filename, s.layout_label) for s in res.samples] == [
        ("cell", "k1", "scan_001_cell_100_100.jpg", "table"), ("cell", "v1", "scan_001_cell_150_100.jpg", "table")]
    assert res.skips.counts[Skip.WORD_UNUSED.value] == 1   # "para": its region lost to the cells
    per_table = run(page, img, regions, cells)                                  # the default: "table"
    assert [(s.kind, s.text) for s in per_table.samples] == [("layout", "para"), ("cell", "k1"), ("cell", "v1")]
    assert per_table.samples[0].filename == "scan_001_layout_00.jpg"
    assert per_table.skips.counts["guard.layout_beside_cells"] == 1 and "guard.layout_beside_cells" not in res.skips.counts
    no_cells = run(page, img, regions, [])
    assert [(s.kind, s.text, s.filename) for s in no_cells.samples] == [
        ("layout", "para", "scan_001_layout_00.jpg"), ("layout", "k1 v1", "scan_001_layout_01.jpg")]


def test_finance_uses_cells_only():
    page, img, regions, cells = table_page("finance_logistics")
    assert [(s.kind, s.text) for s in run(page, img, regions, cells).samples] == [("cell", "k1"), ("cell", "v1")]
    res = run(page, img, regions, [])
    assert res.samples == [] and res.status == Skip.NO_REGIONS


def test_handwriting_word_fallback_crops_word_box_plus_2px():
    # the original's int() truncation (issue 11, item 8): x2 30.7 -> 30 + 2 = 32
    words = [word(1, 10.5, 20.2, 30.7, 40, "가나"), word(2, 0, 0, 5, 5, "다"), word(3, 395, 290, 400, 300, "")]
    page, img = page_of(words, dataset="handwriting", name="hw/IMG_OCR_53_1")
    res = run(page, img, [layout(200, 200, 300, 250, "image")])
    assert res.status == "ok"
    assert [(s.kind, s.text, s.box, s.filename, s.layout_label) for s in res.samples] == [
        ("word", "가나", (8, 18, 32, 42), "IMG_OCR_53_1_word_8_18.jpg", "word"),
        ("word", "다", (0, 0, 7, 7), "IMG_OCR_53_1_word_0_0.jpg", "word")]
    assert [(decode(s).shape[1], decode(s).shape[0]) for s in res.samples] == [(24, 24), (7, 7)]
    assert res.skips.counts[Skip.EMPTY_TEXT.value] == 1
    # a layout sample exists -> no fallback; other datasets never fall back
    assert [s.kind for s in run(page, img, [layout(0, 0, 50, 50)]).samples] == ["layout"]
    page.dataset = "ocr_public"
    assert run(page, img, []).samples == []


def test_handwriting_fallback_hides_the_neighbour_word():
    page, img = page_of([word(1, 10, 10, 30, 30, "a"), word(2, 34, 10, 60, 30, "b")], dataset="handwriting")
    a = run(page, img, [], overrides={"word_pad": 8}, jpeg_quality=95).samples[0]
    assert (a.box, a.text) == ((2, 2, 38, 38), "a")
    crop = decode(a).astype(float)
    assert crop[10:26, 10:26].mean() < 40        # its own word untouched
    assert crop[8:28, 32:].mean() > 200          # the neighbour's visible part (x 34..37) hidden


def test_text_in_wild_crops_the_union_of_its_words():
    words = [word(1, 10.4, 20.6, 50.2, 40.1, "A"), word(2, 60, 22, 90.5, 38, "B")]
    page, img = page_of(words, dataset="text_in_wild")
    [s] = run(page, img, [layout(0, 0, 200, 100)]).samples
    assert (s.box, s.width, s.height, s.text) == ((10, 20, 91, 41), 81, 21, "A B")
    assert decode(s).shape == (21, 81, 3)


def test_text_in_wild_rotated_page_labels_on_one_line():
    words = [word(1, 10, 10, 50, 30, "top"), word(2, 10, 50, 50, 70, "bottom")]
    for flag, expected in [(None, "top\nbottom"), ("ud", "top bottom"), ("du", "top bottom"), ("usd", "top\nbottom")]:
        page, img = page_of(words, dataset="text_in_wild", **({"orientation": flag} if flag else {}))
        page.attrs["oriented"] = True
        assert texts(run(page, img, [layout(0, 0, 100, 100)])) == [expected], flag
    # word-level orientation keeps the line breaks (column mode, one column per x cluster)
    vwords = [word(1, 10, 10, 30, 30, "a", orientation="du"), word(2, 60, 10, 80, 30, "b", orientation="du")]
    page, img = page_of(vwords, dataset="text_in_wild", orientation="ud")
    assert texts(run(page, img, [layout(0, 0, 100, 100)])) == ["a\nb"]


def test_labels_outside_the_allow_list_and_override():
    page, img = page_of([word(1, 10, 10, 50, 30, "hdr")])
    assert run(page, img, [layout(0, 0, 100, 50, "header")]).status == Skip.NO_REGIONS
    res = run(page, img, [layout(0, 0, 100, 50, "header")], overrides={"labels": ["text", "header"]})
    assert [(s.text, s.layout_label) for s in res.samples] == [("hdr", "header")]


def test_samples_follow_the_order_field():
    page, img = page_of([word(1, 10, 10, 50, 30, "first"), word(2, 10, 110, 50, 130, "second"),
                         word(3, 10, 210, 50, 230, "third")])
    regions = [layout(0, 200, 100, 250), layout(0, 100, 100, 150, order=2), layout(0, 0, 100, 50, order=1)]
    res = run(page, img, regions)
    assert [(s.text, s.filename) for s in res.samples] == [
        ("first", "scan_001_layout_00.jpg"), ("second", "scan_001_layout_01.jpg"), ("third", "scan_001_layout_02.jpg")]


# ---------------------------------------------------------------- bad input and statuses

def test_words_outside_degenerate_and_clipped():
    words = [word(1, 500, 500, 600, 600, "gone"), word(2, 10, 10, 10, 30, "flat"), word(3, 380, 10, 420, 30, "edge"),
             Word("4", [1, 2, float("nan"), 4, 5, 6, 7, 8], "nan"), Word("5", [1, 2, 3], "short")]
    page, img = page_of(words[2:3])
    page.words = words
    res = run(page, img, [layout(300, 0, 400, 50)])
    assert texts(res) == ["edge"]
    assert res.samples[0].box == (300, 0, 400, 50)
    c = res.skips.counts
    assert (c[Skip.WORD_OUTSIDE_PAGE.value], c[Skip.DEGENERATE_BOX.value], c[Skip.BAD_COORDINATE.value]) == (1, 2, 1)
    assert res.skips.examples[Skip.WORD_OUTSIDE_PAGE.value] == ["labels.json#1"]


def test_page_statuses():
    page, img = page_of([word(1, 10, 10, 50, 30)])
    assert run(page, img, []).status == Skip.NO_REGIONS
    assert run(page, img, [layout(-50, -50, -10, -10)]).status == Skip.NO_REGIONS   # nothing left after clipping
    res = run(page, img, [layout(200, 200, 300, 250)])
    assert (res.status, res.samples) == (Skip.NO_WORDS_ASSIGNED, [])
    assert res.skips.counts[Skip.EMPTY_LABEL.value] == 1 and res.skips.counts[Skip.WORD_UNUSED.value] == 1
    empty, img = page_of([])
    assert run(empty, img, [layout(0, 0, 100, 100)]).status == Skip.NO_WORDS_ASSIGNED


def test_jpeg_quality_and_size():
    page, img = page_of([word(1, 10, 10, 50, 30)])
    rng = np.random.default_rng(0)
    img[:] = rng.integers(0, 255, img.shape, dtype=np.uint8)
    lo = run(page, img, [layout(0, 0, 123, 77)], jpeg_quality=30).samples[0]
    hi = run(page, img, [layout(0, 0, 123, 77)], jpeg_quality=95).samples[0]
    assert (lo.width, lo.height) == (123, 77) and decode(lo).shape == (77, 123, 3)
    assert len(lo.image) < len(hi.image)
    assert np.abs(decode(hi).astype(int) - img[:77, :123]).mean() < np.abs(decode(lo).astype(int) - img[:77, :123]).mean()


def test_text_in_wild_hides_characters_outside_every_word():
    words = [word(1, 10, 10, 50, 30, "AB"), word(2, 70, 10, 90, 30, "C")]
    page, img = page_of(words, dataset="text_in_wild")
    img[12:28, 55:65] = INK                                   # a character annotated without a word
    page.attrs["chars"] = [[55, 12, 65, 12, 65, 28, 55, 28],  # stray: hidden
                           [12, 12, 28, 12, 28, 28, 12, 28]]  # inside the word "AB": left alone
    [s] = run(page, img, [layout(0, 0, 100, 50)], jpeg_quality=95, mask="words").samples
    assert (s.text, s.box) == ("AB C", (10, 10, 90, 30))
    crop = decode(s).astype(float)
    assert crop[4:16, 47:53].mean() > 200                     # x 57..63 of the page
    assert crop[2:18, 2:38].mean() < 40 and crop[2:18, 62:78].mean() < 40
    assert Skip.EMPTY_TEXT.value not in run(page, img, [layout(0, 0, 100, 50)]).skips.counts


def test_handwriting_cells_win_over_layout_and_empty_words_are_hidden():
    words = [word(1, 10, 10, 40, 30, "셀"), word(2, 60, 10, 90, 30, ""), word(3, 10, 60, 40, 80, "글")]
    page, img = page_of(words, dataset="handwriting")
    regions = [layout(0, 0, 100, 50, "table", order=1), layout(0, 55, 100, 90, order=2)]
    res = run(page, img, regions, [cell(0, 0, 100, 50, table=0)], jpeg_quality=95, overrides={"cells_replace": "page"})
    assert [(s.kind, s.text, s.layout_label) for s in res.samples] == [("cell", "셀", "table")]
    crop = decode(res.samples[0]).astype(float)
    assert crop[12:28, 62:88].mean() > 200 and crop[12:28, 12:38].mean() < 40   # unlabelled box hidden
    assert res.skips.counts[Skip.EMPTY_TEXT.value] == 1 and res.skips.counts[Skip.WORD_UNUSED.value] == 1
    assert texts(run(page, img, regions)) == ["셀", "글"]
