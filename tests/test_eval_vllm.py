"""engine=vllm: the Ray Data LLM processor config and the row wiring it would run, built without vLLM."""
from __future__ import annotations

import io

import pytest
from PIL import Image

from ocrvl_ray.core.config import load_config
from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.eval.config import EvalConfig
from ocrvl_ray.eval.engines.vllm import make_preprocess, postprocess, processor_kwargs
from ocrvl_ray.eval.models import ModelSpec


def _cfg(**over) -> EvalConfig:
    return load_config(EvalConfig, overrides={"engine": "vllm", "actors": 4, "batch_size": 16,
                                              "max_new_tokens": 300, **over}, env={})


def test_processor_config_from_the_same_inputs():
    from ray.data.llm import vLLMEngineProcessorConfig

    cfg = _cfg(**{"vllm.runtime_env": {"py_executable": "/opt/vllm/bin/python"}, "vllm.max_model_len": 8192,
                  "vllm.accelerator_type": "L4", "vllm.engine_kwargs": {"max_num_seqs": 64}})
    kw = processor_kwargs(ModelSpec("ft", "/runs/x/export"), cfg)
    c = vLLMEngineProcessorConfig(**kw)     # validated by Ray's own config class
    assert c.model_source == "/runs/x/export"
    assert c.concurrency == 4 and c.batch_size == 16 and c.accelerator_type == "L4"
    assert c.runtime_env == {"py_executable": "/opt/vllm/bin/python"}
    e = c.engine_kwargs
    assert (e["trust_remote_code"], e["enable_prefix_caching"], e["mm_processor_cache_gb"]) == (True, False, 0)
    assert e["tensor_parallel_size"] == 1 and e["max_model_len"] == 8192 and e["max_num_seqs"] == 64
    assert e["limit_mm_per_prompt"] == {"image": 1}
    # our prompt text goes straight to vLLM (it expands the image placeholder and detokenizes itself)
    assert (kw["chat_template_stage"], kw["tokenize_stage"], kw["detokenize_stage"]) == (False, False, False)


@pytest.mark.parametrize("generation, tail", [("v1", "OCR:\nAssistant: "), ("1.5", "OCR:\nAssistant:\n")])
def test_rows_prompt_image_and_greedy_sampling(generation, tail):
    buf = io.BytesIO()
    Image.new("RGB", (30, 12), "white").save(buf, format="JPEG")
    req = make_preprocess(generation, _cfg())({"row": 7, "image": buf.getvalue()})
    assert req["row"] == 7
    assert req["prompt"] == ("<|begin_of_sentence|>User: <|IMAGE_START|><|IMAGE_PLACEHOLDER|><|IMAGE_END|>" + tail)
    assert req["sampling_params"] == {"temperature": 0.0, "max_tokens": 300, "skip_special_tokens": True}
    assert req["multimodal_data"]["image"].size == (30, 12)
    assert postprocess({"row": 7, "generated_text": "합계", "num_generated_tokens": 2, "prompt": "x"}) == \
        {"row": 7, "raw": "합계", "tokens": 2}


def test_lora_models_are_refused_for_vllm():
    with pytest.raises(OcrvlError, match="merge BASE\\+LORA first"):
        processor_kwargs(ModelSpec("ft", "/models/base", "/runs/ckpt-10"), _cfg())


def test_model_generation_detected_or_given():
    from ocrvl_ray.eval.engines import model_generation

    assert model_generation(None, "{{- 'Assistant: ' -}}") == "v1"
    assert model_generation(None, "{{- 'Assistant:\\n' -}}") == "v1.5"
    assert model_generation(None, "") == "v1"
    # an explicit model_version wins over the chat template, in every spelling
    assert model_generation("1.6", "{{- 'Assistant: ' -}}") == "v1.6"
    assert model_generation("v1", "{{- 'Assistant:\\n' -}}") == "v1"
