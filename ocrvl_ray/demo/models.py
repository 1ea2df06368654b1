"""Tiny offline detection models that load through the REAL paddleocr classes (no download, no network);
what ``demo_models=true`` runs.

* ``build_tiny_layout_model``: a static Paddle graph with the PP-DocLayoutV2 I/O contract
  (inputs im_shape/image/scale_factor, 8-column boxes with reading-order columns) whose output is a
  scripted list of normalised boxes scaled to each input image's original size. With
  ``model_name="PP-DocLayoutV3"`` it also has V3's third output, one instance mask per box (at a quarter
  of the 800x800 input, rasterised from a scripted polygon), which paddlex turns into ``polygon_points``.
* ``build_tiny_cell_model``: the same idea with the 6-column RT-DETR table-cell contract.
* ``demo_models``: scripted models whose boxes match the bundled sample's page designs (by aspect ratio).

Paddle is imported inside the functions, so importing this module is cheap.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

import yaml

from ocrvl_ray.core.assets import layout_inference_yml, layout_labels
from ocrvl_ray.demo.sample import TEMPLATE_CELLS, TEMPLATE_REGIONS
from ocrvl_ray.demo.scenes import SCENES

LAYOUT_MODEL_NAME = "PP-DocLayoutV2"
LAYOUT_V3_MODEL_NAME = "PP-DocLayoutV3"
MASK_SIDE = 200  # PP-DocLayoutV3 masks: a quarter of its 800x800 input (what paddlex's mask-to-polygon assumes)
CELL_MODEL_NAME = "RT-DETR-L_wired_table_cell_det"
CELL_MODEL_NAMES = ("RT-DETR-L_wired_table_cell_det", "RT-DETR-L_wireless_table_cell_det")

#: A scripted box: (label, score, x1, y1, x2, y2) normalised to the image size, optionally + order rank.
ScriptedBox = Sequence


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


def _masks(rows: list[tuple], polygons: Sequence | None, q: int = 1):
    """``(max(Q, q), MASK_SIDE, MASK_SIDE)`` float32 0/1 masks: each box's polygon (normalised points), else its
    box (empty beyond the rows)."""
    import cv2
    import numpy as np

    polygons = list(polygons or [])
    if len(polygons) > len(rows):
        raise ValueError(f"{len(polygons)} polygons for {len(rows)} scripted boxes")
    out = np.zeros((max(q, len(rows)), MASK_SIDE, MASK_SIDE), np.float32)
    for i, r in enumerate(rows):
        poly = polygons[i] if i < len(polygons) and polygons[i] is not None else \
            [(r[2], r[3]), (r[4], r[3]), (r[4], r[5]), (r[2], r[5])]
        pts = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        if len(pts) < 3 or not ((0 <= pts) & (pts <= 1)).all():
            raise ValueError(f"polygon #{i}: expected >= 3 points (x, y) normalised to [0, 1], got {poly!r}")
        layer = np.zeros((MASK_SIDE, MASK_SIDE), np.uint8)
        cv2.fillPoly(layer, [np.round(pts * MASK_SIDE).astype(np.int32)], 1)
        out[i] = layer
    return out


def _padded(rows: list[tuple], q: int) -> list[tuple]:
    """``rows`` + placeholder boxes (class -1, score 0: paddlex always filters them out) up to ``q``."""
    return list(rows) + [(-1, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0)] * (q - len(rows))


def _export(out_dir: Path, rows: list[tuple], ncols: int, masks=None,
            by_aspect: Sequence[tuple[float, list[tuple]]] = ()) -> None:
    """Export a static graph that returns ``rows`` scaled to each image: (boxes[B*Q, ncols], boxes_num[B]),
    plus ``masks`` (``(Q, S, S)``) as a third output masks[B*Q, S, S] int32 when given.

    ``by_aspect``: ``(width / height, rows)`` pairs; an image of that aspect (within 0.01) gets those rows
    instead (with box-shaped masks), every other image gets ``rows``.
    """
    import numpy as np
    import paddle

    sets = [rows, *(r for _a, r in by_aspect)]
    q = max(1, *(len(r) for r in sets))
    arr = np.asarray([_padded(r, q) for r in sets], dtype="float32")               # [K, Q, 7]
    k = len(sets)
    # columns besides the box: [cls, score] + [order_seq, order_votes] for 8-column output
    extra = np.concatenate([arr[:, :, 6:7], np.zeros((k, q, 1), "float32")], axis=2)
    aspects = np.asarray([a for a, _r in by_aspect] or [0.0], dtype="float32")
    if masks is not None:
        first = np.zeros((q, *masks.shape[1:]), np.float32)
        first[:len(masks)] = masks
        masks = np.stack([first, *(_masks(r, None, q) for _a, r in by_aspect)])     # [K, Q, S, S]

    def param(layer, value):
        return layer.create_parameter(list(value.shape), default_initializer=paddle.nn.initializer.Assign(value))

    class Scripted(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.norm, self.head = param(self, arr[:, :, 2:6]), param(self, arr[:, :, :2])
            self.tail = param(self, extra)
            self.aspects = param(self, aspects)
            self.touch = paddle.nn.Conv2D(3, 1, 1)  # keeps `image` in the graph
            if masks is not None:
                self.masks = param(self, masks)

        def forward(self, im_shape, image, scale_factor):
            orig = paddle.floor(im_shape / scale_factor + 0.5)                    # [B, 2] = (h, w)
            b = paddle.shape(orig)[0]
            # which box set: [B, K] one-hot (set 0 unless the aspect matches another)
            hit = (paddle.abs(orig[:, 1:2] / orig[:, 0:1] - self.aspects.unsqueeze(0)) < 0.01).astype("float32")
            pick = paddle.concat([1.0 - hit.sum(axis=1, keepdim=True), hit], axis=1)[:, :k]

            def choose(p):                                                          # [K, Q, C] -> [B, Q, C]
                return paddle.matmul(pick, p.reshape([k, -1])).reshape([b, q, -1])

            whwh = paddle.stack([orig[:, 1], orig[:, 0], orig[:, 1], orig[:, 0]], axis=1)
            zero = self.touch(image).mean() * 0.0
            parts = [choose(self.head), choose(self.norm) * whwh.unsqueeze(1) + zero]
            if ncols == 8:
                parts.append(choose(self.tail))
            out = paddle.concat(parts, axis=2).reshape([-1, ncols])
            num = (paddle.ones_like(orig[:, 0]) * q).astype("int32")
            if masks is None:
                return out, num
            return out, num, choose(self.masks).reshape([-1, *masks.shape[2:]]).round().astype("int32")

    paddle.seed(0)
    layer = Scripted()
    layer.eval()
    spec = [paddle.static.InputSpec([None, 2], "float32", "im_shape"),
            paddle.static.InputSpec([None, 3, -1, -1], "float32", "image"),
            paddle.static.InputSpec([None, 2], "float32", "scale_factor")]
    static = paddle.jit.to_static(layer, input_spec=spec, full_graph=True)
    paddle.jit.save(static, str(out_dir / "inference"))


def write_inference_yml(out_dir: Path, model_name: str, label_list: list[str]) -> None:
    """The real PP-DocLayoutV2 ``inference.yml`` with this model name and label list."""
    cfg = layout_inference_yml()
    cfg["Global"]["model_name"] = model_name
    cfg["label_list"] = list(label_list)
    (out_dir / "inference.yml").write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), "utf-8")


def build_tiny_layout_model(out_dir: str | os.PathLike, boxes: Sequence[ScriptedBox],
                            model_name: str = LAYOUT_MODEL_NAME, polygons: Sequence | None = None,
                            by_aspect: Sequence[tuple[float, Sequence[ScriptedBox]]] = ()) -> Path:
    """Export a scripted PP-DocLayoutV2- or V3-compatible model to ``out_dir`` and return it.

    ``boxes``: ``(label, score, x1, y1, x2, y2[, order])`` with coordinates normalised to the image;
    the model returns them scaled to each input image's size. ``order`` (default: list position) fills
    the reading-order column paddlex sorts by; paddlex then numbers the ranked labels 1, 2, ... .
    ``model_name="PP-DocLayoutV3"`` adds the instance-mask output: box *i*'s mask is ``polygons[i]``
    (normalised ``(x, y)`` points; None or absent: the box itself); V3 and V2 share the 25 labels.
    ``by_aspect``: ``(width / height, boxes)`` pairs: images of that aspect (within 0.01) get those boxes.
    Load with ``paddleocr.LayoutDetection(model_name=model_name, model_dir=out_dir, device="cpu")``.
    """
    if model_name not in (LAYOUT_MODEL_NAME, LAYOUT_V3_MODEL_NAME):
        raise ValueError(f"model_name must be {LAYOUT_MODEL_NAME} or {LAYOUT_V3_MODEL_NAME}, got {model_name!r}")
    if polygons and model_name != LAYOUT_V3_MODEL_NAME:
        raise ValueError(f"polygons need model_name={LAYOUT_V3_MODEL_NAME} ({model_name} has no masks)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = layout_labels()
    rows = _normalise(boxes, labels)
    masks = _masks(rows, polygons) if model_name == LAYOUT_V3_MODEL_NAME else None
    _export(out, rows, ncols=8, masks=masks, by_aspect=[(a, _normalise(b, labels)) for a, b in by_aspect])
    write_inference_yml(out, model_name, labels)
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
    write_inference_yml(out, model_name, ["cell"])
    return out


def demo_model_dirs(cache_dir: str | os.PathLike | None = None,
                    layout_model_name: str = LAYOUT_MODEL_NAME) -> tuple[Path, Path]:
    """Where ``demo_models`` puts (layout_dir, cell_dir): named by a hash of what they detect, so every node
    builds the same folders under the same ``cache_dir``."""
    base = Path(cache_dir) if cache_dir else Path(tempfile.gettempdir()) / "ocrvl-demo-models"
    variants = [(scene.aspect, scene.regions) for name, scene in SCENES.items() if name != "report"]
    key = hashlib.sha1(json.dumps([TEMPLATE_REGIONS, TEMPLATE_CELLS, variants, 2]).encode()).hexdigest()[:10]
    v3 = "-v3" if layout_model_name == LAYOUT_V3_MODEL_NAME else ""
    return base / f"layout{v3}-{key}", base / f"cells-{key}"


def demo_models(cache_dir: str | os.PathLike | None = None,
                layout_model_name: str = LAYOUT_MODEL_NAME) -> tuple[Path, Path]:
    """(layout_dir, cell_dir): scripted models matching the bundled sample's page designs (``scenes.SCENES``,
    picked by aspect ratio; other pages get the report template), built once and cached.

    ``layout_model_name``: PP-DocLayoutV2 or PP-DocLayoutV3 (the same boxes, each with a box-shaped mask).
    """
    layout_dir, cell_dir = demo_model_dirs(cache_dir, layout_model_name)
    base = layout_dir.parent
    base.mkdir(parents=True, exist_ok=True)
    variants = [(scene.aspect, scene.regions) for name, scene in SCENES.items() if name != "report"]
    for target, build in ((layout_dir, lambda d: build_tiny_layout_model(d, TEMPLATE_REGIONS, layout_model_name,
                                                                         by_aspect=variants)),
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


def ensure_demo_model(model_dir: str | os.PathLike) -> bool:
    """Builds the demo model folder ``model_dir`` names when this node lacks it (a worker on another machine than
    the driver that built it: issue 27); True when ``model_dir`` is a demo model folder, False for any other."""
    d = Path(model_dir)
    for name in (LAYOUT_MODEL_NAME, LAYOUT_V3_MODEL_NAME):
        if d in demo_model_dirs(d.parent, name):
            if not (d / "inference.yml").is_file():
                demo_models(d.parent, name)
            return True
    return False
