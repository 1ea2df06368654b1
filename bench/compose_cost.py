"""CPU cost of compose_page per page on synthetic A4 pages (template regions, 20 table cells).

Side by side in one run: masking by small inpainted windows (ours), no masking, and the original's
whole-crop inpaint (every pixel of a crop except its label words, dilated, cv2 Telea) as the baseline.
Regions are shrunk by 4% of their width on the right so edge words fall partly outside and must be hidden;
the recipe keeps layout samples next to cell samples (cells_replace=table) so both kinds are encoded.
Usage: .venv/bin/python bench/compose_cost.py [pages]
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


def synthetic(seed: int):
    img, words = render_page(seed)
    image = cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2BGR)
    h, w = image.shape[:2]
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
    return page, image, regions, cells


def whole_crop_inpaint(page: Page, image: np.ndarray, samples) -> None:
    """The original's masking cost: inpaint each crop everywhere except its (dilated) label words."""
    for s in samples:
        x1, y1, x2, y2 = s.box
        crop = image[y1:y2, x1:x2].copy()
        mask = np.full(crop.shape[:2], 255, np.uint8)
        for wd in page.words:
            wx1, wy1, wx2, wy2 = wd.aabb
            if x1 <= (wx1 + wx2) / 2 <= x2 and y1 <= (wy1 + wy2) / 2 <= y2:
                cv2.rectangle(mask, (int(wx1 - x1) - 2, int(wy1 - y1) - 2), (int(wx2 - x1) + 2, int(wy2 - y1) + 2), 0, -1)
        cv2.inpaint(crop, mask, 3, cv2.INPAINT_TELEA)


def main(n_pages: int) -> None:
    cv2.setNumThreads(1)
    pages = [synthetic(seed) for seed in range(n_pages)]
    recipe = get_recipe("ocr_public", {"cells_replace": "table"})
    timings = {"roi": [], "off": [], "whole": []}
    crops = hidden = 0
    for page, image, regions, cells in pages:
        t = time.perf_counter()
        res = compose_page(page, image, regions, cells, recipe, ComposeOptions(inpaint=True))
        timings["roi"].append(time.perf_counter() - t)
        t = time.perf_counter()
        off = compose_page(page, image, regions, cells, recipe, ComposeOptions(inpaint=False))
        timings["off"].append(time.perf_counter() - t)
        t = time.perf_counter()
        whole_crop_inpaint(page, image, off.samples)
        timings["whole"].append(time.perf_counter() - t + timings["off"][-1])
        crops += len(res.samples)
        hidden += res.skips.counts.get("word_unused", 0)
    ms = {k: 1000 * statistics.median(v) for k, v in timings.items()}
    print(f"pages={n_pages} samples/page={crops / n_pages:.1f} unlabelled words/page={hidden / n_pages:.1f}")
    print(f"FIGURE compose_ms_per_page {ms['roi']:.1f} ms")
    print(f"FIGURE compose_ms_per_page_no_mask {ms['off']:.1f} ms")
    print(f"FIGURE compose_ms_per_page_whole_crop_inpaint {ms['whole']:.1f} ms")
    print(f"RATIO whole_crop_inpaint_vs_roi_mask {ms['whole'] / ms['roi']:.2f}")
    print(f"RATIO roi_mask_overhead {ms['roi'] / ms['off']:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 8)
