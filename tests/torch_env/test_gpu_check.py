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


def test_smoke_prints_every_detector_line():
    from ocrvl_ray.layout.engines.configs import available_versions

    res = _run("--smoke")
    assert res.returncode == 0, res.stderr[-3000:]
    lines = res.stdout.splitlines()
    assert not [ln for ln in lines if ln.startswith("FIGURE")], "a CPU smoke run printed a GPU figure"
    rates = dict(re.findall(r"^SMOKE FIGURE detector_pages_per_s_(v\d_(?:fp32|bf16)_b\d+) ([\d.]+)$", res.stdout, re.M))
    assert sorted(rates) == sorted(f"{v}_{d}_b{b}" for v in available_versions() for d in ("fp32", "bf16")
                                   for b in (1, 2)), res.stdout
    assert all(float(r) > 0 for r in rates.values())


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a GPU is here: the real run would time it")
def test_without_a_gpu_no_figure_is_printed():
    res = _run()
    assert res.returncode == 2 and "sees no CUDA GPU here" in res.stdout and "FIGURE" not in res.stdout.replace(
        "no GPU figure", "")
