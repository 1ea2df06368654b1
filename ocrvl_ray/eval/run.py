"""``ocrvl eval`` as a Ray job: LMDB samples -> one Ray Data pass per model (actor pool) -> scores and report.

Everything that can be checked is checked before Ray starts (models, data, the output folder). With
``quiet`` (default) Ray's own output goes to ``<out>/eval.log`` and the console shows our lines only: the plan,
a progress line per model every ``progress_every_s`` seconds, and a failure inside Ray as one line naming the
model and the log.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from ocrvl_ray.eval.config import EvalConfig
from ocrvl_ray.eval.data import read_samples, split_paths
from ocrvl_ray.eval.engines import finish, model_generation
from ocrvl_ray.eval.models import ModelSpec, parse_models, read_chat_template
from ocrvl_ray.eval.score import check_out_folder, score, write_outputs


def _dataset(cols: dict[str, list]):
    import pyarrow as pa
    import ray.data

    return ray.data.from_arrow(pa.table({"row": list(range(len(cols["image"]))), "image": cols["image"]}))


def _actor_pool(predictor, ds, spec: ModelSpec, generation: str, cfg: EvalConfig, **extra) -> Iterator[dict]:
    """The paddle and transformers engines: ``predictor`` (a Ray Data actor class) on ``cfg.actors`` replicas."""
    out = ds.map_batches(
        predictor, batch_format="numpy", batch_size=cfg.batch_size, concurrency=cfg.actors,
        num_cpus=cfg.num_cpus, num_gpus=cfg.gpus_per_replica(),
        fn_constructor_kwargs=dict(spec=spec, generation=generation, prompt=cfg.prompt,
                                   max_new_tokens=cfg.max_new_tokens, loop_max_period=cfg.loop_max_period,
                                   loop_min_repeats=cfg.loop_min_repeats, device=cfg.device, **extra))
    for b in out.iter_batches(batch_size=None, batch_format="numpy"):
        for i in range(len(b["row"])):
            yield {k: b[k][i] for k in ("row", "hyp", "loop", "tokens")}


def predict_paddle(ds, spec: ModelSpec, generation: str, cfg: EvalConfig) -> Iterator[dict]:
    from ocrvl_ray.eval.engines.paddle import PaddlePredictor

    yield from _actor_pool(PaddlePredictor, ds, spec, generation, cfg)


def predict_transformers(ds, spec: ModelSpec, generation: str, cfg: EvalConfig) -> Iterator[dict]:
    from ocrvl_ray.eval.engines.transformers import TransformersPredictor

    yield from _actor_pool(TransformersPredictor, ds, spec, generation, cfg, dtype=cfg.dtype)


def predict_vllm(ds, spec: ModelSpec, generation: str, cfg: EvalConfig) -> Iterator[dict]:
    from ocrvl_ray.eval.engines.vllm import build_processor

    for r in build_processor(spec, generation, cfg)(ds).iter_rows():
        hyp, loop = finish(r["raw"], cfg.loop_max_period, cfg.loop_min_repeats)
        yield {"row": r["row"], "hyp": hyp, "loop": loop, "tokens": r["tokens"]}


ENGINES: dict[str, Callable] = {"paddle": predict_paddle, "transformers": predict_transformers, "vllm": predict_vllm}


def run_eval(models: list[str], data: str | list[str], out: str, cfg: EvalConfig | dict | None = None,
             log: Optional[Callable[[str], None]] = None) -> dict:
    """What ``ocrvl pipeline``'s eval stage calls: returns the metrics dict (also written to ``out``)."""
    from ocrvl_ray.core.config import load_config

    if isinstance(cfg, EvalConfig):
        cfg = cfg.model_dump()
    base = {k: v for k, v in (cfg or {}).items() if k not in ("models", "data", "out")}
    full = load_config(EvalConfig, overrides={**base, "models": list(models),
                                              "data": data if isinstance(data, str) else ",".join(data), "out": out},
                       env={})
    return run_eval_job(full, log)["metrics"]


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_EXC_LINE = re.compile(r"^(?:[\w.]+\.)?(\w*(?:Error|Exception|Interrupt)\b.*)$")


def one_line(e: BaseException) -> str:
    """A failure inside Ray as one line without ANSI codes: the user error it carries, else the innermost
    exception's type and message (for errors that only carry the remote traceback as text, its last
    ``SomeError: ...`` line, e.g. an actor constructor's)."""
    from ocrvl_ray.core.errors import unwrap_ray, user_error

    err = user_error(e)
    if err is not None:
        return _ANSI.sub("", str(err)).strip().splitlines()[0]
    inner = unwrap_ray(e)
    lines = [ln.strip() for ln in _ANSI.sub("", str(inner)).splitlines() if ln.strip()]
    raised = [i for i, ln in enumerate(lines) if _EXC_LINE.match(ln)]
    if not raised:
        return f"{type(inner).__name__}: {lines[0] if lines else ''}"[:300]
    i = raised[-1]
    text = _EXC_LINE.match(lines[i]).group(1)
    if text.endswith(":") and i + 1 < len(lines):   # "Error(s) in loading state_dict for X:" + its first reason
        text += " " + lines[i + 1]
    return text[:300]


def run_eval_job(cfg: EvalConfig, log: Optional[Callable[[str], None]] = None) -> dict:
    """``{"metrics", "paths"}``: predictions for every sample and model, scored and reported in ``cfg.out``.
    ``log``: where our lines go (default: the console, even while Ray's output is redirected)."""
    import ray.data

    from ocrvl_ray.core.console import RayLog
    from ocrvl_ray.core.errors import OcrvlError
    from ocrvl_ray.core.runtime import init_ray

    specs = parse_models(cfg.models, cfg.engine)
    paths = split_paths(cfg.data)
    if not cfg.out:
        raise OcrvlError("no --out given; pass the folder for predictions.parquet, metrics.json and report.html")
    check_out_folder(cfg.out)
    if cfg.engine == "vllm":   # refuse what vLLM cannot load before any work
        from ocrvl_ray.eval.engines.vllm import processor_kwargs

        for spec in specs:
            processor_kwargs(spec, cfg)
    cols = read_samples(paths, cfg.limit)
    n = len(cols["key"])
    log_path = str(Path(cfg.out, "eval.log"))
    run_info: dict[str, Any] = {"data": paths, "engine": cfg.engine, "limit": cfg.limit, "prompt": cfg.prompt,
                                "max_new_tokens": cfg.max_new_tokens, "models": []}
    with RayLog(log_path, enabled=cfg.quiet) as console:
        say = log or console.say
        say(f"eval: {n} samples from {len(paths)} LMDB(s), {len(specs)} model(s), engine={cfg.engine}"
            + (f" (Ray's output: {log_path})" if cfg.quiet else ""))
        init_ray(num_cpus=None, num_gpus=None)
        ray.data.DataContext.get_current().enable_progress_bars = not cfg.quiet
        ds = _dataset(cols)
        for spec in specs:
            generation = model_generation(cfg.model_version, read_chat_template(spec.path))
            say(f"eval: {spec.name} ({spec.kind}, model_version {generation}): loading {spec.path}")
            t0 = last = time.perf_counter()
            rows = []
            try:
                for r in ENGINES[cfg.engine](ds, spec, generation, cfg):
                    rows.append(r)
                    now = time.perf_counter()
                    if now - last >= cfg.progress_every_s and len(rows) < n:
                        last = now
                        say(f"eval: {spec.name}: {len(rows)}/{n} samples ({len(rows) / (now - t0):.2f} samples/s)")
            except Exception as e:  # noqa: BLE001 - one line on the console; the whole story in the log
                import traceback

                with open(log_path, "a", encoding="utf-8") as f:
                    traceback.print_exc(file=f)
                raise OcrvlError(f"eval: model {spec.name} ({spec.path}) failed: {one_line(e)} "
                                 f"(full log: {log_path})") from None
            rows.sort(key=lambda r: int(r["row"]))
            secs = time.perf_counter() - t0
            if [int(r["row"]) for r in rows] != list(range(n)):
                raise RuntimeError(f"model {spec.name}: got {len(rows)} predictions for {n} samples")
            cols[f"prediction:{spec.name}"] = [str(r["hyp"]) for r in rows]
            cols[f"loop:{spec.name}"] = [bool(r["loop"]) for r in rows]
            cols[f"tokens:{spec.name}"] = [int(r["tokens"]) for r in rows]
            run_info["models"].append({**spec.describe(), "model_version": generation, "seconds": round(secs, 3),
                                       "samples_per_s": round(n / secs, 3) if secs else None})
            say(f"eval: {spec.name}: {n} samples in {secs:.1f} s")
    del cols["image"]
    from ocrvl_ray.eval.predictions import Predictions

    metrics, scored = score(Predictions(cols, [s.name for s in specs]), cfg)
    paths_out = write_outputs(metrics, scored, cfg.out, cfg, extra={"run": run_info})
    Path(cfg.out, "eval_config.json").write_text(json.dumps(cfg.model_dump(mode="json"), indent=2) + "\n")
    return {"metrics": {"run": run_info, **metrics}, "paths": paths_out}
