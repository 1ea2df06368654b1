"""Issue 11: composition follows the original's semantics (original-pipeline.md §3.4-3.7), item by item.

Synthetic pages with known boxes; every expected value is worked out by hand from the original's rules.
"""
import cv2
import numpy as np
import pytest

from ocrvl_ray.core.config import ConfigError, load_config
from ocrvl_ray.core.records import Page, Region, Word
from ocrvl_ray.core.skips import Guard, Skip
from ocrvl_ray.layout.compose import ComposeOptions, compose_page, get_recipe
from ocrvl_ray.layout.compose.mask import keep_only, paper
from ocrvl_ray.layout.compose.reading import compose_text
from ocrvl_ray.layout.config import LayoutConfig
from ocrvl_ray.report.run import build_report

PAPER, INK = 235, 20


def word(i, x1, y1, x2, y2, text=None, **attrs):
    return Word(str(i), [x1, y1, x2, y1, x2, y2, x1, y2], f"w{i}" if text is None else text, attrs)


def strokes(img, box, value=INK):
    """Ink like real text: 2 px vertical strokes every 5 px inside the box (paper stays the majority)."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    for x in range(x1 + 1, x2 - 1, 5):
        img[y1 + 1:y2 - 1, x:x + 2] = value


def page_of(words, dataset="ocr_public", w=400, h=300):
    img = np.full((h, w, 3), PAPER, np.uint8)
    for wd in words:
        strokes(img, wd.aabb)
    return Page("p1", dataset, "train", "scan_7.png", None, w, h, list(words), source="l.json"), img


def layout(x1, y1, x2, y2, label="text", order=None, kind="layout", score=0.9):
    return Region(label, score, (x1, y1, x2, y2), order=order, kind=kind)


def cell(x1, y1, x2, y2, table):
    return Region("cell", 0.9, (x1, y1, x2, y2), kind="cell", table=table)


def run(page, img, regions, cells=(), overrides=None, **opts):
    return compose_page(page, img, list(regions), list(cells), get_recipe(page.dataset, overrides),
                        ComposeOptions(**{"jpeg_quality": 95, **opts}))


def decode(sample):
    return cv2.imdecode(np.frombuffer(sample.image, np.uint8), cv2.IMREAD_GRAYSCALE).astype(float)


def read(words, overrides=None):
    """words: (x1, y1, x2, y2, text, id[, orient]) in page order."""
    boxes = np.array([w[:4] for w in words], dtype=float)
    return compose_text(boxes, [w[4] for w in words], [w[5] for w in words],
                        [w[6] if len(w) > 6 else None for w in words], get_recipe("ocr_public", overrides))


# ---------------------------------------------------------------- item 1: masking

def form_page():
    """A form field: label word, printed guide text nobody annotated, a stamp, an annotated neighbour that
    is mostly outside the region (owned, 0.4 covered: not in the label)."""
    label = word(1, 20, 20, 80, 40, "성명")
    partial = word(2, 130, 60, 230, 80, "half")          # 40 of 100 px inside the region (0..170)
    page, img = page_of([label, partial])
    img[60:80, 20:100] = PAPER
    strokes(img, (20, 60, 100, 80), 60)                   # guide text, not annotated
    cv2.circle(img, (120, 30), 14, (40, 40, 200), 3)      # a red stamp, not annotated
    return page, img


def test_mask_all_removes_every_ink_outside_the_label_words():
    page, img = form_page()
    [s] = run(page, img, [layout(0, 0, 170, 100)]).samples
    assert s.text == "성명"
    crop = decode(s)
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(float)
    assert abs(crop[60:80, 20:100].mean() - PAPER) < 3      # guide text gone (paper grey 235)
    assert abs(crop[14:47, 104:137].mean() - PAPER) < 3     # stamp gone
    assert abs(crop[60:80, 130:170].mean() - PAPER) < 3     # the partial word's visible part gone
    assert np.abs(crop[20:40, 20:80] - grey[20:40, 20:80]).max() < 12   # label word's strokes kept (JPEG)
    assert s.box == (0, 0, 170, 100)
    assert run(page, img, [layout(0, 0, 170, 100)]).skips.counts[Guard.PARTIAL_WORD_REMOVED.value] == 1


@pytest.mark.parametrize("size, region, blob", [
    (400, (20, 20, 220, 150), (140, 70, 200, 130)),       # issue 25: a 60x60 block, crop < 3 paper blocks high
    (400, (20, 20, 260, 200), (150, 100, 210, 160)),      # the same in a crop of 3x4 blocks
    (400, (20, 20, 260, 200), (20, 120, 260, 180)),       # a black bar across the crop
    (400, (20, 20, 260, 200), (20, 70, 260, 200)),        # more than half of the crop
    (1200, (0, 0, 1200, 1200), (300, 300, 700, 700)),     # 400x400 in a 19x19-block crop (3x3 median too small)
])
def test_mask_all_erases_unannotated_ink_of_any_size(size, region, blob):
    """Bug 5: every pixel outside the label word's (dilated) box ends as paper, however large the ink."""
    paper_grey, blob_grey = 240, 30
    label = word(1, 40, 40, 120, 60, "이름")
    img = np.full((size, size, 3), paper_grey, np.uint8)
    strokes(img, label.aabb)
    bx1, by1, bx2, by2 = blob
    img[by1:by2, bx1:bx2] = blob_grey                     # a stamp, logo, photo or bar nobody annotated
    page = Page("p1", "ocr_public", "train", "scan_7.png", None, size, size, [label], source="l.json")
    [s] = run(page, img, [layout(*region)]).samples
    assert s.text == "이름"
    crop = decode(s)
    x0, y0 = region[:2]
    near = np.zeros(crop.shape, bool)                     # the label word's box, dilated (2 px) and feathered
    near[40 - 6 - y0:60 + 6 - y0, 40 - 6 - x0:120 + 6 - x0] = True
    assert np.abs(crop[~near] - paper_grey).max() <= 6    # JPEG noise only, not the blob (30)
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(float)
    assert np.abs(crop[40 - y0:60 - y0, 40 - x0:120 - x0] - grey[40:60, 40:120]).max() < 12   # the word stays


def test_mask_words_hides_annotated_words_only_and_none_hides_nothing():
    page, img = form_page()
    [w] = run(page, img, [layout(0, 0, 170, 100)], mask="words").samples
    crop = decode(w)
    assert crop[60:80, 130:170].mean() > 225                # the annotated partial word is hidden
    assert crop[60:80, 20:100].mean() < 175                 # unannotated guide text stays
    [n] = run(page, img, [layout(0, 0, 170, 100)], mask="none").samples
    assert decode(n)[60:80, 130:170].mean() < 175 and decode(n)[60:80, 20:100].mean() < 175
    with pytest.raises(ValueError, match="mask='some'"):
        ComposeOptions(mask="some")


def test_keep_only_is_exact_inside_the_words_and_follows_the_paper_around_them():
    h, w = 200, 300
    yy, xx = np.mgrid[0:h, 0:w]
    bg = (150 + 80 * xx / w).astype(np.uint8)               # paper lit from the right: 150 .. 230
    crop = np.repeat(bg[:, :, None], 3, axis=2)
    boxes = [(20, 30, 80, 50), (120, 30, 180, 50), (220, 30, 280, 50), (20, 150, 80, 170), (220, 150, 280, 170)]
    for box in boxes:
        strokes(crop, box)                                   # the label words
    strokes(crop, (120, 120, 180, 150))                      # other ink
    polys = [np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], float) for x1, y1, x2, y2 in boxes]
    out = keep_only(crop, polys, dilate=2, feather=1)
    assert out.shape == crop.shape and out.dtype == np.uint8 and out is not crop
    for x1, y1, x2, y2 in boxes:
        assert np.array_equal(out[y1:y2 + 1, x1:x2 + 1], crop[y1:y2 + 1, x1:x2 + 1])   # the words, untouched
    err = np.abs(out[:, :, 0].astype(float) - bg)
    assert err[120:150, 120:180].max() < 6                   # other ink -> the paper between the words
    far = np.ones((h, w), bool)
    for x1, y1, x2, y2 in boxes:
        far[y1 - 6:y2 + 7, x1 - 6:x2 + 7] = False
    assert err[far].mean() < 6                               # the fill follows the shading the words sit on
    # light text on a dark sign: the fill is the sign's colour, not white
    sign = np.full((60, 200, 3), 30, np.uint8)
    strokes(sign, (20, 20, 80, 40), 240)
    strokes(sign, (120, 20, 180, 40), 240)
    sout = keep_only(sign, [np.array([[20, 20], [80, 20], [80, 40], [20, 40]], float)], 2, 1)
    assert sout[20:40, 120:180].max() < 40


def test_paper_samples_only_where_told():
    crop = np.full((40, 120, 3), 200, np.uint8)
    crop[5:35, 5:115] = 10                                   # a solid black blob over most of the crop
    around = np.zeros((40, 120), bool)
    around[:3] = True                                        # the paper above it
    assert paper(crop)[0, 0, 0] == 10                        # sampling everything: the blob wins
    assert np.all(paper(crop, around) == 200)


# ---------------------------------------------------------------- items 2-4, 10: reading order

def test_row_sub_line_split():
    # heights 10 -> y_gap max(8, 6) = 8; widths 20 -> x_gap max(8, 12) = 12; base gap 0.25 * 10 = 2.5
    # y-centres A 100, C 107, D 109, B 111.5: one row (smoothed centre 100 -> 102.1 -> 104.17, B 7.33 away)
    # walk by id: A; B is 11.5 from A's mean, wraps left (190 < 310 - 12), 11.5 > 2.5 off A -> new sub-line;
    # C (4.5 from 111.5) and D (0.25 from 109.25) join B's sub-line, read by x: C B D
    words = [(300, 95, 320, 105, "A", 0), (100, 102, 120, 112, "C", 2), (250, 104, 270, 114, "D", 3),
             (180, 106.5, 200, 116.5, "B", 1)]
    assert read(words) == "A\nC B D"
    assert read(words, {"split_sublines": False}) == "C B D A"


def test_column_ties_go_by_x_not_by_id():
    # tall words (10 x 12) in one column (|cx - 5| <= max(10, 8)); c and x share y-centre 46
    words = [(0, 0, 10, 12, "a", 5), (0, 20, 10, 32, "b", 6), (0, 40, 10, 52, "c", 7),
             (4, 40, 14, 52, "x", 1), (0, 60, 10, 72, "d", 8)]
    assert read(words) == "a b c x d"


def test_column_direction_per_column():
    # left column 3x ud (bottom to top), right column 2x du (top to bottom); the region has more ud than du
    left = [(0, 20 * i, 10, 20 * i + 10, t, i, "ud") for i, t in enumerate("abc")]
    right = [(40, 20 * i, 50, 20 * i + 10, t, 10 + i, "du") for i, t in enumerate("de")]
    assert read(left + right) == "c b a\nd e"


def test_tall_paragraph_reads_in_rows_by_default():
    # 10 lines of two wide words, union 55 x 188 (>= 2x taller than wide), median word 25 x 8
    words = [word(2 * i + k, 30 * k, 20 * i, 30 * k + 25, 20 * i + 8) for i in range(10) for k in range(2)]
    page, img = page_of(words, w=100, h=220)
    res = run(page, img, [layout(0, 0, 60, 200)])
    assert res.samples[0].text == "\n".join(f"w{2 * i} w{2 * i + 1}" for i in range(10))
    assert res.skips.counts[Guard.TALL_REGION_ROWS.value] == 1
    # the original: columns split at max(10, 0.8 * 25) = 20 (x-centres 12.5 and 42.5), each top to bottom
    orig = run(page, img, [layout(0, 0, 60, 200)], overrides={"column_requires_tall_words": False})
    assert orig.samples[0].text == " ".join(f"w{2 * i}" for i in range(10)) + "\n" + \
        " ".join(f"w{2 * i + 1}" for i in range(10))
    assert Guard.TALL_REGION_ROWS.value not in orig.skips.counts


# ---------------------------------------------------------------- items 5, 6: tables and cells

def test_table_under_the_layout_threshold_feeds_cells_only():
    words = [word(1, 10, 10, 90, 30, "para"), word(2, 110, 110, 140, 130, "k1")]
    page, img = page_of(words)
    text = layout(0, 0, 200, 50, order=1)
    for kind, score, expected in [("table_only", 0.4, [("layout", "para")]),
                                  ("layout", 0.6, [("layout", "para"), ("layout", "k1")])]:
        table = layout(100, 100, 200, 140, "table", order=2, kind=kind, score=score)
        res = run(page, img, [text, table])
        assert [(s.kind, s.text) for s in res.samples] == expected, kind
        with_cells = run(page, img, [text, table], [cell(100, 100, 150, 140, table=1)])
        assert [(s.kind, s.text, s.layout_label) for s in with_cells.samples] == [
            ("layout", "para", "text"), ("cell", "k1", "table")], kind


def test_a_word_enters_every_cell_it_covers():
    page, img = page_of([word(1, 20, 110, 60, 130, "k"), word(2, 120, 110, 160, 130, "v")])
    table = layout(0, 100, 200, 150, "table", order=1)
    # outer cell, a nested duplicate of its left half, and a right cell; "k" is fully inside the first two
    cells = [cell(0, 100, 100, 150, 0), cell(10, 105, 90, 145, 0), cell(100, 100, 200, 150, 0)]
    res = run(page, img, [table], cells)
    assert sorted((s.box, s.text) for s in res.samples) == [
        ((0, 100, 100, 150), "k"), ((10, 105, 90, 145), "k"), ((100, 100, 200, 150), "v")]


def test_public_admin_cells_once():
    page, img = page_of([word(1, 20, 110, 60, 130, "k")], dataset="public_admin")
    res = run(page, img, [layout(0, 100, 200, 150, "table", order=1)], [cell(0, 100, 100, 150, 0)])
    assert [(s.kind, s.text) for s in res.samples] == [("cell", "k")]


# ---------------------------------------------------------------- items 7, 9, 11 and defaults

def test_coverage_uses_the_whole_word_even_outside_the_page():
    # page 300 wide; word 280..340: 20 of 60 px inside -> owned (0.33 >= 0.3), coverage 0.33 < 0.5
    page, img = page_of([word(1, 280, 10, 340, 30, "edge")], w=300)
    res = run(page, img, [layout(200, 0, 300, 50)])
    assert res.samples == [] and res.status == Skip.NO_WORDS_ASSIGNED
    assert res.skips.counts[Guard.OUTSIDE_WORDS_REGION.value] == 1   # the original: "edge" alone


def test_document_recipes_default_to_good_data():
    for ds in ("public_admin", "ocr_public", "finance_logistics", "handwriting", "my_scans"):
        r = get_recipe(ds)
        assert (r.column_requires_tall_words, r.cells_replace, r.split_sublines) == (True, "table", True), ds
    assert get_recipe("text_in_wild").column_requires_tall_words is False


def test_mask_config_and_the_old_inpaint_key():
    assert load_config(LayoutConfig, env={}).mask == "all"
    assert load_config(LayoutConfig, overrides=["mask=words"], env={}).mask == "words"
    assert load_config(LayoutConfig, overrides=["inpaint=false"], env={}).mask == "none"
    assert load_config(LayoutConfig, env={"FAST_INPAINT": "0"}).mask == "none"
    assert load_config(LayoutConfig, overrides=["inpaint=true"], env={}).mask == "all"
    with pytest.raises(ConfigError, match="inpaint=false .*contradicts mask=words"):
        load_config(LayoutConfig, overrides=["inpaint=false", "mask=words"], env={})
    with pytest.raises(ConfigError, match="mask"):
        load_config(LayoutConfig, overrides=["mask=blur"], env={})


def test_compose_options_take_every_default_from_the_layout_config():
    """One default, one place: ComposeOptions() is the default config's options, and every compose.* knob and
    top-level key it reads reaches it through from_config."""
    from dataclasses import asdict

    from ocrvl_ray.layout.config import ComposeConfig

    cfg = LayoutConfig()
    assert ComposeOptions() == ComposeOptions.from_config(cfg.jpeg_quality, cfg.mask, cfg.compose)
    assert set(asdict(ComposeOptions())) == {"jpeg_quality", "mask", *ComposeConfig.model_fields}
    cfg = load_config(LayoutConfig, overrides=["jpeg_quality=60", "mask=words", "compose.inpaint_radius=5",
                                               "compose.dilate_min=4", "compose.feather_factor=0.1"], env={})
    opts = ComposeOptions.from_config(cfg.jpeg_quality, cfg.mask, cfg.compose)
    assert (opts.jpeg_quality, opts.mask, opts.inpaint_radius, opts.dilate_min, opts.feather_factor) == (
        60, "words", 5, 4, 0.1)


def test_run_report_counts_guards_apart_from_skips():
    cfg = LayoutConfig()
    summary = {"pages": {"ok": 2}, "item_skips": {
        "counts": {"empty_text": 1, Guard.TALL_REGION_ROWS.value: 3},
        "examples": {"empty_text": ["a#1"], Guard.TALL_REGION_ROWS.value: ["p layout 0 text"]}}}
    rep = build_report(cfg, "m.parquet", pages_in=2, already_done=0, summary=summary, elapsed_s=1.0)
    assert rep["item_skips"]["counts"] == {"empty_text": 1}
    assert rep["guards"]["counts"] == {Guard.TALL_REGION_ROWS.value: 3}


def test_run_report_says_when_the_writer_bounds_the_run(capsys):
    """Busy share = seconds in write tasks / (writers x run seconds); a long run with a busy writer gets the hint."""
    from ocrvl_ray.report.run import print_report

    cfg = LayoutConfig(output="/x/o.lmdb")
    for summary, elapsed, share, hint in [({"pages": {"ok": 2}, "write_s": 90.0}, 100.0, 0.9, True),
                                          ({"pages": {"ok": 2}, "write_s": 90.0, "shards": 2}, 100.0, 0.45, False),
                                          ({"pages": {"ok": 2}, "write_s": 9.0}, 10.0, 0.9, False),   # short run
                                          ({"pages": {"ok": 2}}, 10.0, 0.0, False)]:
        rep = build_report(cfg, "m.parquet", pages_in=2, already_done=0, summary=summary, elapsed_s=elapsed)
        assert rep["writer_busy_share"] == share
        print_report(rep)
        out = capsys.readouterr().out
        assert f"writer busy {rep['writer_busy_s']} s ({share:.0%} of the run)" in out
        assert ("shards=N writes N LMDB shards in parallel" in out) == hint
