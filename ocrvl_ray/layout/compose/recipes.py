"""Per-dataset recipes: which regions become samples, how words are assigned, cropped and read.

Defaults follow the original generator except where ``docs/compose.md`` ("Departures") lists a better default
and the key that restores the original; ``LayoutConfig.recipes[dataset]`` overrides single keys.
"""
from __future__ import annotations

import difflib
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ocrvl_ray.core.config import ConfigError, validation_message
from ocrvl_ray.core.errors import OcrvlError

#: The layout labels the original turns into samples (PP-DocLayoutV2 names).
ALLOWED_LABELS = ("text", "paragraph_title", "figure_title", "doc_title", "vision_footnote", "number",
                  "abstract", "aside_text", "reference_content", "vertical_text", "table")


class Recipe(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "default"
    labels: tuple[str, ...] = ALLOWED_LABELS  # layout labels that produce samples
    layout: bool = True                       # one sample per layout region
    cells: bool = True                        # one sample per table cell
    # cell samples drop the layout sample of their table ("table"), or every layout sample of the page
    # ("page": the original, which loses the paragraphs of every page that has a table)
    cells_replace: Literal["page", "table"] = "table"
    word_fallback: bool = False               # no region sample on the page: one sample per word
    word_pad: int = Field(2, ge=0)            # word fallback crop = word box +- pad pixels
    crop: Literal["region", "words"] = "region"  # crop the region box, or the union of its label words
    # word -> region assignment: best region by intersection / word area, if >= threshold;
    # a word enters the label only if it also covers >= min_coverage of itself inside the region
    # (and, with center_inside, its centre lies in the region); otherwise it is masked out of the crop.
    layout_threshold: float = Field(0.3, ge=0, le=1)
    layout_min_coverage: float = Field(0.5, ge=0, le=1)
    center_inside: bool = False
    cell_threshold: float = Field(0.2, ge=0, le=1)
    cell_min_coverage: float = Field(0.5, ge=0, le=1)
    # reading order (see reading.py). Regions: "rank" = ranked labels by the detector's rank, then unranked
    # ones (table, figure_title, ...) top-to-bottom; "detector" = the detector's own order for all of them.
    # It numbers and orders the samples; word ownership ties always go to the detector's first region
    region_order: Literal["rank", "detector"] = "rank"
    # words inside a region
    row_gap_min: float = Field(8.0, ge=0)
    row_gap_factor: float = Field(0.6, ge=0)
    row_smoothing: float = Field(0.7, ge=0, le=1)
    column_gap_min: float = Field(10.0, ge=0)
    column_gap_factor: float = Field(0.8, ge=0)
    column_span_ratio: float = Field(2.0, gt=0)
    # the span rule reads columns only when the median word is taller than wide (False: the original, which
    # reads a tall paragraph of horizontal words column-wise)
    column_requires_tall_words: bool = True
    split_sublines: bool = True               # the original's sub-line split inside a row
    flatten_rotated: bool = False             # page turned ud/du: labels on one line unless words carry ud/du


RECIPES: dict[str, dict[str, Any]] = {
    "text_in_wild": {"crop": "words", "cells": False, "layout_threshold": 0.15, "layout_min_coverage": 0.6,
                     "center_inside": True, "flatten_rotated": True, "column_requires_tall_words": False},
    "public_admin": {},
    "ocr_public": {},
    "finance_logistics": {"layout": False},
    "handwriting": {"cell_threshold": 0.5, "word_fallback": True},
}


def get_recipe(dataset: str, overrides: Mapping[str, Any] | None = None) -> Recipe:
    """The recipe of ``dataset`` (unknown datasets get the defaults) with ``overrides`` applied."""
    data = {"name": dataset, **RECIPES.get(dataset, {}), **dict(overrides or {})}
    fields = list(Recipe.model_fields)
    for key in data:
        if key not in Recipe.model_fields:
            close = difflib.get_close_matches(str(key), fields, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(fields)}"
            raise OcrvlError(f"recipes.{dataset}: unknown recipe key {key!r}; {hint}")
    try:
        return Recipe.model_validate(data)
    except ValidationError as e:
        raise ConfigError(validation_message(e, f"recipe {dataset!r}", key_prefix=f"recipes.{dataset}.")) from None
