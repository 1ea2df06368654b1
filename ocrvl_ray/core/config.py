"""The one config loader: defaults < YAML < environment (FAST_*) < ``key=value`` command line.

``key=value`` is parsed by erniekit's own parser (``OmegaConf.from_cli``) for every command: ``3`` int,
``0.5`` float, ``true`` bool, ``[a,b]`` list, ``null``, nested keys with dots (``layout.device=gpu:0``).
One deviation: ``key=`` is the empty string (erniekit: null). Unknown keys are an error that names the
key and the closest valid one. Job configs live next to their job (``layout/config.py``,
``train/config.py``, ``end_to_end.py``).

Every ``ocrvl`` command is one of these configs: :func:`parse_argv` reads its command line (``key=value``, the
same key as ``--key-name VALUE``, bare paths for its positional keys, a YAML) and :func:`describe_keys` writes
its ``--help`` (``ocrvl_ray/cli``).
"""
from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import textwrap
import typing
from pathlib import Path
from types import UnionType
from typing import Any, ClassVar, Mapping, Sequence, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from ocrvl_ray.core.errors import OcrvlError

T = TypeVar("T", bound="JobConfig")


class ConfigError(OcrvlError, ValueError):
    """A one-line, user-facing configuration problem."""


class JobConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    #: FAST_* environment variable -> (dotted key, converter); subclasses fill it in.
    ENV_OVERRIDES: ClassVar[dict[str, tuple[str, Any]]] = {}
    #: old key -> what replaced it; a config that still uses the old key is refused with this hint.
    RENAMED: ClassVar[dict[str, str]] = {}


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["a=1", "b.c=x"]`` -> ``{"a": 1, "b": {"c": "x"}}``, values typed as ``erniekit train`` types them."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not key=value (e.g. output=/data/out.lmdb)")
        try:
            parsed = OmegaConf.to_container(OmegaConf.from_dotlist([f"v={value}"]))["v"] if value else ""
        except OmegaConfBaseException as e:
            raise ConfigError(f"override {item!r}: cannot parse the value: {str(e).splitlines()[0]}") from None
        set_dotted(out, key, parsed)
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
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {p} is not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {p} is not valid YAML{yaml_error_where(e)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping of key: value, got {type(data).__name__}")
    return data


def yaml_error_where(e: Exception) -> str:
    """``" at line L column C: problem"`` (1-based, as editors count) of a PyYAML error."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    problem = getattr(e, "problem", None) or getattr(e, "context", None) or str(e).splitlines()[0]
    where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
    return f"{where}: {problem}"


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


def _cli_value(v: Any) -> str:
    """A value as one types it after ``key=`` (``null``, ``true``, ``[a,b]``)."""
    if isinstance(v, BaseModel):
        v = v.model_dump(mode="json")
    if v is None or isinstance(v, (bool, int, float, list, dict)):
        return json.dumps(v, ensure_ascii=False).replace(", ", ",").replace('"', "")
    return str(v) if str(v) else "''"


def _choices(annotation: Any) -> list[Any]:
    """The allowed values of a ``Literal`` field (also inside ``Optional`` / ``Annotated``), else []."""
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    if typing.get_origin(annotation) is typing.Annotated:
        return _choices(typing.get_args(annotation)[0])
    return [c for a in typing.get_args(annotation) if a is not type(None) for c in _choices(a)]


def describe_keys(model: type[BaseModel]) -> list[str]:
    """One aligned line per config key of ``model`` (nested sections as dotted keys): ``key=default``, the
    field's description, its allowed values and the environment variable that sets it."""
    env = {dotted: var for var, (dotted, _) in getattr(model, "ENV_OVERRIDES", {}).items()}
    rows: list[tuple[str, str]] = []

    def walk(cls: type[BaseModel], defaults: BaseModel | None, prefix: str) -> None:
        for name, f in cls.model_fields.items():
            key = prefix + name
            if defaults is not None:
                default = getattr(defaults, name)
            elif f.is_required():
                default = "(required)"
            else:
                default = f.get_default(call_default_factory=True)
            sub = _submodel(f.annotation)
            if sub is not None and (isinstance(default, BaseModel) or default is None):
                walk(sub, default if isinstance(default, BaseModel) else None, key + ".")
                continue
            choices = _choices(f.annotation)
            notes = ["one of " + "|".join(_cli_value(c) for c in choices) if choices else "",
                     f.description or "", f"env {env[key]}" if key in env else ""]
            rows.append((f"{key}={_cli_value(default)}", "; ".join(n for n in notes if n)))

    walk(model, None, "")
    width = min(max(len(k) for k, _ in rows), 34)
    out = []
    for k, d in rows:
        lines = textwrap.wrap(d, width=max(40, 110 - width)) or [""]
        first = [f"{k:<{width}}  {lines[0]}"] if len(k) <= width else [k, f"{'':<{width}}  {lines[0]}"]
        out += [ln.rstrip() for ln in first + [f"{'':<{width}}  {ln}" for ln in lines[1:]]]
    return out


def _check_unknown(model: type[BaseModel], data: Mapping, prefix: str = "") -> None:
    fields = model.model_fields
    renamed = getattr(model, "RENAMED", {})
    for key, value in data.items():
        if key in renamed:
            raise ConfigError(f"config key {prefix + str(key)!r} was renamed: {renamed[key]}")
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
    if err["type"] == "missing":
        return f"config key {key_prefix + loc!r} is required (give {key_prefix + loc}=...)"
    if not loc:
        return f"invalid {what}: {msg}"
    return f"config key {key_prefix + loc!r}: {msg} (got {err.get('input')!r})"


def _flag_kind(annotation: Any) -> str | None:
    """How a top-level key reads as a ``--flag``: ``bool`` (no value; ``--no-KEY`` for false), ``list`` (the values
    up to the next option or key=value), ``bool|str`` (an optional value), ``value`` (one value); None: only
    key=value (config sections, mappings)."""
    args = [a for a in (typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, UnionType)
                        else (annotation,)) if a is not type(None)]
    if any(_submodel(a) or a is dict or typing.get_origin(a) is dict for a in args):
        return None
    if args == [bool]:
        return "bool"
    if bool in args:
        return "bool|str"
    if any(a is list or typing.get_origin(a) is list for a in args):
        return "list"
    return "value"


def _takes_text(annotation: Any) -> bool:
    """Whether a key accepts text as typed (``str``, a ``Literal`` of strings, a validated ``Annotated`` type);
    other flag values are typed as ``key=value`` types them (``--index-base 0`` is the number 0)."""
    origin = typing.get_origin(annotation)
    if annotation is str or origin is typing.Annotated:
        return True
    if origin is typing.Literal:
        return any(isinstance(c, str) for c in typing.get_args(annotation))
    return origin in (typing.Union, UnionType) and any(_takes_text(a) for a in typing.get_args(annotation))


def flag_names(model: type[BaseModel], aliases: Mapping[str, str] = {}) -> dict[str, str]:
    """``--flag`` -> top-level key: every key with a flag form as ``--key-name``, plus ``aliases``."""
    out = {f"--{name.replace('_', '-')}": name for name, f in model.model_fields.items() if _flag_kind(f.annotation)}
    return {**out, **aliases}


def parse_argv(model: type[BaseModel], argv: Sequence[str], *, positionals: Sequence[str] = (), yaml: bool = False,
               aliases: Mapping[str, str] = {}) -> tuple[str | None, dict[str, Any]]:
    """A command line -> (YAML path or None, overrides for :func:`load_config`).

    ``key=value`` is the one form of every key; ``--key-name VALUE`` (``--key-name=VALUE``) is the same key
    (booleans: ``--key`` / ``--no-key``; a list key takes the values up to the next option or key=value), as
    are the ``aliases`` (an alias of a list key adds one value per use, e.g. ``--model a --model b``). Bare
    arguments fill ``positionals`` in order (a list key takes the rest); with ``yaml`` a bare ``*.yaml`` /
    ``*.yml`` is the config file. A flag's value stays text where the key takes text (paths such as ``007``),
    else it is typed as ``key=value`` types it.
    """
    fields = model.model_fields
    flags = flag_names(model, aliases)
    yaml_path, given, bare, tokens = None, {}, [], []
    i = 0
    while i < len(argv):
        tok = argv[i]
        i += 1
        if tok.startswith("-") and len(tok) > 1 and not tok[1].isdigit():
            flag, eq, inline = tok.partition("=")
            flag = flag.replace("_", "-")
            base = flags.get("--" + flag[5:]) if flag.startswith("--no-") and flag not in flags else None
            negate = base is not None and _flag_kind(fields[base].annotation) in ("bool", "bool|str")
            key = base if negate else flags.get(flag)
            if key is None:
                close = difflib.get_close_matches(flag, list(flags), n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else f"; use key=value ({', '.join(fields)})"
                raise ConfigError(f"unknown option {flag!r}{hint}")
            kind = _flag_kind(fields[key].annotation)
            if negate or kind == "bool":
                given[key] = (not negate) if not eq else inline
            elif kind == "bool|str":
                take = not eq and i < len(argv) and not argv[i].startswith("-") and "=" not in argv[i]
                given[key] = inline if eq else (argv[i] if take else True)
                i += take
            elif kind == "list" and flag in aliases:       # one value per use
                if not eq and i >= len(argv):
                    raise ConfigError(f"option {flag} needs a value")
                given.setdefault(key, []).append(inline if eq else argv[i])
                i += not eq
            elif kind == "list":
                values = [inline] if eq else []
                while not eq and i < len(argv) and not argv[i].startswith("--") and "=" not in argv[i]:
                    values.append(argv[i])
                    i += 1
                if not values:
                    raise ConfigError(f"option {flag} needs at least one value")
                given[key] = values
            else:
                if not eq and i >= len(argv):
                    raise ConfigError(f"option {flag} needs a value")
                raw = inline if eq else argv[i]
                given[key] = raw if _takes_text(fields[key].annotation) else parse_overrides([f"v={raw}"])["v"]
                i += not eq
        elif "=" in tok:
            tokens.append(tok)
        elif yaml and yaml_path is None and tok.endswith((".yaml", ".yml")):
            yaml_path = tok
        else:
            bare.append(tok)
    for n, key in enumerate(positionals):
        if n >= len(bare):
            break
        if _flag_kind(fields[key].annotation) == "list":
            given[key], bare = bare[n:], bare[:n]
            break
        given[key] = bare[n]
    if len(bare) > len(positionals):
        what = ("a .yaml config, " if yaml else "") + (f"{', '.join(positionals)}, " if positionals else "")
        raise ConfigError(f"argument {bare[len(positionals)]!r} is not {what}key=value or --option")
    return yaml_path, deep_merge(given, parse_overrides(tokens))


_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def parse_size(text: str) -> int:
    """``"5GB"`` -> 5_000_000_000, ``"500MiB"`` -> 524_288_000 (the units transformers uses)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?\s*", text, flags=re.I)
    if not m:
        raise ConfigError(f"size {text!r} is not like 5GB, 500MB or 2GiB")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "").upper()])


TRUTHY = frozenset({"1", "true", "t", "yes", "y", "on"})


def truthy(v: Any) -> bool:
    """True, a non-zero number, or a string such as "1", "true", "yes", "on" (any case, padded)."""
    return v is True or (isinstance(v, (int, float)) and not isinstance(v, bool) and v != 0) or \
        (isinstance(v, str) and v.strip().lower() in TRUTHY)


def config_hash(obj: Any) -> str:
    """The one config fingerprint: 16 hex of SHA-1 over canonical JSON (pydantic models are dumped first)."""
    if isinstance(obj, BaseModel):
        obj = obj.model_dump(mode="json")
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]
