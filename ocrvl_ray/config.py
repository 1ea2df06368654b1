"""Typed job configs: defaults < YAML < FAST_* environment < ``key=value`` command line.

``key=value`` follows the ``erniekit train`` convention: values are parsed as YAML scalars
(``3`` int, ``0.5`` float, ``true`` bool, ``[a,b]`` list), nested keys use dots (``layout.device=gpu:0``).
Unknown keys are an error that names the key and the closest valid one.
"""
from __future__ import annotations

import difflib
import os
import typing
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from ocrvl_ray.errors import OcrvlError

T = TypeVar("T", bound="JobConfig")


class ConfigError(OcrvlError, ValueError):
    """A one-line, user-facing configuration problem."""


class JobConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    #: FAST_* environment variable -> (dotted key, converter); subclasses fill it in.
    ENV_OVERRIDES: ClassVar[dict[str, tuple[str, Any]]] = {}


def parse_value(text: str) -> Any:
    """A command-line value as erniekit/OmegaConf reads it: a YAML scalar or flow collection."""
    try:
        return yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        return text


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["a=1", "b.c=x"]`` -> ``{"a": 1, "b": {"c": "x"}}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not key=value (e.g. output=/data/out.lmdb)")
        set_dotted(out, key, parse_value(value))
    return out


def set_dotted(d: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for p in parts[:-1]:
        nxt = d.get(p)
        if not isinstance(nxt, dict):
            nxt = d[p] = {}
        d = nxt
    d[parts[-1]] = value


def deep_merge(base: dict, over: Mapping) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


def load_yaml(path: str | os.PathLike) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist (pass a YAML file or only key=value overrides)")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {p} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping of key: value, got {type(data).__name__}")
    return data


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The config section class of a field (``Section`` or ``Optional[Section]``), else None."""
    for ann in (annotation, *typing.get_args(annotation)):
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            return ann
    return None


def _valid_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, f in model.model_fields.items():
        keys.append(prefix + name)
        sub = _submodel(f.annotation)
        if sub is not None:
            keys += _valid_keys(sub, prefix + name + ".")
    return keys


def _check_unknown(model: type[BaseModel], data: Mapping, prefix: str = "") -> None:
    fields = model.model_fields
    for key, value in data.items():
        if key not in fields:
            full = prefix + str(key)
            valid = _valid_keys(model, prefix)
            close = difflib.get_close_matches(full, valid, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(valid[:12])}"
            raise ConfigError(f"unknown config key {full!r}{hint}")
        sub = _submodel(fields[key].annotation)
        if sub is not None and isinstance(value, Mapping):
            _check_unknown(sub, value, prefix + key + ".")


def env_overrides(cls: type[JobConfig], env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for var, (dotted, conv) in cls.ENV_OVERRIDES.items():
        raw = env.get(var)
        if raw is None or raw == "":
            continue
        try:
            value = conv(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"environment variable {var}={raw!r} is not valid for {dotted}") from None
        if value is not None:
            set_dotted(out, dotted, value)
    return out


def load_config(cls: type[T], yaml_path: str | os.PathLike | None = None,
                overrides: Sequence[str] | Mapping[str, Any] = (),
                env: Mapping[str, str] | None = None) -> T:
    """Build ``cls`` with precedence command line > environment > YAML > defaults."""
    data: dict[str, Any] = load_yaml(yaml_path) if yaml_path else {}
    data = deep_merge(data, env_overrides(cls, os.environ if env is None else env))
    if isinstance(overrides, Mapping):   # nested and/or dotted keys, values already typed
        cli: dict[str, Any] = {}
        for key, value in overrides.items():
            set_dotted(cli, str(key), value)
    else:
        cli = parse_overrides(overrides)
    data = deep_merge(data, cli)
    _check_unknown(cls, data)
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise ConfigError(validation_message(e, cls.__name__)) from None


def validation_message(e: ValidationError, what: str, key_prefix: str = "") -> str:
    """pydantic's first error as one line: ``config key 'a.b': <problem> (got <value>)``."""
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    msg = err["msg"].removeprefix("Value error, ")
    if not loc:
        return f"invalid {what}: {msg}"
    return f"config key {key_prefix + loc!r}: {msg} (got {err.get('input')!r})"


def split_cli_args(argv: Sequence[str]) -> tuple[str | None, list[str]]:
    """``[config.yaml] [key=value ...]`` -> (yaml path or None, overrides)."""
    yaml_path, rest = None, []
    for a in argv:
        if "=" not in a and yaml_path is None and a.endswith((".yaml", ".yml")):
            yaml_path = a
        elif "=" in a:
            rest.append(a)
        else:
            raise ConfigError(f"argument {a!r} is neither a .yaml config nor key=value")
    return yaml_path, rest


def truthy(text: str) -> bool:
    return str(text).strip().lower() in {"1", "true", "t", "yes", "y", "on"}


# --------------------------------------------------------------------------------------------
# Layout job
# --------------------------------------------------------------------------------------------
from typing import Literal, Optional  # noqa: E402

from pydantic import Field, model_validator  # noqa: E402


def _debug_limit(raw: str) -> int:
    """FAST_DEBUG: truthy -> 500 pages (the original's debug size), an integer > 1 -> that many, falsy -> all."""
    raw = raw.strip()
    if raw.isdigit() and int(raw) > 1:
        return int(raw)
    return 500 if truthy(raw) else 0


class ActorPool(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_actors: int = Field(1, ge=1)
    max_actors: int = Field(1, ge=1)
    batch_size: int = Field(8, ge=1)
    num_gpus: Optional[float] = Field(None, ge=0, description="per actor; None = 1 on a GPU device, else 0")
    num_cpus: float = Field(0.25, ge=0, description="per actor, for scheduling; small so decode/compose tasks keep CPUs")


class LayoutModelConfig(ActorPool):
    model_name: str = "PP-DocLayoutV2"
    model_dir: Optional[str] = None          # None: paddleocr downloads the official weights (needs internet)
    device: str = "cpu"                       # "cpu", "gpu" or "gpu:N"
    threshold: float = Field(0.5, ge=0, le=1)
    table_threshold: float = Field(0.3, ge=0, le=1)  # per-class threshold for `table`, same single pass
    layout_nms: bool = True


class CellModelConfig(ActorPool):
    enabled: bool = True
    model_name: Literal["RT-DETR-L_wired_table_cell_det", "RT-DETR-L_wireless_table_cell_det"] = \
        "RT-DETR-L_wired_table_cell_det"
    model_dir: Optional[str] = None
    device: str = "cpu"
    threshold: float = Field(0.3, ge=0, le=1)
    max_side: int = Field(1280, ge=32)        # table crops are downscaled to this before detection


class LayoutConfig(JobConfig):
    manifest: Optional[str] = None            # None: the bundled sample dataset
    output: str = "./out/sample_layout.lmdb"
    demo_models: bool = False                 # build tiny offline models instead of the official ones
    limit: int = Field(0, ge=0)               # pages to process (0 = all); FAST_DEBUG
    gpu_id: Optional[int] = Field(None, ge=0)  # FAST_GPU_ID: turns device "gpu" into "gpu:N"
    layout: LayoutModelConfig = Field(default_factory=LayoutModelConfig)
    cells: CellModelConfig = Field(default_factory=CellModelConfig)
    jpeg_quality: int = Field(80, ge=1, le=100)
    # crop masking (docs/compose.md): "all" keeps only the label's words (the original), "words" hides only
    # annotated words the label lacks, "none" leaves crops as they are
    mask: Literal["all", "words", "none"] = "all"
    inpaint: Optional[bool] = None            # old key (FAST_INPAINT): false = mask "none", true = mask "all"
    recipes: dict[str, dict[str, Any]] = Field(default_factory=dict)  # per-dataset recipe overrides
    index_base: Literal[0, 1] = 1             # 1: erniekit reader; 0: the original FAST tools
    label_format: Literal["pickle", "text"] = "pickle"
    max_pixels: int = Field(120_000_000, ge=1)  # decompression-bomb guard
    decode_batch_size: int = Field(8, ge=1)
    compose_batch_size: int = Field(8, ge=1)
    # what decode passes downstream: "array" (decoded page; fastest on one node, bench/layout.py) or
    # "bytes" (the encoded file, ~10x fewer bytes; use it when stages run on different nodes)
    handoff: Literal["bytes", "array"] = "array"
    write_batch_pages: int = Field(64, ge=1)  # pages bundled into one LMDB write task (commit granularity)
    num_cpus: Optional[int] = None            # local runs only: logical CPUs for the local Ray
    num_gpus: Optional[int] = None
    progress: bool = True
    report_html: bool = True                  # write <output>.report.html (ocrvl inspect) after the run

    ENV_OVERRIDES: ClassVar[dict[str, tuple[str, Any]]] = {
        "FAST_LAYOUT_DEVICE": ("layout.device", str),
        "FAST_TABLE_DEVICE": ("cells.device", str),
        "FAST_LAYOUT_MODEL": ("layout.model_name", str),
        "FAST_TABLE_LAYOUT_THR": ("layout.table_threshold", float),
        "FAST_DEBUG": ("limit", _debug_limit),
        "FAST_JPEG_QUALITY": ("jpeg_quality", int),
        "FAST_INPAINT": ("inpaint", truthy),
        "FAST_GPU_ID": ("gpu_id", int),
    }

    @model_validator(mode="before")
    @classmethod
    def _inpaint_to_mask(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("inpaint") is not None:
            old = "all" if truthy(data["inpaint"]) else "none"
            if data.get("mask", old) != old:
                raise ValueError(f"inpaint={str(data['inpaint']).lower()} (old key) contradicts mask={data['mask']}; "
                                 f"drop inpaint, mask replaces it")
            data = {**data, "mask": old}
        return data

    @model_validator(mode="after")
    def _apply_gpu_id(self) -> "LayoutConfig":
        if self.gpu_id is not None:
            for sub in (self.layout, self.cells):
                if sub.device == "gpu":
                    sub.device = f"gpu:{self.gpu_id}"
        for name, sub in (("layout", self.layout), ("cells", self.cells)):
            if not (sub.device == "cpu" or sub.device == "gpu" or
                    (sub.device.startswith("gpu:") and sub.device[4:].isdigit())):
                raise ValueError(f"{name}.device must be cpu, gpu or gpu:N, got {sub.device!r}")
            if sub.min_actors > sub.max_actors:
                raise ValueError(f"{name}.min_actors ({sub.min_actors}) > {name}.max_actors ({sub.max_actors})")
        return self


def actor_gpus(pool: ActorPool, device: str) -> float:
    """GPUs one actor requests: explicit ``num_gpus``, else 1 on a GPU device, else 0."""
    if pool.num_gpus is not None:
        return pool.num_gpus
    return 1.0 if device.startswith("gpu") else 0.0
