"""A Paddle PP-DocLayoutV2/V3 or RT-DETR-L table-cell checkpoint -> a transformers model folder
(``ocrvl convert-detector``).

paddlex's own converter does the work, called as is (``paddlex/modules/base/weight_converter.py``: its
``WeightConverter`` is what paddlex's ``pdparams2safetensors`` mode runs): BatchNorm renames, the per-model key
regexes (``PP_DOCLAYOUTV2_MAPPING`` / ``RTDETR_MAPPING``), Linear weights transposed from Paddle's [in, out],
``config.json`` / ``preprocessor_config.json`` / ``inference.yml`` from the input folder or the official defaults.
The glue: which model it is, one-line errors, the safetensors version its writer needs, and a checked,
atomic output folder. Runs where Paddle is (``.venv``); the result loads in ``.venv-torch``.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from ocrvl_ray.core.errors import OcrvlError

#: Detectors paddlex's converter knows and transformers has a class for (layout; table cells: ``RTDetr``).
CONVERTIBLE = ("PP-DocLayoutV2", "PP-DocLayoutV3", "RT-DETR-L_wired_table_cell_det",
               "RT-DETR-L_wireless_table_cell_det")
#: The checkpoint files paddlex's converter looks for in a folder, in its order.
CHECKPOINTS = ("model_state.pdparams", "inference.pdparams", "best_model.pdparams", "best_accuracy.pdparams")


def model_name_of(source: Path) -> str:
    """The model name in ``source/inference.yml`` (``Global.model_name``)."""
    import yaml

    yml = source / "inference.yml"
    if not yml.is_file():
        raise OcrvlError(f"--from {source}: no inference.yml there to tell the model; pass model_name="
                         f"{' or '.join(CONVERTIBLE)}")
    return str((yaml.safe_load(yml.read_text("utf-8")) or {}).get("Global", {}).get("model_name"))


def convert_detector(source: str | Path, out: str | Path, *, model_name: str | None = None,
                     overwrite: bool = False) -> Path:
    """Write ``out`` (config.json, model.safetensors, preprocessor_config.json, inference.yml) from the Paddle
    checkpoint in ``source`` (a folder with one of ``CHECKPOINTS`` or a single other ``*.pdparams``)."""
    src, dst = Path(source), Path(out)
    if not src.is_dir():
        raise OcrvlError(f"--from {source}: not a folder")
    name = model_name or model_name_of(src)
    if name not in CONVERTIBLE:
        raise OcrvlError(f"--from {source}: model {name!r} cannot be converted; one of {', '.join(CONVERTIBLE)}")
    pdparams = [p for p in CHECKPOINTS if (src / p).is_file()] or sorted(p.name for p in src.glob("*.pdparams"))
    if len(pdparams) != 1 and not any((src / p).is_file() for p in CHECKPOINTS):
        static = " (a static export's inference.pdiparams holds renamed graph variables: convert the training " \
                 "checkpoint instead)" if (src / "inference.pdiparams").is_file() else ""
        raise OcrvlError(f"--from {source}: {'no' if not pdparams else 'several'} *.pdparams checkpoint"
                         f"{'' if not pdparams else 's: ' + ', '.join(pdparams)}{static}; point --from at a folder "
                         f"with one of {', '.join(CHECKPOINTS)}")
    if dst.exists() and any(dst.iterdir()) and not overwrite:
        raise OcrvlError(f"--out {out}: exists and is not empty; choose another folder or pass --overwrite")
    import safetensors

    if tuple(int(x) for x in safetensors.__version__.split(".")[:2]) >= (0, 8):
        raise OcrvlError(f"safetensors {safetensors.__version__} writes transposed arrays wrongly (paddlex's "
                         f"converter writes them): run this in .venv, or pip install 'safetensors<0.8'")
    from paddlex.modules.base.weight_converter import WeightConverter
    from paddlex.utils.config import AttrDict

    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    try:
        WeightConverter(AttrDict(Global=AttrDict(model=name),
                                 Pdparams2safetensors=AttrDict(input_path=str(src), output_dir=str(tmp)))).convert()
        missing = [f for f in ("config.json", "model.safetensors", "preprocessor_config.json") if not (tmp / f).is_file()]
        if missing:
            raise OcrvlError(f"--from {source}: paddlex's converter wrote no {', '.join(missing)}")
        _name_image_processor(tmp / "preprocessor_config.json", name)
        if dst.exists():
            shutil.rmtree(dst)
        tmp.rename(dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dst


def _name_image_processor(path: Path, model_name: str) -> None:
    """paddlex has no default preprocessor config for PP-DocLayoutV2/V3 and writes ``{}``; name the class (its
    RT-DETR configs name theirs)."""
    import json

    cfg = json.loads(path.read_text("utf-8") or "{}")
    cfg.setdefault("image_processor_type", model_name.replace("-", "") + "ImageProcessor")
    path.write_text(json.dumps(cfg, indent=2), "utf-8")
