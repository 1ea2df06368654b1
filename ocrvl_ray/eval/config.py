"""``ocrvl eval`` keys (``EvalConfig``; ``--model/--data/--out`` are its ``models``/``data``/``out``) and
``ocrvl eval score``'s (``EvalScoreConfig``); both share ``ScoreOptions``, the one place of their defaults."""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from ocrvl_ray.core.config import JobConfig
from ocrvl_ray.core.generations import ModelVersion


class VllmOptions(BaseModel):
    """The vLLM engine (``engine=vllm``): one replica per GPU in its own Python environment."""
    model_config = ConfigDict(extra="forbid")
    #: Ray runtime_env of the engine actors, e.g. {"py_executable": "/opt/vllm-venv/bin/python"} or
    #: {"pip": ["vllm>=0.11.1"]}; vLLM and Paddle never share one environment.
    runtime_env: dict[str, Any] = Field(default_factory=dict)
    max_model_len: int = Field(16384, ge=256)
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1)
    max_num_seqs: int = Field(128, ge=1)
    accelerator_type: Optional[str] = None
    engine_kwargs: dict[str, Any] = Field(default_factory=dict, description="extra vLLM engine args (win)")


class ScoreOptions(JobConfig):
    """How predictions are scored and reported."""
    bootstrap: int = Field(1000, ge=0, description="paired bootstrap resamples of the comparisons")
    seed: int = Field(0, description="bootstrap seed")
    examples: int = Field(12, ge=0, description="worst regressions / best gains shown in the report")


class EvalScoreConfig(ScoreOptions):
    predictions: str = Field(description="JSONL or Parquet: reference + prediction:<model> columns")
    out: Optional[str] = Field(None, description="output folder; null = the predictions file's folder")


class EvalConfig(ScoreOptions):
    models: list[str] = Field(default_factory=list, description="[NAME=]PATH[+LORA], the first is the baseline")
    data: str = Field("", description="LMDB folder(s) written by the layout job, comma-separated")
    out: str = Field("", description="output folder (predictions.parquet, metrics.json, report.html)")
    engine: Literal["paddle", "transformers", "vllm"] = Field(
        "paddle", description="paddle: Paddle dynamic graph; transformers: torch + Hugging Face transformers "
                              "(.venv-torch, no Paddle); vllm: vLLM engine replicas")
    limit: int = Field(0, ge=0, description="first N samples per LMDB; 0 = all")
    prompt: str = "OCR:"
    model_version: Optional[ModelVersion] = Field(
        None, description="PaddleOCR-VL generation whose prompt template every model gets (v1 'Assistant: ', "
                          "v1.5/v1.6 'Assistant:\\n'); null = per model from its chat template (v1 vs 1.5+)")
    max_new_tokens: int = Field(512, ge=1)
    loop_max_period: int = Field(8, ge=1, description="repetition guard: longest repeated unit (tokens/chars)")
    loop_min_repeats: int = Field(16, ge=2, description="repetition guard: repeats that make a loop")
    device: Literal["cpu", "gpu"] = "cpu"
    dtype: Optional[Literal["float32", "bfloat16"]] = Field(
        None, description="engine=transformers weights and activations; null = bfloat16 on gpu, float32 on cpu")
    actors: int = Field(1, ge=1, description="model replicas (paddle/transformers: actors; vllm: engine replicas)")
    batch_size: int = Field(8, ge=1)
    num_gpus: Optional[float] = Field(None, ge=0, description="per replica; None = 1 on gpu, 0 on cpu")
    num_cpus: float = Field(1, ge=0, description="per paddle or transformers actor")
    vllm: VllmOptions = Field(default_factory=VllmOptions)
    quiet: bool = Field(True, description="Ray's own output (logs, tracebacks, progress bars) goes to <out>/eval.log, "
                                          "not the console")
    progress_every_s: float = Field(15.0, gt=0, description="seconds between a model's progress lines")

    RENAMED = {"template": "use model_version=v1|v1.5|v1.6 (1.5 and 1.6 also accepted), or leave it unset to pick "
                           "each model's generation from its chat template (template=auto)"}

    def gpus_per_replica(self) -> float:
        return self.num_gpus if self.num_gpus is not None else (1.0 if self.device == "gpu" else 0.0)
