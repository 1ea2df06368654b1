"""``ocrvl eval`` as a Ray job: LMDB samples -> one Ray Data pass per model (actor pool) -> scores and report."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from ocrvl_ray.eval.config import EvalConfig
from ocrvl_ray.eval.data import read_samples, split_paths
from ocrvl_ray.eval.engines import finish, model_generation
from ocrvl_ray.eval.models import ModelSpec, parse_models, read_chat_template
from ocrvl_ray.eval.score import score, write_outputs


def _dataset(cols: dict[str, list]):
    import pyarrow as pa
    import ray.data

    return ray.data.from_arrow(pa.table({"row": list(range(len(cols["image"]))), "image": cols["image"]}))


def predict_paddle(ds, spec: ModelSpec, generation: str, cfg: EvalConfig) -> list[dict]:
    from ocrvl_ray.eval.engines.paddle import PaddlePredictor

    out = ds.map_batches(
        PaddlePredictor, batch_format="numpy", batch_size=cfg.batch_size, concurrency=cfg.actors,
        num_cpus=cfg.num_cpus, num_gpus=cfg.gpus_per_replica(),
        fn_constructor_kwargs=dict(spec=spec, generation=generation, prompt=cfg.prompt,
                                   max_new_tokens=cfg.max_new_tokens, loop_max_period=cfg.loop_max_period,
                                   loop_min_repeats=cfg.loop_min_repeats, device=cfg.device))
    return out.take_all()


def predict_vllm(ds, spec: ModelSpec, generation: str, cfg: EvalConfig) -> list[dict]:
    from ocrvl_ray.eval.engines.vllm import build_processor

    rows = []
    for r in build_processor(spec, generation, cfg)(ds).take_all():
        hyp, loop = finish(r["raw"], cfg.loop_max_period, cfg.loop_min_repeats)
        rows.append({"row": r["row"], "hyp": hyp, "loop": loop, "tokens": r["tokens"]})
    return rows


ENGINES: dict[str, Callable] = {"paddle": predict_paddle, "vllm": predict_vllm}


def run_eval(models: list[str], data: str | list[str], out: str, cfg: EvalConfig | dict | None = None,
             log: Callable[[str], None] = print) -> dict:
    """What ``ocrvl pipeline``'s eval stage calls: returns the metrics dict (also written to ``out``)."""
    from ocrvl_ray.core.config import load_config

    if isinstance(cfg, EvalConfig):
        cfg = cfg.model_dump()
    base = {k: v for k, v in (cfg or {}).items() if k not in ("models", "data", "out")}
    full = load_config(EvalConfig, overrides={**base, "models": list(models),
                                              "data": data if isinstance(data, str) else ",".join(data), "out": out},
                       env={})
    return run_eval_job(full, log)["metrics"]


def run_eval_job(cfg: EvalConfig, log: Callable[[str], None] = print) -> dict:
    """``{"metrics", "paths"}``: predictions for every sample and model, scored and reported in ``cfg.out``."""
    from ocrvl_ray.core.errors import OcrvlError
    from ocrvl_ray.core.runtime import init_ray

    specs = parse_models(cfg.models)
    paths = split_paths(cfg.data)
    if not cfg.out:
        raise OcrvlError("no --out given; pass the folder for predictions.parquet, metrics.json and report.html")
    if cfg.engine == "vllm":   # refuse what vLLM cannot load before any work
        from ocrvl_ray.eval.engines.vllm import processor_kwargs

        for spec in specs:
            processor_kwargs(spec, cfg)
    cols = read_samples(paths, cfg.limit)
    n = len(cols["key"])
    log(f"eval: {n} samples from {len(paths)} LMDB(s), {len(specs)} model(s), engine={cfg.engine}")
    init_ray(num_cpus=None, num_gpus=None)
    ds = _dataset(cols)
    run_info: dict[str, Any] = {"data": paths, "engine": cfg.engine, "limit": cfg.limit, "prompt": cfg.prompt,
                                "max_new_tokens": cfg.max_new_tokens, "models": []}
    for spec in specs:
        generation = model_generation(cfg.model_version, read_chat_template(spec.path))
        t0 = time.perf_counter()
        rows = sorted(ENGINES[cfg.engine](ds, spec, generation, cfg), key=lambda r: int(r["row"]))
        secs = time.perf_counter() - t0
        if [int(r["row"]) for r in rows] != list(range(n)):
            raise RuntimeError(f"model {spec.name}: got {len(rows)} predictions for {n} samples")
        cols[f"prediction:{spec.name}"] = [str(r["hyp"]) for r in rows]
        cols[f"loop:{spec.name}"] = [bool(r["loop"]) for r in rows]
        cols[f"tokens:{spec.name}"] = [int(r["tokens"]) for r in rows]
        run_info["models"].append({**spec.describe(), "model_version": generation, "seconds": round(secs, 3),
                                   "samples_per_s": round(n / secs, 3) if secs else None})
        log(f"eval: {spec.name} ({spec.kind}, model_version {generation}): {n} samples in {secs:.1f} s")
    del cols["image"]
    from ocrvl_ray.eval.predictions import Predictions

    metrics, scored = score(Predictions(cols, [s.name for s in specs]), cfg)
    paths_out = write_outputs(metrics, scored, cfg.out, cfg, extra={"run": run_info})
    Path(cfg.out, "eval_config.json").write_text(json.dumps(cfg.model_dump(mode="json"), indent=2) + "\n")
    return {"metrics": {"run": run_info, **metrics}, "paths": paths_out}
