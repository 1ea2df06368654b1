"""Random-weight PP-DocLayoutV2 models with the real architecture, for realistic compute in tests and benches."""
from __future__ import annotations

import json
import os
from pathlib import Path

from ocrvl_ray.core.assets import layout_labels
from ocrvl_ray.demo.models import LAYOUT_MODEL_NAME, write_inference_yml


def build_tiny_real_layout_model(out_dir: str | os.PathLike, seed: int = 0, full_size: bool = False) -> Path:
    """A random-weight PP-DocLayoutV2 with the real architecture (~0.3 M params), ``paddle_dynamic`` engine.

    Boxes are meaningless; use it for realistic pre/post-processing and model compute in benchmarks.
    ``full_size``: paddlex's ``PPDocLayoutV2Config`` defaults instead (53.6 M params; ``bench/detector_memory.py``).
    """
    import numpy as np
    import paddle
    from paddlex.inference.models.object_detection.modeling import PPDocLayoutV2
    from paddlex.inference.models.object_detection.modeling._config_pp_doclayout_v2 import PPDocLayoutV2Config

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labels = layout_labels()
    raw = _tiny_real_config(len(labels))
    if full_size:
        keep = ("model_type", "num_labels", "class_thresholds", "class_order")
        full = {k: v for k, v in PPDocLayoutV2Config().to_dict().items() if k not in ("id2label", "label2id")}
        raw = {**full, **{k: raw[k] for k in keep},
               "reading_order_config": {**full["reading_order_config"], "num_classes": len(labels)}}
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
    write_inference_yml(out, LAYOUT_MODEL_NAME, labels)
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
