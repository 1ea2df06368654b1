"""``ocrvl demo-loop ENGINE [key=value ...]``: the bundled sample through layout, a tiny model's training, merge and
eval, offline on CPU (``ocrvl_ray.demo.loop``, docs/quickstart-loop.md)."""
from __future__ import annotations

from typing import Optional

from pydantic import Field

from ocrvl_ray.cli import Spec
from ocrvl_ray.end_to_end import PipelineConfig


class DemoLoopConfig(PipelineConfig):
    """``ocrvl pipeline``'s keys over ``configs/demo_loop_<engine>.yaml``, plus the engine."""
    engine: str = Field(description="the training engine: paddleformers (run from .venv-paddleformers)")
    run_dir: Optional[str] = Field(None, description="null: the engine YAML's run_dir (out/demo-loop-<engine>)")


def run(cfg: DemoLoopConfig) -> int:
    from ocrvl_ray.demo.loop import check_engine, load_demo_config, run_demo_loop

    given = cfg.model_dump(mode="json", exclude_unset=True, exclude={"engine"})
    check_engine(cfg.engine)
    load_demo_config(cfg.engine, given)       # config errors before anything runs
    run_demo_loop(cfg.engine, given)
    return 0


SPEC = Spec("ocrvl_ray.cli.demo_loop:DemoLoopConfig", run, usage="ENGINE [key=value ...]", positionals=("engine",),
            note="The keys are `ocrvl pipeline`'s, given over configs/demo_loop_<ENGINE>.yaml (e.g. run_dir=/tmp/loop "
                 "train.overrides.max_steps=80); see docs/quickstart-loop.md.")
