"""Decode hand-off: bytes moved per page and CPU time, "bytes" vs "array", on a 2480x3508 (A4 300 dpi) page.

Side by side in one run, for the same page saved as PNG and as JPEG (q90):
* decode stage time (header check, decode, EXIF/mode normalisation, detector input <= 1024 px);
* bytes the stage hands downstream per page (detector input + page image column);
* downstream cost of getting the full page back (``page_image``: imdecode for "bytes", free for "array");
* the baseline of the original pipeline: a full cv2.imdecode of the file per consumer;
* the total per page, deferred decodes included: decode + ``page_image`` once per downstream consumer
  (compose always, the cell detector too on pages with a table: ``--consumers``, default 2).
Also checks that a feature found on the reduced detector input maps back to page pixels.
Usage: .venv/bin/python bench/decode_handoff.py [repeats] [consumers]
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from ocrvl_ray.core.records import Page, pages_to_table
from ocrvl_ray.demo.sample import render_page
from ocrvl_ray.layout.config import LayoutConfig
from ocrvl_ray.layout.stages.decode import decode_batch, page_image

MAX_PIXELS = LayoutConfig().max_pixels

W, H = 2480, 3508


def batch_for(path: Path) -> dict:
    t = pages_to_table([Page("p", "ocr_public", "train", path.name, str(path), W, H, [], "l.json")])
    return {c: (t.column(c).to_numpy() if c in ("width", "height") else np.array(t.column(c).to_pylist() + [None], dtype=object)[:-1])
            for c in t.column_names}


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000, out


def column_bytes(out: dict) -> tuple[int, int]:
    det = np.asarray(out["det_image"][0]).nbytes
    page = len(out["image_bytes"][0]) if "image_bytes" in out else np.asarray(out["image"][0]).nbytes
    return det, page


def main(repeats: int = 5, consumers: int = 2) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="ocrvl-bench-decode-"))
    img, _ = render_page(11, (W, H))
    files = {"png": tmp / "page.png", "jpeg": tmp / "page.jpg"}
    img.save(files["png"], "PNG")
    img.save(files["jpeg"], "JPEG", quality=90)
    figures = []
    for fmt, path in files.items():
        batch = batch_for(path)
        base_ms, _ = timed(lambda: cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR), repeats)
        print(f"{fmt}: file {path.stat().st_size / 1e6:.2f} MB, full cv2.imdecode {base_ms:.0f} ms")
        res = {}
        for handoff in ("bytes", "array"):
            ms, out = timed(lambda: decode_batch(batch, MAX_PIXELS, handoff), repeats)
            det, page = column_bytes(out)
            back_ms, full = timed(lambda: page_image(out, 0), repeats)
            assert full.shape == (H, W, 3)
            total = ms + consumers * back_ms
            res[handoff] = (ms, det + page, back_ms, total)
            print(f"  handoff={handoff:<5}  decode {ms:6.0f} ms  moves {(det + page) / 1e6:6.2f} MB "
                  f"(detector input {det / 1e6:.2f} MB + page {page / 1e6:.2f} MB)  page_image {back_ms:5.0f} ms  "
                  f"total {total:6.0f} ms")
            figures += [f"FIGURE decode_{handoff}_{fmt}_ms {ms:.1f} ms",
                        f"FIGURE handoff_{handoff}_{fmt}_mb {(det + page) / 1e6:.2f} MB",
                        f"FIGURE page_image_{handoff}_{fmt}_ms {back_ms:.1f} ms",
                        f"FIGURE total_{handoff}_{fmt}_ms {total:.1f} ms (decode + {consumers} x page_image)"]
        figures.append(f"RATIO handoff_array_over_bytes_mb_{fmt} {res['array'][1] / res['bytes'][1]:.1f}")
        figures.append(f"RATIO decode_array_over_bytes_ms_{fmt} {res['array'][0] / res['bytes'][0]:.2f}")
        figures.append(f"RATIO total_array_over_bytes_ms_{fmt} {res['array'][3] / res['bytes'][3]:.2f}")
        figures.append(f"FIGURE baseline_full_imdecode_{fmt}_ms {base_ms:.1f} ms")
    for line in figures:
        print(line)


if __name__ == "__main__":
    main(*(int(v) for v in sys.argv[1:3]))
