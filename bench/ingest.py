"""Ingest throughput: ``prepare`` on Ray vs a plain single-process ``json.load`` loop over the same files.

Generates N per-image AI-Hub label files (finance/ocr_public style, 30-100 words each, points in the AI-Hub
TL,BL,TR,BR order) in a temp dir plus a lookup index for their images, then measures, in one run:
  * json.load loop: open + json.load of every file, nothing else (the floor of any Python reader);
  * prepare in-process (use_ray=False): the full reader (validation, clockwise boxes, Arrow, matching);
  * prepare on Ray (a local Ray started before timing, like an existing cluster).
``prepare_vs_json_load`` compares the two one-process loops (work per page, no parallelism in the ratio);
``prepare_ray_vs_in_process`` is the parallel speed-up on the given CPUs.

Usage: .venv/bin/python bench/ingest.py [--files 20000] [--num-cpus N]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import tempfile
import time


def make_label(rng: random.Random, ident: str) -> dict:
    boxes = []
    for j in range(rng.randint(30, 100)):
        x, y = rng.randint(0, 2300), rng.randint(0, 3400)
        w, h = rng.randint(20, 400), rng.randint(20, 60)
        text = "".join(rng.choice("가나다라마바사아자차카타파하0123456789") for _ in range(rng.randint(1, 12)))
        boxes.append({"data": text, "data_type": rng.randint(0, 3), "id": j + 1,
                      "x": [x, x, x + w, x + w], "y": [y, y + h, y, y + h]})
    return {"Annotation": {"object_recognition": 1, "text_language": 0},
            "Dataset": {"category": 0, "identifier": "IMG_OCR_6_F", "name": "대규모 OCR 데이터셋 (금융)",
                        "label_path": "금융_데이터/1_Training/2_라벨링데이터", "type": 1},
            "Images": {"identifier": ident, "type": "PNG", "width": 2480, "height": 3508, "form_type": "신고서"},
            "bbox": boxes}


def generate(root: str, n: int) -> tuple[str, str]:
    from ocrvl_ray.ingest.lookup import lookup_table, write_lookup

    rng = random.Random(0)
    labels = os.path.join(root, "1_Training", "2_라벨링데이터")
    rows = []
    for i in range(n):
        ident = f"IMG_OCR_6_F_{i:07d}"
        sub = os.path.join(labels, f"{i // 1000:03d}")
        os.makedirs(sub, exist_ok=True)
        with open(os.path.join(sub, ident + ".json"), "w", encoding="utf-8") as f:
            json.dump(make_label(rng, ident), f, ensure_ascii=False)
        rows.append((ident + ".png", f"/data/1_Training/1_원천데이터/{i // 1000:03d}/{ident}.png", 1))
    lookup = os.path.join(root, "lookup.parquet")
    write_lookup(lookup_table(rows), lookup)
    return labels, lookup


def json_load_loop(labels: str) -> int:
    n = 0
    for d, _, files in os.walk(labels):
        for name in files:
            if name.endswith(".json"):
                with open(os.path.join(d, name), "rb") as f:
                    json.load(f)
                n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--num-cpus", type=int, default=None)
    args = ap.parse_args()
    from ocrvl_ray.core.runtime import init_ray
    from ocrvl_ray.ingest.prepare import PrepareConfig, prepare

    root = tempfile.mkdtemp(prefix="ocrvl-bench-ingest-")
    try:
        t = time.perf_counter()
        labels, lookup = generate(root, args.files)
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(labels) for f in fs)
        print(f"generated {args.files} label files ({size / 2**20:.0f} MiB) in {time.perf_counter() - t:.1f} s")

        t = time.perf_counter()
        n = json_load_loop(labels)
        t_json = time.perf_counter() - t
        print(f"json.load loop     : {n} files in {t_json:.2f} s = {n / t_json:.0f} pages/s")

        t = time.perf_counter()
        s = prepare(PrepareConfig(dataset="finance_logistics", labels=[labels], lookup=lookup,
                                  out=os.path.join(root, "local.parquet"), quiet=True), use_ray=False)
        t_local = time.perf_counter() - t
        print(f"prepare in-process : {s['pages']} pages, {s['words']} words in {t_local:.2f} s "
              f"= {s['pages'] / t_local:.0f} pages/s")

        t = time.perf_counter()
        ray = init_ray(num_cpus=args.num_cpus)
        cpus = int(ray.cluster_resources().get("CPU", 0))
        print(f"ray.init           : {time.perf_counter() - t:.1f} s ({cpus} CPUs; not in the figures below)")
        prepare(PrepareConfig(dataset="finance_logistics", labels=[labels], lookup=lookup,
                              out=os.path.join(root, "warm.parquet"), quiet=True), use_ray=True)  # warm-up: worker processes start and import pyarrow
        t = time.perf_counter()
        s = prepare(PrepareConfig(dataset="finance_logistics", labels=[labels], lookup=lookup,
                                  out=os.path.join(root, "ray.parquet"), quiet=True), use_ray=True)
        t_ray = time.perf_counter() - t
        assert s["pages"] == args.files and not s["skipped"]["counts"], s["skipped"]
        print(f"prepare on Ray     : {s['pages']} pages, {s['words']} words in {t_ray:.2f} s "
              f"= {s['pages'] / t_ray:.0f} pages/s")
        print(f"FIGURE json_load_pages_per_s {n / t_json:.0f} pages/s")
        print(f"FIGURE prepare_in_process_pages_per_s {args.files / t_local:.0f} pages/s")
        print(f"FIGURE prepare_pages_per_s {args.files / t_ray:.0f} pages/s")
        print(f"RATIO prepare_vs_json_load {t_json / t_local:.2f} (both one process: the work ratio)")
        print(f"RATIO prepare_ray_vs_in_process {t_local / t_ray:.2f} (parallel speed-up on {cpus} CPUs)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
