"""``engine=vllm``: Ray Data LLM (``ray.data.llm``) with a vLLM engine, one replica per GPU.

vLLM (>= 0.11.1 serves PaddleOCR-VL) and Paddle cannot share a Python environment, so the engine actors run
in ``vllm.runtime_env`` (e.g. ``{"py_executable": "/opt/vllm/bin/python"}`` or an image that has vLLM).
We hand vLLM the full prompt text (same template as the paddle engine; vLLM expands the image placeholder)
and the crop as ``multimodal_data``; greedy decoding; the repetition guard cuts loops afterwards.
Only the configuration and the row wiring are tested here (no GPU); nothing below imports vLLM.
"""
from __future__ import annotations

import io
from typing import Any

from ocrvl_ray.eval.config import EvalConfig
from ocrvl_ray.eval.engines import render_prompt
from ocrvl_ray.eval.models import ModelSpec
from ocrvl_ray.core.errors import OcrvlError

#: upstream's recipe for PaddleOCR-VL on vLLM (--trust-remote-code --no-enable-prefix-caching --mm-processor-cache-gb 0)
RECIPE = {"trust_remote_code": True, "enable_prefix_caching": False, "mm_processor_cache_gb": 0}


def processor_kwargs(spec: ModelSpec, cfg: EvalConfig) -> dict[str, Any]:
    """Keyword arguments of ``vLLMEngineProcessorConfig`` for one model (pure; what the test checks)."""
    if spec.lora:
        raise OcrvlError(f"--model {spec.name}: engine=vllm loads model folders only; merge BASE+LORA first "
                         f"(ocrvl merge --base {spec.path} --lora {spec.lora} --out EXPORT) or use engine=paddle")
    v = cfg.vllm
    engine = {**RECIPE, "max_model_len": v.max_model_len, "gpu_memory_utilization": v.gpu_memory_utilization,
              "max_num_seqs": v.max_num_seqs, "limit_mm_per_prompt": {"image": 1},
              "tensor_parallel_size": 1, "pipeline_parallel_size": 1, "dtype": "bfloat16", **v.engine_kwargs}
    return {"model_source": spec.path, "engine_kwargs": engine, "concurrency": cfg.actors,
            "batch_size": cfg.batch_size, "accelerator_type": v.accelerator_type,
            "runtime_env": dict(v.runtime_env), "chat_template_stage": False, "tokenize_stage": False,
            "detokenize_stage": False, "prepare_multimodal_stage": False}


def make_preprocess(generation: str, cfg: EvalConfig):
    """Row ``{"row", "image": JPEG bytes}`` -> the engine's request (prompt, image, greedy sampling)."""
    prompt = render_prompt(generation, cfg.prompt)
    sampling = {"temperature": 0.0, "max_tokens": cfg.max_new_tokens, "skip_special_tokens": True}

    def preprocess(row: dict) -> dict:
        from PIL import Image

        return {"row": row["row"], "prompt": prompt, "sampling_params": dict(sampling),
                "multimodal_data": {"image": Image.open(io.BytesIO(bytes(row["image"]))).convert("RGB")}}
    return preprocess


def postprocess(row: dict) -> dict:
    return {"row": row["row"], "raw": row.get("generated_text") or "",
            "tokens": int(row.get("num_generated_tokens") or 0)}


def build_processor(spec: ModelSpec, generation: str, cfg: EvalConfig):
    from ray.data.llm import build_processor as build, vLLMEngineProcessorConfig

    return build(vLLMEngineProcessorConfig(**processor_kwargs(spec, cfg)),
                 preprocess=make_preprocess(generation, cfg), postprocess=postprocess)
