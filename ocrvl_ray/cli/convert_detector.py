"""``ocrvl convert-detector --from PADDLE_DIR --out HF_DIR``: a Paddle PP-DocLayoutV2/V3 checkpoint -> a
transformers model folder for ``layout.engine=transformers`` (paddlex's own converter; runs in ``.venv``)."""
from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from ocrvl_ray.cli import Spec
from ocrvl_ray.core.config import JobConfig


class ConvertDetectorConfig(JobConfig):
    source: str = Field(description="folder of the Paddle checkpoint (model_state.pdparams or best_model.pdparams, "
                                    "with its inference.yml and, for a fine-tuned model, its config.json)")
    out: str = Field(description="transformers model folder to write (config.json, model.safetensors, "
                                 "preprocessor_config.json)")
    model_name: Optional[Literal["PP-DocLayoutV2", "PP-DocLayoutV3"]] = Field(
        None, description="the model; default: Global.model_name of the source's inference.yml")
    overwrite: bool = Field(False, description="replace a non-empty out folder")


def run(cfg: ConvertDetectorConfig) -> int:
    from ocrvl_ray.layout.engines.convert import convert_detector

    out = convert_detector(cfg.source, cfg.out, model_name=cfg.model_name, overwrite=cfg.overwrite)
    print(f"ocrvl convert-detector: wrote {out} (layout.engine=transformers layout.model_dir={out})")
    return 0


SPEC = Spec("ocrvl_ray.cli.convert_detector:ConvertDetectorConfig", run,
            usage="--from PADDLE_DIR --out HF_DIR [--model-name NAME] [--overwrite]", aliases={"--from": "source"})
