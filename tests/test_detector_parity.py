"""engine=paddle vs engine=transformers on the same weights: a tiny random PP-DocLayoutV2 / V3 built in Paddle
(paddlex's own dynamic model classes; V2 by ``testing.models.build_tiny_real_layout_model``), run by paddleocr's
LayoutDetection here and, from the same model.safetensors, by ``TransformersDetector`` in .venv-torch.

Same labels and reading order, boxes within 2 px, scores within 1e-3 (the issue's bound; measured: 1 px, 4e-5).
V2: the reading order is equal up to adjacent swaps; measured one swap of two neighbouring lines in 30 regions
(page 2, regions 12/13) where this random model's order votes nearly tie; page 1 is identical. V3: the random
model keeps 2 regions a page, equal; paddlex's dynamic engine gives this model no ``polygon_points`` while
transformers gives mask outlines (which also depend on the score threshold there: it binarises the masks with
it), so outlines are not compared.

Table cells (RT-DETR-L): a tiny random RT-DETR in paddlex's dynamic format through the cell stage with
``cells.engine=paddle`` and, converted by ``ocrvl convert-detector``, with ``cells.engine=transformers``."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from tests.venv_suites import ROOT, TORCH_PYTHON

pytestmark = pytest.mark.skipif(not TORCH_PYTHON.exists(), reason="no .venv-torch; build it with: ./install.sh torch")


def tiny_paddle_v3(out):
    """A random PP-DocLayoutV3 in paddlex's dynamic format, sized like the tiny V2 (plus V3's mask head)."""
    import paddle
    from paddlex.inference.models.object_detection.modeling._config_pp_doclayout_v3 import PPDocLayoutV3Config
    from paddlex.inference.models.object_detection.modeling.pp_doclayout_v3 import PPDocLayoutV3
    from safetensors.numpy import save_file

    from ocrvl_ray.core.assets import layout_labels
    from ocrvl_ray.demo.models import write_inference_yml
    from ocrvl_ray.testing.models import _tiny_real_config

    labels = layout_labels()
    raw = {k: v for k, v in _tiny_real_config(len(labels)).items()
           if k not in ("class_thresholds", "class_order", "reading_order_config")}
    raw["model_type"] = "pp_doclayout_v3"
    raw["backbone_config"] = {**raw["backbone_config"], "out_features": ["stage1", "stage2", "stage3", "stage4"],
                              "out_indices": [1, 2, 3, 4]}
    raw.update(mask_feature_channels=[16, 16], x4_feat_dim=16, num_prototypes=8, global_pointer_head_size=16)
    paddle.seed(0)
    model = PPDocLayoutV3(PPDocLayoutV3Config(**raw))
    model.eval()
    transpose = set(model.get_transpose_weight_keys())
    out.mkdir()
    save_file({k: np.ascontiguousarray(v.numpy().T if k in transpose else v.numpy())
               for k, v in model.get_hf_state_dict().items()}, str(out / "model.safetensors"), metadata={"format": "pd"})
    (out / "config.json").write_text(json.dumps(raw))
    write_inference_yml(out, "PP-DocLayoutV3", labels)
    return out


def transformers_folder(paddle_dir, out, version):
    """The Paddle dynamic folder as transformers reads it: the same model.safetensors; config.json with the label
    names and the backbone's three output stages spelled out (paddlex's config class defaults them)."""
    from ocrvl_ray.core.assets import layout_labels

    out.mkdir()
    shutil.copy(paddle_dir / "model.safetensors", out / "model.safetensors")
    cfg = json.loads((paddle_dir / "config.json").read_text())
    labels = layout_labels()
    cfg["backbone_config"].setdefault("out_features", ["stage2", "stage3", "stage4"])
    cfg["backbone_config"].setdefault("out_indices", [2, 3, 4])
    cfg.update(id2label={str(i): lab for i, lab in enumerate(labels)}, label2id={lab: i for i, lab in enumerate(labels)})
    (out / "config.json").write_text(json.dumps(cfg))
    (out / "preprocessor_config.json").write_text(json.dumps({"image_processor_type": f"PPDocLayout{version.upper()}ImageProcessor"}))
    return out


@pytest.mark.parametrize("version", ["v2", "v3"])
def test_paddle_and_transformers_agree(tmp_path, version):
    import paddle

    from ocrvl_ray.layout.engines.configs import synthetic_page
    from ocrvl_ray.layout.stages.actors import load_predictor
    from ocrvl_ray.testing.models import build_tiny_real_layout_model

    pd_dir = (build_tiny_real_layout_model(tmp_path / "paddle", seed=0) if version == "v2"
              else tiny_paddle_v3(tmp_path / "paddle"))
    pages = [synthetic_page(850, 1100), synthetic_page(1000, 700, seed=3)]
    np.save(tmp_path / "pages.npy", np.array(pages, dtype=object), allow_pickle=True)
    model = load_predictor("LayoutDetection", f"PP-DocLayout{version.upper()}", str(pd_dir), "cpu", "layout")
    labels = list(model.paddlex_predictor.config["label_list"])
    thresholds = {i: 0.3 if lab == "table" else 0.5 for i, lab in enumerate(labels)}   # the stage's defaults
    with paddle.no_grad():   # paddle's engine is fed BGR, as decode makes det_image
        res = model.predict([p[..., ::-1].copy() for p in pages], batch_size=2, threshold=thresholds,
                            layout_nms=True, layout_shape_mode="auto")
    ref = [[(b["label"], b["order"] or -1, [float(v) for v in b["coordinate"]], float(b["score"]))
            for b in r["boxes"]] for r in res]
    assert all(len(r) >= (5 if version == "v2" else 2) for r in ref), ref   # a comparison, not two empty lists

    out = subprocess.run([str(TORCH_PYTHON), "-c", """
import json, sys, numpy as np
from ocrvl_ray.layout.engines.transformers_detector import TransformersDetector
det = TransformersDetector(sys.argv[1], threshold=0.5, thresholds={"table": 0.3}, layout_nms=True)
print(json.dumps(det.predict(list(np.load(sys.argv[2], allow_pickle=True)))))
""", str(transformers_folder(pd_dir, tmp_path / "hf", version)), str(tmp_path / "pages.npy")],
        capture_output=True, text=True, timeout=600, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    swaps = 0
    for want, have in zip(ref, got, strict=True):
        assert len(want) == len(have)
        boxes = np.array([r["box"] for r in have])
        match = []   # each paddle region -> the transformers region of its label with the nearest box
        for lab, _, box, score in want:
            dist = np.where([r["label"] == lab for r in have], np.abs(boxes - box).max(axis=1), np.inf)
            j = int(np.argmin(dist))
            assert dist[j] <= 2 and abs(have[j]["score"] - score) <= 1e-3, (lab, box, have[j])
            match.append(j)
        assert sorted(match) == list(range(len(have)))
        assert [w[1] for w in want] == [r["order"] for r in have]   # ranks in list order: same labels, same count
        moved = [i for i, j in enumerate(match) if i != j]
        assert all(match[match[i]] == i and abs(match[i] - i) == 1 for i in moved), match   # adjacent swaps only
        swaps += len(moved) // 2
    assert swaps <= 1, swaps


CELL_MODEL = "RT-DETR-L_wired_table_cell_det"


def tiny_paddle_cells(out):
    """A random RT-DETR table-cell model (label ``cell``) in paddlex's dynamic format (what the paddle engine
    loads), and the same weights as a Paddle checkpoint (``<out>_checkpoint/model_state.pdparams``, Linear weights
    in Paddle's [in, out] as paddlex's converter expects them) for ``ocrvl convert-detector``. Convolutions are
    He-initialised, as ``configs.random_detector`` does, so the boxes vary."""
    import paddle
    import yaml
    from paddlex.inference.models.object_detection.modeling._config_rt_detr import RTDETRConfig
    from paddlex.inference.models.object_detection.modeling.rt_detr import RTDETR
    from paddlex.modules.base.utils.pdparams2safetensors import build_inference_meta
    from paddlex.modules.base.weight_converter import _should_transpose
    from safetensors.numpy import save_file

    from ocrvl_ray.testing.models import _tiny_real_config

    raw = {k: v for k, v in _tiny_real_config(1).items()
           if k not in ("class_thresholds", "class_order", "reading_order_config", "num_labels")}
    raw["model_type"] = "rt_detr"
    raw["backbone_config"] = {**raw["backbone_config"], "out_features": ["stage2", "stage3", "stage4"],
                              "out_indices": [2, 3, 4]}
    raw.update(id2label={"0": "cell"}, label2id={"cell": 0}, num_denoising=10)
    paddle.seed(0)
    model = RTDETR(RTDETRConfig(**raw))
    rng = np.random.default_rng(0)
    for layer in model.sublayers():
        if isinstance(layer, paddle.nn.Conv2D):
            shape = layer.weight.shape
            layer.weight.set_value(rng.normal(0, np.sqrt(2 / np.prod(shape[1:])), shape).astype("float32"))
    model.eval()
    transpose = set(model.get_transpose_weight_keys())
    hf = {k: np.ascontiguousarray(v.numpy().T if k in transpose else v.numpy())
          for k, v in model.get_hf_state_dict().items()}
    out.mkdir()
    save_file(hf, str(out / "model.safetensors"), metadata={"format": "pd"})
    (out / "config.json").write_text(json.dumps(raw))
    meta = {"Global": {"model_name": CELL_MODEL}, **build_inference_meta(CELL_MODEL)}   # the official yml's keys
    (out / "inference.yml").write_text(yaml.safe_dump(meta, sort_keys=False))
    ckpt = out.parent / f"{out.name}_checkpoint"
    ckpt.mkdir()
    paddle.save({k: paddle.to_tensor(np.ascontiguousarray(v.T) if v.ndim == 2 and "bias" not in k
                                     and _should_transpose(k) else v) for k, v in hf.items()},
                str(ckpt / "model_state.pdparams"))
    shutil.copy(out / "config.json", ckpt / "config.json")
    shutil.copy(out / "inference.yml", ckpt / "inference.yml")
    return out, ckpt


def _cell_batch(crops: list) -> dict:
    """A cell-stage batch: one page per crop, its one table at the page origin (cells come back in crop pixels)."""
    n = len(crops)
    return {"page_id": np.array([f"p{i}" for i in range(n)]), "status": np.array(["ok"] * n),
            "detail": np.array([""] * n), "image_path": np.array([f"p{i}.jpg" for i in range(n)]),
            "tables": [[{"table": 0, "box": [0.0, 0.0, float(c.shape[1]), float(c.shape[0])], "origin": [0.0, 0.0],
                         "factors": [1.0, 1.0], "shape": list(c.shape), "pixels": c.tobytes()}] for c in crops]}


def test_cells_paddle_and_transformers_agree(tmp_path, capsys):
    """The same tiny RT-DETR through the cell stage on both engines, the transformers folder made by
    ``ocrvl convert-detector``; crops the model takes as they are (640x640), enlarges and shrinks. Same cells,
    boxes within 2 px, scores within 1e-3 (measured: 0.002 px, 2e-6). Without the engine's OpenCV resize (the
    processor's own, antialiased) the shrunk crop's cells moved by a median 2.7 px, some queries swapped."""
    from scipy.optimize import linear_sum_assignment

    from ocrvl_ray import cli
    from ocrvl_ray.layout.config import CellModelConfig
    from ocrvl_ray.layout.engines.configs import synthetic_page
    from ocrvl_ray.layout.stages.detect_cells import CellDetectStage

    pd_dir, ckpt = tiny_paddle_cells(tmp_path / "paddle")
    assert cli.main(["convert-detector", "--from", str(ckpt), "--out", str(tmp_path / "hf")]) == 0
    assert f"(cells.engine=transformers cells.model_dir={tmp_path / 'hf'})" in capsys.readouterr().out
    crops = [np.ascontiguousarray(synthetic_page(w, h, seed=s)[..., ::-1])      # BGR, as cut from decode's page
             for w, h, s in ((640, 640, 1), (640, 640, 2), (320, 400, 3), (1024, 600, 4))]
    np.save(tmp_path / "crops.npy", np.array(crops, dtype=object), allow_pickle=True)
    stage = CellDetectStage(CellModelConfig(model_dir=str(pd_dir), threshold=0.0))
    stage.setup()
    ref = stage.process_batch(_cell_batch(crops))
    assert list(ref["status"]) == ["ok"] * 4 and all(len(c) >= 5 for c in ref["cells"]), [len(c) for c in ref["cells"]]

    out = subprocess.run([str(TORCH_PYTHON), "-c", """
import json, sys, numpy as np
from ocrvl_ray.layout.config import CellModelConfig
from ocrvl_ray.layout.stages.detect_cells import CellDetectStage
from tests.test_detector_parity import _cell_batch
stage = CellDetectStage(CellModelConfig(engine="transformers", model_dir=sys.argv[1], threshold=0.0))
stage.setup()
res = stage.process_batch(_cell_batch(list(np.load(sys.argv[2], allow_pickle=True))))
print(json.dumps({"status": list(res["status"]), "cells": res["cells"]}))
""", str(tmp_path / "hf"), str(tmp_path / "crops.npy")],
        capture_output=True, text=True, timeout=600, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["status"] == ["ok"] * 4
    for k, (want, have) in enumerate(zip(ref["cells"], got["cells"], strict=True)):   # k: crop
        assert len(want) == len(have) and {c["kind"] for c in have} == {"cell"} and {c["table"] for c in have} == {0}
        wb, hb = np.array([c["box"] for c in want]), np.array([c["box"] for c in have])
        ws, hs = np.array([c["score"] for c in want]), np.array([c["score"] for c in have])
        db, ds = np.abs(wb[:, None] - hb[None]).max(-1), np.abs(ws[:, None] - hs[None])
        rows, cols = linear_sum_assignment(db + 1000 * ds)   # pair the cells: close boxes, close scores
        assert db[rows, cols].max() <= 2 and ds[rows, cols].max() <= 1e-3, (k, db[rows, cols], ds[rows, cols])
