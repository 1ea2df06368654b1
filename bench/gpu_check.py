"""GPU figures of the transformers layout and eval engines, runnable on a bare CUDA machine (torch + transformers;
the eval part also needs pydantic and rapidfuzz, which our prompt table and repetition guard import).

    python bench/gpu_check.py [--parts detector,eval] [--models v2,v3,v4] [--dtypes fp32,bf16] [--batches 1,8,32]
                              [--page 2480x3508] [--eval-batches 1,16,64] [--region 800x600] [--seconds 4]
                              [--budget 330]
    python bench/gpu_check.py --smoke        # tiny models on CPU: the script's own test (tests/torch_env)

No Ray, no Paddle, nothing downloaded: each PP-DocLayout version the installed transformers has is built from
its default config with random weights (``engines/configs.random_detector``), saved, and loaded by
``TransformersDetector`` exactly as the layout actor loads it; every timed call is the actor's call,
``predict(pages)``, so resizing (on the GPU), the forward pass and the library's post-processing plus our
paddlex-compatible finishing are all inside the rate. Pages are synthetic RGB scans (``--page``, default
2480x3508, an A4 page at 300 dpi).

Prints one line per figure:
  ``FIGURE detector_pages_per_s_<v2|v3|v4>_<fp32|bf16>_b<N> <pages/s>``
  ``FIGURE detector_peak_mib_<v2|v3|v4>_<fp32|bf16>_b<N> <MiB>``  (torch.cuda.max_memory_allocated in that run)
  ``FIGURE eval_tokens_per_s_b<1|16|64> <tokens/s>``  (``--parts eval``: PaddleOCR-VL 0.9B from the real config,
      random weights, bf16, ``TransformersGenerator.generate`` of ``--eval-batches`` copies of a region-sized
      ``--region`` image, 128 new tokens, greedy; generated tokens of all rows / seconds)
  ``FIGURE eval_peak_mib_b<N> <MiB>``
and ``INFO`` lines (device, versions, regions per page: random weights find a random number of boxes, and
post-processing cost grows with it). Without a CUDA GPU it prints no figure and exits 2, unless ``--smoke``,
whose lines start with ``SMOKE`` (tiny models, CPU: never GPU figures). ``--budget`` seconds in all: the
configurations left when it runs out are named on ``SKIPPED`` lines, not guessed.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DTYPES = {"fp32": "float32", "bf16": "bfloat16"}


def measure(detector, pages: list, seconds: float, cuda: bool) -> tuple[float, float, float]:
    """(pages/s, peak MiB or nan, regions per page) of ``detector.predict(pages)`` over >= ``seconds``."""
    import torch

    detector.predict(pages)   # warm-up: kernels, allocator, cudnn choices
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    calls, regions, start = 0, 0, time.perf_counter()
    while True:
        regions += sum(len(r) for r in detector.predict(pages))   # results are on the host: the GPU is done
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and calls >= 2:
            break
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan")
    return calls * len(pages) / elapsed, peak, regions / (calls * len(pages))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny models on CPU, SMOKE lines (the script's test)")
    ap.add_argument("--parts", default="detector,eval", help="detector and/or eval (PaddleOCR-VL generate)")
    ap.add_argument("--eval-batches", default=None, help="eval batch sizes (default 1,16,64; smoke: 1,2)")
    ap.add_argument("--region", default=None, help="WxH of the eval's region image (default 800x600; smoke 200x150)")
    ap.add_argument("--models", default="v2,v3,v4", help="versions to time (those the transformers has)")
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--batches", default=None, help="default 1,8,32 (smoke: 1,2)")
    ap.add_argument("--page", default=None, help="WxH of the synthetic pages (default 2480x3508; smoke 620x877)")
    ap.add_argument("--seconds", type=float, default=None, help="timed seconds per configuration (default 4)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds for all configurations together (default 330; smoke: no limit)")
    args = ap.parse_args(argv)

    import torch
    import transformers

    from ocrvl_ray.layout.engines.configs import available_versions, synthetic_page

    cuda = torch.cuda.is_available() and not args.smoke
    if not cuda and not args.smoke:
        print(f"gpu_check: torch {torch.__version__} sees no CUDA GPU here: no GPU figure printed "
              f"(--smoke runs tiny models on CPU)")
        return 2
    tag = "FIGURE" if cuda else "SMOKE FIGURE"
    batches = [int(b) for b in (args.batches or ("1,2" if args.smoke else "1,8,32")).split(",")]
    width, height = (int(v) for v in (args.page or ("620x877" if args.smoke else "2480x3508")).split("x"))
    seconds = args.seconds if args.seconds is not None else (0.0 if args.smoke else 4.0)
    wanted = args.models.split(",")
    have = available_versions()
    device = "cuda" if cuda else "cpu"
    print(f"INFO device {torch.cuda.get_device_name(0) if cuda else 'cpu (smoke)'}; torch {torch.__version__}, "
          f"transformers {transformers.__version__}; versions {','.join(v for v in wanted if v in have)}; "
          f"pages {width}x{height}; {time.strftime('%Y-%m-%d')}")
    for v in wanted:
        if v not in have:
            print(f"INFO {v}: not in transformers {transformers.__version__} (PP-DocLayoutV4 needs >= 5.20)")
    page = synthetic_page(width, height)
    args.budget = args.budget if args.budget is not None else (float("inf") if args.smoke else 330.0)
    deadline = time.monotonic() + args.budget
    parts = args.parts.split(",")
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        for v in (v for v in wanted if v in have and "detector" in parts):
            try:
                run_version(v, Path(tmp) / v, args, batches, page, seconds, device, cuda, tag, deadline)
            except Exception as e:  # noqa: BLE001 - e.g. V3's post-processing needs OpenCV; the others still run
                print(f"INFO {v}: failed, no figure: {type(e).__name__}: {str(e).strip().splitlines()[0]}")
                if cuda:
                    torch.cuda.empty_cache()
        if "eval" in parts:
            try:
                run_eval(Path(tmp) / "ocrvl", args, page, cuda, tag, deadline)
            except ImportError as e:   # the engine's prompt and loop guard need pydantic and rapidfuzz
                print(f"INFO eval: not run, {e}; pip install pydantic rapidfuzz")
    return 0


def run_eval(folder, args, page, cuda, tag, deadline) -> None:
    """PaddleOCR-VL greedy generation as the eval actor runs it: tokens/s and peak memory per batch size."""
    import torch

    from ocrvl_ray.eval.engines.transformers import TransformersGenerator, save_random_model
    from ocrvl_ray.eval.models import ModelSpec

    new_tokens = 8 if args.smoke else 128
    save_random_model(folder, tiny=args.smoke, dtype="bfloat16")
    # random weights repeat themselves: a guard that never fires keeps every row generating new_tokens
    gen = TransformersGenerator(ModelSpec("random", str(folder)), "v1", "OCR:", new_tokens, 8, 10**6,
                                device="cuda" if cuda else "cpu", dtype="bfloat16")
    params = sum(p.numel() for p in gen.model.parameters()) / 1e6
    from PIL import Image

    w, h = (int(v) for v in (args.region or ("200x150" if args.smoke else "800x600")).split("x"))
    y0, x0 = page.shape[0] // 12, page.shape[1] // 12    # the text-line column of the synthetic page
    region = Image.fromarray(page[y0:y0 + h, x0:x0 + w])
    w, h = region.size
    print(f"INFO eval: {params:.1f} M parameters ({'tiny' if args.smoke else 'default'} config, random, bf16); "
          f"region {w}x{h}, {gen.inputs([region])['input_ids'].shape[1]} prompt tokens, {new_tokens} new tokens")
    for b in [int(x) for x in (args.eval_batches or ("1,2" if args.smoke else "1,16,64")).split(",")]:
        if time.monotonic() > deadline:
            print(f"SKIPPED eval_b{b}: --budget {args.budget:.0f} s spent")
            continue
        try:
            gen.generate([region] * b)   # warm-up
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            tokens = sum(n for _, _, n in gen.generate([region] * b))
            elapsed = time.perf_counter() - start
        except torch.cuda.OutOfMemoryError as e:
            print(f"INFO eval_b{b}: out of GPU memory, no figure ({str(e).splitlines()[0][:120]})")
            torch.cuda.empty_cache()
            continue
        print(f"{tag} eval_tokens_per_s_b{b} {tokens / elapsed:.1f}")
        if cuda:
            print(f"{tag} eval_peak_mib_b{b} {torch.cuda.max_memory_allocated() / 2**20:.0f}")


def run_version(v, folder, args, batches, page, seconds, device, cuda, tag, deadline) -> None:
    """Build, save and load one version, then time every dtype x batch."""
    import torch

    from ocrvl_ray.layout.engines.configs import save_random_detector
    from ocrvl_ray.layout.engines.transformers_detector import TransformersDetector

    save_random_detector(folder, v, tiny=args.smoke)
    for short in args.dtypes.split(","):
        detector = TransformersDetector(folder, device=device, dtype=DTYPES[short])
        params = sum(p.numel() for p in detector.model.parameters()) / 1e6
        print(f"INFO {v}_{short}: {params:.1f} M parameters (random weights, "
              f"{'tiny' if args.smoke else 'default'} config)")
        for b in batches:
            name = f"{v}_{short}_b{b}"
            if time.monotonic() > deadline:
                print(f"SKIPPED {name}: --budget {args.budget:.0f} s spent")
                continue
            try:
                rate, peak, per_page = measure(detector, [page] * b, seconds, cuda)
            except torch.cuda.OutOfMemoryError as e:
                print(f"INFO {name}: out of GPU memory, no figure ({str(e).splitlines()[0][:120]})")
                torch.cuda.empty_cache()
                continue
            print(f"{tag} detector_pages_per_s_{name} {rate:.2f}")
            if cuda:
                print(f"{tag} detector_peak_mib_{name} {peak:.0f}")
            print(f"INFO regions_per_page_{name} {per_page:.1f}")
        del detector
        if cuda:
            torch.cuda.empty_cache()


if __name__ == "__main__":
    sys.exit(main())
