"""PP-DocLayoutV2/V3/V4 on Hugging Face transformers: ``layout.engine=transformers``.

The library does the work: ``AutoModelForObjectDetection`` + the model's ``PPDocLayoutV*ImageProcessor``
(resize to 800x800, rescale; on the model's device) + its ``post_process_object_detection`` (boxes in the
input image's pixels, the model's reading order, V3 mask outlines / V4 quadrilaterals). The glue here makes
the result what the paddle engine's ``paddleocr.LayoutDetection`` gives the layout stage, following paddlex's
``LayoutAnalysisProcess`` (paddlex/inference/models/layout_analysis/processors.py): per-label thresholds
(``score > threshold``), coordinates rounded to whole pixels, paddlex's layout NMS, the whole-page ``image``
filter, boxes sorted by reading order, its ``filter_overlap_boxes`` (on boxes), ``order`` 1-based over the
labels that take part in reading order. Not reproduced: unclip / merge modes (the stage uses neither), the
polygon re-check of overlapping boxes and ``layout_shape_mode`` reshaping of outlines (the outline is the
library's).

Region dicts (the row form of ``core.records.Region`` less ``kind``/``table``, which the stage adds):
``{"label", "score", "box": [x1, y1, x2, y2] in the input image's pixels, "order": 1-based rank or -1,
"polygon": [[x, y], ...] or []}``.

No Ray, no Paddle here (bench/gpu_check.py runs this module on a machine with only torch and transformers);
torch and transformers are imported when a detector is built.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.layout.engines.configs import FIRST_RELEASE, MODEL_TYPES, available_versions

#: The files of a transformers model folder.
MODEL_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")
DTYPES = ("float32", "bfloat16")
#: Labels paddlex gives no reading-order rank (``order`` None there, -1 in the row form).
SKIP_ORDER_LABELS = frozenset({"figure_title", "vision_footnote", "image", "chart", "table", "header", "header_image",
                               "footer", "footer_image", "footnote", "aside_text"})
#: paddlex's layout NMS: IoU to suppress a box of the same label / of another label.
NMS_IOU_SAME, NMS_IOU_DIFF = 0.6, 0.98


def torch_device(device: str) -> str:
    """Config device ("cpu", "gpu", "gpu:N", "cuda", "cuda:N") -> torch device string.

    Inside a Ray actor granted a GPU, Ray narrows ``CUDA_VISIBLE_DEVICES`` to it, so "gpu" is its cuda:0."""
    if device == "cpu":
        return "cpu"
    for prefix in ("gpu", "cuda"):
        if device == prefix:
            return "cuda"
        if device.startswith(prefix + ":") and device[len(prefix) + 1:].isdigit():
            return "cuda:" + device[len(prefix) + 1:]
    raise OcrvlError(f"device must be cpu, gpu or gpu:N, got {device!r}")


def check_model_folder(model_dir: str | Path, key: str = "layout.model_dir",
                       model_types: Mapping[str, str] = MODEL_TYPES, what: str = "a PP-DocLayout") -> tuple[Path, str]:
    """(folder, version) of a transformers ``what`` folder whose config.json ``model_type`` is one of
    ``model_types`` (model_type -> version), or a one-line error naming what is wrong."""
    import json

    d, engine = Path(model_dir), key.split(".")[0] + ".engine=transformers"
    missing = [f for f in MODEL_FILES if not (d / f).is_file()]
    if missing:
        hint = (" (a Paddle model folder: convert it with `ocrvl convert-detector --from DIR --out HF_DIR`)"
                if (d / "inference.yml").is_file() else "")
        raise OcrvlError(f"{key}={model_dir}: {', '.join(missing)} missing; {engine} needs a "
                         f"transformers model folder{hint}")
    model_type = json.loads((d / "config.json").read_text("utf-8")).get("model_type")
    version = model_types.get(model_type)
    if version is None:
        raise OcrvlError(f"{key}={model_dir}: config.json model_type {model_type!r} is not {what} model "
                         f"({', '.join(model_types)})")
    if version in FIRST_RELEASE and version not in available_versions():
        import transformers

        raise OcrvlError(f"{key}={model_dir}: PP-DocLayout{version.upper()} needs transformers >= "
                         f"{FIRST_RELEASE[version]}, this environment has {transformers.__version__}; "
                         f"upgrade it (./install.sh torch)")
    return d, version


def load_model(folder: Path, device: str, dtype: str, key: str):
    """(image processor, model in eval mode on its device in ``dtype``) of a checked folder; the library's Auto
    classes pick the model's own."""
    if dtype not in DTYPES:
        raise OcrvlError(f"{key.split('.')[0]}.dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    import torch
    from transformers import AutoImageProcessor, AutoModelForObjectDetection

    target = torch.device(torch_device(device))
    if target.type == "cuda" and not torch.cuda.is_available():
        raise OcrvlError(f"{key.split('.')[0]}.device={device}: torch sees no CUDA GPU here "
                         f"(torch {torch.__version__})")
    processor = AutoImageProcessor.from_pretrained(folder)
    return processor, AutoModelForObjectDetection.from_pretrained(folder, dtype=getattr(torch, dtype)).to(target).eval()


def detect(processor, model, images: Sequence[np.ndarray], threshold: float,
           sizes: Sequence[tuple[int, int]] | None = None) -> list[dict]:
    """One batched pass: the processor (on the model's device), the model, the processor's
    ``post_process_object_detection`` (scores > ``threshold``; boxes in pixels of each image, or of ``sizes``:
    (height, width) each, when the images were resized before)."""
    import torch

    with torch.inference_mode():
        inputs = processor(images=list(images), return_tensors="pt", device=model.device)
        outputs = model(pixel_values=inputs["pixel_values"].to(model.dtype))
        for name, value in outputs.items():   # bf16 logits -> fp32 scores, as the fp32 model computes them
            if torch.is_tensor(value) and value.is_floating_point():
                outputs[name] = value.float()
        return processor.post_process_object_detection(
            outputs, threshold=threshold,
            target_sizes=sizes or [(int(im.shape[0]), int(im.shape[1])) for im in images])


class TransformersDetector:
    """One loaded PP-DocLayout model; ``predict`` runs a batch of RGB pages in one forward pass.

    ``threshold``: the score threshold of every label; ``thresholds``: label -> threshold overrides (the stage's
    ``table`` at ``table_threshold``). ``layout_nms``: paddlex's overlap suppression (``layout.layout_nms``).
    """

    def __init__(self, model_dir: str | Path, *, device: str = "cpu", dtype: str = "float32",
                 threshold: float = 0.5, thresholds: Mapping[str, float] | None = None, layout_nms: bool = True):
        folder, self.version = check_model_folder(model_dir)
        self.processor, self.model = load_model(folder, device, dtype, "layout.model_dir")
        id2label = self.model.config.id2label
        self.labels = [id2label[i] for i in range(len(id2label))]
        unknown = sorted(set(thresholds or {}) - set(self.labels))
        if unknown:
            raise OcrvlError(f"{model_dir}: no label {', '.join(unknown)} in this model ({', '.join(self.labels)})")
        self.thresholds = np.array([float((thresholds or {}).get(lab, threshold)) for lab in self.labels])
        self.layout_nms = layout_nms

    def predict(self, images: Sequence[np.ndarray]) -> list[list[dict]]:
        """Regions of each RGB uint8 HxWx3 image, in reading order (see the module docstring)."""
        if not len(images):
            return []
        sizes = [(int(im.shape[0]), int(im.shape[1])) for im in images]
        results = detect(self.processor, self.model, images, float(self.thresholds.min()))
        return [to_regions(r, h, w, self.labels, self.thresholds, self.layout_nms) for r, (h, w) in zip(results, sizes)]


def to_regions(result: dict, height: int, width: int, labels: list[str], thresholds: np.ndarray,
               layout_nms: bool) -> list[dict]:
    """One image's ``post_process_object_detection`` result (in reading order) -> region dicts, as paddlex's
    post-processing would finish it (``thresholds``: per label id; see the module docstring)."""
    ids = result["labels"].cpu().numpy().astype(int)
    scores = result["scores"].cpu().numpy().astype(np.float64)
    boxes = np.round(result["boxes"].cpu().numpy().astype(np.float64))
    polys = result.get("polygon_points")
    keep = np.flatnonzero(scores > thresholds[ids])   # paddlex: strictly above
    if layout_nms and len(keep):
        keep = keep[_layout_nms(ids[keep], scores[keep], boxes[keep])]
    keep = np.sort(_drop_page_images(keep, ids, boxes, width, height, labels))   # back to reading order
    out = []
    for i in keep:
        x1, y1, x2, y2 = (int(v) for v in (max(0, boxes[i, 0]), max(0, boxes[i, 1]),
                                           min(width, boxes[i, 2]), min(height, boxes[i, 3])))
        if x2 <= x1 or y2 <= y1:
            continue
        poly = [] if polys is None or polys[i] is None else \
            np.asarray(polys[i].cpu() if hasattr(polys[i], "cpu") else polys[i], dtype=np.float64).reshape(-1, 2)
        out.append({"label": labels[ids[i]], "score": float(scores[i]), "box": [x1, y1, x2, y2], "order": -1,
                    "polygon": [[float(x), float(y)] for x, y in poly]})
    out = _filter_overlaps(out)
    rank = 0
    for r in out:
        if r["label"] not in SKIP_ORDER_LABELS:
            rank += 1
            r["order"] = rank
    return out


def _filter_overlaps(regions: list[dict]) -> list[dict]:
    """paddlex's ``filter_boxes`` on box overlap: ``reference`` regions go; a region under 6 px wide or high goes;
    of two regions overlapping > 70 % of the smaller, the smaller goes (an ``inline_formula`` > 50 % goes
    itself), unless they are image/table/seal/chart against another label, except a table against a text label.
    paddlex first re-checks a box overlap on the polygons (shapely) in polygon shape modes; not done here."""
    regions = [r for r in regions if r["label"] != "reference"]
    area = [(r["box"][2] - r["box"][0]) * (r["box"][3] - r["box"][1]) for r in regions]
    dropped: set[int] = set()
    for i, a in enumerate(regions):
        x1, y1, x2, y2 = a["box"]
        if x2 - x1 < 6 or y2 - y1 < 6:
            dropped.add(i)
        for j in range(i + 1, len(regions)):
            if i in dropped or j in dropped:
                continue
            b = regions[j]["box"]
            inter = max(0, min(x2, b[2]) - max(x1, b[0])) * max(0, min(y2, b[3]) - max(y1, b[1]))
            ratio = inter / min(area[i], area[j]) if min(area[i], area[j]) else 0.0
            pair = {a["label"], regions[j]["label"]}
            if "inline_formula" in pair and ratio > 0.5:
                dropped.update(k for k in (i, j) if regions[k]["label"] == "inline_formula")
                continue
            if ratio > 0.7:
                if pair & {"image", "table", "seal", "chart"} and len(pair) > 1 and (
                        "table" not in pair or pair <= {"table", "image", "seal", "chart"}):
                    continue
                dropped.add(j if area[i] >= area[j] else i)
    return [r for k, r in enumerate(regions) if k not in dropped]


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """paddlex's IoU (inclusive pixel convention, ``+ 1``) of box ``a`` against boxes ``b``."""
    iw = np.maximum(0, np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]) + 1)
    ih = np.maximum(0, np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]) + 1)
    inter = iw * ih
    area = lambda r: (r[..., 2] - r[..., 0] + 1) * (r[..., 3] - r[..., 1] + 1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def _layout_nms(labels: np.ndarray, scores: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Indices kept by paddlex's ``nms(iou_same=0.6, iou_diff=0.98)``, highest score first."""
    todo = list(np.argsort(scores, kind="stable")[::-1])
    kept = []
    while todo:
        cur, rest = todo[0], np.array(todo[1:], dtype=int)
        kept.append(cur)
        if not len(rest):
            break
        limit = np.where(labels[rest] == labels[cur], NMS_IOU_SAME, NMS_IOU_DIFF)
        todo = list(rest[_iou(boxes[cur], boxes[rest]) < limit])
    return np.array(kept, dtype=int)


def _drop_page_images(keep: np.ndarray, labels: np.ndarray, boxes: np.ndarray, width: int, height: int,
                      names: list[str]) -> np.ndarray:
    """paddlex's large-image filter: with more than one box, drop ``image`` boxes covering > 82 % of a landscape
    page (93 % of a portrait one); if that would drop everything, keep all."""
    if len(keep) <= 1 or "image" not in names:
        return keep
    image = names.index("image")
    limit = (0.82 if width > height else 0.93) * width * height
    b = boxes[keep]
    area = (np.minimum(width, b[:, 2]) - np.maximum(0, b[:, 0])) * (np.minimum(height, b[:, 3]) - np.maximum(0, b[:, 1]))
    survivors = keep[(labels[keep] != image) | (area <= limit)]
    return survivors if len(survivors) else keep
