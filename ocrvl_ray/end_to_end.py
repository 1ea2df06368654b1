"""layout -> train -> merge -> eval in one Ray job, with a run manifest that makes reruns resume.

``run_dir/run_manifest.json`` records per stage its status, config hash, inputs, outputs and times.
A rerun skips stages that finished with the same config hash and resumes the unfinished one: the layout
stage through its LMDB page markers, training through Ray Train's run snapshot (same run name), the
merge by starting over (it is atomic). A changed config (or changed input, e.g. a rewritten manifest) reruns
that stage and every stage after it; the layout stage then rebuilds its LMDBs (``overwrite``). A stage is
recorded done only when its outputs exist under the hash it ran with.

    run_dir: runs/finance-v1
    layout: {manifest: /data/finance_train.parquet, output: /data/out/finance_train_layout.lmdb}
    train:
      config: run_ocr_vl_sft_16k.yaml          # erniekit YAML; train_lmdb_paths defaults to layout.output
      overrides: {num_workers: 4, ernie_root: /opt/ERNIE, output_dir: runs/finance-v1/sft}
    merge: {base: /models/PaddleOCR-VL, out: runs/finance-v1/export}
    eval: {options: {limit: 500}}                # base vs export on the layout's validation LMDB
    model_version: v1.5                          # optional: the generation of every stage that needs one

With ``train.overrides.engine: transformers`` (run from ``.venv-torch``; no erniekit YAML, ``config`` may stay
null) the train stage writes a PEFT adapter, the merge reads it from the stage's checkpoint (``<checkpoint>/adapter``)
and the eval stage defaults to ``engine: transformers`` (docs/train_transformers.md).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Optional

from pydantic import BaseModel, ConfigDict, Field

from ocrvl_ray.core.config import JobConfig, config_hash
from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.core.generations import ModelVersion
from ocrvl_ray.export.config import MergeOptions

STAGES = ("layout", "train", "merge", "eval")
#: Split names (from ``ocrvl prepare``'s Validation/ folders) whose LMDB the eval stage scores on.
VALID_SPLITS = ("valid", "validation", "val")


class TrainStage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    config: Optional[str] = Field(None, description="erniekit YAML (the user's file, unchanged)")
    overrides: dict[str, Any] = Field(default_factory=dict, description="key=value pairs, erniekit's and ours "
                                                                         "(ocrvl train --help)")


class MergeStage(MergeOptions):
    """``ocrvl merge``'s options (max_shard_size, verify) plus where: the train stage gives the checkpoint."""
    base: str = Field(description="HF folder of the base model")
    out: Optional[str] = Field(None, description="the export folder; null = <run_dir>/export")


class EvalStage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    data: Optional[str] = Field(None, description="null: the layout stage's validation LMDB")
    export: Optional[str] = Field(None, description="null: the merge stage's export")
    out: Optional[str] = Field(None, description="null: <run_dir>/eval")
    options: dict[str, Any] = Field(default_factory=dict, description="EvalConfig keys (limit, engine, device, ...; "
                                                                       "ocrvl eval --help)")


class PipelineConfig(JobConfig):
    run_dir: str = Field(description="the run's folder: run_manifest.json and default outputs")
    stages: list[str] = Field(default_factory=lambda: list(STAGES), description="the stages to run, in order")
    layout: dict[str, Any] = Field(default_factory=dict, description="LayoutConfig keys (ocrvl layout --help)")
    train: TrainStage = Field(default_factory=TrainStage)
    merge: Optional[MergeStage] = Field(None, description="needed by the merge and eval stages")
    eval: EvalStage = Field(default_factory=EvalStage)
    model_version: Optional[ModelVersion] = Field(
        None, description="PaddleOCR-VL generation for every stage that needs one, unless the stage sets its own: "
                          "layout.model_version, eval.options.model_version, and train (engine=paddleformers)")


class RunManifest:
    """``run_manifest.json``: the stages' records, rewritten atomically after every change."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / "run_manifest.json"
        self.data = json.loads(self.path.read_text("utf-8")) if self.path.is_file() else {"stages": {}}

    def stage(self, name: str) -> dict:
        return self.data["stages"].get(name, {})

    def update(self, name: str, **fields) -> None:
        self.data["stages"].setdefault(name, {}).update(fields)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, ensure_ascii=False, default=str) + "\n", "utf-8")
        os.replace(tmp, self.path)


def _layout_cfg(cfg: PipelineConfig):
    from ocrvl_ray.core.config import load_config
    from ocrvl_ray.layout.config import LayoutConfig

    version = {"model_version": cfg.model_version} if cfg.model_version else {}
    return load_config(LayoutConfig, overrides={**version, **cfg.layout})


def _train_cfg(cfg: PipelineConfig, lmdb: str | None):
    from ocrvl_ray.train.config import load_train_config

    over = dict(cfg.train.overrides)
    if lmdb and "train_lmdb_paths" not in over:
        over["train_lmdb_paths"] = lmdb
    ours, args = load_train_config(cfg.train.config, over)   # typed values as given: 'no' stays a string
    if cfg.model_version and ours.engine in ("paddleformers", "transformers") and ours.model_version is None:
        ours.model_version = args["model_version"] = cfg.model_version
    if not args.get("output_dir"):   # one folder (and Ray run name) per training config: a changed one starts afresh
        args["output_dir"] = str((Path(cfg.run_dir) / f"sft-{_train_key(ours, args)[:8]}").resolve())
    return ours, args


def _train_key(ours, args) -> str:
    # model_version, when set, is in args too: left out of ours, older runs' hashes stay valid
    return config_hash([ours.model_dump(mode="json", exclude={"model_version"}), args])


def train_engine(cfg: PipelineConfig) -> str | None:
    """The train stage's ``engine`` as given (overrides, else its YAML); None when neither sets one."""
    from ocrvl_ray.core.config import load_yaml

    if "engine" in cfg.train.overrides:
        return cfg.train.overrides["engine"]
    return load_yaml(cfg.train.config).get("engine") if cfg.train.config and Path(cfg.train.config).is_file() else None


def _eval_stage(cfg: PipelineConfig) -> EvalStage:
    """The eval section with the pipeline's ``model_version`` in its options unless they set one, and
    ``engine: transformers`` after a transformers training unless they set an engine (its venv has no Paddle)."""
    extra = {}
    if cfg.model_version and "model_version" not in cfg.eval.options:
        extra["model_version"] = cfg.model_version
    if "engine" not in cfg.eval.options and train_engine(cfg) == "transformers":
        extra["engine"] = "transformers"
    if not extra:
        return cfg.eval
    return cfg.eval.model_copy(update={"options": {**cfg.eval.options, **extra}})


def check_pipeline(cfg: PipelineConfig) -> None:
    """What can be checked before Ray starts (stages, required sections)."""
    unknown = [s for s in cfg.stages if s not in STAGES]
    if unknown:
        raise OcrvlError(f"unknown stage {unknown[0]!r} in stages; valid: {', '.join(STAGES)}")
    for stage in ("merge", "eval"):
        if stage in cfg.stages and cfg.merge is None:
            raise OcrvlError(f"stages include {stage} but the config has no merge: section (merge.base is required)")
    if "eval" in cfg.stages and not cfg.eval.data:
        where, splits = _layout_splits(cfg)
        if splits is not None and not any(s in splits for s in VALID_SPLITS):
            raise OcrvlError(no_valid_split(where, splits))


def no_valid_split(where: str, splits) -> str:
    """The one-line refusal of an eval stage that would have to score on training data."""
    return (f"eval needs a validation LMDB, but {where} has no validation split (only {', '.join(splits) or 'none'}); "
            "never scoring on training data: prepare the labels with Validation/ folders (split valid), "
            "set eval.data=VALID.lmdb, or leave eval out of stages")


def _layout_splits(cfg: PipelineConfig) -> tuple[str, list[str] | None]:
    """(what was read, the splits the layout stage makes or made); None when not known before the run."""
    if "layout" in cfg.stages:
        from ocrvl_ray.layout.job import resolve_inputs
        from ocrvl_ray.layout.preflight import manifest_splits

        lcfg, manifest = resolve_inputs(_layout_cfg(cfg))
        return f"manifest={manifest}" + (f" (split={lcfg.split})" if lcfg.split else ""), \
            [lcfg.split] if lcfg.split else manifest_splits(manifest)
    lmdbs = RunManifest(cfg.run_dir).stage("layout").get("outputs", {}).get("lmdb")
    where = f"the layout stage recorded in {Path(cfg.run_dir) / 'run_manifest.json'}"
    return where, (list(lmdbs) if isinstance(lmdbs, dict) else None)


def _pick(lmdbs: dict[str, str] | str | None, prefer: tuple[str, ...], only: bool = True) -> str | None:
    """The LMDB of the first preferred split (train / valid), or with ``only`` the only one."""
    if not isinstance(lmdbs, dict):
        return lmdbs if only else None
    for name in prefer:
        if name in lmdbs:
            return lmdbs[name]
    return next(iter(lmdbs.values())) if only and len(lmdbs) == 1 else None


def run_pipeline(cfg: PipelineConfig, log: Callable[[str], None] = print) -> dict:
    """Runs (or resumes) the configured stages; returns the run manifest's data."""
    check_pipeline(cfg)
    man = RunManifest(cfg.run_dir)
    invalidated = False
    lmdbs = lora = export = None
    for name in STAGES:
        if name not in cfg.stages:
            continue
        rec = man.stage(name)
        if name == "layout":
            from ocrvl_ray.layout.job import layout_identities

            lcfg = _layout_cfg(cfg)
            key = config_hash(layout_identities(lcfg))
            if rec.get("config_hash") not in (None, key):
                lcfg.overwrite = True          # this run's own output, made under an older config: rebuild it
            inputs, run = {"manifest": lcfg.manifest}, (lambda: _run_layout(lcfg, key))
        elif name == "train":
            lmdbs = lmdbs or man.stage("layout").get("outputs", {}).get("lmdb")
            ours, args = _train_cfg(cfg, _pick(lmdbs, ("train",)))
            key, out = _train_key(ours, args), args["output_dir"]
            if rec.get("config_hash") not in (None, key) and rec.get("inputs", {}).get("output_dir") == out \
                    and Path(out).exists():
                raise OcrvlError(f"the train config changed since output_dir={out} was trained, and training "
                                 "there would resume its checkpoints; set train.overrides.output_dir to a new "
                                 "folder (or leave it out: <run_dir>/sft-<config hash>)")
            inputs = {"train_lmdb_paths": args.get("train_lmdb_paths"), "output_dir": out}
            run = (lambda: _run_train(ours, args))
        elif name == "merge":
            lora = lora or man.stage("train").get("outputs", {}).get("checkpoint")
            if not lora:
                raise OcrvlError("merge needs the train stage's checkpoint; run the train stage first")
            out = cfg.merge.out or str(Path(cfg.run_dir) / "export")
            key = config_hash([cfg.merge.model_dump(mode="json"), lora, out])
            inputs, run = {"base": cfg.merge.base, "lora": lora}, (lambda: _run_merge(cfg.merge, lora, out))
        else:
            export = cfg.eval.export or export or man.stage("merge").get("outputs", {}).get("export")
            lmdbs = lmdbs or man.stage("layout").get("outputs", {}).get("lmdb")
            data = cfg.eval.data or _pick(lmdbs, VALID_SPLITS, only=False)   # never the training LMDB
            if not data:
                made = list(lmdbs) if isinstance(lmdbs, dict) else []
                raise OcrvlError(no_valid_split("the layout stage's outputs", made))
            if not export:
                raise OcrvlError("eval needs the merge stage's export; run the merge stage first (or set eval.export)")
            ev = _eval_stage(cfg)
            out = ev.out or str(Path(cfg.run_dir) / "eval")
            key = config_hash([ev.model_dump(mode="json"), cfg.merge.base, export, data, out])
            inputs = {"base": cfg.merge.base, "export": export, "data": data}
            run = (lambda: _run_eval(cfg.merge.base, export, data, out, ev.options))
        if not invalidated and rec.get("status") == "done" and rec.get("config_hash") == key:
            log(f"[{name}] done before with the same config ({key}); skipping")
            outputs = rec.get("outputs", {})
        else:
            invalidated = invalidated or (rec.get("status") == "done")
            log(f"[{name}] {'resuming' if rec.get('status') in ('running', 'failed') else 'starting'}")
            man.update(name, status="running", config_hash=key, inputs=inputs, started=time.time())
            try:
                outputs = run()
            except BaseException as e:
                man.update(name, status="failed", error=f"{type(e).__name__}: {e}"[:500])
                raise
            man.update(name, status="done", outputs=outputs, finished=time.time(), error=None)
        if name == "layout":
            lmdbs = outputs.get("lmdb")
        elif name == "train":
            lora = outputs.get("checkpoint")
        elif name == "merge":
            export = outputs.get("export")
    return man.data


def _run_layout(lcfg, key: str) -> dict:
    from ocrvl_ray.layout.job import layout_identities, run_layout
    from ocrvl_ray.lmdb.identity import stored_identity

    report = run_layout(lcfg)
    if report["num_samples"] == 0:
        raise OcrvlError(f"layout wrote no samples to {lcfg.output}; see {report.get('report_json')}")
    made = {s: (stored_identity(p) or {}).get("identity") for s, p in report["outputs"].items()}
    if config_hash(made) != key or config_hash(layout_identities(lcfg)) != key:
        raise OcrvlError(f"the layout outputs {', '.join(report['outputs'].values())} do not carry this run's config "
                         f"(inputs changed during the run?); rerun the pipeline")
    return {"lmdb": report["outputs"], "num_samples": report["num_samples"],
            "reports": {s: r.get("report_json") for s, r in report["splits"].items()}}


def _run_train(ours, args) -> dict:
    from ocrvl_ray.train.console import fit_quietly
    from ocrvl_ray.train.run import check

    check(ours, args)
    result = fit_quietly(ours, args)          # loss and checkpoint lines here, the rest in <output_dir>.log
    if result.checkpoint is None:
        raise OcrvlError("training finished without reporting a checkpoint (check save_steps / max_steps)")
    return {"checkpoint": result.checkpoint.path, "metrics": result.metrics}


def _run_eval(base: str, export: str, data: str, out: str, options: dict) -> dict:
    from ocrvl_ray.eval.run import run_eval

    metrics = run_eval([f"base={base}", f"ft={export}"], data, out, options)
    comp = (metrics.get("comparisons") or [{}])[0].get("overall", {})
    return {"metrics": str(Path(out) / "metrics.json"), "report": str(Path(out) / "report.html"),
            "base_vs_ft": comp}


def _run_merge(m: MergeStage, lora: str, out: str) -> dict:
    from ocrvl_ray.export.task import merge_on_ray

    res = merge_on_ray(m.base, lora, out, max_shard_bytes=m.max_shard_bytes, overwrite=True,
                       verify=m.verify)
    if m.verify and not res.get("verified"):
        raise OcrvlError("merged export failed verification:\n" + "\n".join(res.get("verify_lines", [])))
    return {"export": res["out"], "verified": res.get("verified")}
