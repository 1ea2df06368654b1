"""Scale-out arithmetic for the layout job (docs/performance.md): CPU cores per GPU detector, LMDB writers.

The constants are measured figures, named with where they come from; the functions are plain arithmetic.
"""
from __future__ import annotations

import math

#: CPU core-ms per 2480x3508 page outside the detectors (decode, compose with mask=all, LMDB write):
#: ``FIGURE cpu_ms_per_page_outside_detector`` of bench/layout.py (handoff=bytes; docs/performance.md), 2 idle cores.
CPU_MS_PER_PAGE = 113.0
#: PP-DocLayoutV2 pages/s on one H100 with the real architecture (issue 15; not measured here: no GPU).
GPU_PAGES_PER_S = {("fp32", 8): 152.0, ("fp32", 32): 237.0, ("bf16", 8): 243.0, ("bf16", 32): 384.0}
#: Rows/s of one LMDB writer for ~50 KB rows (``FIGURE sink_rows_per_s_1_shards``, bench/sink.py, order of).
WRITER_ROWS_PER_S = 15_000.0


def cores_per_gpu(gpu_pages_per_s: float, cpu_ms_per_page: float = CPU_MS_PER_PAGE) -> float:
    """CPU cores of decode/compose that keep one detector GPU busy."""
    return gpu_pages_per_s * cpu_ms_per_page / 1000.0


def shards_needed(pages_per_s: float, samples_per_page: float = 20.0,
                  writer_rows_per_s: float = WRITER_ROWS_PER_S) -> int:
    """LMDB shards (parallel writers) for a stream of ``pages_per_s``."""
    return max(1, math.ceil(pages_per_s * samples_per_page / writer_rows_per_s))


def gpu_plan(device: str, batch_size: int, gpus: int = 1) -> str | None:
    """One line for a GPU detector config: the CPU:GPU ratio and shards it needs at the measured costs."""
    if not device.startswith("gpu"):
        return None
    rate = GPU_PAGES_PER_S[("fp32", 32 if batch_size >= 32 else 8)]
    need = cores_per_gpu(rate)
    note = "" if batch_size >= 8 else f"; layout.batch_size={batch_size} < 8 leaves most of the GPU idle"
    return (f"GPU plan: a detector GPU at ~{rate:.0f} pages/s (H100, fp32, batch {batch_size}) needs "
            f"~{need:.0f} CPU cores of decode/compose at {CPU_MS_PER_PAGE:.0f} core-ms/page (CPU:GPU {need:.0f}:1); "
            f"{gpus} GPU(s) -> ~{math.ceil(need * gpus)} cores, shards>={shards_needed(rate * gpus)}{note}")
