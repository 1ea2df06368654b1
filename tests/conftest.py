"""Shared fixtures: one local Ray cluster per test session (not per test), offline Paddle caches."""
from __future__ import annotations

import os
import tempfile

import pytest

from tests.venv_suites import SUITES

# Keep paddlex's caches out of $HOME and never contact model hosters in tests.
os.environ.setdefault("PADDLE_PDX_CACHE_HOME", os.path.join(tempfile.gettempdir(), "ocrvl-test-paddlex"))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray with 4 logical CPUs (more than the 2 cores, to expose ordering bugs)."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PADDLE_PDX_CACHE_HOME": os.environ["PADDLE_PDX_CACHE_HOME"]}})
        import ray.data
        # Ray Data's default: actor pools start asynchronously, so the layout and cell pools load their models
        # at the same time (waiting for each pool in turn added ~4.5 s to every layout run).
        ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    # shut down at session end only
    ray.shutdown()


@pytest.fixture(scope="session")
def ray_address(ray_local):
    """The session Ray's address: subprocess drivers join it (``RAY_ADDRESS``) instead of starting their own."""
    return ray_local.get_runtime_context().gcs_address


@pytest.fixture(scope="session")
def bundled_sample_run(ray_local, tmp_path_factory):
    """(report, output): the quick start's layout run on the bundled sample (demo models, both splits), once per
    session for the modules that read its LMDBs."""
    from ocrvl_ray.core.config import load_config
    from ocrvl_ray.layout.config import LayoutConfig
    from ocrvl_ray.layout.job import run_layout

    out = tmp_path_factory.mktemp("quick") / "sample_layout.lmdb"
    cfg = load_config(LayoutConfig, overrides=[f"output={out}", "demo_models=true", "progress=false",
                                               "report_html=false"], env={})
    return run_layout(cfg), out


@pytest.fixture(scope="session")
def demo_model_dirs(tmp_path_factory):
    """(layout_dir, cell_dir): the scripted demo models, built once per session."""
    from ocrvl_ray.demo.models import demo_models

    return demo_models(tmp_path_factory.mktemp("demo-models"))


def pytest_collection_finish(session):
    """Start the other environments' suites now when a selected test reads one (they run alongside)."""
    for suite in SUITES.values():
        if any(item.nodeid.startswith(suite.reader) for item in session.items):
            suite.start()


def pytest_sessionfinish(session):
    for suite in SUITES.values():
        suite.stop()
