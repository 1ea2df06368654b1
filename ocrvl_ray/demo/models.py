"""Tiny offline detection models that load through the REAL paddleocr classes (no download, no network).

* ``build_tiny_layout_model``: a static Paddle graph with the PP-DocLayoutV2 I/O contract
  (inputs im_shape/image/scale_factor, 8-column boxes with reading-order columns) whose output is a
  scripted list of normalised boxes scaled to each input image's original size.
* ``build_tiny_cell_model``: the same idea with the 6-column RT-DETR table-cell contract.
* ``build_tiny_real_layout_model``: random weights, real PP-DocLayoutV2 architecture (paddlex dynamic
  class), for realistic compute in benchmarks.
* ``demo_models``: scripted models whose boxes match the bundled sample pages' template.

Paddle is imported inside the functions, so importing this module is cheap.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path
from typing import Sequence

import yaml

LAYOUT_MODEL_NAME = "PP-DocLayoutV2"
CELL_MODEL_NAME = "RT-DETR-L_wired_table_cell_det"
CELL_MODEL_NAMES = ("RT-DETR-L_wired_table_cell_det", "RT-DETR-L_wireless_table_cell_det")

#: A scripted box: (label, score, x1, y1, x2, y2) normalised to the image size, optionally + order rank.
ScriptedBox = Sequence


def layout_inference_yml() -> dict:
    """The real PP-DocLayoutV2 ``inference.yml`` (bundled verbatim in ``ocrvl_ray/assets``)."""
    text = resources.files("ocrvl_ray").joinpath("assets/pp-doclayoutv2.inference.yml").read_text("utf-8")
    return yaml.safe_load(text)


def layout_labels() -> list[str]:
    return list(layout_inference_yml()["label_list"])


def _normalise(boxes: Sequence[ScriptedBox], labels: list[str]) -> list[tuple]:
    out = []
    for i, b in enumerate(boxes):
        if len(b) not in (6, 7):
            raise ValueError(f"scripted box #{i} {b!r}: expected (label, score, x1, y1, x2, y2[, order])")
        label, score, x1, y1, x2, y2 = b[:6]
        if label not in labels:
            raise ValueError(f"scripted box #{i}: label {label!r} is not one of {labels}")
        if not (0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1):
            raise ValueError(f"scripted box #{i}: coordinates must satisfy 0 <= x1 < x2 <= 1, 0 <= y1 < y2 <= 1")
        order = b[6] if len(b) == 7 and b[6] is not None else i
        out.append((labels.index(label), float(score), float(x1), float(y1), float(x2), float(y2), float(order)))
    return out


def _export(out_dir: Path, rows: list[tuple], ncols: int) -> None:
    """Export a static graph that returns ``rows`` scaled to each image: (boxes[B*Q, ncols], boxes_num[B])."""
    import numpy as np
    import paddle

    if not rows:  # keep a shape: one placeholder box with class -1, which paddlex always filters out
        rows = [(-1, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0)]
    arr = np.asarray(rows, dtype="float32")
    q = len(rows)
    norm = arr[:, 2:6]
    # columns besides the box: [cls, score] + [order_seq, order_votes] for 8-column output
    extra = np.concatenate([arr[:, 6:7], np.zeros((q, 1), "float32")], axis=1)

    class Scripted(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.norm = self.create_parameter([q, 4], default_initializer=paddle.nn.initializer.Assign(norm))
            self.head = self.create_parameter([q, 2], default_initializer=paddle.nn.initializer.Assign(arr[:, :2]))
            self.tail = self.create_parameter([q, 2], default_initializer=paddle.nn.initializer.Assign(extra))
            self.touch = paddle.nn.Conv2D(3, 1, 1)  # keeps `image` in the graph

        def forward(self, im_shape, image, scale_factor):
            orig = paddle.floor(im_shape / scale_factor + 0.5)                    # [B, 2] = (h, w)
            whwh = paddle.stack([orig[:, 1], orig[:, 0], orig[:, 1], orig[:, 0]], axis=1)
            zero = self.touch(image).mean() * 0.0
            boxes = self.norm.unsqueeze(0) * whwh.unsqueeze(1) + zero              # [B, Q, 4]
            ones = paddle.ones_like(orig[:, :1]).unsqueeze(2)                       # [B, 1, 1]
            parts = [self.head.unsqueeze(0) * ones, boxes]
            if ncols == 8:
                parts.append(self.tail.unsqueeze(0) * ones)
            out = paddle.concat(parts, axis=2).reshape([-1, ncols])
            num = (paddle.ones_like(orig[:, 0]) * q).astype("int32")
            return out, num

    paddle.seed(0)
    layer = Scripted()
    layer.eval()
    spec = [paddle.static.InputSpec([None, 2], "float32", "im_shape"),
            paddle.static.InputSpec([None, 3, -1, -1], "float32", "image"),
            paddle.static.InputSpec([None, 2], "float32", "scale_factor")]
    static = paddle.jit.to_static(layer, input_spec=spec, full_graph=True)
    paddle.jit.save(static, str(out_dir / "inference"))


def _write_yml(out_dir: Path, model_name: str, label_list: list[str]) -> None:
    cfg = layout_inference_yml()
    cfg["Global"]["model_name"] = model_name
    cfg["label_list"] = list(label_list)
    (out_dir / "inference.yml").write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), "utf-8")


def build_tiny_layout_model(out_dir: str | os.PathLike, boxes: Sequence[ScriptedBox],
                            model_name: str = LAYOUT_MODEL_NAME) -> Path:
    """Export a scripted PP-DocLayoutV2-compatible model to ``out_dir`` and return it.

    ``boxes``: ``(label, score, x1, y1, x2, y2[, order])`` with coordinates normalised to the image;
    the model returns them scaled to each input image's size. ``order`` (default: list position) fills
    the reading-order column paddlex sorts by; paddlex then numbers the ranked labels 1, 2, ... .
    Load with ``paddleocr.LayoutDetection(model_name=model_name, model_dir=out_dir, device="cpu")``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = layout_labels()
    _export(out, _normalise(boxes, labels), ncols=8)
    _write_yml(out, model_name, labels)
    return out


def build_tiny_cell_model(out_dir: str | os.PathLike, cells: Sequence[Sequence[float]],
                          model_name: str = CELL_MODEL_NAME, score: float = 0.9) -> Path:
    """Export a scripted table-cell model (``label_list: [cell]``, 6-column output) to ``out_dir``.

    ``cells``: ``(x1, y1, x2, y2)`` or ``(score, x1, y1, x2, y2)`` normalised to the input crop.
    Load with ``paddleocr.TableCellsDetection(model_name=model_name, model_dir=out_dir, device="cpu")``.
    """
    if model_name not in CELL_MODEL_NAMES:
        raise ValueError(f"model_name must be one of {CELL_MODEL_NAMES}, got {model_name!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [("cell", *(c if len(c) == 5 else (score, *c))) for c in cells]
    _export(out, _normalise(rows, ["cell"]), ncols=6)
    _write_yml(out, model_name, ["cell"])
    return out


def build_tiny_real_layout_model(out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """A random-weight PP-DocLayoutV2 with the real architecture (~0.3 M params), ``paddle_dynamic`` engine.

    Boxes are meaningless; use it for realistic pre/post-processing and model compute in benchmarks.
    """
    import numpy as np
    import paddle
    from paddlex.inference.models.object_detection.modeling import PPDocLayoutV2
    from paddlex.inference.models.object_detection.modeling._config_pp_doclayout_v2 import PPDocLayoutV2Config

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = layout_labels()
    raw = _tiny_real_config(len(labels))
    paddle.seed(seed)
    model = PPDocLayoutV2(PPDocLayoutV2Config(**raw))
    model.eval()
    state = model.get_hf_state_dict()
    transpose = set(model.get_transpose_weight_keys())
    tensors = {}
    for k, v in state.items():
        a = v.numpy() if hasattr(v, "numpy") else np.asarray(v)
        tensors[k] = np.ascontiguousarray(a.T if k in transpose else a)
    from safetensors.numpy import save_file

    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pd"})
    (out / "config.json").write_text(json.dumps(raw, indent=1), "utf-8")  # raw dict: to_dict() loses keys
    _write_yml(out, LAYOUT_MODEL_NAME, labels)
    return out


def _tiny_real_config(n: int) -> dict:
    """HGNetV2 mini backbone, d_model 32, one encoder and one decoder layer, 30 queries, tiny order head."""
    return {
        "model_type": "pp_doclayout_v2",
        "backbone_config": {
            "model_type": "hgnet_v2", "num_channels": 3, "embedding_size": 16, "hidden_sizes": [16, 32, 64, 128],
            "hidden_act": "relu", "num_labels": 0, "stem_channels": [3, 8, 16], "stem_strides": [2, 1, 1, 2, 1],
            "stage_in_channels": [16, 16, 32, 64], "stage_mid_channels": [8, 16, 16, 32],
            "stage_out_channels": [16, 32, 64, 128], "stage_num_blocks": [1, 1, 1, 1],
            "stage_downsample": [False, True, True, True], "stage_downsample_strides": [2, 2, 2, 2],
            "stage_light_block": [False, False, True, True], "stage_kernel_size": [3, 3, 5, 5],
            "stage_numb_of_layers": [2, 2, 2, 2], "use_learnable_affine_block": False},
        "encoder_hidden_dim": 32, "encoder_in_channels": [32, 64, 128], "feat_strides": [8, 16, 32],
        "encoder_layers": 1, "encoder_ffn_dim": 64, "encoder_attention_heads": 2,
        "d_model": 32, "num_queries": 30, "decoder_in_channels": [32, 32, 32], "decoder_ffn_dim": 64,
        "decoder_layers": 1, "decoder_attention_heads": 2, "decoder_n_points": 2, "num_labels": n,
        "class_thresholds": [0.5] * n, "class_order": list(range(n)),
        "reading_order_config": {
            "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64, "num_hidden_layers": 1,
            "num_classes": n, "coordinate_size": 11, "shape_size": 10, "global_pointer_head_size": 16,
            "relation_bias_embed_dim": 8},
    }


def demo_models(cache_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """(layout_dir, cell_dir): scripted models matching the sample pages' template, built once and cached."""
    from ocrvl_ray.testing.pages import TEMPLATE_CELLS, TEMPLATE_REGIONS

    base = Path(cache_dir) if cache_dir else Path(tempfile.gettempdir()) / "ocrvl-demo-models"
    base.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha1(json.dumps([TEMPLATE_REGIONS, TEMPLATE_CELLS, 1]).encode()).hexdigest()[:10]
    layout_dir, cell_dir = base / f"layout-{key}", base / f"cells-{key}"
    for target, build in ((layout_dir, lambda d: build_tiny_layout_model(d, TEMPLATE_REGIONS)),
                          (cell_dir, lambda d: build_tiny_cell_model(d, TEMPLATE_CELLS))):
        if (target / "inference.yml").is_file():
            continue
        tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=base))
        build(tmp)
        try:
            tmp.rename(target)  # atomic publish; a concurrent builder may have won
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    return layout_dir, cell_dir
