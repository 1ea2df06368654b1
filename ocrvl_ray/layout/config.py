"""The layout job's config: ``LayoutConfig`` with its detector pools (loaded by ``core.config.load_config``)."""
from __future__ import annotations

from typing import Any, ClassVar, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from ocrvl_ray.core.config import JobConfig, truthy
from ocrvl_ray.lmdb.writer import (DEFAULT_COMMIT_INTERVAL_S, DEFAULT_INDEX_BASE, DEFAULT_LABEL_FORMAT,
                                   DEFAULT_WRITE_BYTES)
from ocrvl_ray.core.generations import LAYOUT, VERSIONS, LayoutModelVersion, canonical


#: The default output; a generation other than the first writes its own (``default_output``), so a layout run
#: of each ``model_version`` after the quick start needs no ``output=`` and no ``overwrite=true``.
DEFAULT_OUTPUT = "./out/sample_layout.lmdb"


def default_output(model_version: str) -> str:
    """``./out/sample_layout.lmdb`` for the first generation, ``./out/sample_v1.5_layout.lmdb`` for v1.5, ..."""
    if model_version == VERSIONS[0]:
        return DEFAULT_OUTPUT
    return DEFAULT_OUTPUT.replace("_layout.lmdb", f"_{model_version}_layout.lmdb")


def _debug_limit(raw: str) -> int:
    """FAST_DEBUG: truthy -> 500 pages (the original's debug size), an integer > 1 -> that many, falsy -> all."""
    raw = raw.strip()
    if raw.isdigit() and int(raw) > 1:
        return int(raw)
    return 500 if truthy(raw) else 0


class ActorPool(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_actors: int = Field(1, ge=1, description="actors kept running (autoscaling lower bound)")
    max_actors: int = Field(1, ge=1, description="actors at most (one model copy each)")
    batch_size: int = Field(8, ge=1, description="images per predict call")
    num_gpus: Optional[float] = Field(None, ge=0, description="per actor; null = 1 on a GPU device, else 0")
    num_cpus: Optional[float] = Field(None, ge=0, description="per actor; null = 0 on a GPU device (the actor "
                                      "waits on the GPU: every CPU slot stays with decode/compose tasks), else 0.25")
    memory_mb: Optional[int] = Field(None, ge=1, description="MiB Ray reserves per actor; null = none. Only for node "
                                     "types that declare (or, on AWS, are filled in with) a `memory` resource: an "
                                     "autoscaler never launches a node type that lacks one (`ocrvl cluster-check`)")


def dtype_needs_transformers(section: str, value: str, info: ValidationInfo) -> str:
    """``<section>.dtype`` other than float32 needs ``<section>.engine=transformers``."""
    if value != "float32" and info.data.get("engine") != "transformers":
        raise ValueError(f"{section}.dtype={value} needs {section}.engine=transformers (the paddle engine runs "
                         f"float32)")
    return value


class LayoutModelConfig(ActorPool):
    engine: Literal["paddle", "transformers"] = Field(
        "paddle", description="paddle = paddleocr LayoutDetection; transformers = Hugging Face transformers on torch "
                              "(needs ./install.sh torch and model_dir = a transformers folder, "
                              "`ocrvl convert-detector`)")
    dtype: Literal["float32", "bfloat16"] = Field("float32", description="engine=transformers: model weights dtype")
    model_name: str = Field("PP-DocLayoutV2", description="layout model name (paddlex; engine=transformers: the "
                                                          "model the folder must hold)")
    model_dir: Optional[str] = Field(None, description="exported model folder; null = paddleocr downloads the "
                                                       "official weights (needs internet; engine=paddle only)")
    device: str = Field("cpu", description="cpu, gpu or gpu:N")
    threshold: float = Field(0.5, ge=0, le=1, description="score threshold for layout regions")
    table_threshold: float = Field(0.3, ge=0, le=1, description="threshold for `table`, same single pass")
    layout_nms: bool = Field(True, description="paddlex's overlap suppression of layout boxes")
    shape_mode: Literal["auto", "rect", "quad", "poly"] = Field(
        "auto", description="paddlex layout_shape_mode for mask models (PP-DocLayoutV3): rect | quad | poly | auto "
                            "(upstream's default); crops blank what lies outside the polygon. engine=transformers "
                            "keeps the library's outline as is")

    @field_validator("dtype")
    @classmethod
    def _dtype_needs_transformers(cls, value: str, info: ValidationInfo) -> str:
        return dtype_needs_transformers("layout", value, info)


class CellModelConfig(ActorPool):
    enabled: bool = Field(True, description="detect table cells (false: tables stay whole regions)")
    engine: Literal["paddle", "transformers"] = Field(
        "paddle", description="paddle = paddleocr TableCellsDetection; transformers = RTDetrForObjectDetection on "
                              "torch (needs ./install.sh torch and model_dir = a transformers folder, "
                              "`ocrvl convert-detector`)")
    dtype: Literal["float32", "bfloat16"] = Field("float32", description="engine=transformers: model weights dtype")
    model_name: Literal["RT-DETR-L_wired_table_cell_det", "RT-DETR-L_wireless_table_cell_det"] = \
        "RT-DETR-L_wired_table_cell_det"
    model_dir: Optional[str] = Field(None, description="exported model folder; null = the official weights")
    device: str = Field("cpu", description="cpu, gpu or gpu:N")
    threshold: float = Field(0.3, ge=0, le=1, description="score threshold for cells")
    max_side: int = Field(1024, ge=32, description="table crops are downscaled to this before detection (the "
                          "detector resizes to 640x640 anyway); JPEG pages are decoded at 1/2, 1/4 when tables allow")

    @field_validator("dtype")
    @classmethod
    def _dtype_needs_transformers(cls, value: str, info: ValidationInfo) -> str:
        return dtype_needs_transformers("cells", value, info)


class ComposeConfig(BaseModel):
    """Crop masking knobs of ``compose_page`` (docs/compose.md); ``jpeg_quality`` and ``mask`` are top-level keys."""
    model_config = ConfigDict(extra="forbid")
    inpaint_radius: int = Field(3, ge=1, description='mask=words: cv2.inpaint radius')
    dilate_factor: float = Field(0.12, ge=0, description="masked/kept word polygons grow by max(dilate_min, "
                                                          "round(dilate_factor x median word height)) px")
    dilate_min: int = Field(2, ge=0, description="at least this many px of growth")
    feather_factor: float = Field(0.06, ge=0, description="mask=all: edge blend sigma max(feather_min, "
                                                           "round(feather_factor x median word height))")
    feather_min: int = Field(1, ge=0, description="at least this sigma")


class LayoutConfig(JobConfig):
    model_version: LayoutModelVersion = Field(
        "v1", description="PaddleOCR-VL generation the data is for: presets layout.model_name and "
                          "layout.shape_mode (v1.8: also layout.engine=transformers; core/generations.py); keys set "
                          "explicitly win")
    manifest: Optional[str] = Field(None, description="Parquet manifest from `ocrvl prepare`; null = the bundled "
                                                      "sample dataset")
    output: str = Field(DEFAULT_OUTPUT, description="the LMDB folder to write (no spaces); one per split of the "
                        "manifest: {split} is replaced, else the split is inserted before _layout.lmdb when the "
                        "manifest holds several (docs/lmdb.md); unset with model_version=v1.5: "
                        "./out/sample_v1.5_layout.lmdb (each generation its own)")
    split: Optional[str] = Field(None, description="process only this split of the manifest")
    data_root: Optional[str] = Field(None, description="relative manifest/output/detections paths resolve "
                                                       "against it (needed for relative paths under ray job submit)")
    overwrite: bool = Field(False, description="rebuild an output made with another config (built aside, swapped "
                                               "in when complete)")
    detections: Optional[str] = Field(None, description="compose from a <output>.detections.parquet instead of "
                                                        "running the detectors (docs/detections.md)")
    demo_models: bool = Field(False, description="build tiny offline models instead of the official ones")
    limit: int = Field(0, ge=0, description="pages to process (0 = all)")
    gpu_id: Optional[int] = Field(None, ge=0, description='turns device "gpu" into "gpu:N"')
    gpu_figures: Optional[str] = Field(None, description="bench/gpu_check.py output (or a JSON of its figures) "
                                       "measured on your GPU: a GPU layout device prints a 'GPU plan' line (CPU "
                                       "cores per GPU, shards) from its rates; null = no plan line")
    layout: LayoutModelConfig = Field(default_factory=LayoutModelConfig)
    cells: CellModelConfig = Field(default_factory=CellModelConfig)
    compose: ComposeConfig = Field(default_factory=ComposeConfig)
    jpeg_quality: int = Field(80, ge=1, le=100, description="JPEG quality of the crops")
    mask: Literal["all", "words", "none"] = Field(
        "all", description="crop masking (docs/compose.md): all = keep only the label's words (the original), "
                           "words = hide only annotated words the label lacks, none = crops as they are")
    inpaint: Optional[bool] = Field(None, description="old key: false = mask none, true = mask all")
    recipes: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per-dataset recipe overrides, e.g. recipes.ocr_public.cells_replace=table")
    index_base: Literal[0, 1] = Field(DEFAULT_INDEX_BASE,
                                      description="1: the erniekit reader; 0: the original FAST tools")
    label_format: Literal["pickle", "text"] = Field(DEFAULT_LABEL_FORMAT, description="how gt-%09d values are stored")
    max_pixels: int = Field(120_000_000, ge=1, description="larger pages are skipped (decompression-bomb guard)")
    decode_batch_size: int = Field(16, ge=1, description="pages per decode task (and per block of the stream)")
    compose_batch_size: int = Field(16, ge=1, description="pages per compose task")
    handoff: Literal["bytes", "array"] = Field(
        "bytes", description="what decode passes on: bytes = the encoded file (~10x fewer bytes through the object "
                             "store; the faster stream with GPU-like detectors, docs/performance.md), array = the "
                             "decoded page (one decode less, ~28 MB per page per stage at 2480x3508)")
    write_batch_mb: int = Field(DEFAULT_WRITE_BYTES >> 20, ge=1,
                                description="MB of samples per LMDB write task (Ray's ~25 ms between two tasks is paid "
                                            "per task; a crash redoes up to one task's pages not yet committed)")
    write_batch_pages: Optional[int] = Field(None, ge=1, description="pages per LMDB write task instead of "
                                                                     "write_batch_mb (e.g. 1 in tests)")
    shards: int = Field(1, ge=1, description="1: one LMDB per output; N > 1: the output is a folder of N LMDB "
                                             "shards written in parallel (shard-0000i-of-0000N, page -> shard by a "
                                             "stable hash) plus <output>.shards.json (docs/performance.md)")
    num_cpus: Optional[int] = Field(None, description="local runs only: logical CPUs for the local Ray")
    num_gpus: Optional[int] = Field(None, description="local runs only: GPUs for the local Ray")
    commit_interval_s: float = Field(DEFAULT_COMMIT_INTERVAL_S, gt=0, description="a write task also commits "
                                     "at least this often (besides by size), so a crash loses at most this much work")
    stall_timeout_s: float = Field(300.0, ge=0, description="stop with one line naming what the cluster cannot give "
                                   "when no page is composed for this long while Ray holds resource requests it "
                                   "cannot place and no node is being launched (0 = never)")
    wait_for_nodes: bool = Field(False, description="keep waiting for nodes however long (no stall watchdog)")
    persistent_node: Optional[str] = Field(None, description="the driver (and so the LMDB writer) may run on this "
                                           "node besides the head: its IP, hostname or Ray node id, a node whose "
                                           "disk outlives the job (docs/cluster.md)")
    progress: bool = Field(True, description="print a progress line every progress_every_s seconds")
    progress_every_s: float = Field(15.0, gt=0, description="seconds between progress lines")
    quiet: bool = Field(True, description="Ray's own output (tracebacks, logs) goes to <output>.log, not the console")
    report_html: bool = Field(True, description="write <output>.report.html (ocrvl inspect) after the run")

    ENV_OVERRIDES: ClassVar[dict[str, tuple[str, Any]]] = {
        "FAST_LAYOUT_DEVICE": ("layout.device", str),
        "FAST_TABLE_DEVICE": ("cells.device", str),
        "FAST_LAYOUT_MODEL": ("layout.model_name", str),
        "FAST_TABLE_LAYOUT_THR": ("layout.table_threshold", float),
        "FAST_DEBUG": ("limit", _debug_limit),
        "FAST_JPEG_QUALITY": ("jpeg_quality", int),
        "FAST_INPAINT": ("inpaint", truthy),
        "FAST_GPU_ID": ("gpu_id", int),
    }

    @model_validator(mode="before")
    @classmethod
    def _apply_model_version(cls, data: Any) -> Any:
        """Fill layout.model_name / layout.shape_mode from the generation's preset, and an unset output with the
        generation's default output, where not set explicitly."""
        if not isinstance(data, dict):
            return data
        try:
            version = canonical(data.get("model_version", VERSIONS[0]))
        except ValueError:
            return data  # unknown version: the field's validation reports it
        if data.get("output") is None:
            data = {**data, "output": default_output(version)}
        layout = data.get("layout")
        if not (layout is None or isinstance(layout, dict)):
            return data  # a built section stays as is
        return {**data, "layout": {**LAYOUT[version], **(layout or {})}}

    @model_validator(mode="before")
    @classmethod
    def _inpaint_to_mask(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("inpaint") is not None:
            old = "all" if truthy(data["inpaint"]) else "none"
            if data.get("mask", old) != old:
                raise ValueError(f"inpaint={str(data['inpaint']).lower()} (old key) contradicts mask={data['mask']}; "
                                 f"drop inpaint, mask replaces it")
            data = {**data, "mask": old}
        return data

    @model_validator(mode="after")
    def _demo_models_are_paddle(self) -> "LayoutConfig":
        """The demo detectors are Paddle static graphs: a transformers engine given none of its own is refused."""
        for name, sub in (("layout", self.layout), ("cells", self.cells)):
            if (self.demo_models and not self.detections and sub.engine == "transformers" and sub.model_dir is None
                    and (name == "layout" or sub.enabled)):
                raise ValueError(f"demo_models=true builds Paddle demo detectors, which {name}.engine=transformers "
                                 f"cannot load; set {name}.model_dir=DIR (a transformers folder: `ocrvl "
                                 f"convert-detector`) or {name}.engine=paddle")
        return self

    @model_validator(mode="after")
    def _apply_gpu_id(self) -> "LayoutConfig":
        if self.gpu_id is not None:
            for sub in (self.layout, self.cells):
                if sub.device == "gpu":
                    sub.device = f"gpu:{self.gpu_id}"
        for name, sub in (("layout", self.layout), ("cells", self.cells)):
            if not (sub.device == "cpu" or sub.device == "gpu" or
                    (sub.device.startswith("gpu:") and sub.device[4:].isdigit())):
                raise ValueError(f"{name}.device must be cpu, gpu or gpu:N, got {sub.device!r}")
            if sub.min_actors > sub.max_actors:
                raise ValueError(f"{name}.min_actors ({sub.min_actors}) > {name}.max_actors ({sub.max_actors})")
        return self


def actor_cpus(pool: ActorPool, device: str) -> float:
    """CPUs one actor requests: explicit ``num_cpus``, else 0 on a GPU device, else 0.25.

    Fractions add up: two CPU-device pools at 0.25 leave 1.5 of 2 CPUs, i.e. ONE 1-CPU decode/compose task at
    a time (bench/layout.py); with GPU detectors the actors take no CPU slot at all."""
    if pool.num_cpus is not None:
        return pool.num_cpus
    return 0.0 if device.startswith("gpu") else 0.25


def actor_gpus(pool: ActorPool, device: str) -> float:
    """GPUs one actor requests: explicit ``num_gpus``, else 1 on a GPU device, else 0."""
    if pool.num_gpus is not None:
        return pool.num_gpus
    return 1.0 if device.startswith("gpu") else 0.0
