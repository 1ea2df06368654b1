"""Pre-flight for the user's erniekit fork: the traps it hides, found before any worker starts.

* Unknown keys: ``PdArgumentParser.parse_dict`` drops them silently (``train_lmdb_path=`` trains on the
  YAML's data). Checked against the fork's own argument dataclasses, read in a subprocess
  (:func:`fork_fields`), so the driver never imports the fork.
* Booleans where the field is not one: YAML 1.1 reads ``no``/``off``/``yes``/``on`` as booleans
  (``evaluation_strategy=no`` is False).
* Ignored settings: ``train_dataset_path`` while ``train_lmdb_paths`` is set; ``do_eval=False`` while
  ``evaluation_strategy`` still evaluates; ``lr_scheduler_type`` (the OCR-VL trainer reads ``lr_scheduler``).
* One LMDB opened twice in a process (train and eval readers): py-lmdb >= 2 refuses it.
* VisualDL reporting (erniekit's default) with protobuf >= 7 crashes on its first hparams record.
* The checkout (``ernie_root``) and the base model (``model_name_or_path``) are named or present, checked with
  the rest so that one run lists every problem.
"""
from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Mapping

from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.export.merge import is_weight_file
from ocrvl_ray.train.entries import ernie_checkout
from ocrvl_ray.train.preflight import Finding
from ocrvl_ray.train.rank_data import items
from ocrvl_ray.lmdb.shards import expand, is_sharded

_FIELDS_CODE = """
import dataclasses, json, sys
sys.path.insert(0, sys.argv[1])
from erniekit.hparams.parser import _TRAIN_ARGS
print(json.dumps({f.name: str(f.type) for cls in _TRAIN_ARGS for f in dataclasses.fields(cls)}))
"""
#: Reporting integrations that mean VisualDL with paddleformers 0.3 (None -> "visualdl").
_VISUALDL = {None, "visualdl", "all"}


def fork_fields(ernie_root: str | os.PathLike, python: str = sys.executable) -> dict[str, str]:
    """``{key: type}`` of every field of the fork's training argument dataclasses (erniekit's
    ``_TRAIN_ARGS``), imported in a subprocess of ``python``; RuntimeError with its last line."""
    res = subprocess.run([python, "-c", _FIELDS_CODE, str(ernie_root)], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if res.returncode != 0:
        lines = res.stderr.strip().splitlines()
        raise RuntimeError(lines[-1] if lines else f"exit {res.returncode}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def check_keys(args: Mapping[str, Any], fields: Mapping[str, str]) -> list[Finding]:
    """Unknown keys (with the nearest known one) and booleans given to non-boolean fields."""
    found = []
    for key in sorted(k for k in args if k not in fields):
        near = difflib.get_close_matches(key, list(fields), n=1)
        hint = f"did you mean {near[0]}?" if near else "remove it"
        found.append(Finding("error", f"unknown key {key}: erniekit ignores it silently; {hint}"))
    for key, value in args.items():
        if isinstance(value, bool) and key in fields and "bool" not in fields[key]:
            word = "no" if value is False else "yes"
            found.append(Finding("error", f"{key} is the boolean {value} (YAML reads no/off/yes/on as booleans), "
                                          f"but erniekit expects {fields[key]}; quote it: {key}='{word}'"))
    return found


def check_ignored(args: Mapping[str, Any]) -> list[Finding]:
    """Settings the fork accepts but does not use."""
    found = []
    lmdbs, dataset = args.get("train_lmdb_paths"), args.get("train_dataset_path")
    if lmdbs and dataset and items(dataset) != items(lmdbs):
        found.append(Finding("error", f"train_dataset_path={dataset} is ignored: train_lmdb_paths is set "
                                      f"({lmdbs}) and wins; pass the LMDB as train_lmdb_paths={dataset}"))
    given, used = args.get("lr_scheduler_type"), args.get("lr_scheduler", "cosine")
    if given is not None and "OCR-VL" in str(args.get("stage", "")) and str(given) != str(used):
        found.append(Finding("warning", f"lr_scheduler_type={given} is ignored: the fork's OCR-VL trainer reads "
                                        f"lr_scheduler ({used}); set lr_scheduler={given}"))
    strategy = str(args.get("evaluation_strategy", "no")).lower()
    if args.get("do_eval") is False and _evaluates(args):
        found.append(Finding("warning", f"do_eval=False does not stop evaluation while evaluation_strategy="
                                        f"{strategy}; set evaluation_strategy='no' as well"))
    return found


def _evaluates(args: Mapping[str, Any]) -> bool:
    """paddleformers turns do_eval on whenever evaluation_strategy is not "no"."""
    return bool(args.get("do_eval")) or str(args.get("evaluation_strategy", "no")).lower() in ("steps", "epoch")


def check_double_open(args: Mapping[str, Any], lmdb_version: str) -> list[Finding]:
    """An LMDB that the train and eval readers would both open: py-lmdb >= 2 refuses the second open."""
    if int(lmdb_version.split(".")[0]) < 2:
        return []
    train = [os.path.realpath(p) for s in items(args.get("train_lmdb_paths")) for p in expand(s)]
    evals = [os.path.realpath(p) for p in items(args.get("eval_dataset_path")) if not is_sharded(p)]
    if not _evaluates(args):
        evals = []
    twice = sorted({p for p in train + evals if (train + evals).count(p) > 1})
    return [Finding("error", f"LMDB {p} would be opened twice in one process (train and eval readers); py-lmdb "
                             f"{lmdb_version} refuses that: install ocrvl-ray[erniekit] (lmdb 1.7.5) or use a "
                             "different eval LMDB") for p in twice]


def check_reporting(args: Mapping[str, Any], protobuf_version: str) -> list[Finding]:
    """erniekit's VisualDL callback crashes with protobuf >= 7."""
    report = args.get("report_to")
    targets = set(report) if isinstance(report, list) else {report}
    if int(protobuf_version.split(".")[0]) < 7 or not targets & _VISUALDL:
        return []
    return [Finding("error", f"report_to={report or 'visualdl (the default)'} crashes with protobuf "
                             f"{protobuf_version} (HparamInfo.int_value: Expected an int, got a boolean); "
                             "install ocrvl-ray[erniekit] (protobuf<7) or set report_to=none")]


def check_checkout(ernie_root: str | None) -> list[Finding]:
    """No checkout named (``ernie_root`` or ``$ERNIE_ROOT``): error. One named but not on this machine:
    warning, since the workers may still have it."""
    try:
        ernie_checkout(ernie_root)
    except OcrvlError as e:
        if not (ernie_root or os.environ.get("ERNIE_ROOT")):
            return [Finding("error", str(e))]
        return [Finding("warning", f"on this machine {e}")]
    return []


def check_model(args: Mapping[str, Any]) -> list[Finding]:
    """``model_name_or_path`` is a model folder here (config.json and weights), or a hub id (``org/name``)
    that is not a local path, which erniekit downloads on each worker and which cannot be checked here."""
    name = args.get("model_name_or_path")
    if not name:
        return [Finding("error", "model_name_or_path is not set; add model_name_or_path: /path/to/PaddleOCR-VL "
                                 "to the YAML (or pass model_name_or_path=...)")]
    path = Path(str(name)).expanduser()
    if not path.exists():
        text = str(name)
        if not text.startswith(("/", ".", "~")) and text.count("/") == 1:
            return [Finding("warning", f"model_name_or_path={name} is not a folder on this machine: erniekit will "
                                       "download it from the model hub on each worker (needs network access), so "
                                       "it cannot be checked here; give a local model folder to check it")]
        return [Finding("error", f"model_name_or_path: model folder {name} does not exist; fix the path "
                                 "(a folder with config.json and the weights)")]
    if not path.is_dir():
        return [Finding("error", f"model_name_or_path: {name} is a file, not a model folder (config.json and "
                                 "the weights)")]
    missing = [] if (path / "config.json").is_file() else ["config.json"]
    if not any(is_weight_file(p.name) for p in path.iterdir() if p.is_file()):
        missing.append("weights (*.safetensors or *.pdparams)")
    if missing:
        return [Finding("error", f"model_name_or_path: model folder {name} has no {' and no '.join(missing)}; "
                                 "point it at a complete model folder")]
    return []


def _installed(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "0"


def audit(args: Mapping[str, Any], ernie_root: str | os.PathLike | None) -> list[Finding]:
    """All fork-specific findings; the key checks need ``ernie_root`` on this machine."""
    found = check_checkout(ernie_root) + check_model(args)
    found += check_ignored(args) + check_double_open(args, _installed("lmdb"))
    found += check_reporting(args, _installed("protobuf"))
    if ernie_root and Path(ernie_root).is_dir():
        try:
            found += check_keys(args, fork_fields(ernie_root))
        except (RuntimeError, subprocess.TimeoutExpired, ValueError) as e:
            found.append(Finding("warning", f"could not read the fork's argument classes from {ernie_root} "
                                            f"({e}); keys were not checked"))
    return found
