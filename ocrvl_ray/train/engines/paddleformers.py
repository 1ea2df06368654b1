"""The PaddleFormers 1.x engine (``ocrvl train CONFIG.yaml engine=paddleformers``): upstream's supported
PaddleOCR-VL LoRA path, called in-process in each Ray Train worker.

The entry :func:`paddleformers_sft` gets the PaddleFormers config dict plus our engine keys:
  train_lmdb_paths   comma list of LMDB dirs assigned to this rank (required)
  train_lmdb_prob    one sampling weight per LMDB (default: equal)
  eval_lmdb_paths    comma list of LMDB dirs for eval (never augmented)
  model_version      v1 | v1.5 | v1.6; default: detected from model_name_or_path's files
  augment            true (upstream's 1.5 recipe values) | false | {rotation_p: ..., jpeg_p: ...}
  prompt             the user prompt of every sample (default: the generation's ``OCR:``)
It writes one ``messages`` JSONL per LMDB (label text + an LMDB image reference, no image extraction) to
``<output_dir>.data/``, registers the generation's template with our LMDB plugin, and calls PaddleFormers'
``run_tuner`` (its CLI deletes the collective variables and relaunches, so it is never called).
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable

from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.core import generations
from ocrvl_ray.train.checkpoints import side_dir
from ocrvl_ray.train.engines.lmdb_plugin import augment_params, close_envs, image_ref

log = logging.getLogger("ocrvl.train")
ENGINE_KEYS = ("train_lmdb_paths", "train_lmdb_prob", "eval_lmdb_paths", "model_version", "augment", "prompt")
#: What our engine fills in when the config leaves it out (upstream's PaddleOCR-VL LoRA recipe keys).
#: Unified checkpoints put the adapter (``peft_model-*.safetensors`` + ``lora_config.json``) in every
#: ``checkpoint-N``, so each checkpoint reported to Ray storage merges with ``ocrvl merge``; PaddleFormers'
#: default flex_checkpoint folders hold distcp shards only.
DEFAULTS = {"stage": "VL-SFT", "template_backend": "custom", "lora": True, "do_train": True,
            "unified_checkpoint": True, "save_checkpoint_format": "unified_checkpoint",
            "load_checkpoint_format": "unified_checkpoint"}


def split_paths(value: Any) -> list[str]:
    """A comma list (or YAML list) of paths -> stripped, non-empty items."""
    if not value:
        return []
    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return [str(v).strip() for v in items if str(v).strip()]


def rows(lmdb_dir: str, prompt: str, clean: bool) -> Iterable[dict]:
    """PaddleFormers ``messages`` rows of one LMDB in key order; None for a sample with an empty label."""
    from ocrvl_ray.lmdb.reader import LmdbReader

    reader = LmdbReader(lmdb_dir)
    try:
        for i in range(len(reader)):
            label = reader.label(i)
            if not label:
                yield None
                continue
            yield {"messages": [{"role": "user", "content": f"<image>{prompt}"},
                                {"role": "assistant", "content": label}],
                   "images": [image_ref(lmdb_dir, i + reader.index_base, clean=clean)]}
    finally:
        reader.env.close()


def write_rows(lmdb_dirs: list[str], out_dir: Path, prompt: str, clean: bool, tag: str) -> tuple[list[str], dict]:
    """One JSONL per LMDB under ``out_dir``; returns (files, {"rows": n, "skipped": {"empty_text": n}})."""
    out_dir.mkdir(parents=True, exist_ok=True)
    close_envs()
    files, written, empty = [], 0, 0
    for k, d in enumerate(lmdb_dirs):
        path = out_dir / f"{tag}.{k}.{Path(d).name}.jsonl"
        tmp = path.with_suffix(".jsonl.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows(d, prompt, clean):
                if row is None:
                    empty += 1
                    continue
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                written += 1
        os.replace(tmp, path)
        files.append(str(path))
    if not written:
        raise OcrvlError(f"{tag}: the LMDB(s) {', '.join(lmdb_dirs)} hold no sample with a non-empty label; "
                         "rebuild them with `ocrvl layout`")
    return files, {"rows": written, "skipped": {"empty_text": empty} if empty else {}}


def register_template(gen: generations.Generation, augment: Any) -> str:
    """Register ``ocrvl:<template>`` in PaddleFormers: the generation's chat format + our LMDB plugin."""
    from paddleformers.datasets.template.formatter import EmptyFormatter, StringFormatter
    from paddleformers.datasets.template.template import TEMPLATES, register_template as pf_register

    from ocrvl_ray.train.engines.lmdb_plugin import plugin_class

    name = f"ocrvl:{gen.template}"
    TEMPLATES.pop(name, None)           # a restarted worker group may reuse the process
    pf_register(name=name, format_user=StringFormatter(slots=[gen.user_format]),
                format_assistant=StringFormatter(slots=["{{content}}"]),
                format_system=StringFormatter(slots=["{{content}}\n"]),
                format_prefix=EmptyFormatter(slots=[generations.BOS]), chat_sep=generations.EOS,
                mm_plugin=plugin_class()("<|IMAGE_PLACEHOLDER|>", augment=augment))
    return name


def check_installed() -> None:
    """PaddleFormers 1.x must be importable here (it cannot share the default venv's 0.3.1)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        have = version("paddleformers")
    except PackageNotFoundError:
        have = None
    if have is None or int(have.split(".")[0]) < 1:
        raise OcrvlError(f"engine=paddleformers needs PaddleFormers 1.x (found {have or 'none'}); run it from the "
                         "paddleformers venv: .venv-paddleformers/bin/ocrvl train ... (see docs/train_paddleformers.md)")


def check_config(config: dict[str, Any]) -> tuple[generations.Generation, str, dict[str, Any]]:
    """Validate the engine keys (driver pre-flight and every rank): (generation, evidence, engine keys)."""
    ours = {k: config[k] for k in ENGINE_KEYS if k in config}
    train = split_paths(ours.get("train_lmdb_paths"))
    if not train:
        raise OcrvlError("engine=paddleformers needs train_lmdb_paths=/path/a_layout.lmdb[,...] (our LMDBs)")
    if config.get("train_dataset_path"):
        raise OcrvlError("engine=paddleformers reads our LMDBs: give train_lmdb_paths, not train_dataset_path")
    probs = split_paths(ours.get("train_lmdb_prob"))
    if probs and len(probs) != len(train):
        raise OcrvlError(f"train_lmdb_prob has {len(probs)} value(s) for {len(train)} LMDB(s); give one per LMDB")
    gen, evidence = generations.resolve(ours.get("model_version"), config.get("model_name_or_path"))
    generations.check_template(gen, config.get("template"))
    augment_params(ours.get("augment"))
    return gen, evidence, ours


def tuner_args(config: dict[str, Any], rank: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(PaddleFormers' dict, what we did) from the entry's config; writes this rank's JSONL rows."""
    gen, evidence, ours = check_config(config)
    cfg = {k: v for k, v in config.items() if k not in ENGINE_KEYS}
    train = split_paths(ours["train_lmdb_paths"])
    probs = split_paths(ours.get("train_lmdb_prob")) or ["1.0"] * len(train)
    prompt = ours.get("prompt") or gen.prompts["ocr"]
    data = side_dir(cfg["output_dir"], "data")
    files, stats = write_rows(train, data, prompt, clean=False, tag=f"train.rank{rank}")
    cfg.update(train_dataset_path=",".join(files), train_dataset_prob=",".join(probs),
               train_dataset_type=",".join(["messages"] * len(files)))
    evals = split_paths(ours.get("eval_lmdb_paths"))
    if evals:
        efiles, estats = write_rows(evals, data, prompt, clean=True, tag=f"eval.rank{rank}")
        cfg.update(eval_dataset_path=",".join(efiles), eval_dataset_prob=",".join(["1.0"] * len(efiles)),
                   eval_dataset_type=",".join(["messages"] * len(efiles)))
        stats["eval"] = estats
    for k, v in DEFAULTS.items():
        cfg.setdefault(k, v)
    cfg["template"] = f"ocrvl:{gen.template}"
    done = {"model_version": gen.name, "evidence": evidence, "prompt": prompt, "augment": ours.get("augment", True),
            "data": stats}
    return cfg, done


def paddleformers_sft(config: dict[str, Any]) -> None:
    """Entry: PaddleFormers' tuner in this process, on the collective env the backend set."""
    rank = int(os.environ.get("PADDLE_TRAINER_ID", "0"))
    cfg, done = tuner_args(config, rank)
    register_template(generations.get(done["model_version"]), done["augment"])
    log.info("paddleformers engine, rank %d: PaddleOCR-VL %s (%s), %s", rank, done["model_version"],
             done["evidence"], json.dumps(done["data"]))
    if rank == 0:
        (side_dir(cfg["output_dir"], "data") / "engine.json").write_text(json.dumps(done, indent=2))
    from paddleformers.cli.train.tuner import run_tuner

    run_tuner(cfg)
