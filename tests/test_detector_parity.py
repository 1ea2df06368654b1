"""engine=paddle vs engine=transformers on the same weights: a tiny random PP-DocLayoutV2 / V3 built in Paddle
(paddlex's own dynamic model classes; V2 by ``testing.models.build_tiny_real_layout_model``), run by paddleocr's
LayoutDetection here and, from the same model.safetensors, by ``TransformersDetector`` in .venv-torch.

Same labels and reading order, boxes within 2 px, scores within 1e-3 (the issue's bound; measured: 1 px, 4e-5).
V2: the reading order is equal up to adjacent swaps; measured one swap of two neighbouring lines in 30 regions
(page 2, regions 12/13) where this random model's order votes nearly tie; page 1 is identical. V3: the random
model keeps 2 regions a page, equal; paddlex's dynamic engine gives this model no ``polygon_points`` while
transformers gives mask outlines (which also depend on the score threshold there: it binarises the masks with
it), so outlines are not compared."""
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

    from ocrvl_ray.demo.models import layout_labels, write_inference_yml
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
    from ocrvl_ray.demo.models import layout_labels

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
