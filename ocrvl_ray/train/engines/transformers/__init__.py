"""``ocrvl train CONFIG.yaml engine=transformers``: PEFT LoRA on PaddleOCR-VL with PyTorch + transformers under Ray
Train's ``TorchTrainer`` (DDP by default; ``strategy=fsdp`` on GPUs only, as Ray Train's FSDP is; gloo on CPU), in
``.venv-torch`` (no Paddle).

Output contract (what ``ocrvl merge --lora`` and eval read):
  <output_dir>/                     written by rank 0 at the end of the run
      adapter_config.json           PEFT ``LoraConfig`` (``peft_type: LORA``, ``r``, ``lora_alpha``,
                                    ``target_modules``, ``base_model_name_or_path`` = model_name_or_path)
      adapter_model.safetensors     PEFT ``save_pretrained`` layout: keys
                                    ``base_model.model.<transformers module>.lora_A.weight`` [r, in] and
                                    ``...lora_B.weight`` [out, r], module names as transformers loads the model
                                    (``model.language_model.layers.N.self_attn.q_proj``, ``model.visual.…``,
                                    ``model.projector.linear_1``); float32
      ocrvl_train.json              what ran: generation, prompt, steps, seed, samples skipped
      README.md                     PEFT's model card (PEFT writes it; nothing reads it)
  <storage_path>/<run_name>/checkpoint_*/   every ``save_steps`` (and at the end), reported with ray.train.report
      adapter/                      the same two PEFT files as above, at that step
      optimizer.pt, scheduler.pt    AdamW and LR scheduler state (full, unsharded)
      state.json                    {"step": N, "world": W, ...}
      rank-<r>.json, rank-<r>.rng   each rank's data position (epoch, offset, skipped) and RNG states
  ``Result.checkpoint`` of the fit is the latest one; ``peft.PeftModel.from_pretrained(base, <dir>/adapter)`` loads it.

Engine keys (:class:`TransformersArgs`, one definition of their defaults) are the config's keys besides ours
(:class:`ocrvl_ray.train.config.TrainConfig`); an unknown one is refused. This package's ``__init__`` imports
neither torch nor Ray (the driver's pre-flight runs it); ``data.py``, ``model.py``, ``loop.py`` need ``.venv-torch``.
"""
from __future__ import annotations

import difflib
import importlib.util
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ocrvl_ray.core import generations
from ocrvl_ray.core.config import ConfigError, validation_message
from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.core.generations import ModelVersion

ADAPTER_DIR = "adapter"
#: ``lora_target_modules`` items that name a part of the model (PEFT regexes over transformers' module names);
#: any other item is handed to PEFT as is (a module-name suffix such as ``q_proj``).
PARTS = {"language": r".*language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)",
         "vision": r".*visual\.vision_model\.encoder\.layers\.\d+\.(self_attn\.(q|k|v|out)_proj|mlp\.fc[12])",
         "projector": r".*projector\.linear_[12]"}


def _paths(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return [str(v).strip() for v in items if str(v).strip()]


class TransformersArgs(BaseModel):
    """The engine's keys (besides ours); names follow erniekit/PaddleFormers where they have one."""
    model_config = ConfigDict(extra="forbid")

    model_name_or_path: str = Field(description="the base PaddleOCR-VL folder (hub layout or an ocrvl merge export)")
    output_dir: str = Field(description="where rank 0 writes the final PEFT adapter folder")
    train_lmdb_paths: list[str] = Field(description="our LMDBs (comma list); a sharded one gives rank r shards r::world")
    eval_lmdb_paths: list[str] = Field([], description="LMDBs for eval loss every eval_steps (never augmented)")
    model_version: Optional[ModelVersion] = Field(None, description="null: detected from model_name_or_path")
    template: Optional[str] = Field(None, description="checked only: must be the generation's chat template")
    prompt: Optional[str] = Field(None, description="user prompt of every sample; null: the generation's OCR prompt")
    augment: Union[bool, dict[str, Any]] = Field(True, description="true: upstream 1.5's augmentation; false; or a "
                                                                   "mapping of lmdb_plugin.UPSTREAM_AUGMENT keys")
    max_seq_len: int = Field(16384, ge=8, description="longer samples (image + prompt + label) are skipped, counted")
    strategy: Literal["ddp", "fsdp"] = Field("ddp", description="fsdp: shard model + optimizer state over workers")
    lora_rank: int = Field(8, ge=1)
    lora_alpha: Optional[float] = Field(None, description="null: 2 * lora_rank (erniekit's rule)")
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    lora_target_modules: list[str] = Field(["language"], description="language, vision, projector or PEFT names")
    learning_rate: float = Field(1e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, ge=0, description="0: no clipping")
    lr_scheduler_type: Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
                               "constant_with_warmup", "inverse_sqrt"] = Field("cosine", description="transformers' "
                                                                                                   "get_scheduler")
    warmup_steps: int = Field(0, ge=0)
    max_steps: int = Field(-1, description="-1: num_train_epochs over the smallest rank's samples")
    num_train_epochs: float = Field(1.0, gt=0)
    per_device_train_batch_size: int = Field(1, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    logging_steps: int = Field(10, ge=1)
    save_steps: int = Field(500, ge=1)
    eval_steps: int = Field(500, ge=1)
    seed: int = 42
    gradient_checkpointing: bool = False
    bf16: Optional[bool] = Field(None, description="null: bf16 weights on GPU, float32 on CPU")

    @field_validator("train_lmdb_paths", "eval_lmdb_paths", "lora_target_modules", mode="before")
    @classmethod
    def _comma_list(cls, v):
        return _paths(v)

    @property
    def alpha(self) -> float:
        return self.lora_alpha if self.lora_alpha is not None else 2.0 * self.lora_rank

    def target_modules(self) -> Union[str, list[str]]:
        """PEFT's ``target_modules``: one regex when any part name is used, else the names as given."""
        if not any(t in PARTS for t in self.lora_target_modules):
            return list(self.lora_target_modules)
        return "|".join(PARTS.get(t, rf".*\b{t}") for t in self.lora_target_modules)


def parse_args(config: dict[str, Any]) -> TransformersArgs:
    """The engine keys of a training config dict, one-line ConfigError on a bad or unknown key."""
    unknown = sorted(set(config) - set(TransformersArgs.model_fields))
    if unknown:
        near = difflib.get_close_matches(unknown[0], sorted(TransformersArgs.model_fields), n=1)
        raise ConfigError(f"unknown config key {unknown[0]!r} for engine=transformers"
                          + (f"; did you mean {near[0]!r}?" if near else "")
                          + " (its keys: TransformersArgs in ocrvl_ray/train/engines/transformers, "
                            "docs/train_transformers.md)")
    try:
        args = TransformersArgs.model_validate(config)
    except ValidationError as e:
        raise ConfigError(validation_message(e, "engine=transformers config")) from None
    if not args.train_lmdb_paths:
        raise ConfigError("engine=transformers needs train_lmdb_paths=/path/train_layout.lmdb[,...] (our LMDBs)")
    return args


def generation(args: TransformersArgs) -> tuple[generations.Generation, str]:
    """(generation, evidence): model_version or detection from the base; v1's template on 1.5+ refused."""
    gen, evidence = generations.resolve(args.model_version, args.model_name_or_path)
    generations.check_template(gen, args.template)
    return gen, evidence


def check_installed() -> None:
    """torch, transformers (with PaddleOCR-VL) and peft must be importable here."""
    missing = [m for m in ("torch", "transformers", "peft") if importlib.util.find_spec(m) is None]
    if missing:
        raise OcrvlError(f"engine=transformers needs {', '.join(missing)} (not installed here); run it from the "
                         "torch venv: .venv-torch/bin/ocrvl train ... (./install.sh torch)")


def check_config(config: dict[str, Any], world: int) -> TransformersArgs:
    """Driver pre-flight: keys, generation/template, LMDBs and shards for ``world`` ranks, augmentation knobs."""
    from ocrvl_ray.lmdb.shards import assign, expand
    from ocrvl_ray.train.engines.lmdb_plugin import augment_params

    args = parse_args(config)
    if not Path(args.model_name_or_path).is_dir():
        raise ConfigError(f"model_name_or_path={args.model_name_or_path}: not a folder (a PaddleOCR-VL base in the "
                          "hub layout or an ocrvl merge export)")
    generation(args)
    augment_params(args.augment)
    both = {str(Path(p).resolve()) for p in args.train_lmdb_paths} & {str(Path(p).resolve()) for p in args.eval_lmdb_paths}
    if both:
        raise ConfigError(f"eval_lmdb_paths: {sorted(both)[0]} is also a train LMDB; eval on held-out data (the "
                          "layout job's valid split)")
    for key in ("train_lmdb_paths", "eval_lmdb_paths"):
        for path in getattr(args, key):
            shards = expand(path)
            for s in shards:
                if not (Path(s) / "data.mdb").is_file():
                    raise ConfigError(f"{key}: {s} is not an LMDB (no data.mdb); write it with `ocrvl layout`")
            if key == "train_lmdb_paths":
                try:
                    assign(shards, 0, world)
                except OcrvlError as e:
                    raise ConfigError(f"train_lmdb_paths: {path}: {e}") from None
    return args
