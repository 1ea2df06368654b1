"""Where the user's erniekit fork and its environment are, for tests (skip with a reason when absent)."""
from __future__ import annotations

import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FORK_TARBALL = REPO.parent / "shared" / "reference" / "erniekit-fork" / "erniekit-fork.tar.gz"
FORK_VENV_PYTHON = REPO / ".venv-erniekit" / "bin" / "python"
BUILD_VENV = ('python3 -m venv .venv-erniekit && .venv-erniekit/bin/pip install -e ".[dev,erniekit]" '
              "&& .venv-erniekit/bin/pip install --no-deps imgaug==0.4.0")


def unpack(dest: Path) -> Path:
    """The fork's tarball unpacked into ``dest`` (its ernie_root)."""
    with tarfile.open(FORK_TARBALL) as tar:
        tar.extractall(dest, filter="data")
    return dest
