"""tests/torch_env in .venv-torch (the transformers engines, no Paddle), run by subprocess from this suite."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.venv_suites import SUITES, TORCH_PYTHON


@pytest.mark.skipif(not TORCH_PYTHON.exists(), reason="no .venv-torch; build it with: ./install.sh torch")
@pytest.mark.skipif(Path(sys.executable).absolute() == TORCH_PYTHON, reason="already in .venv-torch")
def test_torch_suite_in_its_venv():
    """tests/torch_env: the env's whole set imports together, tiny V2/V3/V4 detectors, gpu_check --smoke."""
    SUITES["torch"].assert_passed()   # started at collection (tests/venv_suites.py)
