"""Shared glue of the detector stages: resources of an actor pool, device strings, offline paddlex env."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.core.runtime import StageResources
from ocrvl_ray.layout.config import ActorPool, actor_cpus, actor_gpus


def pool_resources(name: str, pool: ActorPool, device: str) -> StageResources:
    """A detector actor pool's request: pool size, per-actor CPUs (``actor_cpus``), GPUs (``actor_gpus``), and
    ``memory_mb`` only when the user sets it.

    With a GPU device each actor requests its GPUs and Ray sets ``CUDA_VISIBLE_DEVICES`` for it. No memory by
    default: a node type that does not declare ``memory`` (the fake provider cannot, GCP's does not fill it in)
    never satisfies a memory request, so the autoscaler would never launch a GPU node for the pool (issue 27).
    """
    return StageResources(f"{name} actor pool", num_cpus=actor_cpus(pool, device), num_gpus=actor_gpus(pool, device),
                          memory=(pool.memory_mb or 0) << 20, actors=(pool.min_actors, pool.max_actors))


def resolve_device(device: str) -> str:
    """Config device ("cpu", "gpu", "gpu:N") -> paddleocr device string for THIS process.

    Inside a Ray actor that was granted GPUs, Ray has already narrowed ``CUDA_VISIBLE_DEVICES`` to them,
    so the first visible GPU is ``gpu:0`` whatever N the config names. Outside Ray, "gpu" means "gpu:0".
    """
    if device == "cpu":
        return "cpu"
    if not (device == "gpu" or (device.startswith("gpu:") and device[4:].isdigit())):
        raise OcrvlError(f"device must be cpu, gpu or gpu:N, got {device!r}")
    if _ray_gpu_ids():
        return "gpu:0"
    return "gpu:0" if device == "gpu" else device


def _ray_gpu_ids() -> list:
    try:
        import ray

        return list(ray.get_gpu_ids()) if ray.is_initialized() else []
    except Exception:  # noqa: BLE001 - not inside a Ray worker
        return []


def prepare_paddle_env() -> None:
    """Environment paddlex reads at import: caches out of $HOME by default, a local font for drawings."""
    cache = os.environ.get("OCRVL_CACHE") or str(Path(tempfile.gettempdir()) / "ocrvl-cache")
    os.environ.setdefault("PADDLE_PDX_CACHE_HOME", str(Path(cache) / "paddlex"))
    if "PADDLE_PDX_LOCAL_FONT_FILE_PATH" not in os.environ:
        from ocrvl_ray.core.assets import font_path

        os.environ["PADDLE_PDX_LOCAL_FONT_FILE_PATH"] = font_path()


def official_model_cache(model_name: str) -> Path:
    """Where paddlex keeps the official weights of ``model_name`` once downloaded (under this job's cache)."""
    prepare_paddle_env()
    return Path(os.environ["PADDLE_PDX_CACHE_HOME"]) / "official_models" / model_name


#: The files of a model folder that ``check_model_dir`` looks for (and paddlex loads); an LMDB's identity hashes
#: every one of them a folder holds (``layout/outputs.model_identity``). ``config.json``, ``model.safetensors``,
#: ``preprocessor_config.json``: a transformers folder (``layout.engine=transformers``) too.
MODEL_FILES = ("inference.yml", "inference.json", "inference.pdmodel", "inference.pdiparams", "model.safetensors",
               "model_state.pdparams", "config.json", "preprocessor_config.json")


def check_model_dir(model_dir: str | None, what: str, key: str) -> str | None:
    """A given model_dir must hold a model paddlex can load; None means paddleocr downloads the official one.

    Two layouts load: a static export (``inference.json`` or ``inference.pdmodel`` with ``inference.pdiparams``;
    the ``paddle_static`` engine) and a dynamic one (``model.safetensors`` or ``model_state.pdparams`` with
    ``config.json``, e.g. ``save_pretrained``; the ``paddle_dynamic`` engine). Both need ``inference.yml``.
    A demo model folder (``demo_models=true``) missing on this node is built here first.
    """
    if model_dir is None:
        return None
    d = Path(model_dir)
    if not d.is_dir():
        from ocrvl_ray.demo.models import ensure_demo_model

        if not ensure_demo_model(d):   # the demo models are built on each node that lacks them
            import platform

            raise OcrvlError(f"{key}={model_dir}: no such folder on node {platform.node()}; give a folder every "
                             f"node can read (shared storage), or leave {key} unset with demo_models=true")
    has = {f for f in MODEL_FILES if (d / f).is_file()}
    if "inference.yml" not in has:
        raise OcrvlError(f"{key}={model_dir}: no {what} model there (inference.yml missing); "
                         f"point it at an exported model directory or set demo_models=true")
    graph = has & {"inference.json", "inference.pdmodel"}
    weights = has & {"model.safetensors", "model_state.pdparams"}
    if graph and "inference.pdiparams" in has or weights and "config.json" in has:
        return str(d)
    missing = ("inference.pdiparams" if graph else "config.json" if weights
               else "inference.json + inference.pdiparams, or model.safetensors + config.json")
    raise OcrvlError(f"{key}={model_dir}: {missing} missing (an incomplete export); export the model again "
                     f"or point {key} at a complete one")


def load_predictor(cls_name: str, model_name: str, model_dir: str | None, device: str, key: str):
    """Construct a paddleocr predictor (``LayoutDetection`` / ``TableCellsDetection``) once per actor.

    A GPU device on a CPU-only Paddle is refused here (paddlex would warn in the worker's log and run on the
    CPU while the actor holds a GPU). A failed load keeps its cause (``__cause__``) and names it."""
    prepare_paddle_env()
    check_paddle_device(device, key)
    import paddleocr

    try:
        return getattr(paddleocr, cls_name)(model_name=model_name, model_dir=model_dir,
                                            device=resolve_device(device))
    except OcrvlError:
        raise
    except Exception as e:  # noqa: BLE001 - turn paddlex's many failure modes into one actionable line
        where = model_dir or "the official weights (download needs internet)"
        hint = "" if model_dir else f"; offline, set {key}.model_dir=DIR or demo_models=true"
        raise OcrvlError(f"{key}: cannot load {model_name} from {where}: {type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}{hint}") from e


def check_paddle_device(device: str, key: str) -> None:
    """``device`` gpu/gpu:N needs a Paddle built with CUDA in this process; else a one-line ``OcrvlError``."""
    if device == "cpu":
        return
    import paddle

    if not paddle.device.is_compiled_with_cuda():
        import platform

        raise OcrvlError(f"{key}.device={device} but Paddle {paddle.__version__} on node {platform.node()} is "
                         f"CPU-only: install paddlepaddle-gpu on the GPU nodes, or set {key}.device=cpu "
                         f"({key}.num_gpus=1 still places the actors on GPU nodes)")


def with_columns(batch, compute, reads: tuple[str, ...], drop: tuple[str, ...] = ()):
    """Run a stage that reads ``reads`` and returns new or replaced columns (``compute(numpy batch) -> dict``).

    A numpy batch (tests, in-process use) comes back as a dict. An Arrow batch (``batch_format="pyarrow"``, the
    pipeline) converts only ``reads`` to numpy and the new columns back; every other column (the page's words,
    the image bytes) passes through as the same Arrow buffers. Round-tripping the words through numpy costs
    ~20 ms a page per stage: Arrow cannot re-infer their nested lists and Ray pickles them instead.
    """
    if isinstance(batch, dict):
        out = {k: v for k, v in batch.items() if k not in drop}
        out.update(compute(batch))
        return out
    from ray.data.block import BlockAccessor

    new = BlockAccessor.batch_to_block(compute(BlockAccessor.for_block(
        batch.select([c for c in reads if c in batch.column_names])).to_numpy()))
    out = batch.drop_columns([c for c in batch.column_names if c in drop or c in new.column_names])
    for i, name in enumerate(new.column_names):
        out = out.append_column(new.schema.field(i), new.column(i))
    return out


def clip_box(box, width: int, height: int) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return (min(max(x1, 0.0), width), min(max(y1, 0.0), height),
            min(max(x2, 0.0), width), min(max(y2, 0.0), height))


def predict_each(run, inputs: list) -> list:
    """:func:`each_or_one` under Paddle's ``no_grad``: paddlex's dynamic engine (``model.safetensors`` models)
    otherwise keeps every activation of the batch alive (PP-DocLayoutV2 at full size, fp32, CPU: +1.8 GB at batch
    2 instead of +0.24 GB; ``bench/detector_memory.py``)."""
    if not inputs:
        return []
    import paddle

    with paddle.no_grad():
        return each_or_one(lambda xs: [r["boxes"] for r in run(xs)], inputs)


def each_or_one(run, inputs: list) -> list:
    """One result per input from one batched ``run(inputs)``; if that fails, input by input, so one bad input
    costs only itself (its slot holds the exception). No Paddle here (the transformers engine uses it as is)."""
    if not inputs:
        return []
    try:
        return list(run(inputs))
    except Exception:  # noqa: BLE001
        out = []
        for x in inputs:
            try:
                out.append(run([x])[0])
            except Exception as e:  # noqa: BLE001
                out.append(e)
        return out
