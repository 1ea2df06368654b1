"""Detector actor time per page: full 2480x3508 page vs the decode stage's reduced input (<= 1024 px).

Side by side in one run with the tiny random-weight PP-DocLayoutV2 (real architecture, real paddlex
pre/post-processing, ``paddle_dynamic``) and with the scripted static model (pre/post-processing only):
the actor is the scarce resource (a GPU in production), so every millisecond of resize it does not do
is throughput. Also reports how far the scripted boxes land from their true page position after the
map-back (``max_err_px``).
Usage: .venv/bin/python bench/detect_input.py [repeats]
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from ocrvl_ray.core.records import Page, Region, pages_to_table
from ocrvl_ray.demo.models import build_tiny_layout_model
from ocrvl_ray.demo.sample import TEMPLATE_REGIONS, render_page
from ocrvl_ray.layout.stages.decode import decode_batch
from ocrvl_ray.layout.config import LayoutConfig, LayoutModelConfig
from ocrvl_ray.layout.stages.detect_layout import LayoutDetectStage
from ocrvl_ray.testing.models import build_tiny_real_layout_model

W, H = 2480, 3508


def main(repeats: int = 5) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="ocrvl-bench-detect-"))
    img, _ = render_page(3, (W, H))
    path = tmp / "page.png"
    img.save(path)
    t = pages_to_table([Page("p", "ocr_public", "train", path.name, str(path), W, H, [], "l.json")])
    manifest = {c: (t.column(c).to_numpy() if c in ("width", "height") else np.array(t.column(c).to_pylist() + [None], dtype=object)[:-1])
                for c in t.column_names}
    reduced = decode_batch(manifest, LayoutConfig().max_pixels, "array", det_max_side=1024)
    full = dict(reduced, det_image=[np.asarray(reduced["image"][0])], det_sx=[1.0], det_sy=[1.0])
    figures = []
    models = {"scripted": build_tiny_layout_model(tmp / "scripted", TEMPLATE_REGIONS),
              "tiny_real": build_tiny_real_layout_model(tmp / "real")}
    for name, model_dir in models.items():
        det = LayoutDetectStage(LayoutModelConfig(model_dir=str(model_dir), threshold=0.3))
        det.setup()
        res = {}
        for label, batch in (("full", full), ("reduced", reduced)):
            det.process_batch(batch)  # warm-up
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                out = det.process_batch(batch)
                times.append(time.perf_counter() - t0)
            res[label] = statistics.median(times) * 1000
            line = f"{name:<9} input={label:<7} {np.asarray(batch['det_image'][0]).shape}  {res[label]:7.1f} ms/page"
            if name == "scripted":
                boxes = [Region.from_row(r).box for r in out["regions"][0]]
                want = [(x1 * W, y1 * H, x2 * W, y2 * H) for _l, _s, x1, y1, x2, y2, _o in TEMPLATE_REGIONS]
                err = max(abs(a - b) for got, exp in zip(boxes, want) for a, b in zip(got, exp))
                line += f"  max_err_px {err:.1f}"
                figures.append(f"FIGURE map_back_max_err_{label} {err:.1f} px")
            print(line)
            figures.append(f"FIGURE detect_{name}_{label}_ms {res[label]:.1f} ms")
        figures.append(f"RATIO detect_{name}_full_over_reduced {res['full'] / res['reduced']:.2f}")
    t0 = time.perf_counter()
    for _ in range(repeats):
        cv2.resize(np.asarray(reduced["image"][0]), (724, 1024), interpolation=cv2.INTER_AREA)
    figures.append(f"FIGURE decode_side_reduce_ms {(time.perf_counter() - t0) / repeats * 1000:.1f} ms")
    for line in figures:
        print(line)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
