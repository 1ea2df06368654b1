"""Reading order inside a region and between regions (pure functions, hand-made boxes)."""
import numpy as np

from ocrvl_ray.layout.compose import get_recipe
from ocrvl_ray.layout.compose.reading import compose_text, id_key, region_order
from ocrvl_ray.core.records import Region

P = get_recipe("ocr_public")


def read(words, params=P):
    """words: (x1, y1, x2, y2, text, id[, orient])."""
    boxes = np.array([w[:4] for w in words], dtype=float)
    return compose_text(boxes, [w[4] for w in words], [w[5] for w in words],
                        [w[6] if len(w) > 6 else None for w in words], params)


def test_two_rows_independent_of_reversed_ids():
    words = [(0, 0, 10, 10, "a", 6), (20, 0, 30, 10, "b", 5), (40, 0, 50, 10, "c", 4),
             (0, 30, 10, 40, "d", 3), (20, 30, 30, 40, "e", 2), (40, 30, 50, 40, "f", 1)]
    assert read(words) == "a b c\nd e f"
    assert read(list(reversed(words))) == "a b c\nd e f"


def test_row_gap_rule_with_smoothed_row_centre():
    # heights 10 -> threshold max(8, 0.6*10) = 8; y-centres 5, 12, 13.5, 19.
    # row centre: 5 -> (12 joins) 7.1 -> (13.5 joins, 6.4 away) 9.02 -> 19 is 9.98 away: new row.
    # (a fixed row centre would split at 13.5, the last centre would never split)
    words = [(0, 0, 10, 10, "a", 1), (20, 7, 30, 17, "b", 2), (40, 8.5, 50, 18.5, "c", 3), (10, 14, 20, 24, "d", 4)]
    assert read(words) == "a b c\nd"
    # tall words: threshold 0.6*30 = 18 -> a 15 px offset stays on one row, sorted by x-centre
    tall = [(50, 0, 60, 30, "right", 1), (0, 15, 10, 45, "left", 2)]
    assert read(tall) == "left right"


def test_vertical_union_reads_columns_left_to_right():
    # two columns of six 10x10 words: union 50 wide, 110 tall (ratio 2.2 >= 2)
    words = [(0, 20 * i, 10, 20 * i + 10, f"a{i}", i) for i in range(6)]
    words += [(40, 20 * i, 50, 20 * i + 10, f"b{i}", 10 + i) for i in range(6)]
    assert read(words) == "a0 a1 a2 a3 a4 a5\nb0 b1 b2 b3 b4 b5"
    # the same grid only 4 rows tall (ratio 70/50 < 2) reads as rows
    short = [w for w in words if int(w[4][1]) < 4]
    assert read(short) == "a0 b0\na1 b1\na2 b2\na3 b3"


def test_narrow_column_of_wide_words_and_the_tall_words_option():
    words = [(0, 12 * i, 20, 12 * i + 8, f"l{i}", i) for i in range(10)]  # union 20 x 116
    original = get_recipe("ocr_public", {"column_requires_tall_words": False})
    assert read(words, original) == " ".join(f"l{i}" for i in range(10))  # the original's column rule
    assert read(words) == "\n".join(f"l{i}" for i in range(10))           # the default: rows


def test_word_orientation_flags_select_column_direction():
    col = [(0, 0, 10, 10, "a", 1), (0, 20, 10, 30, "b", 2), (0, 40, 10, 50, "c", 3)]
    assert read([w + ("ud",) for w in col]) == "c b a"
    assert read([w + ("du",) for w in col]) == "a b c"
    mixed = [col[0] + ("ud",), col[1] + ("ud",), col[2] + ("du",)]
    assert read(mixed) == "c b a"
    # a flag turns even a wide layout into columns: two words side by side become two columns
    assert read([(0, 0, 30, 10, "x", 1, "du"), (40, 0, 70, 10, "y", 2, None)]) == "x\ny"


def test_mixed_id_types_and_ties():
    same = (0, 0, 10, 10)
    words = [same + ("ex", "x"), same + ("ten", 10), same + ("nine", "9")]
    assert read(words) == "nine ten ex"
    assert sorted([3, "b", "10", 2], key=id_key) == [2, 3, "10", "b"]


def test_empty_words_are_dropped_without_double_spaces():
    words = [(0, 0, 10, 10, "a", 1), (20, 0, 30, 10, "", 2), (40, 0, 50, 10, "  ", 3), (60, 0, 70, 10, " c ", 4),
             (0, 30, 10, 40, "", 5)]
    assert read(words) == "a c"
    assert read([(0, 0, 10, 10, "", 1)]) == ""


def test_region_order_ranked_first_then_top_to_bottom():
    regions = [Region("text", 0.9, (0, 50, 10, 60), order=None),
               Region("text", 0.9, (0, 0, 10, 10), order=2),
               Region("text", 0.9, (50, 10, 60, 20), order=None),
               Region("text", 0.9, (0, 90, 10, 99), order=1),
               Region("text", 0.9, (0, 10, 10, 20), order=None)]
    assert region_order(regions) == [3, 1, 4, 2, 0]
