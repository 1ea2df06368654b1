"""The demo loop (``ocrvl demo-loop ENGINE``, docs/quickstart-loop.md): offline, on CPU, in minutes.

The bundled sample -> layout (train and valid LMDBs, demo models) -> a tiny random PaddleOCR-VL built on the spot
with the engine's own model code -> a few LoRA steps on the train LMDB -> merge -> eval of base vs fine-tuned on
the valid LMDB -> the HTML report. It is ``ocrvl pipeline configs/demo_loop_<engine>.yaml`` with the paths filled
in under ``run_dir`` and the base built first (once; a rerun resumes like any pipeline).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ocrvl_ray.core.errors import OcrvlError

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
#: engine -> (the venv it runs from, its build command): the engines need separate environments.
ENGINES = {
    "paddleformers": (".venv-paddleformers", 'python3 -m venv .venv-paddleformers && '
                                             '.venv-paddleformers/bin/pip install -e ".[paddleformers]"'),
}


def config_path(engine: str) -> Path:
    return CONFIGS / f"demo_loop_{engine}.yaml"


def check_engine(engine: str) -> None:
    """The engine is known and its trainer is importable here (one line naming the venv otherwise)."""
    if engine not in ENGINES:
        raise OcrvlError(f"demo-loop: unknown engine {engine!r}; one of {', '.join(ENGINES)}")
    venv, build = ENGINES[engine]
    if engine == "paddleformers":
        from ocrvl_ray.train.engines.paddleformers import check_installed

        try:
            check_installed()
        except OcrvlError:
            raise OcrvlError(f"demo-loop paddleformers runs from {venv}: {venv}/bin/ocrvl demo-loop paddleformers "
                             f"(build it with: {build})") from None


def base_corpus() -> list[str]:
    """Texts the tiny tokenizer learns from: the words the bundled sample draws, so labels are short in tokens."""
    from ocrvl_ray.demo.sample import KOREAN_WORDS, LATIN_WORDS

    return [" ".join(KOREAN_WORDS), " ".join(LATIN_WORDS), "0123456789 , . - 1,234 12-345",
            *KOREAN_WORDS, *LATIN_WORDS]


def build_base(engine: str, out: Path) -> Path:
    """The tiny random base in ``out`` (kept when already there), built with the engine's own model code."""
    if (out / "config.json").is_file():       # written last, by the rename below
        return out
    from ocrvl_ray.demo.tiny_paddleocr_vl import build_tiny_paddleocr_vl

    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    build_tiny_paddleocr_vl(tmp, "v1", corpus=tuple(base_corpus()), vocab=2048)
    tmp.rename(out)
    return out


def load_demo_config(engine: str, overrides: Mapping[str, Any] | Sequence[str] = ()):
    """The pipeline config of the engine's demo loop (``overrides``: ``key=value`` texts or a nested mapping of
    ``PipelineConfig`` keys), with every path absolute under ``run_dir``."""
    from ocrvl_ray.core.config import deep_merge, load_config, load_yaml, parse_overrides, set_dotted
    from ocrvl_ray.end_to_end import PipelineConfig

    given = dict(overrides) if isinstance(overrides, Mapping) else parse_overrides(list(overrides))
    run_dir = Path(given.get("run_dir") or load_yaml(config_path(engine))["run_dir"]).resolve()
    base = str(run_dir / "base")
    filled = {"run_dir": str(run_dir), "layout.output": str(run_dir / "sample_layout.lmdb"), "merge.base": base,
              "train.overrides.model_name_or_path": base, "train.overrides.storage_path": str(run_dir / "storage")}
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


def run_demo_loop(engine: str, overrides: Mapping[str, Any] | Sequence[str] = (), say: Callable[[str], None] = print) -> dict[str, Any]:
    """Build the base, run the pipeline, print what came out; returns the summary."""
    from ocrvl_ray.core.console import RayLog
    from ocrvl_ray.core.runtime import init_ray
    from ocrvl_ray.end_to_end import check_pipeline, run_pipeline

    check_engine(engine)
    cfg = load_demo_config(engine, overrides)
    check_pipeline(cfg)
    base = Path(cfg.merge.base)
    with RayLog(str(base) + ".log") as out:       # the model code's own chatter goes to the log
        out.say(f"demo-loop {engine}: a tiny random PaddleOCR-VL ({engine}'s model code) -> {base}")
        build_base(engine, base)
    init_ray()
    stages = run_pipeline(cfg, log=lambda line: say(f"demo-loop {engine}: {line}"))["stages"]
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
