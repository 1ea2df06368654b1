"""The suites that run in the other environments (``.venv-erniekit``, ``.venv-paddleformers``, ``.venv-torch``)
as subprocesses.

``conftest.py`` starts each one when collection has selected a test that reads it, so the subprocess runs
alongside the rest of this suite instead of after it (~2 minutes of the default suite's wall); the tests wait
for its result. Output goes to a file, not a pipe, so a chatty suite never blocks on a full pipe."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.erniekit_env.fork import FORK_TARBALL, FORK_VENV_PYTHON

ROOT = Path(__file__).resolve().parents[1]
PF_PYTHON = ROOT / ".venv-paddleformers" / "bin" / "python"
TORCH_PYTHON = ROOT / ".venv-torch" / "bin" / "python"
TIMEOUT_S = 3000


@dataclass
class Suite:
    python: Path
    args: list[str]                       # after ``python -m pytest -q -p no:cacheprovider``
    reader: str                           # node-id prefix of the test(s) that read the result
    needs: Path | None = None             # a file the suite cannot run without (its tests skip when absent)
    proc: subprocess.Popen | None = field(default=None, repr=False)
    tmp: Path | None = None

    @property
    def junit(self) -> Path:
        return self.tmp / "junit.xml"

    def start(self) -> None:
        if (self.proc is not None or not self.python.is_file() or (self.needs and not self.needs.is_file())
                or Path(sys.executable).absolute() == self.python):
            return
        self.tmp = Path(tempfile.mkdtemp(prefix="ocrvl-venv-suite-"))
        with open(self.tmp / "output.txt", "w") as out:
            self.proc = subprocess.Popen(
                [str(self.python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *self.args,
                 f"--junitxml={self.junit}", f"--basetemp={self.tmp / 'tmp'}"],
                cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=out, stderr=subprocess.STDOUT)

    def result(self) -> tuple[int, str]:
        """(exit code, the output's last 6,000 characters); starts the suite if collection did not."""
        self.start()
        if self.proc is None:
            raise RuntimeError(f"{self.python} or {self.needs} is missing, or this is that venv: skip the reading test")
        try:
            rc = self.proc.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        return rc, (self.tmp / "output.txt").read_text(errors="replace")[-6000:]

    def assert_passed(self) -> None:
        """The suite exited 0 and its summary line counts passed tests and nothing failed, skipped or errored."""
        rc, output = self.result()
        last = output.strip().splitlines()[-1] if output.strip() else ""
        assert rc == 0, output
        assert re.search(r"\b\d+ passed", last) and not re.search(r"failed|skipped|error", last), last

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)


SUITES = {
    "erniekit": Suite(FORK_VENV_PYTHON, ["tests/erniekit_env/fork_checks.py"],
                      "tests/test_train_erniekit.py::test_fork_in_its_environment", FORK_TARBALL),
    "paddleformers": Suite(PF_PYTHON, ["tests/pf"],
                           "tests/test_train_paddleformers.py::test_paddleformers_suite_in_its_venv"),
    "torch": Suite(TORCH_PYTHON, ["tests/torch_env"], "tests/test_torch_env.py::test_torch_suite_in_its_venv"),
}
