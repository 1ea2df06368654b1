"""The layout job's config: ``LayoutConfig`` with its detector pools (loaded by ``core.config.load_config``)."""
from __future__ import annotations

from typing import Any, ClassVar, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ocrvl_ray.core.config import JobConfig, truthy


def _debug_limit(raw: str) -> int:
    """FAST_DEBUG: truthy -> 500 pages (the original's debug size), an integer > 1 -> that many, falsy -> all."""
    raw = raw.strip()
    if raw.isdigit() and int(raw) > 1:
        return int(raw)
    return 500 if truthy(raw) else 0


class ActorPool(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_actors: int = Field(1, ge=1)
    max_actors: int = Field(1, ge=1)
    batch_size: int = Field(8, ge=1)
    num_gpus: Optional[float] = Field(None, ge=0, description="per actor; None = 1 on a GPU device, else 0")
    num_cpus: Optional[float] = Field(None, ge=0, description="per actor; None = 0 on a GPU device (the actor "
                                      "waits on the GPU: every CPU slot stays with decode/compose tasks), else 0.25")


class LayoutModelConfig(ActorPool):
    model_name: str = "PP-DocLayoutV2"
    model_dir: Optional[str] = None          # None: paddleocr downloads the official weights (needs internet)
    device: str = "cpu"                       # "cpu", "gpu" or "gpu:N"
    threshold: float = Field(0.5, ge=0, le=1)
    table_threshold: float = Field(0.3, ge=0, le=1)  # per-class threshold for `table`, same single pass
    layout_nms: bool = True


class CellModelConfig(ActorPool):
    enabled: bool = True
    model_name: Literal["RT-DETR-L_wired_table_cell_det", "RT-DETR-L_wireless_table_cell_det"] = \
        "RT-DETR-L_wired_table_cell_det"
    model_dir: Optional[str] = None
    device: str = "cpu"
    threshold: float = Field(0.3, ge=0, le=1)
    max_side: int = Field(1280, ge=32)        # table crops are downscaled to this before detection


class LayoutConfig(JobConfig):
    manifest: Optional[str] = None            # None: the bundled sample dataset
    output: str = "./out/sample_layout.lmdb"
    demo_models: bool = False                 # build tiny offline models instead of the official ones
    limit: int = Field(0, ge=0)               # pages to process (0 = all); FAST_DEBUG
    gpu_id: Optional[int] = Field(None, ge=0)  # FAST_GPU_ID: turns device "gpu" into "gpu:N"
    layout: LayoutModelConfig = Field(default_factory=LayoutModelConfig)
    cells: CellModelConfig = Field(default_factory=CellModelConfig)
    jpeg_quality: int = Field(80, ge=1, le=100)
    # crop masking (docs/compose.md): "all" keeps only the label's words (the original), "words" hides only
    # annotated words the label lacks, "none" leaves crops as they are
    mask: Literal["all", "words", "none"] = "all"
    inpaint: Optional[bool] = None            # old key (FAST_INPAINT): false = mask "none", true = mask "all"
    recipes: dict[str, dict[str, Any]] = Field(default_factory=dict)  # per-dataset recipe overrides
    index_base: Literal[0, 1] = 1             # 1: erniekit reader; 0: the original FAST tools
    label_format: Literal["pickle", "text"] = "pickle"
    max_pixels: int = Field(120_000_000, ge=1)  # decompression-bomb guard
    decode_batch_size: int = Field(8, ge=1)
    compose_batch_size: int = Field(8, ge=1)
    # what decode passes downstream: "bytes" (the encoded file, ~10x fewer bytes through the object store;
    # the faster stream with GPU-like detectors, bench/layout.py, docs/performance.md) or "array" (the
    # decoded page: one decode less per page, but ~28 MB per page per stage at 2480x3508)
    handoff: Literal["bytes", "array"] = "bytes"
    write_batch_pages: int = Field(64, ge=1)  # pages bundled into one LMDB write task (commit granularity)
    # 1: one LMDB at `output`; N > 1: `output` is a folder of N LMDB shards written in parallel
    # (shard-0000i-of-0000N, page -> shard by a stable hash) plus `<output>.shards.json`; docs/performance.md
    shards: int = Field(1, ge=1)
    num_cpus: Optional[int] = None            # local runs only: logical CPUs for the local Ray
    num_gpus: Optional[int] = None
    progress: bool = True
    report_html: bool = True                  # write <output>.report.html (ocrvl inspect) after the run

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
    def _inpaint_to_mask(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("inpaint") is not None:
            old = "all" if truthy(data["inpaint"]) else "none"
            if data.get("mask", old) != old:
                raise ValueError(f"inpaint={str(data['inpaint']).lower()} (old key) contradicts mask={data['mask']}; "
                                 f"drop inpaint, mask replaces it")
            data = {**data, "mask": old}
        return data

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
