"""tests/torch_env in .venv-torch (the transformers engines, no Paddle), run by subprocess from this suite."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tests.venv_suites import SUITES, TORCH_PYTHON


@pytest.mark.skipif(not TORCH_PYTHON.exists(), reason="no .venv-torch; build it with: ./install.sh torch")
@pytest.mark.skipif(Path(sys.executable).absolute() == TORCH_PYTHON, reason="already in .venv-torch")
def test_torch_suite_in_its_venv():
    """tests/torch_env: the env's whole set imports together, tiny V2/V3/V4 detectors, gpu_check --smoke."""
    rc, output = SUITES["torch"].result()   # started at collection (tests/venv_suites.py)
    last = output.strip().splitlines()[-1] if output.strip() else ""
    assert rc == 0, output
    assert re.search(r"\b\d+ passed", last) and not re.search(r"failed|skipped|error", last), last
