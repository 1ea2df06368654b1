"""One page + its detected regions -> training samples (crop JPEG + label), following the dataset's recipe.

Steps: clean the words (count what cannot be used) -> assign words to layout regions (best overlap wins, ties
to the region the detector returned first) and to table cells (every cell a word covers enough) -> compose
each label in reading order -> crop, mask (keep only the label's words), encode -> pick the samples the recipe
keeps (cells replace layout; a word a cell sample labels is in no layout label; word fallback). Departures
from the original are counted as guards (``report.skips.Guard``).
A region with a polygon (PP-DocLayoutV3) takes words by their overlap with the polygon (inside its box), and
its crop is blanked outside the polygon as PaddleOCR-VL's pipeline crops it (``render.blank_outside``).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import get_args

import numpy as np

from ocrvl_ray.core.records import Page, Region
from ocrvl_ray.core.skips import Guard, Skip, SkipCounter
from ocrvl_ray.layout.compose import geometry as geo
from ocrvl_ray.layout.compose.mask import keep_only
from ocrvl_ray.layout.compose.orient import page_orientation, word_orientation
from ocrvl_ray.layout.compose.reading import column_mode, compose_text, region_order
from ocrvl_ray.layout.compose.recipes import Recipe
from ocrvl_ray.layout.compose.render import blank_outside, encode_jpeg, hide_words
from ocrvl_ray.layout.config import ComposeConfig, LayoutConfig


#: Crop masking: "all" keeps only the label's words (the original), "words" hides the annotated words the
#: label lacks (unannotated ink stays), "none" leaves the crop as it is. Spelled once, by the config's key.
MASKS: tuple[str, ...] = get_args(LayoutConfig.model_fields["mask"].annotation)
_JOB, _KNOBS = LayoutConfig.model_fields, ComposeConfig()


@dataclass(frozen=True)
class ComposeOptions:
    """How crops are masked and encoded; every default is the layout config's (``jpeg_quality``, ``mask``,
    ``compose.*``, described there). The job builds it with ``from_config``."""
    jpeg_quality: int = _JOB["jpeg_quality"].default
    mask: str = _JOB["mask"].default                   # one of MASKS
    inpaint_radius: int = _KNOBS.inpaint_radius
    dilate_factor: float = _KNOBS.dilate_factor
    dilate_min: int = _KNOBS.dilate_min
    feather_factor: float = _KNOBS.feather_factor
    feather_min: int = _KNOBS.feather_min

    def __post_init__(self):
        if self.mask not in MASKS:
            raise ValueError(f"mask={self.mask!r}: use one of {', '.join(MASKS)}")

    @classmethod
    def from_config(cls, jpeg_quality: int, mask: str, compose: ComposeConfig) -> "ComposeOptions":
        """The options of a layout config: ``cfg.jpeg_quality``, ``cfg.mask``, ``cfg.compose``."""
        return cls(jpeg_quality=jpeg_quality, mask=mask, **compose.model_dump())


@dataclass
class Sample:
    kind: str                      # "layout" | "cell" | "word"
    text: str                      # the label; rows joined by "\n"
    image: bytes                   # JPEG
    width: int
    height: int
    filename: str
    layout_label: str              # region label; "table" (its table's label) for cells; "word" for words
    box: tuple[int, int, int, int]  # crop in page pixels
    recipe: str
    polygon: list[list[float]] | None = None  # the region's polygon (page pixels), when it has one


@dataclass
class PageResult:
    samples: list[Sample] = field(default_factory=list)
    skips: SkipCounter = field(default_factory=SkipCounter)
    status: str = "ok"             # "ok" or a page-level Skip (NO_REGIONS, NO_WORDS_ASSIGNED)


@dataclass
class _Words:
    """The page's usable words (+ stray characters) as arrays; indices are into these, not page.words."""
    boxes: np.ndarray              # (n, 4) AABBs, not clipped to the page (coverage uses the whole word)
    polys: list[list[float]]       # flat polygons [x1, y1, x2, y2, ...], page pixels
    texts: list[str]
    ids: list
    orients: list[str | None]
    labelable: np.ndarray          # (n,) bool: has text (False: empty words, stray characters: hide only)


@dataclass
class _Candidate:
    kind: str
    index: int                     # layout: index in regions; cell: index in cells; word: word index
    label: str
    crop: tuple[int, int, int, int]
    words: list[int]               # label words, reading order decided later
    table: int | None = None
    number: int = 0                # layout: position in reading order (file name)
    partial: int = 0               # owned words left out of the label (mostly outside the box)
    polygon: list[list[float]] | None = None  # layout: the region's polygon; the crop is blanked outside it


def _clean_words(page: Page, width: int, height: int, skips: SkipCounter) -> _Words:
    boxes, polys, texts, ids, orients = [], [], [], [], []
    for w in page.words:
        pts = w.points
        if len(pts) < 6 or len(pts) % 2:
            skips.add(Skip.DEGENERATE_BOX, f"{page.source or page.image_name}#{w.id}")
            continue
        if not math.isfinite(sum(pts)):  # NaN or infinite anywhere
            skips.add(Skip.BAD_COORDINATE, f"{page.source or page.image_name}#{w.id}")
            continue
        xs, ys = pts[0::2], pts[1::2]
        x1, y1, x2, y2 = min(xs), min(ys), max(xs), max(ys)
        if x2 <= x1 or y2 <= y1:
            skips.add(Skip.DEGENERATE_BOX, f"{page.source or page.image_name}#{w.id}")
            continue
        if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
            skips.add(Skip.WORD_OUTSIDE_PAGE, f"{page.source or page.image_name}#{w.id}")
            continue
        text = (w.text or "").strip()
        if not text:
            skips.add(Skip.EMPTY_TEXT, f"{page.source or page.image_name}#{w.id}")
        boxes.append((x1, y1, x2, y2))
        polys.append(pts)
        texts.append(text)
        ids.append(w.id)
        orients.append(word_orientation(w) if w.attrs else None)
    arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return _Words(arr, polys, texts, ids, orients, np.array([bool(t) for t in texts], dtype=bool))


def _add_stray_chars(words: _Words, chars: list, width: int, height: int) -> _Words:
    """Character boxes (text_in_wild ``attrs["chars"]``) whose centre lies in no word: text no label can hold,
    appended as unlabelable entries so crops hide them. Characters inside words are covered by their word."""
    rows = [c for c in chars if isinstance(c, (list, tuple)) and len(c) >= 6 and len(c) % 2 == 0
            and math.isfinite(sum(c))]
    if not rows:
        return words
    boxes = np.array([[min(c[0::2]), min(c[1::2]), max(c[0::2]), max(c[1::2])] for c in rows], dtype=np.float64)
    clipped = geo.clip_boxes(boxes, width, height)
    stray = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1]) & \
        ~geo.centres_inside(boxes, words.boxes).any(axis=1)
    keep = np.flatnonzero(stray)
    if not len(keep):
        return words
    return _Words(np.vstack([words.boxes, clipped[keep]]), words.polys + [list(rows[i]) for i in keep],
                  words.texts + [""] * len(keep), words.ids + [None] * len(keep), words.orients + [None] * len(keep),
                  np.concatenate([words.labelable, np.zeros(len(keep), dtype=bool)]))


def _assign(words: _Words, boxes: np.ndarray, threshold: float, min_coverage: float,
            center_inside: bool, shapes: list[np.ndarray | None]) -> tuple[list[list[int]], list[int]]:
    """Layout regions: each word belongs to its best region by overlap (>= threshold) and enters that region's
    label if covered >= min_coverage (and centred). A region's shape is its box, or ``shapes[k]`` (its polygon
    clipped to the box) when not None. Returns the label words per region and, per region, how many owned
    words stayed out of the label."""
    ratios = geo.overlap_ratios(words.boxes, boxes)
    for k, shape in enumerate(shapes):
        if shape is not None:
            ratios[:, k] = geo.polygon_coverage(words.boxes, shape)
    ratios[~words.labelable] = 0.0
    owner = geo.best_region(ratios, threshold)
    idx = np.flatnonzero(owner >= 0)
    ok_cov = ratios[idx, owner[idx]] >= min_coverage
    if center_inside:
        inside = geo.centres_inside(words.boxes[idx], boxes)
        centres = (words.boxes[idx, :2] + words.boxes[idx, 2:]) / 2
        for k, shape in enumerate(shapes):
            if shape is not None:
                inside[:, k] = geo.points_in_polygon(centres, shape) if len(shape) >= 3 else False
        ok_cov &= inside[np.arange(len(idx)), owner[idx]]
    out: list[list[int]] = [[] for _ in range(len(boxes))]
    partial = [0] * len(boxes)
    for w, ok in zip(idx, ok_cov):
        if ok:
            out[owner[w]].append(int(w))
        else:
            partial[owner[w]] += 1
    return out, partial


def _assign_each(words: _Words, boxes: np.ndarray, threshold: float,
                 min_coverage: float) -> tuple[list[list[int]], list[int]]:
    """Table cells: a word enters the label of every box it overlaps by >= max(threshold, min_coverage)
    (nested or duplicate cells each get it, as in the original)."""
    ratios = geo.overlap_ratios(words.boxes, boxes)
    ratios[~words.labelable] = 0.0
    owned = (ratios >= threshold) & (ratios > 0)
    label = owned & (ratios >= min_coverage)
    return ([np.flatnonzero(label[:, k]).tolist() for k in range(len(boxes))],
            (owned & ~label).sum(axis=0).tolist())


def _usable_boxes(items: list[Region], width: int, height: int, skips: SkipCounter, what: str):
    keep, boxes = [], []
    for i, r in enumerate(items):
        box = geo.region_box(r.box, width, height)
        if box[2] <= box[0] or box[3] <= box[1]:
            skips.add(Skip.DEGENERATE_BOX, f"{what} {r.label} {tuple(round(v) for v in r.box)}")
            continue
        keep.append(i)
        boxes.append(box)
    return keep, np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def compose_page(page: Page, image: np.ndarray, regions: list[Region], cells: list[Region],
                 recipe: Recipe, opts: ComposeOptions | None = None) -> PageResult:
    """Samples of one (already oriented) page: ``image`` is its full-resolution BGR uint8 array, ``regions``
    the thresholded layout regions (``kind="table_only"``: a table below the layout threshold, kept for the
    cell detector only), ``cells`` the table cells in page coordinates."""
    opts = opts or ComposeOptions()
    height, width = image.shape[:2]
    result = PageResult()
    skips = result.skips
    words = _clean_words(page, width, height, skips)
    dilate = _grow(words.boxes[:, 3] - words.boxes[:, 1], opts.dilate_factor, opts.dilate_min)  # mask "words"
    if page.attrs.get("chars"):
        words = _add_stray_chars(words, page.attrs["chars"], width, height)
    stem = os.path.splitext(os.path.basename(page.image_name or page.page_id))[0]
    flatten = recipe.flatten_rotated and page_orientation(page) in ("ud", "du")

    layout_cands: list[_Candidate] = []
    usable = False
    if recipe.layout:
        # words are assigned in the detector's output order (ties: the first it returned, as the original);
        # region_order only numbers and orders the samples
        allowed = [i for i, r in enumerate(regions) if r.label in recipe.labels and r.kind != "table_only"]
        keep, boxes = _usable_boxes([regions[i] for i in allowed], width, height, skips, f"{stem} region")
        usable |= bool(keep)
        polys = [regions[allowed[k]].polygon for k in keep]
        shapes = [None if p is None else geo.clip_to_box(np.asarray(p, dtype=np.float64), b)
                  for p, b in zip(polys, boxes)]
        members, partial = _assign(words, boxes, recipe.layout_threshold, recipe.layout_min_coverage,
                                   recipe.center_inside, shapes)
        owned = {allowed[k]: (ws, np_, poly) for k, ws, np_, poly in zip(keep, members, partial, polys)}
        for ri in (i for i in region_order(regions, recipe.region_order) if i in owned):
            ws, np_, poly = owned[ri]
            layout_cands.append(_Candidate("layout", ri, regions[ri].label,
                                           geo.region_box(regions[ri].box, width, height), ws,
                                           number=len(layout_cands), partial=0 if recipe.center_inside else np_,
                                           polygon=poly))
    cell_cands: list[_Candidate] = []
    if recipe.cells and cells:
        order = sorted(range(len(cells)), key=lambda i: (
            cells[i].table if cells[i].table is not None else -1, cells[i].box[1], cells[i].box[0], i))
        keep, boxes = _usable_boxes([cells[i] for i in order], width, height, skips, f"{stem} cell")
        usable |= bool(keep)
        members, partial = _assign_each(words, boxes, recipe.cell_threshold, recipe.cell_min_coverage)
        for k, ws, np_ in zip(keep, members, partial):
            c = cells[order[k]]
            table = c.table if c.table is not None and 0 <= c.table < len(regions) else None
            label = regions[table].label if table is not None else c.label
            cell_cands.append(_Candidate("cell", order[k], label, geo.region_box(c.box, width, height), ws, table,
                                         partial=np_))

    def render(cands: list[_Candidate], flat: bool) -> list[tuple[_Candidate, Sample]]:
        out = []
        for c in cands:
            text = compose_text(words.boxes[c.words], [words.texts[i] for i in c.words],
                                [words.ids[i] for i in c.words], [words.orients[i] for i in c.words], recipe) \
                if c.words else ""
            if flat and not any(words.orients[i] for i in c.words):
                text = " ".join(text.split("\n"))
            where = f"{stem} {c.kind} {c.index} {c.label}"
            if not text:
                skips.add(Skip.EMPTY_LABEL, where)
                if c.partial:
                    skips.add(Guard.OUTSIDE_WORDS_REGION.value, where)
                continue
            sample = _render_sample(c, text, image, words, stem, dilate, recipe, opts, skips)
            if sample is None:
                continue
            out.append((c, sample))
            if c.partial and opts.mask != "none":
                skips.add(Guard.PARTIAL_WORD_REMOVED.value, where)
            if recipe.column_requires_tall_words and c.kind != "word" and column_mode(
                    words.boxes[c.words], [words.orients[i] for i in c.words], recipe)[1]:
                skips.add(Guard.TALL_REGION_ROWS.value, where)
        return out

    cell_samples = render(cell_cands, flatten)
    layout_beside_cells = False
    if cell_samples:  # cells replace layout samples: of their own table, or of the whole page (the original)
        tables = {c.table for c, _ in cell_samples}
        layout_cands = [] if recipe.cells_replace == "page" else [c for c in layout_cands if c.index not in tables]
        in_cells = {i for c, _ in cell_samples for i in c.words}
        for c in layout_cands:  # a word a cell sample labels is in no layout label (masked from its crop)
            c.words = [i for i in c.words if i not in in_cells]
        layout_beside_cells = True
    if recipe.crop == "words":
        for c in layout_cands:
            if c.words:
                c.crop = geo.union_box(words.boxes[c.words], width, height)
    layout_samples = render(layout_cands, flatten)
    if layout_beside_cells and layout_samples:
        skips.add(Guard.LAYOUT_BESIDE_CELLS.value, stem, n=len(layout_samples))
    chosen = layout_samples + cell_samples
    if not chosen and recipe.word_fallback:
        word_cands = [_Candidate("word", i, "word", geo.padded_box(words.boxes[i], recipe.word_pad, width, height), [i])
                      for i in np.flatnonzero(words.labelable)]
        chosen = render(word_cands, False)
    result.samples = [s for _, s in chosen]

    used = {i for c, _ in chosen for i in c.words}
    unused = int(words.labelable.sum()) - len(used)
    if unused:
        skips.add(Skip.WORD_UNUSED, stem, n=unused)
    if not result.samples:
        result.status = Skip.NO_REGIONS if not usable else Skip.NO_WORDS_ASSIGNED
    return result


def _grow(heights: np.ndarray, factor: float, minimum: int) -> int:
    """max(minimum, round(factor * median height)); ``minimum`` without heights."""
    return max(minimum, round(factor * float(np.median(heights)))) if len(heights) else minimum


def _render_sample(c: _Candidate, text: str, image: np.ndarray, words: _Words, stem: str, dilate: int,
                   recipe: Recipe, opts: ComposeOptions, skips: SkipCounter) -> Sample | None:
    x1, y1, x2, y2 = c.crop
    if x2 <= x1 or y2 <= y1:
        skips.add(Skip.DEGENERATE_BOX, f"{stem} {c.kind} {c.index}")
        return None
    crop = image[y1:y2, x1:x2]
    if opts.mask == "all":
        # the original: everything but the label's words goes; dilation and feather from their median height
        heights = words.boxes[c.words, 3] - words.boxes[c.words, 1]
        origin = np.array([x1, y1], dtype=np.float64)
        crop = keep_only(crop, [np.reshape(words.polys[i], (-1, 2)) - origin for i in c.words],
                         _grow(heights, opts.dilate_factor, opts.dilate_min),
                         _grow(heights, opts.feather_factor, opts.feather_min))
    elif opts.mask == "words" and len(words.texts):
        visible = geo.intersections(words.boxes, np.array([c.crop], dtype=np.float64))[:, 0] > 0
        label = set(c.words)
        hidden = [i for i in np.flatnonzero(visible) if i not in label]
        if hidden:
            # label words near a hidden one are protected from its dilation; the others are out of reach
            reach = dilate + opts.inpaint_radius + 2
            hb, lb = words.boxes[hidden], words.boxes[c.words].reshape(-1, 4)
            near = ((lb[:, None, 0] < hb[None, :, 2] + reach) & (lb[:, None, 2] > hb[None, :, 0] - reach) &
                    (lb[:, None, 1] < hb[None, :, 3] + reach) & (lb[:, None, 3] > hb[None, :, 1] - reach)).any(axis=1)
            origin = np.array([x1, y1], dtype=np.float64)
            crop = hide_words(crop, [np.reshape(words.polys[i], (-1, 2)) - origin for i in hidden],
                              [np.reshape(words.polys[c.words[k]], (-1, 2)) - origin for k in np.flatnonzero(near)],
                              dilate, opts.inpaint_radius)
    if c.polygon is not None:
        crop = blank_outside(crop, c.polygon, (x1, y1))
    data = encode_jpeg(crop, opts.jpeg_quality)
    if data is None:
        skips.add(Skip.ERROR, f"{stem} {c.kind} {c.index}: JPEG encoding failed")
        return None
    if c.kind == "layout":
        filename = f"{stem}_layout_{c.number:02d}.jpg"
    else:
        filename = f"{stem}_{c.kind}_{x1}_{y1}.jpg"
    return Sample(kind=c.kind, text=text, image=data, width=x2 - x1, height=y2 - y1, filename=filename,
                  layout_label=c.label, box=(x1, y1, x2, y2), recipe=recipe.name, polygon=c.polygon)
