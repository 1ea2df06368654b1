"""One enum of skip reasons for every stage, and a mergeable counter that keeps the first examples."""
from __future__ import annotations

from collections import Counter
from enum import Enum


class Skip(str, Enum):
    # ingest: label files and records
    MALFORMED_JSON = "malformed_json"
    NOT_UTF8 = "not_utf8"
    UNKNOWN_FORMAT = "unknown_format"
    MISSING_FIELD = "missing_field"
    BAD_COORDINATE = "bad_coordinate"        # non-numeric, NaN or infinite
    DEGENERATE_BOX = "degenerate_box"        # zero area or too few points
    EMPTY_TEXT = "empty_text"
    IMAGE_UNMATCHED = "image_unmatched"      # no lookup entry / no file for the label's image
    DUPLICATE_PAGE = "duplicate_page"
    IMAGE_AMBIGUOUS = "image_ambiguous"      # several indexed images fit the label's name; none preferred
    PAGE_NO_WORDS = "page_no_words"          # every word of the page was skipped (or it had none)
    # layout: pages
    IMAGE_MISSING = "image_missing"
    IMAGE_CORRUPT = "image_corrupt"          # undecodable, truncated or zero-byte
    IMAGE_TOO_LARGE = "image_too_large"      # above the pixel limit (decompression bomb guard)
    NO_REGIONS = "no_regions"
    NO_DETECTIONS = "no_detections"          # detections=PATH has no row for the page
    NO_WORDS_ASSIGNED = "no_words_assigned"
    DETECTOR_ERROR = "detector_error"
    ERROR = "error"                          # unexpected exception; detail carries the class name
    # layout: words / regions inside a page
    WORD_OUTSIDE_PAGE = "word_outside_page"
    EMPTY_LABEL = "empty_label"
    WORD_UNUSED = "word_unused"              # usable word in no sample's label (outside kept regions)


#: Counter keys of guards start with this (they travel in the page's SkipCounter, reported apart from skips).
GUARD_PREFIX = "guard."


class Guard(str, Enum):
    """Where the default composition departs from the original to make better data (docs/compose.md,
    "Departures", says why and which recipe key restores the original)."""
    # a word owned by the region but mostly outside it: not in the label (as in the original) and its ink
    # removed from the crop (the original left it visible); per sample
    PARTIAL_WORD_REMOVED = "guard.partial_word_removed"
    # a region whose owned words all lie mostly outside it: no sample (the original labelled the crop with
    # the first such word); per region
    OUTSIDE_WORDS_REGION = "guard.outside_words_region"
    # a tall region of horizontal words read in rows (column_requires_tall_words); per sample
    TALL_REGION_ROWS = "guard.tall_region_rows"
    # a layout sample kept on a page that has cell samples (cells_replace: table); per sample
    LAYOUT_BESIDE_CELLS = "guard.layout_beside_cells"


class SkipCounter:
    """Counts skips by reason and keeps up to ``examples`` first examples (file/record names) per reason."""

    def __init__(self, examples: int = 5):
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = {}
        self.max_examples = examples

    def add(self, reason: Skip | str, example: str = "", n: int = 1) -> None:
        key = reason.value if isinstance(reason, Skip) else str(reason)
        self.counts[key] += n
        if example:
            ex = self.examples.setdefault(key, [])
            if len(ex) < self.max_examples and example not in ex:
                ex.append(example)

    def merge(self, other: "SkipCounter | dict") -> "SkipCounter":
        d = other.to_dict() if isinstance(other, SkipCounter) else other
        for key, n in d.get("counts", {}).items():
            self.counts[key] += int(n)
        for key, exs in d.get("examples", {}).items():
            for ex in exs:
                self.add(key, ex, n=0)
        return self

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict:
        return {"counts": dict(sorted(self.counts.items())),
                "examples": {k: v for k, v in sorted(self.examples.items()) if v}}

    @classmethod
    def from_dict(cls, d: dict) -> "SkipCounter":
        return cls().merge(d)

    def lines(self) -> list[str]:
        out = []
        for key, n in self.counts.most_common():
            ex = self.examples.get(key, [])
            out.append(f"  {key:<20} {n:>8}" + (f"   e.g. {', '.join(ex[:3])}" if ex else ""))
        return out
