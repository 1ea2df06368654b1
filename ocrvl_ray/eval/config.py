"""``ocrvl eval`` options: ``--model/--data/--out`` plus ``key=value`` (or a YAML with the same keys)."""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from ocrvl_ray.core.config import JobConfig


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


class EvalConfig(JobConfig):
    models: list[str] = Field(default_factory=list, description="[NAME=]PATH[+LORA], the first is the baseline")
    data: str = ""                         # LMDB folder(s), comma-separated
    out: str = ""
    engine: Literal["paddle", "vllm"] = "paddle"
    limit: int = Field(0, ge=0, description="first N samples per LMDB; 0 = all")
    prompt: str = "OCR:"
    template: Literal["auto", "v1", "1.5"] = "auto"
    max_new_tokens: int = Field(512, ge=1)
    loop_max_period: int = Field(8, ge=1, description="repetition guard: longest repeated unit (tokens/chars)")
    loop_min_repeats: int = Field(16, ge=2, description="repetition guard: repeats that make a loop")
    device: Literal["cpu", "gpu"] = "cpu"
    actors: int = Field(1, ge=1, description="model replicas (paddle: actors; vllm: engine replicas)")
    batch_size: int = Field(8, ge=1)
    num_gpus: Optional[float] = Field(None, ge=0, description="per replica; None = 1 on gpu, 0 on cpu")
    num_cpus: float = Field(1, ge=0, description="per paddle actor")
    bootstrap: int = Field(1000, ge=0)
    seed: int = 0
    examples: int = Field(12, ge=0, description="worst regressions / best gains shown in the report")
    vllm: VllmOptions = Field(default_factory=VllmOptions)

    def gpus_per_replica(self) -> float:
        return self.num_gpus if self.num_gpus is not None else (1.0 if self.device == "gpu" else 0.0)
