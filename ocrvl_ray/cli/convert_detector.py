"""``ocrvl convert-detector --from PADDLE_DIR --out HF_DIR``: a Paddle PP-DocLayoutV2/V3 or RT-DETR-L table-cell
checkpoint -> a transformers model folder for ``layout.engine=transformers`` / ``cells.engine=transformers``
(paddlex's own converter; runs in ``.venv``)."""
from __future__ import annotations

from typing import Optional

from pydantic import Field

from ocrvl_ray.cli import Spec
from ocrvl_ray.core.config import JobConfig


class ConvertDetectorConfig(JobConfig):
    source: str = Field(description="folder of the Paddle checkpoint (model_state.pdparams or best_model.pdparams, "
                                    "with its inference.yml and, for a fine-tuned model, its config.json)")
    out: str = Field(description="transformers model folder to write (config.json, model.safetensors, "
                                 "preprocessor_config.json)")
    model_name: Optional[str] = Field(
        None, description="the model (PP-DocLayoutV2, PP-DocLayoutV3, RT-DETR-L_wired_table_cell_det, "
                          "RT-DETR-L_wireless_table_cell_det); default: Global.model_name of the source's "
                          "inference.yml")
    overwrite: bool = Field(False, description="replace a non-empty out folder")


def run(cfg: ConvertDetectorConfig) -> int:
    from pathlib import Path

    from ocrvl_ray.layout.engines.convert import convert_detector, model_name_of

    out = convert_detector(cfg.source, cfg.out, model_name=cfg.model_name, overwrite=cfg.overwrite)
    key = "cells" if (cfg.model_name or model_name_of(Path(cfg.source))).startswith("RT-DETR") else "layout"
    print(f"ocrvl convert-detector: wrote {out} ({key}.engine=transformers {key}.model_dir={out})")
    return 0


SPEC = Spec("ocrvl_ray.cli.convert_detector:ConvertDetectorConfig", run,
            usage="--from PADDLE_DIR --out HF_DIR [--model-name NAME] [--overwrite]", aliases={"--from": "source"})
