"""The training config: erniekit's YAML + ``key=value`` overrides, with our Ray keys beside them.

Parsing is erniekit's own (``erniekit/hparams/parser.py::read_args``): the YAML is read with
``yaml.safe_load``, the overrides with ``core.config.parse_overrides`` (``OmegaConf.from_cli``, the parser
every ``ocrvl`` command uses) and merged over it as a plain dict. Our keys (:data:`OUR_KEYS`) are popped out of that dict and validated by :class:`TrainConfig`;
everything else goes to the entry (erniekit) untouched. Precedence for our keys: command line >
environment (``ERNIE_ROOT``) > YAML > defaults.
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Sequence

from pydantic import Field, ValidationError, model_validator

from ocrvl_ray.core.config import (ConfigError, JobConfig, deep_merge, env_overrides, load_yaml, parse_overrides,
                                   set_dotted, validation_message)
from ocrvl_ray.core.generations import ModelVersion

DEFAULT_ENTRY = "ocrvl_ray.train.entries:erniekit"
PADDLEFORMERS_ENTRY = "ocrvl_ray.train.engines.paddleformers:paddleformers_sft"
#: engine=transformers: the TorchTrainer's per-worker loop (``ocrvl_ray.train.engines.transformers``).
TRANSFORMERS_ENTRY = "ocrvl_ray.train.engines.transformers.loop:train_loop"


class TrainConfig(JobConfig):
    """Our keys; they sit beside erniekit's in the same YAML / ``key=value`` syntax."""
    num_workers: int = Field(1, ge=1, description="in-process: one per GPU; launcher: one per node")
    use_gpu: Optional[bool] = Field(None, description="null: use GPUs when the cluster has any")
    gpus_per_worker: int = Field(1, ge=1, description="launcher mode: GPUs per node")
    cpus_per_worker: float = Field(1.0, ge=0, description="CPUs per worker")
    storage_path: Optional[str] = Field(None, description="local path, NFS or cloud URI; null: ~/ray_results")
    run_name: Optional[str] = Field(None, description="null: the basename of output_dir (re-running resumes)")
    max_failures: int = Field(1, ge=-1, description="worker-group restarts; -1 = unlimited")
    num_to_keep: Optional[int] = Field(None, ge=1, description="checkpoints kept in storage; null = all")
    entry: str = Field(DEFAULT_ENTRY, description="module:function called in every worker with the config dict")
    ernie_root: Optional[str] = Field(None, description="the ERNIE checkout (ernie/, data_processor/, erniekit/)")
    mode: Literal["in-process", "launcher"] = Field("in-process", description="launcher: paddle.distributed.launch "
                                                                             "per node (docs/train.md)")
    watch_interval_s: float = Field(2.0, gt=0, description="how often output_dir is scanned for checkpoint-N")
    preflight: bool = Field(True, description="audit the config before starting Ray Train")
    metrics_log: Optional[str] = Field(None, description="JSONL of every report (step, loss, lr, checkpoint, "
                                                         "errors)")
    engine: Literal["erniekit", "paddleformers", "transformers"] = Field(
        "erniekit", description="paddleformers: PaddleFormers 1.x (own venv); transformers: PyTorch + PEFT LoRA under "
                                "TorchTrainer (.venv-torch, docs/train_transformers.md)")
    model_version: Optional[ModelVersion] = Field(
        None, description="PaddleOCR-VL generation (engine=paddleformers: its chat template and prompts); null = "
                          "detected from model_name_or_path's files; handed to the entry as well")

    ENV_OVERRIDES = {"ERNIE_ROOT": ("ernie_root", str)}

    @model_validator(mode="after")
    def _engine_entry(self):
        if self.engine == "paddleformers" and self.entry == DEFAULT_ENTRY:
            self.entry = PADDLEFORMERS_ENTRY
        if self.engine == "transformers":
            if self.entry == DEFAULT_ENTRY:
                self.entry = TRANSFORMERS_ENTRY
            if self.mode != "in-process":
                raise ValueError("engine=transformers runs one Ray Train worker per GPU: drop mode=launcher")
        return self


OUR_KEYS = frozenset(TrainConfig.model_fields)
#: A key that is not ours, not in the YAML, and at least this close (difflib ratio) to one of ours is taken for a
#: typo of ours (``num_worker=2``) and refused. No training argument of the erniekit fork or of PaddleFormers 1.2
#: comes this close (nearest: PaddleFormers' ``muon_version`` to ``model_version``, 0.8; the engines' suites check).
NEAR_OURS = 0.85


def typos_of_ours(keys, known=()) -> list[tuple[str, str]]:
    """(key, our key it resembles) for every key outside ``OUR_KEYS`` and ``known`` that is a near miss of ours."""
    found = []
    for key in keys:
        if key not in OUR_KEYS and key not in known:
            near = difflib.get_close_matches(key, sorted(OUR_KEYS), n=1, cutoff=NEAR_OURS)
            if near:
                found.append((key, near[0]))
    return found


def _overrides(overrides: Sequence[str] | Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(overrides, Mapping):
        return parse_overrides(overrides)
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        set_dotted(out, str(key), value)
    return out


def erniekit_args(yaml_path: str | os.PathLike | None, overrides: Sequence[str] | Mapping[str, Any]) -> dict[str, Any]:
    """What ``erniekit train YAML k=v ...`` hands to its tuner, as a plain dict (``overrides``: ``k=v`` texts,
    or a mapping of already typed values)."""
    return deep_merge(load_yaml(yaml_path) if yaml_path else {}, _overrides(overrides))


def load_train_config(yaml_path: str | os.PathLike | None = None, overrides: Sequence[str] | Mapping[str, Any] = (),
                      env: Mapping[str, str] | None = None, cwd: str | os.PathLike | None = None,
                      ) -> tuple[TrainConfig, dict[str, Any]]:
    """(our typed keys, erniekit's dict). Relative local paths (``output_dir``, ``logging_dir``,
    ``storage_path``, ``metrics_log``) become absolute against ``cwd``: Ray workers do not share the
    driver's working directory."""
    from_yaml = load_yaml(yaml_path) if yaml_path else {}
    merged = erniekit_args(yaml_path, overrides)
    cli_keys = set(_overrides(overrides))
    typos = typos_of_ours(sorted(cli_keys), known=from_yaml)
    if typos:
        key, ours_key = typos[0]
        raise ConfigError(f"unknown config key {key!r}; did you mean {ours_key!r}? (other keys go to the entry "
                          "unchecked; a key of the entry's own that looks like this one belongs in the YAML)")
    ours_yaml = {k: from_yaml[k] for k in OUR_KEYS if k in from_yaml}
    ours_cli = {k: merged[k] for k in OUR_KEYS if k in merged and k in cli_keys}
    data = deep_merge(deep_merge(ours_yaml, env_overrides(TrainConfig, os.environ if env is None else env)),
                      ours_cli)
    try:
        ours = TrainConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(validation_message(e, "train config")) from None
    rest = {k: v for k, v in merged.items() if k not in OUR_KEYS}
    if ours.model_version:
        rest["model_version"] = ours.model_version
    base = Path(cwd or os.getcwd())
    for key in ("storage_path", "metrics_log"):
        value = getattr(ours, key)
        if value and "://" not in value:
            setattr(ours, key, str((base / value).resolve()))
    for key in ("output_dir", "logging_dir"):
        if isinstance(rest.get(key), str) and rest[key] and "://" not in rest[key]:
            rest[key] = str((base / rest[key]).resolve())
    return ours, rest


def run_name_for(ours: TrainConfig, args: Mapping[str, Any]) -> str:
    """The Ray Train run name: ``run_name`` or the basename of ``output_dir``."""
    if ours.run_name:
        return ours.run_name
    out = str(args.get("output_dir") or "").rstrip("/")
    return os.path.basename(out) or "ocrvl-train"
