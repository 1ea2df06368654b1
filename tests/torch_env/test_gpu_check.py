"""bench/gpu_check.py cannot rot: ``--smoke`` runs it end to end on tiny models on CPU, and without a GPU the
real run prints no figure."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_check.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600)


def test_smoke_prints_the_detector_and_cpu_lines_and_no_gpu_figure():
    """(The eval and lora parts' smokes live with their engines' tests: test_eval_transformers.py,
    test_train_transformers.py.)"""
    from ocrvl_ray.layout.engines.configs import available_versions

    res = _run("--smoke", "--parts", "detector,cpu", "--batches", "2")
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.splitlines()
    assert not [ln for ln in lines if ln.startswith("FIGURE")], "a CPU smoke run printed a GPU figure"
    rates = dict(re.findall(r"^SMOKE FIGURE detector_pages_per_s_(v\d_(?:fp32|bf16)_b\d+) ([\d.]+)$", res.stdout, re.M))
    assert sorted(rates) == sorted(f"{v}_{d}_b{b}" for v in available_versions() for d in ("fp32", "bf16")
                                   for b in (2,)), res.stdout
    assert all(float(r) > 0 for r in rates.values())
    ms = re.search(r"^SMOKE FIGURE cpu_ms_per_page_outside_detector ([\d.]+) ms \(2 pages of 620x877", res.stdout,
                   re.M)
    assert ms and float(ms.group(1)) > 0, res.stdout
    cores = re.search(r"^SMOKE FIGURE cpu_cores_per_gpu_at_detector_rate ([\d.]+) cores \((detector_pages_per_s_\w+) "
                      r"x cpu_ms_per_page_outside_detector; smoke: a tiny model on the CPU, not a GPU rate\)$",
                      res.stdout, re.M)
    assert cores, res.stdout
    best = max(float(r) for k, r in rates.items() if "_bf16_" in k)   # the best bf16 rate, as printed (2 decimals)
    named = cores.group(2).removeprefix("detector_pages_per_s_")
    assert "_bf16_" in named and float(rates[named]) == best, (named, rates)
    assert float(cores.group(1)) == pytest.approx(best * float(ms.group(1)) / 1000, abs=0.01)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a GPU is here: the real run would time it")
def test_without_a_gpu_no_figure_is_printed():
    res = _run()
    assert res.returncode == 2 and "sees no CUDA GPU here" in res.stdout and "FIGURE" not in res.stdout.replace(
        "no GPU figure", "")
