"""GPU figures of the transformers layout, eval and LoRA training engines, runnable on a bare CUDA machine (torch +
transformers; the eval part also needs pydantic and rapidfuzz, which our prompt table and repetition guard import,
the lora part peft too; the cpu part
the project's base dependencies: opencv, pyarrow, pydantic).

    python bench/gpu_check.py [--parts detector,eval,lora,cpu] [--models v2,v3,v4] [--dtypes fp32,bf16]
                              [--batches 1,8,32] [--page 2480x3508] [--eval-batches 1,16,64] [--region 800x600]
                              [--cpu-pages 16] [--seconds 4] [--budget 330]
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
  ``FIGURE eval_tokens_per_s_b<1|16|64> <tokens/s>``  (PaddleOCR-VL 0.9B from the real config, random weights,
      bf16, ``TransformersGenerator.generate`` of ``--eval-batches`` copies of a region-sized ``--region`` image,
      128 new tokens, greedy; generated tokens of all rows / seconds)
  ``FIGURE eval_peak_mib_b<N> <MiB>``
  ``FIGURE lora_train_tokens_per_s_b<N> <tokens/s>``  (``--lora-batches``; engine=transformers' own step: the same
      0.9B model, bf16 base, PEFT LoRA r=8 on the language model, AdamW; N copies of the ``--region`` image with a
      48-token label per step, collated and stepped by ``train.engines.transformers``; all tokens / seconds)
  ``FIGURE lora_train_peak_mib_b<N> <MiB>``
  ``FIGURE cpu_ms_per_page_outside_detector <core-ms>``  (``--cpu-pages`` generated sample pages of ``--page`` size
      through the job's own stage objects in this process: decode, table crops, cell box mapping, compose with the
      default config; the detectors' output is the sample template's; process CPU time per page. The LMDB write
      is not in it, unlike bench/layout.py's figure of the same name)
  ``FIGURE cpu_cores_per_gpu_at_detector_rate <cores>`` = the best bf16 ``detector_pages_per_s`` x
      ``cpu_ms_per_page_outside_detector`` / 1000: the decode/compose cores that keep one detector GPU busy
and ``INFO`` lines (device, versions, regions per page: random weights find a random number of boxes, and
post-processing cost grows with it). Without a CUDA GPU it prints no figure and exits 2, unless ``--smoke``,
whose lines start with ``SMOKE`` (tiny models, CPU, small pages: never GPU figures). ``--budget`` seconds in
all: the configurations left when it runs out are named on ``SKIPPED`` lines, not guessed.

A part is one function of ``PARTS`` (``ctx`` -> prints its lines); a new one is a function and an entry there.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DTYPES = {"fp32": "float32", "bf16": "bfloat16"}


@dataclass
class Context:
    """What every part gets: the parsed arguments, where it runs, and the figures printed so far."""
    args: argparse.Namespace
    cuda: bool
    tmp: Path
    page: object                 # the synthetic RGB page (numpy HxWx3)
    deadline: float              # time.monotonic() after which configurations are SKIPPED
    figures: dict = field(default_factory=dict)

    @property
    def tag(self) -> str:
        return "FIGURE" if self.cuda else "SMOKE FIGURE"

    def region(self):
        """A region-sized PIL crop (``--region WxH``; default 200x150 smoke, 800x600) of the page's text column."""
        from PIL import Image

        w, h = (int(v) for v in (self.args.region or ("200x150" if self.args.smoke else "800x600")).split("x"))
        y0, x0 = self.page.shape[0] // 12, self.page.shape[1] // 12
        return Image.fromarray(self.page[y0:y0 + h, x0:x0 + w])

    def figure(self, name: str, value: float, fmt: str = ".2f", note: str = "") -> None:
        """Print one figure line and keep its value for the parts after this one."""
        self.figures[name] = value
        print(f"{self.tag} {name} {value:{fmt}}{note}")


def timed(ctx: Context, name: str, call, seconds: float = 0.0, min_calls: int = 1):
    """``call()`` once to warm up, then repeatedly for >= ``seconds`` and >= ``min_calls`` calls.

    Returns (results of the timed calls, elapsed s, peak CUDA MiB or nan), or None (a ``SKIPPED`` line when the
    budget is spent; an ``INFO`` line when the GPU runs out of memory)."""
    import torch

    if time.monotonic() > ctx.deadline:
        print(f"SKIPPED {name}: --budget {ctx.args.budget:.0f} s spent")
        return None
    try:
        call()   # warm-up: kernels, allocator, cudnn choices
        if ctx.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        results, start = [], time.perf_counter()
        while True:
            results.append(call())   # results are on the host: the GPU is done
            elapsed = time.perf_counter() - start
            if elapsed >= seconds and len(results) >= min_calls:
                break
    except torch.cuda.OutOfMemoryError as e:
        print(f"INFO {name}: out of GPU memory, no figure ({str(e).splitlines()[0][:120]})")
        torch.cuda.empty_cache()
        return None
    peak = torch.cuda.max_memory_allocated() / 2**20 if ctx.cuda else float("nan")
    return results, elapsed, peak


def detector_figures(ctx: Context) -> None:
    """Pages/s (and peak memory) of every PP-DocLayout version the transformers has, per dtype x batch."""
    import torch
    import transformers

    from ocrvl_ray.layout.engines.configs import available_versions, save_random_detector
    from ocrvl_ray.layout.engines.transformers_detector import TransformersDetector

    args, have = ctx.args, available_versions()
    batches = [int(b) for b in (args.batches or ("1,2" if args.smoke else "1,8,32")).split(",")]
    seconds = args.seconds if args.seconds is not None else (0.0 if args.smoke else 4.0)
    for v in args.models.split(","):
        if v not in have:
            print(f"INFO {v}: not in transformers {transformers.__version__} (PP-DocLayoutV4 needs >= 5.20)")
            continue
        try:
            save_random_detector(ctx.tmp / v, v, tiny=args.smoke)
            for short in args.dtypes.split(","):
                detector = TransformersDetector(ctx.tmp / v, device="cuda" if ctx.cuda else "cpu",
                                                dtype=DTYPES[short])
                params = sum(p.numel() for p in detector.model.parameters()) / 1e6
                print(f"INFO {v}_{short}: {params:.1f} M parameters (random weights, "
                      f"{'tiny' if args.smoke else 'default'} config)")
                for b in batches:
                    name = f"{v}_{short}_b{b}"
                    pages = [ctx.page] * b
                    run = timed(ctx, name, lambda: sum(len(r) for r in detector.predict(pages)), seconds, 2)
                    if run is None:
                        continue
                    regions, elapsed, peak = run
                    ctx.figure(f"detector_pages_per_s_{name}", len(regions) * b / elapsed)
                    if ctx.cuda:
                        ctx.figure(f"detector_peak_mib_{name}", peak, ".0f")
                    print(f"INFO regions_per_page_{name} {sum(regions) / (len(regions) * b):.1f}")
                del detector
                if ctx.cuda:
                    torch.cuda.empty_cache()
        except Exception as e:  # noqa: BLE001 - e.g. V3's post-processing needs OpenCV; the others still run
            print(f"INFO {v}: failed, no figure: {type(e).__name__}: {str(e).strip().splitlines()[0]}")
            if ctx.cuda:
                torch.cuda.empty_cache()


def token_figures(ctx: Context, prefix: str, batches: list[int], make_call, seconds: float = 0.0,
                  min_calls: int = 1) -> None:
    """``<prefix>_tokens_per_s_b<N>`` (and on CUDA ``<prefix>_peak_mib_b<N>``) per batch size N; ``make_call(N)``
    returns the call to time, which returns the tokens it processed."""
    for b in batches:
        run = timed(ctx, f"{prefix}_b{b}", make_call(b), seconds, min_calls)
        if run is None:
            continue
        tokens, elapsed, peak = run
        ctx.figure(f"{prefix}_tokens_per_s_b{b}", sum(tokens) / elapsed, ".1f")
        if ctx.cuda:
            ctx.figure(f"{prefix}_peak_mib_b{b}", peak, ".0f")


def eval_figures(ctx: Context) -> None:
    """PaddleOCR-VL greedy generation as the eval actor runs it: tokens/s and peak memory per batch size."""
    args = ctx.args
    try:   # the engine's prompt and loop guard need pydantic and rapidfuzz
        from ocrvl_ray.demo.tiny_paddleocr_vl import save_random_model
        from ocrvl_ray.eval.engines.transformers import TransformersGenerator
        from ocrvl_ray.eval.models import ModelSpec
    except ImportError as e:
        print(f"INFO eval: not run, {e}; pip install pydantic rapidfuzz")
        return
    new_tokens = 8 if args.smoke else 128
    folder = ctx.tmp / "ocrvl"
    save_random_model(folder, tiny=args.smoke, dtype="bfloat16")
    # random weights repeat themselves: a guard that never fires keeps every row generating new_tokens
    gen = TransformersGenerator(ModelSpec("random", str(folder)), "v1", "OCR:", new_tokens, 8, 10**6,
                                device="cuda" if ctx.cuda else "cpu", dtype="bfloat16")
    params = sum(p.numel() for p in gen.model.parameters()) / 1e6
    region = ctx.region()
    w, h = region.size
    print(f"INFO eval: {params:.1f} M parameters ({'tiny' if args.smoke else 'default'} config, random, bf16); "
          f"region {w}x{h}, {gen.inputs([region])['input_ids'].shape[1]} prompt tokens, {new_tokens} new tokens")
    batches = [int(x) for x in (args.eval_batches or ("1,2" if args.smoke else "1,16,64")).split(",")]
    token_figures(ctx, "eval", batches, lambda b: lambda: sum(n for _, _, n in gen.generate([region] * b)))


def lora_train_figures(ctx: Context) -> None:
    """LoRA training steps as engine=transformers runs them (its collate and train_step): tokens/s, peak memory."""
    args = ctx.args
    try:   # the engine needs peft; its keys and prompt table pydantic
        import peft  # noqa: F401

        from ocrvl_ray.core.generations import GENERATIONS
        from ocrvl_ray.demo.tiny_paddleocr_vl import save_random_model
        from ocrvl_ray.train.engines.transformers import TransformersArgs
        from ocrvl_ray.train.engines.transformers.data import Encoder, collate
        from ocrvl_ray.train.engines.transformers.loop import train_step
        from ocrvl_ray.train.engines.transformers.model import load_model
    except ImportError as e:
        print(f"INFO lora: not run, {e}; pip install peft pydantic rapidfuzz")
        return
    import torch

    folder = ctx.tmp / "ocrvl-lora"
    save_random_model(folder, tiny=args.smoke, dtype="bfloat16")
    targs = TransformersArgs(model_name_or_path=str(folder), output_dir=str(ctx.tmp / "lora"), train_lmdb_paths="-",
                             model_version="v1", lora_rank=8)
    device = torch.device("cuda" if ctx.cuda else "cpu")
    model = load_model(targs, device, torch.bfloat16)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=targs.learning_rate)
    encoder = Encoder(str(folder), GENERATIONS["v1"], "OCR:", targs.max_seq_len)
    region = ctx.region()
    label = encoder.tokenizer.decode(list(range(20, 68)))       # 48 tokens of the tokenizer
    example = encoder(encoder.resize(region), label)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6
    print(f"INFO lora: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters, {trainable:.2f} M in "
          f"LoRA r=8 ({'tiny' if args.smoke else 'default'} config, random, bf16); region {region.size[0]}x"
          f"{region.size[1]}, {len(example['input_ids'])} tokens per sample")
    seconds = args.seconds if args.seconds is not None else (0.0 if args.smoke else 4.0)
    batches = [int(x) for x in (args.lora_batches or ("1,2" if args.smoke else "1,8")).split(",")]

    def step(b):
        batch = collate([example] * b, encoder.pad_id)
        return lambda: train_step(model, optimizer, [batch], device, torch.bfloat16, 1.0)[2]

    token_figures(ctx, "lora_train", batches, step, seconds, 2)
    del model, optimizer
    if ctx.cuda:
        torch.cuda.empty_cache()


def cpu_figures(ctx: Context) -> None:
    """CPU core-ms per page outside the detectors, and the cores that keep one detector GPU busy."""
    try:
        measured = cpu_ms_per_page(ctx)
    except ImportError as e:
        print(f"INFO cpu: not run, {e}; install the project's base dependencies (pip install -e .)")
        return
    if measured is None:
        return
    ms, handoff = measured
    ctx.figure("cpu_ms_per_page_outside_detector", ms, ".1f",
               f" ms ({ctx.args.cpu_pages} pages of {ctx.page.shape[1]}x{ctx.page.shape[0]}, handoff={handoff})")
    rates = {k: v for k, v in ctx.figures.items() if k.startswith("detector_pages_per_s_") and "_bf16_" in k}
    if not rates:
        print("INFO cpu_cores_per_gpu_at_detector_rate: no bf16 detector rate measured in this run (--parts "
              "detector --dtypes bf16)")
        return
    best = max(rates, key=rates.get)
    ctx.figure("cpu_cores_per_gpu_at_detector_rate", rates[best] * ms / 1000, ".2f",
               f" cores ({best} x cpu_ms_per_page_outside_detector"
               f"{'' if ctx.cuda else '; smoke: a tiny model on the CPU, not a GPU rate'})")


def cpu_ms_per_page(ctx: Context) -> tuple[float, str] | None:
    """(process CPU ms per page, hand-off) of the job's decode, table crop and compose stage objects (and the cell
    stage's box mapping) on generated sample pages; the detectors' answers are the sample template's, untimed."""
    import pyarrow.parquet as pq

    from ocrvl_ray.core.config import load_config
    from ocrvl_ray.core.records import Region
    from ocrvl_ray.demo.sample import TEMPLATE_CELLS, TEMPLATE_REGIONS, make_sample_dataset
    from ocrvl_ray.ingest.prepare import PrepareConfig, prepare
    from ocrvl_ray.layout.config import LayoutConfig
    from ocrvl_ray.layout.stages.compose import ComposeStage
    from ocrvl_ray.layout.stages.decode import DecodeStage
    from ocrvl_ray.layout.stages.detect_cells import cells_to_page
    from ocrvl_ray.layout.stages.table_crops import TableCropStage

    if time.monotonic() > ctx.deadline:
        print(f"SKIPPED cpu: --budget {ctx.args.budget:.0f} s spent")
        return None
    height, width = ctx.page.shape[:2]
    data = make_sample_dataset(ctx.tmp / "pages", n_pages=ctx.args.cpu_pages + 2, seed=11, size=(width, height),
                               image_format="jpeg")
    manifest = ctx.tmp / "manifest.parquet"
    prepare(PrepareConfig(dataset="ocr_public", labels=[data["labels_dir"]], images=[data["images_dir"]],
                          out=str(manifest), quiet=True), use_ray=False)
    cfg = load_config(LayoutConfig, overrides=[f"manifest={manifest}", "progress=false"], env={})
    decode, crops, compose = (DecodeStage.from_config(cfg), TableCropStage.from_config(cfg),
                              ComposeStage.from_config(cfg, None, None))
    for stage in (decode, crops, compose):
        stage.setup()
    table = pq.read_table(manifest)
    rows = [{c: table.slice(i, 1).column(c).to_numpy(zero_copy_only=False) for c in table.column_names}
            for i in range(table.num_rows)]

    def one_page(batch) -> float:
        """CPU seconds of one page through the stages; the detector answers are set between them, untimed."""
        c0 = time.process_time()
        batch = decode.process_batch(batch)
        cpu = time.process_time() - c0
        w, h = int(batch["width"][0]), int(batch["height"][0])
        batch["regions"] = [[Region(label=lab, score=s, box=(x1 * w, y1 * h, x2 * w, y2 * h), order=o + 1,
                                    kind="layout").to_row() for lab, s, x1, y1, x2, y2, o in TEMPLATE_REGIONS]]
        c0 = time.process_time()
        batch = crops.process_batch(batch)
        cpu += time.process_time() - c0
        found = [[{"score": 0.9, "coordinate": [x1 * t["shape"][1], y1 * t["shape"][0], x2 * t["shape"][1],
                                                y2 * t["shape"][0]]} for x1, y1, x2, y2 in TEMPLATE_CELLS]
                 for t in batch["tables"][0]]
        c0 = time.process_time()
        batch["cells"] = [[c for t, boxes in zip(batch["tables"][0], found)
                           for c in cells_to_page(boxes, t["origin"], t["factors"], t["box"], int(t["table"]))]]
        del batch["tables"]
        out = compose.process_batch(batch)
        cpu += time.process_time() - c0
        if out.column("status")[0].as_py() != "ok" or not len(out.column("samples")[0]):
            raise RuntimeError(f"cpu: a sample page did not compose: {out.column('detail')[0].as_py()}")
        return cpu

    for batch in rows[:2]:    # warm-up: imports, fonts, OpenCV's first calls
        one_page(batch)
    return 1000 * sum(one_page(batch) for batch in rows[2:]) / len(rows[2:]), cfg.handoff


#: The parts in the order they run (a later one may read the figures of an earlier one: cpu reads detector's).
PARTS = {"detector": detector_figures, "eval": eval_figures, "lora": lora_train_figures, "cpu": cpu_figures}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny models on CPU, SMOKE lines (the script's test)")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"any of {', '.join(PARTS)}")
    ap.add_argument("--eval-batches", default=None, help="eval batch sizes (default 1,16,64; smoke: 1,2)")
    ap.add_argument("--region", default=None, help="WxH of the eval's region image (default 800x600; smoke 200x150)")
    ap.add_argument("--lora-batches", default=None, help="LoRA training batch sizes (default 1,8; smoke: 1,2)")
    ap.add_argument("--models", default="v2,v3,v4", help="versions to time (those the transformers has)")
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--batches", default=None, help="default 1,8,32 (smoke: 1,2)")
    ap.add_argument("--page", default=None, help="WxH of the synthetic pages (default 2480x3508; smoke 620x877)")
    ap.add_argument("--cpu-pages", type=int, default=None, help="pages timed by the cpu part (default 16; smoke 2)")
    ap.add_argument("--seconds", type=float, default=None, help="timed seconds per configuration (default 4)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds for all configurations together (default 330; smoke: no limit)")
    args = ap.parse_args(argv)
    unknown = sorted(set(args.parts.split(",")) - set(PARTS))
    if unknown:
        ap.error(f"--parts: no part {', '.join(unknown)} (parts: {', '.join(PARTS)})")

    import torch
    import transformers

    from ocrvl_ray.layout.engines.configs import available_versions, synthetic_page

    cuda = torch.cuda.is_available() and not args.smoke
    if not cuda and not args.smoke:
        print(f"gpu_check: torch {torch.__version__} sees no CUDA GPU here: no GPU figure printed "
              f"(--smoke runs tiny models on CPU)")
        return 2
    width, height = (int(v) for v in (args.page or ("620x877" if args.smoke else "2480x3508")).split("x"))
    args.cpu_pages = args.cpu_pages or (2 if args.smoke else 16)
    args.budget = args.budget if args.budget is not None else (math.inf if args.smoke else 330.0)
    have = available_versions()
    print(f"INFO device {torch.cuda.get_device_name(0) if cuda else 'cpu (smoke)'}; torch {torch.__version__}, "
          f"transformers {transformers.__version__}; "
          f"versions {','.join(v for v in args.models.split(',') if v in have)}; "
          f"pages {width}x{height}; {time.strftime('%Y-%m-%d')}")
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        ctx = Context(args, cuda, Path(tmp), synthetic_page(width, height), time.monotonic() + args.budget)
        for name in (p for p in PARTS if p in args.parts.split(",")):
            PARTS[name](ctx)
    return 0


if __name__ == "__main__":
    sys.exit(main())
