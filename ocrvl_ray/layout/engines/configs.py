"""PP-DocLayout (and RT-DETR table-cell) configs for models built offline with random weights: full size (the
library's defaults, what bench/gpu_check.py times) or tiny (a few thousand parameters per block; the CPU tests and
``--smoke``); and the synthetic page they are run on.

Only transformers, torch and pyyaml (a transformers dependency) are imported, and only inside the functions.
"""
from __future__ import annotations

from pathlib import Path

from ocrvl_ray.core.assets import layout_labels

#: version -> transformers class prefix (``<prefix>Config``, ``<prefix>ForObjectDetection``, ...).
CLASS_PREFIX = {"v2": "PPDocLayoutV2", "v3": "PPDocLayoutV3", "v4": "PPDocLayoutV4"}
#: config.json ``model_type`` -> version.
MODEL_TYPES = {"pp_doclayout_v2": "v2", "pp_doclayout_v3": "v3", "pp_doclayout_v4": "v4"}
#: The first transformers release with each version's classes.
FIRST_RELEASE = {"v2": "5.3", "v3": "5.1", "v4": "5.20"}
#: PP-DocLayoutV2's per-label score gate before its reading-order head, and each label's class in that head
#: (the official config.json's ``class_thresholds`` / ``class_order``, as paddlex's converter writes them).
V2_CLASS_THRESHOLDS = [0.5, 0.5, 0.5, 0.5, 0.5, 0.4, 0.4, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.4, 0.5, 0.4, 0.5,
                       0.5, 0.45, 0.5, 0.4, 0.4, 0.5]
V2_CLASS_ORDER = [4, 2, 14, 1, 5, 7, 8, 6, 11, 11, 9, 13, 10, 10, 1, 2, 3, 0, 2, 2, 12, 1, 2, 15, 6]


def available_versions() -> tuple[str, ...]:
    """The versions the installed transformers has classes for (V4 needs >= 5.20)."""
    import transformers

    return tuple(v for v, prefix in CLASS_PREFIX.items() if hasattr(transformers, f"{prefix}ForObjectDetection"))


def _tiny(version: str) -> dict:
    """Keyword overrides that shrink every block (backbone, encoder, decoder, order/mask heads)."""
    out = [16, 32, 64, 128]
    kw = dict(
        backbone_config=dict(model_type="hgnet_v2", stem_channels=[3, 8, 8], stage_in_channels=[8, 16, 32, 64],
                             stage_mid_channels=[8, 8, 16, 16], stage_out_channels=out, hidden_sizes=out,
                             stage_num_blocks=[1, 1, 1, 1], stage_numb_of_layers=[2, 2, 2, 2], embedding_size=8,
                             depths=[1, 1, 1, 1],
                             out_features=["stage2", "stage3", "stage4"], out_indices=[2, 3, 4]),
        encoder_in_channels=out[1:], encoder_hidden_dim=32, encoder_ffn_dim=64, encoder_attention_heads=2,
        d_model=32, decoder_in_channels=[32, 32, 32], decoder_ffn_dim=64, decoder_attention_heads=2,
        decoder_layers=2, num_queries=30, num_denoising=0, global_pointer_head_size=16,
    )
    if version == "v2":
        kw["reading_order_config"] = dict(hidden_size=32, num_attention_heads=2, intermediate_size=64,
                                          num_hidden_layers=1, coordinate_size=6, shape_size=4,
                                          global_pointer_head_size=16)
    if version == "v3":
        kw["backbone_config"].update(out_features=["stage1", "stage2", "stage3", "stage4"], out_indices=[1, 2, 3, 4])
        kw.update(mask_feature_channels=[16, 16], x4_feat_dim=16, num_prototypes=8)
    if version == "v4":
        kw.update(hidden_size=32, deform_conv_width=16)
    return kw


def detector_config(version: str, *, tiny: bool = False):
    """The ``PPDocLayoutV*Config`` of ``version`` (the library's defaults, or tiny) with the 25 layout labels."""
    import transformers

    labels = layout_labels()
    kw = _tiny(version) if tiny else {}
    if version == "v2":
        kw.update(class_thresholds=V2_CLASS_THRESHOLDS, class_order=V2_CLASS_ORDER)
    cls = getattr(transformers, f"{CLASS_PREFIX[version]}Config")
    return cls(id2label=dict(enumerate(labels)), label2id={lab: i for i, lab in enumerate(labels)}, **kw)


def random_detector(version: str, *, tiny: bool = False, seed: int = 0):
    """``PPDocLayoutV*ForObjectDetection`` with random weights, in eval mode. Convolutions are He-initialised:
    with the library's small init the backbone's activations vanish (~1e-14 at the encoder) and every query
    collapses onto one saturated box; with He init the outputs vary like a real detector's."""
    import torch
    import transformers

    torch.manual_seed(seed)
    model = getattr(transformers, f"{CLASS_PREFIX[version]}ForObjectDetection")(detector_config(version, tiny=tiny))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return model.eval()


def save_random_detector(out_dir: str | Path, version: str, *, tiny: bool = True, seed: int = 0) -> Path:
    """A model folder (config.json, model.safetensors, preprocessor_config.json) with random weights."""
    import transformers

    out = Path(out_dir)
    random_detector(version, tiny=tiny, seed=seed).save_pretrained(out)
    getattr(transformers, f"{CLASS_PREFIX[version]}ImageProcessor")().save_pretrained(out)
    return out


def save_random_cell_detector(out_dir: str | Path, *, seed: int = 0) -> Path:
    """A tiny RT-DETR table-cell model folder (label ``cell``; the image processor as paddlex's converter writes it
    for RT-DETR-L_wired_table_cell_det: 640x640 bicubic, rescale only) with random, He-initialised weights."""
    import torch
    import transformers

    kw = {k: v for k, v in _tiny("v2").items() if k not in ("reading_order_config", "global_pointer_head_size")}
    torch.manual_seed(seed)
    model = transformers.RTDetrForObjectDetection(transformers.RTDetrConfig(
        id2label={0: "cell"}, label2id={"cell": 0}, **{**kw, "num_denoising": 10}))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    out = Path(out_dir)
    model.eval().save_pretrained(out)
    transformers.RTDetrImageProcessor(size={"height": 640, "width": 640}, resample=3, do_normalize=False
                                      ).save_pretrained(out)
    return out


def synthetic_page(width: int, height: int, seed: int = 0):
    """A white RGB page with dark text-line bars in two columns and a grey figure block."""
    import numpy as np

    rng = np.random.default_rng(seed)
    page = np.full((height, width, 3), 250, np.uint8)
    line, gap = max(height // 120, 2), max(height // 60, 4)
    for x0, x1 in ((width // 12, width * 11 // 24), (width * 13 // 24, width * 11 // 12)):
        for y in range(height // 12, height // 2, gap):
            page[y:y + line, x0:x1 - int(rng.integers(0, width // 10))] = 25
    page[height * 5 // 8:height * 7 // 8, width // 6:width * 5 // 6] = 128
    return page
