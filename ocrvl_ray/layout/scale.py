"""Scale-out arithmetic for the layout job (docs/performance.md): CPU cores per GPU detector, LMDB writers.

The constants are measured figures, named with where they come from; GPU rates are never constants here: the
"GPU plan" line reads them from a file of ``bench/gpu_check.py`` figures measured on the user's GPU
(``gpu_figures=FILE``), or is not printed.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.layout.engines.configs import CLASS_PREFIX

#: CPU core-ms per 2480x3508 page outside the detectors (decode, compose with mask=all, LMDB write):
#: ``FIGURE cpu_ms_per_page_outside_detector`` of bench/layout.py (handoff=bytes; docs/performance.md), 2 idle cores.
CPU_MS_PER_PAGE = 113.0
#: Rows/s of one LMDB writer for ~50 KB rows (``FIGURE sink_rows_per_s_1_shards``, bench/sink.py, order of).
WRITER_ROWS_PER_S = 15_000.0
#: ``FIGURE <name> <value>`` lines of bench/gpu_check.py (its ``SMOKE FIGURE`` lines are CPU runs: not matched).
FIGURE_LINE = re.compile(r"^FIGURE (\S+) ([-+0-9.eE]+)", re.M)
DTYPE_SHORT = {"float32": "fp32", "bfloat16": "bf16"}


def cores_per_gpu(gpu_pages_per_s: float, cpu_ms_per_page: float = CPU_MS_PER_PAGE) -> float:
    """CPU cores of decode/compose that keep one detector GPU busy."""
    return gpu_pages_per_s * cpu_ms_per_page / 1000.0


def shards_needed(pages_per_s: float, samples_per_page: float = 20.0,
                  writer_rows_per_s: float = WRITER_ROWS_PER_S) -> int:
    """LMDB shards (parallel writers) for a stream of ``pages_per_s``."""
    return max(1, math.ceil(pages_per_s * samples_per_page / writer_rows_per_s))


def read_figures(path: str | Path) -> dict[str, float]:
    """name -> value from bench/gpu_check.py's output (its ``FIGURE`` lines) or a JSON object of them."""
    p = Path(path)
    if not p.is_file():
        raise OcrvlError(f"gpu_figures={path}: no such file; save `python bench/gpu_check.py` output run on the "
                         f"GPU there, or leave gpu_figures unset (no GPU plan line)")
    text = p.read_text("utf-8", errors="replace")
    try:
        data = json.loads(text)
    except ValueError:
        return {name: float(value) for name, value in FIGURE_LINE.findall(text)}
    if not isinstance(data, dict) or not all(isinstance(v, (int, float)) for v in data.values()):
        raise OcrvlError(f"gpu_figures={path}: a JSON file must be one object of figure name -> number")
    return {str(k): float(v) for k, v in data.items()}


def gpu_plan(cfg) -> str | None:
    """One line for a GPU layout detector: the CPU:GPU ratio and shards it needs, at the detector rate measured
    on a GPU (``cfg.gpu_figures``: bench/gpu_check.py's output). None on a CPU device or without that file."""
    sec = cfg.layout
    if not sec.device.startswith("gpu") or not cfg.gpu_figures:
        return None
    figures = read_figures(cfg.gpu_figures)
    version = next((v for v, name in CLASS_PREFIX.items() if name == sec.model_name.replace("-", "")), None)
    if version is None:
        return f"GPU plan: bench/gpu_check.py times PP-DocLayoutV2/V3/V4, not {sec.model_name}; no plan"
    prefix = f"detector_pages_per_s_{version}_{DTYPE_SHORT[sec.dtype]}_b"
    rates = {int(k[len(prefix):]): v for k, v in figures.items() if k.startswith(prefix) and k[len(prefix):].isdigit()}
    if not rates:
        return (f"GPU plan: {cfg.gpu_figures} has no {prefix}N figure (GPU figures of {sec.model_name} "
                f"{sec.dtype}: bench/gpu_check.py --models {version} on the GPU); no plan")
    batch = max((b for b in rates if b <= sec.batch_size), default=min(rates))
    rate, gpus = rates[batch], max(1, sec.max_actors)
    cpu_ms = figures.get("cpu_ms_per_page_outside_detector", CPU_MS_PER_PAGE)
    need = cores_per_gpu(rate, cpu_ms)
    note = "" if batch == sec.batch_size else f"; measured at batch {batch}, layout.batch_size={sec.batch_size}"
    return (f"GPU plan ({cfg.gpu_figures}): a detector GPU at {rate:.0f} pages/s ({prefix}{batch}, engine=transformers"
            f"{'' if sec.engine == 'transformers' else '; this job runs engine=paddle'}) needs ~{need:.0f} CPU cores "
            f"of decode/compose at {cpu_ms:.0f} core-ms/page "
            f"(CPU:GPU {need:.0f}:1); {gpus} GPU(s) -> ~{math.ceil(need * gpus)} cores, "
            f"shards>={shards_needed(rate * gpus)}{note}")
