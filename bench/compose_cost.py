"""CPU cost and fidelity of crop masking on real-size pages (2480x3508, A4 at 300 dpi), one core.

Times are process CPU time (core-ms, OpenCV on one thread), so a loaded machine inflates them less than
wall time would.

Pages: the sample template rendered at 300 dpi on shaded, noisy paper, plus ink nobody annotated (a red
stamp, printed guide text in the paragraphs' margins, a solid logo beside the heading, a black bar in a
cell). Regions are shrunk by 4% on the right, so edge words fall partly outside; layout samples are kept
beside cell samples (cells_replace=table, the default).

Per page, side by side:
  compose_page with mask=all (ours: paper fill + feather), mask=words, mask=none;
  two other ways to keep only the label, timed on the same crops: inpainting at 1/4 resolution and
  compositing, and the original's whole-crop cv2.inpaint (Telea, first page only: seconds per page).
Fidelity, on every crop of the first page, outside the label words (dilated): how much ink is left (share
of dark pixels) and how natural the fill is (mean absolute grey difference from the same page's paper
without any ink; the noise alone contributes about 2.4).
Usage: .venv/bin/python bench/compose_cost.py [pages]   (default 3; about a minute)
"""
from __future__ import annotations

import statistics
import sys
import time

import cv2
import numpy as np

from ocrvl_ray.core.records import Page, Region, Word
from ocrvl_ray.demo.sample import TEMPLATE_CELLS, TEMPLATE_REGIONS, render_page
from ocrvl_ray.layout.compose import ComposeOptions, compose_page, get_recipe
from ocrvl_ray.layout.compose.mask import keep_mask, keep_only

SIZE = (2480, 3508)


def synthetic(seed: int):
    img, words = render_page(seed, SIZE)
    image = cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2BGR)
    h, w = image.shape[:2]
    rng = np.random.default_rng(seed)
    # shaded paper with noise (ink stays ink: paper tone multiplies); `paper` is the page without any ink
    shade = np.linspace(0.93, 1.0, w, dtype=np.float32)[None, :] * np.linspace(1.0, 0.95, h, dtype=np.float32)[:, None]
    noise = rng.normal(0, 3, image.shape[:2])[:, :, None]
    paper = np.clip(255 * shade[:, :, None] + noise, 0, 255).astype(np.uint8).repeat(3, axis=2)
    image = np.clip(image * shade[:, :, None] + noise, 0, 255).astype(np.uint8)
    # unannotated ink: a stamp over the first paragraph, guide text in the second paragraph's margin
    cv2.circle(image, (int(0.8 * w), int(0.2 * h)), 110, (40, 40, 200), 8)
    cv2.putText(image, "GUIDE TEXT", (int(0.09 * w), int(0.528 * h)), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (90, 90, 90), 2)
    # solid unannotated ink as large as a paper block: a logo beside the heading, a black bar in a table cell
    cv2.rectangle(image, (int(0.40 * w), int(0.322 * h)), (int(0.48 * w), int(0.348 * h)), (60, 50, 40), -1)
    cv2.rectangle(image, (int(0.22 * w), int(0.64 * h)), (int(0.28 * w), int(0.66 * h)), (10, 10, 10), -1)
    page = Page(f"p{seed}", "ocr_public", "train", f"page_{seed}.png", None, w, h,
                [Word(str(i), [x1, y1, x2, y1, x2, y2, x1, y2], wd["text"])
                 for i, wd in enumerate(words) for x1, y1, x2, y2 in [wd["box"]]])
    regions, cells = [], []
    for label, score, x1, y1, x2, y2, order in TEMPLATE_REGIONS:
        x2 -= 0.04 * (x2 - x1)
        regions.append(Region(label, score, (x1 * w, y1 * h, x2 * w, y2 * h), order=order))
        if label == "table":
            tw, th = (x2 - x1) * w, (y2 - y1) * h
            cells += [Region("cell", 0.9, (x1 * w + a * tw, y1 * h + b * th, x1 * w + c * tw, y1 * h + d * th),
                             kind="cell", table=len(regions) - 1) for a, b, c, d in TEMPLATE_CELLS]
    return page, image, regions, cells, paper


def label_polys(page: Page, box) -> list[np.ndarray]:
    """Polygons (crop coordinates) of the words whose centre lies in the crop: the label words here."""
    x1, y1, x2, y2 = box
    out = []
    for wd in page.words:
        wx1, wy1, wx2, wy2 = wd.aabb
        if x1 <= (wx1 + wx2) / 2 <= x2 and y1 <= (wy1 + wy2) / 2 <= y2:
            out.append(np.reshape(wd.points, (-1, 2)) - (x1, y1))
    return out


def grow(polys) -> tuple[int, int]:
    h = float(np.median([p[:, 1].max() - p[:, 1].min() for p in polys])) if polys else 0.0
    return max(2, round(0.12 * h)), max(1, round(0.06 * h))


def whole_inpaint(crop, polys, dilate, feather):
    """The original: cv2.inpaint (Telea, radius 3) of the whole crop outside the dilated words, feathered."""
    keep = keep_mask(crop.shape[:2], [np.round(p).astype(np.int32) for p in polys], dilate)
    filled = cv2.inpaint(crop, 255 - keep, 3, cv2.INPAINT_TELEA)
    a = cv2.GaussianBlur(keep, (0, 0), feather).astype(np.float32) / 255
    return cv2.blendLinear(crop, filled, a, 1 - a)


def lowres_inpaint(crop, polys, dilate, feather, f=4):
    """Inpaint at 1/f resolution, upscale, keep the words at full resolution."""
    h, w = crop.shape[:2]
    keep = keep_mask((h, w), [np.round(p).astype(np.int32) for p in polys], dilate)
    sw, sh = max(1, w // f), max(1, h // f)
    small = cv2.resize(crop, (sw, sh), interpolation=cv2.INTER_AREA)
    hole = cv2.resize(255 - keep, (sw, sh), interpolation=cv2.INTER_NEAREST)
    hole = cv2.bitwise_or(hole, cv2.dilate(255 - cv2.resize(keep, (sw, sh), interpolation=cv2.INTER_AREA), None))
    fill = cv2.resize(cv2.inpaint(small, hole, 3, cv2.INPAINT_TELEA), (w, h), interpolation=cv2.INTER_LINEAR)
    a = cv2.GaussianBlur(keep, (0, 0), feather).astype(np.float32) / 255
    return cv2.blendLinear(crop, fill, a, 1 - a)


def fidelity(out, paper, polys, dilate) -> tuple[float, float]:
    """(share of dark pixels left outside the dilated words, mean |grey - clean paper's grey| there)."""
    keep = keep_mask(out.shape[:2], [np.round(p).astype(np.int32) for p in polys], dilate + 3) > 0
    g, r = cv2.cvtColor(out, cv2.COLOR_BGR2GRAY), cv2.cvtColor(paper, cv2.COLOR_BGR2GRAY)
    outside = ~keep
    if not outside.any():
        return 0.0, 0.0
    return float((g[outside] < 128).mean()), float(np.abs(g[outside].astype(int) - r[outside]).mean())


def main(n_pages: int) -> None:
    cv2.setNumThreads(1)
    pages = [synthetic(seed) for seed in range(n_pages)]
    recipe = get_recipe("ocr_public")
    t_ms: dict[str, list[float]] = {k: [] for k in ("all", "words", "none", "lowres", "whole")}
    fid: dict[str, list[tuple[float, float]]] = {k: [] for k in ("all", "words", "none", "lowres", "whole")}
    for p, (page, image, regions, cells, paper) in enumerate(pages):
        res = {}
        for mask in ("all", "words", "none"):
            t = time.process_time()
            res[mask] = compose_page(page, image, regions, cells, recipe, ComposeOptions(mask=mask))
            t_ms[mask].append(1000 * (time.process_time() - t))
        crops = [(image[y1:y2, x1:x2], label_polys(page, (x1, y1, x2, y2)))
                 for x1, y1, x2, y2 in (s.box for s in res["none"].samples)]
        t = time.process_time()
        low = [lowres_inpaint(c, ps, *grow(ps)) for c, ps in crops]
        t_ms["lowres"].append(1000 * (time.process_time() - t) + t_ms["none"][-1])
        if p:
            continue
        t = time.process_time()
        ref = [whole_inpaint(c, ps, *grow(ps)) for c, ps in crops]
        t_ms["whole"].append(1000 * (time.process_time() - t) + t_ms["none"][-1])
        ours = [keep_only(c, ps, *grow(ps)) for c, ps in crops]
        for (c, ps), s, r, o, lo, s_words in zip(crops, res["none"].samples, ref, ours, low, res["words"].samples):
            d = grow(ps)[0]
            x1, y1, x2, y2 = s.box
            clean = paper[y1:y2, x1:x2]
            words_img = cv2.imdecode(np.frombuffer(s_words.image, np.uint8), cv2.IMREAD_COLOR)
            for k, img in (("all", o), ("lowres", lo), ("whole", r), ("words", words_img), ("none", c)):
                fid[k].append(fidelity(img, clean, ps, d))
    ms = {k: statistics.median(v) for k, v in t_ms.items()}
    s0 = res["all"].samples
    print(f"pages={n_pages} size={SIZE[0]}x{SIZE[1]} samples/page={len(s0)} "
          f"crop Mpx/page={sum(s.width * s.height for s in s0) / 1e6:.2f}")
    for k in ("all", "words", "none", "lowres", "whole"):
        ink, diff = np.mean([f[0] for f in fid[k]]), np.mean([f[1] for f in fid[k]])
        print(f"  {k:<7} {ms[k]:8.1f} ms/page   ink left {100 * ink:5.2f} %   |grey - clean paper| {diff:5.1f}")
    print(f"FIGURE compose_ms_per_page_2480x3508 {ms['all']:.1f} ms")
    print(f"FIGURE compose_ms_per_page_mask_words {ms['words']:.1f} ms")
    print(f"FIGURE compose_ms_per_page_no_mask {ms['none']:.1f} ms")
    print(f"FIGURE compose_ms_per_page_lowres_inpaint {ms['lowres']:.1f} ms")
    print(f"FIGURE compose_ms_per_page_whole_crop_inpaint {ms['whole']:.1f} ms")
    print(f"RATIO whole_crop_inpaint_vs_mask_all {ms['whole'] / ms['all']:.2f}")
    print(f"RATIO mask_all_overhead {ms['all'] / ms['none']:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
