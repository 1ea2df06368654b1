"""The user's erniekit fork (``../shared/reference/erniekit-fork/``): its config traps checked against its
own argument classes here, and its real training in its own environment ``.venv-erniekit``
(tests/erniekit_env/fork_checks.py, run in a subprocess; each of its tests is reported here)."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ocrvl_ray import cli
from tests.erniekit_env.fork import BUILD_VENV, FORK_TARBALL, FORK_VENV_PYTHON, unpack
from tests.venv_suites import SUITES

pytestmark = pytest.mark.skipif(not FORK_TARBALL.is_file(), reason=f"the erniekit fork tarball is absent ({FORK_TARBALL})")
USER_YAML = Path(__file__).parent / "data" / "run_ocr_vl_sft_16k.yaml"
FORK_TESTS = ["test_trap1_fork_imports_its_data_processor", "test_trap2_visualdl_reporting_works_with_the_pinned_protobuf",
              "test_trap4_the_fork_reader_opens_one_lmdb_for_train_and_eval", "test_trap5_launcher_mode_imports_erniekit",
              "test_trap3_two_ranks_read_disjoint_shards", "test_lora_checkpoints_in_ray_storage_after_a_crash_and_resume",
              "test_demo_loop_closes_with_the_fork"]


@pytest.fixture(scope="module")
def ernie_root(tmp_path_factory):
    return unpack(tmp_path_factory.mktemp("fork"))


def test_trap6_silent_config_traps_are_refused(ernie_root, tmp_path, capsys, monkeypatch):
    """A typo'd key, `evaluation_strategy=no` (a YAML boolean) and a train_dataset_path that
    train_lmdb_paths overrides: each one line naming the key and the fix, checked against the fork's
    own argument dataclasses; the user's YAML itself has no unknown key."""
    monkeypatch.chdir(tmp_path)
    rc = cli.main(["train", str(USER_YAML), f"ernie_root={ernie_root}", "train_lmdb_path=/data/new_layout.lmdb",
                   "evaluation_strategy=no", "train_dataset_path=/data/new_layout.lmdb", "report_to=none", "--dry-run"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ocrvl train:")]
    assert rc == 2
    assert ("ocrvl train: error: unknown key train_lmdb_path: erniekit ignores it silently; did you mean "
            "train_lmdb_paths?") in err
    assert ("ocrvl train: error: evaluation_strategy is the boolean False (YAML reads no/off/yes/on as booleans), "
            "but erniekit expects <enum 'IntervalStrategy'>; quote it: evaluation_strategy='no'") in err
    assert any(line.startswith("ocrvl train: error: train_dataset_path=/data/new_layout.lmdb is ignored: "
                               "train_lmdb_paths is set (/mnt/nas/") for line in err)
    assert not any("unknown key" in line and "train_lmdb_path:" not in line for line in err)


@pytest.fixture(scope="module")
def fork_suite():
    """tests/erniekit_env/fork_checks.py in .venv-erniekit (started at collection, tests/venv_suites.py);
    {test name: (outcome, message)}."""
    if not FORK_VENV_PYTHON.is_file():
        pytest.skip(f"the fork's environment {FORK_VENV_PYTHON.parent.parent} is absent; build it: {BUILD_VENV}")
    suite = SUITES["erniekit"]
    rc, output = suite.result()
    if not suite.junit.is_file():
        pytest.fail(f"the fork suite did not run (exit {rc}): {output}")
    out = {}
    for case in ET.parse(suite.junit).getroot().iter("testcase"):
        bad = [c for c in case if c.tag in ("failure", "error", "skipped")]
        out[case.get("name")] = (bad[0].tag if bad else "passed",
                                 (bad[0].get("message") or "") + (bad[0].text or "")[-3000:] if bad else "")
    return out


@pytest.mark.parametrize("name", FORK_TESTS)
def test_fork_in_its_environment(fork_suite, name):
    outcome, message = fork_suite.get(name, ("missing", "not collected"))
    assert outcome == "passed", f"{name}: {outcome}: {message}"
