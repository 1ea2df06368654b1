"""Guards: where our default composition departs from the original to make better data.

Each is counted in the page's ``SkipCounter`` under its value (prefix ``guard.``) and reported by the run
report as "guards"; ``docs/compose.md`` ("Departures") says why and which recipe key restores the original.
"""
from __future__ import annotations

from enum import Enum

PREFIX = "guard."


class Guard(str, Enum):
    # a word owned by the region but mostly outside it: not in the label, and its ink removed from the crop
    # (the original left it visible); counted per sample
    PARTIAL_WORD_REMOVED = "guard.partial_word_removed"
    # a region whose owned words all lie mostly outside it: no sample (the original labelled the crop with the
    # first such word); counted per region
    OUTSIDE_WORDS_REGION = "guard.outside_words_region"
    # a tall region of horizontal words read in rows (column_requires_tall_words); counted per sample
    TALL_REGION_ROWS = "guard.tall_region_rows"
    # a layout sample kept on a page with cell samples (cells_replace: table); counted per sample
    LAYOUT_BESIDE_CELLS = "guard.layout_beside_cells"
