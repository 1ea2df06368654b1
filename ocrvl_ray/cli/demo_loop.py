"""``ocrvl demo-loop ENGINE [key=value ...]`` (docs/quickstart-loop.md): the whole loop, offline, on CPU, in minutes.

The bundled sample -> layout (train and valid LMDBs, demo models) -> a tiny random PaddleOCR-VL built on the spot
with the engine's own model code -> a few LoRA steps on the train LMDB -> merge -> eval of base vs fine-tuned on
the valid LMDB -> the HTML report. It is ``ocrvl pipeline configs/demo_loop_<engine>.yaml`` with the paths filled
in under ``run_dir`` and the base built first (once; a rerun resumes like any pipeline). A stage the engine's venv
cannot run (:data:`ELSEWHERE`) is the same pipeline, same run manifest, run by another venv's Python.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from pydantic import Field

from ocrvl_ray.cli import Spec
from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.end_to_end import PipelineConfig

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
#: engine -> {stage: the venv it runs from} for the stages its own venv cannot run: in .venv-erniekit (protobuf < 7
#: for the fork) paddlex's tokenizer fails (its sentencepiece_model_pb2 is protobuf 7 gencode); .venv-torch has no
#: Paddle for the layout's demo detectors (Paddle models).
ELSEWHERE = {"erniekit": {"eval": ".venv"}, "transformers": {"layout": ".venv"}}
#: engine -> (the venv it runs from, its build command): the engines need separate environments.
ENGINES = {
    "paddleformers": (".venv-paddleformers", 'python3 -m venv .venv-paddleformers && '
                                             '.venv-paddleformers/bin/pip install -e ".[paddleformers]"'),
    "erniekit": (".venv-erniekit", 'python3 -m venv .venv-erniekit && .venv-erniekit/bin/pip install -e '
                                   '".[dev,erniekit]" && .venv-erniekit/bin/pip install --no-deps imgaug==0.4.0'),
    "transformers": (".venv-torch", "./install.sh torch"),
}


def config_path(engine: str) -> Path:
    return CONFIGS / f"demo_loop_{engine}.yaml"


def check_engine(engine: str) -> None:
    """The engine is known and its trainer is importable here (one line naming the venv otherwise)."""
    if engine not in ENGINES:
        raise OcrvlError(f"demo-loop: unknown engine {engine!r}; one of {', '.join(ENGINES)}")
    venv, build = ENGINES[engine]
    from importlib.util import find_spec

    try:
        if engine == "paddleformers":
            from ocrvl_ray.train.engines.paddleformers import check_installed

            check_installed()
        elif engine == "transformers":
            from ocrvl_ray.train.engines.transformers import check_installed

            check_installed()
        elif find_spec("imgaug") is None or find_spec("decord") is None:   # what the fork imports besides ours
            raise OcrvlError("the fork's imports are missing")
    except OcrvlError:
        raise OcrvlError(f"demo-loop {engine} runs from {venv}: {venv}/bin/ocrvl demo-loop {engine} "
                         f"(build it with: {build})") from None


def base_corpus() -> list[str]:
    """Texts the tiny tokenizer learns from: the words the bundled sample draws, so labels are short in tokens."""
    from ocrvl_ray.demo.sample import KOREAN_WORDS, LATIN_WORDS

    return [" ".join(KOREAN_WORDS), " ".join(LATIN_WORDS), "0123456789 , . - 1,234 12-345",
            *KOREAN_WORDS, *LATIN_WORDS]


def build_base(engine: str, out: Path, ernie_root: str | None = None) -> Path:
    """The tiny random base in ``out`` (kept when already there), built with the engine's own model code:
    PaddleFormers 1.x's PaddleOCR-VL, the fork's (from ``ernie_root``), or transformers' (the hub layout)."""
    if out.is_dir():                           # complete: it appears by the rename below
        return out
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    if engine == "erniekit":
        from ocrvl_ray.demo.tiny_fork_model import build_tiny_fork_base

        build_tiny_fork_base(tmp, ernie_root, extra_text="".join(base_corpus()))
    elif engine == "transformers":
        from ocrvl_ray.demo.tiny_paddleocr_vl import save_random_model

        save_random_model(tmp)
    else:
        from ocrvl_ray.demo.tiny_paddleocr_vl import build_tiny_paddleocr_vl

        build_tiny_paddleocr_vl(tmp, "v1", corpus=tuple(base_corpus()), vocab=2048)
    tmp.rename(out)
    return out


def load_demo_config(engine: str, overrides: Mapping[str, Any] | Sequence[str] = ()):
    """The pipeline config of the engine's demo loop (``overrides``: ``key=value`` texts or a nested mapping of
    ``PipelineConfig`` keys), with every path absolute under ``run_dir``."""
    from ocrvl_ray.core.config import deep_merge, load_config, load_yaml, parse_overrides, set_dotted

    given = dict(overrides) if isinstance(overrides, Mapping) else parse_overrides(list(overrides))
    run_dir = Path(given.get("run_dir") or load_yaml(config_path(engine))["run_dir"]).resolve()
    base = str(run_dir / "base")
    filled = {"run_dir": str(run_dir), "layout.output": str(run_dir / "sample_layout.lmdb"), "merge.base": base,
              "train.overrides.model_name_or_path": base, "train.overrides.storage_path": str(run_dir / "storage")}
    if engine == "erniekit":
        root = given.get("train", {}).get("overrides", {}).get("ernie_root") or os.environ.get("ERNIE_ROOT")
        if not root:
            raise OcrvlError("demo-loop erniekit needs your ERNIE checkout (the fork with the LMDB reader): "
                             "ERNIE_ROOT=/path/to/ERNIE or train.overrides.ernie_root=/path/to/ERNIE")
        filled["train.overrides.ernie_root"] = str(Path(root).resolve())
    paths: dict[str, Any] = {}
    for key, value in filled.items():
        set_dotted(paths, key, value)
    return load_config(PipelineConfig, config_path(engine), deep_merge(paths, given))


def loss_curve(output_dir: str) -> list[tuple[int, float]]:
    """(step, loss) of every logged training step, from the run's ``<output_dir>.metrics.jsonl``."""
    from ocrvl_ray.train.checkpoints import side_dir

    path = side_dir(output_dir, "metrics.jsonl")
    points = {}
    if path.is_file():
        for line in path.read_text("utf-8").splitlines():
            rec = json.loads(line)
            if isinstance(rec.get("loss"), (int, float)) and "checkpoint" not in rec:
                points[int(rec.get("step", 0))] = float(rec["loss"])
    return sorted(points.items())


def comparison_line(comp: dict) -> str:
    """The eval's base-vs-fine-tuned comparison in words: each metric's two values and whether the change holds
    under the bootstrap, then the per-sample counts."""
    parts = []
    for key, name in (("cer", "CER"), ("ned", "NED"), ("exact_match", "exact match")):
        m = comp.get(key)
        if m:
            parts.append(f"{name} {m['a']:.3f} -> {m['b']:.3f}" + (" (significant)" if m.get("significant") else ""))
    counts = ", ".join(f"{comp[k]} {k}" for k in ("improved", "regressed", "same") if k in comp)
    return "; ".join(parts) + (f"; samples: {counts}" if counts else "") + (f" (n={comp['n']})" if "n" in comp else "")


def run_in(venv: str, cfg, stages: list[str], say: Callable[[str], None]) -> dict:
    """The pipeline's ``stages`` run by ``venv``'s Python (``ocrvl pipeline <run_dir>/demo_loop.yaml
    stages=[...]``, the same run manifest); returns the manifest's stages."""
    import subprocess

    import yaml

    from ocrvl_ray.end_to_end import RunManifest

    python = REPO / venv / "bin" / "python"
    if not python.is_file():
        raise OcrvlError(f"the {'/'.join(stages)} stage runs from {venv}, which is missing; build it with "
                         "./install.sh default")
    conf = Path(cfg.run_dir) / "demo_loop.yaml"
    conf.write_text(yaml.safe_dump(cfg.model_dump(mode="json", exclude_none=True), allow_unicode=True,
                                   sort_keys=False), "utf-8")
    names = ",".join(stages)
    say(f"[{names}] from {venv}: {venv}/bin/ocrvl pipeline {conf} stages=[{names}]")
    # its own local Ray: workers of a Ray started from another venv would run that venv's Python
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME", "RAY_ADDRESS")}
    if subprocess.run([str(python), "-m", "ocrvl_ray.cli", "pipeline", str(conf), f"stages=[{names}]"], cwd=REPO,
                      env=env).returncode != 0:
        raise OcrvlError(f"the {names} stage failed (run from {venv}); its error is above")
    return RunManifest(cfg.run_dir).data["stages"]


def run_demo_loop(engine: str, overrides: Mapping[str, Any] | Sequence[str] = (),
                  say: Callable[[str], None] = print) -> dict[str, Any]:
    """Build the base, run the pipeline, print what came out; returns the summary."""
    from ocrvl_ray.core.console import RayLog
    from ocrvl_ray.core.runtime import init_ray
    from ocrvl_ray.end_to_end import check_pipeline, run_pipeline

    check_engine(engine)
    cfg = load_demo_config(engine, overrides)
    check_pipeline(cfg)
    base = Path(cfg.merge.base)
    with RayLog(str(base) + ".log") as out:       # the model code's own chatter goes to the log
        out.say(f"demo-loop {engine}: a tiny random PaddleOCR-VL (the {engine} engine's model code) -> {base}")
        build_base(engine, base, cfg.train.overrides.get("ernie_root"))
    groups: list[tuple[Optional[str], list[str]]] = []     # runs of consecutive stages by the venv they run in
    for name in cfg.stages:
        venv = ELSEWHERE.get(engine, {}).get(name)
        if groups and groups[-1][0] == venv:
            groups[-1][1].append(name)
        else:
            groups.append((venv, [name]))
    for venv, names in groups:
        if venv:
            stages = run_in(venv, cfg, names, say=lambda line: say(f"demo-loop {engine}: {line}"))
        else:
            init_ray()
            stages = run_pipeline(cfg.model_copy(update={"stages": names}),
                                  log=lambda line: say(f"demo-loop {engine}: {line}"))["stages"]
    curve = loss_curve(stages["train"]["inputs"]["output_dir"]) if "train" in cfg.stages else []
    summary = {"engine": engine, "run_dir": cfg.run_dir, "loss": curve,
               **{name: stages[name].get("outputs") for name in cfg.stages}}
    if curve:
        (s0, l0), (s1, l1) = curve[0], curve[-1]
        say(f"demo-loop {engine}: training loss {l0:.3f} (step {s0}) -> {l1:.3f} (step {s1})")
    if "eval" in cfg.stages:
        say(f"demo-loop {engine}: base -> fine-tuned on {stages['eval']['inputs']['data']}: "
            f"{comparison_line(summary['eval'].get('base_vs_ft') or {})}")
        say(f"demo-loop {engine}: report {summary['eval']['report']}")
    return summary


class DemoLoopConfig(PipelineConfig):
    """``ocrvl pipeline``'s keys over ``configs/demo_loop_<engine>.yaml``, plus the engine."""
    engine: str = Field(description="the training engine: paddleformers (run from .venv-paddleformers), erniekit "
                                    "(.venv-erniekit) or transformers (.venv-torch)")
    run_dir: Optional[str] = Field(None, description="null: the engine YAML's run_dir (out/demo-loop-<engine>)")


def run(cfg: DemoLoopConfig) -> int:
    given = cfg.model_dump(mode="json", exclude_unset=True, exclude={"engine"})
    check_engine(cfg.engine)
    load_demo_config(cfg.engine, given)       # config errors before anything runs
    run_demo_loop(cfg.engine, given)
    return 0


SPEC = Spec("ocrvl_ray.cli.demo_loop:DemoLoopConfig", run, usage="ENGINE [key=value ...]", positionals=("engine",),
            note="The keys are `ocrvl pipeline`'s, given over configs/demo_loop_<ENGINE>.yaml (e.g. run_dir=/tmp/loop "
                 "train.overrides.max_steps=80); see docs/quickstart-loop.md.")
