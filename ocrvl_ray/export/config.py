"""``ocrvl merge``'s keys (``MergeConfig``) and the options the pipeline's merge stage shares with it
(``MergeOptions``): the one place their defaults are written."""
from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ocrvl_ray.core.config import JobConfig, parse_size


class MergeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    max_shard_size: str = Field("5GB", description="split model.safetensors into shards above this size (5GB, "
                                                   "500MB, 2GiB: the units transformers uses)")
    verify: bool = Field(True, description="check the export against its base and adapter afterwards")

    @field_validator("max_shard_size")
    @classmethod
    def _size(cls, v: str) -> str:
        parse_size(v)
        return v

    @property
    def max_shard_bytes(self) -> int:
        return parse_size(self.max_shard_size)


class MergeConfig(JobConfig, MergeOptions):
    base: str = Field(description="Hugging Face model folder (config.json + model.safetensors or shards)")
    lora: str = Field(description="LoRA checkpoint folder (peft_model*.safetensors or lora_model_state.pdparams, "
                                  "plus lora_config.json), or a PEFT adapter folder (adapter_config.json + "
                                  "adapter_model.safetensors; a Ray checkpoint holding one under adapter/)")
    out: str = Field(description="export folder to create (written atomically)")
    overwrite: bool = Field(False, description="replace an existing out folder")
    node_ip: Optional[str] = Field(None, description="run as a Ray task on the node whose local disk holds the files")


#: ``max_shard_size``'s default in bytes, for library callers that give none.
DEFAULT_MAX_SHARD_BYTES = parse_size(MergeOptions.model_fields["max_shard_size"].default)
