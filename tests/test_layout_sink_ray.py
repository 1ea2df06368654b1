"""LmdbSink through real Ray Data: round trips, resume, failures mid-write, kill -9 of the driver, empty input."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pandas as pd
import pytest

from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.lmdb import LmdbReader, LmdbSink, completed_pages, verify_lmdb, write_lmdb
from ocrvl_ray.testing.sink import synthetic_pages


def expected(pages) -> Counter:
    return Counter((s.label.strip(), json.dumps(json.loads(s.meta), sort_keys=True))
                   for p in pages if p.status == "ok" for s in p.samples)


def contents(path) -> Counter:
    with LmdbReader(path) as r:
        out = Counter()
        for i in range(len(r)):
            image, label = r[i]
            assert image.mode == "RGB"
            out[(label, json.dumps(r.meta(i), sort_keys=True))] += 1
        return out


def assert_exact(path, pages):
    report = verify_lmdb(path)
    assert report["ok"], report["problems"]
    assert report["pages"] == len({p.page_id for p in pages})
    assert contents(path) == expected(pages)


def dataset(ray, pages, blocks=8):
    return ray.data.from_items([p.to_row() for p in pages], override_num_blocks=blocks)


@pytest.mark.parametrize("label_format,index_base,bundle,tasks", [("pickle", 1, 64, 1), ("text", 0, None, 8)])
def test_round_trip(ray_local, tmp_path, label_format, index_base, bundle, tasks):
    pages = synthetic_pages(30, seed=11, skip_every=6)
    sink = LmdbSink(str(tmp_path / "out.lmdb"), index_base=index_base, label_format=label_format,
                    min_pages_per_write=bundle, min_bytes_per_write=None, map_size=32 << 10)
    t0 = time.time()
    summary = write_lmdb(dataset(ray_local, pages), sink)   # 8 blocks
    t1 = time.time()
    assert_exact(sink.path, pages)
    first, last = summary["write_span"]      # the write tasks' time: inside the call, summed over the tasks
    assert t0 < first < last < t1 and 0 < summary["write_s"] <= last - first + 1e-6
    n = sum(expected(pages).values())
    assert summary["num_samples"] == summary["samples"] == n
    assert summary["pages"] == {"ok": 25, "no_regions": 5} and summary["write_tasks"] == tasks
    assert summary["map_growths"] >= 1                     # started from a 32 KiB map
    assert summary["page_skips"]["counts"] == {"no_regions": 5}
    assert summary["item_skips"]["counts"] == {"empty_text": sum(1 for p in range(30) if p % 4 == 0 and p % 6 != 5)}
    kinds = Counter(json.loads(s.meta)["sample_kind"] for p in pages if p.status == "ok" for s in p.samples)
    assert summary["samples_by_kind"] == dict(kinds)
    with LmdbReader(sink.path) as r:   # preserve_order: keys follow the dataset order
        assert [r.label(i) for i in range(len(r))] == [s.label.strip() for p in pages if p.status == "ok"
                                                       for s in p.samples]


def test_write_tasks_are_sized_by_bytes_unless_pages_are_given(ray_local, tmp_path):
    pages = synthetic_pages(16, seed=18)   # 8 blocks of 2 pages, ~30 KB each
    for name, kw, tasks in [("default", {}, 1), ("one-byte", {"min_bytes_per_write": 1}, 8),
                            ("pages", {"min_pages_per_write": 8, "min_bytes_per_write": 1}, 2)]:
        sink = LmdbSink(str(tmp_path / f"{name}.lmdb"), **kw)
        assert write_lmdb(dataset(ray_local, pages), sink)["write_tasks"] == tasks, name
        assert_exact(sink.path, pages)


def test_pandas_blocks(ray_local, tmp_path):
    pages = synthetic_pages(12, seed=12, skip_every=5)
    ds = ray_local.data.from_pandas(pd.DataFrame([p.to_row() for p in pages]))
    ds = ds.map_batches(lambda df: df, batch_format="pandas", batch_size=4)
    sink = LmdbSink(str(tmp_path / "pd.lmdb"))
    write_lmdb(ds, sink)
    assert_exact(sink.path, pages)


def test_resume_after_half(ray_local, tmp_path):
    pages = synthetic_pages(40, seed=13, skip_every=7)
    path = str(tmp_path / "r.lmdb")
    write_lmdb(dataset(ray_local, pages[:20], 4), LmdbSink(path))
    done = completed_pages(path)
    assert done == {p.page_id for p in pages[:20]}
    todo = [p for p in pages if p.page_id not in done]
    summary = write_lmdb(dataset(ray_local, todo, 4), LmdbSink(path))
    assert summary["pages_already_done"] == 0 and sum(summary["pages"].values()) == 20
    assert_exact(path, pages)


def poisoned_sink(path, poison: str, **kw) -> LmdbSink:
    """A sink whose ``write()`` raises when the poisoned page's block arrives (after earlier pages committed).

    Defined in a function so cloudpickle ships the class by value to the Ray workers.
    """
    class PoisonedSink(LmdbSink):
        def write(self, blocks, ctx):
            def guarded():
                for b in blocks:
                    if poison in b.column("page_id").to_pylist():
                        raise RuntimeError(f"injected failure at {poison}")
                    yield b
            return super().write(guarded(), ctx)
    return PoisonedSink(path, **kw)


def test_exception_mid_write_then_rerun(ray_local, tmp_path):
    pages = synthetic_pages(24, seed=14, skip_every=5)
    path = str(tmp_path / "e.lmdb")
    # one page per block, all blocks in one write task, one txn per page: pages 0..9 commit, then it raises
    sink = poisoned_sink(path, pages[10].page_id, max_txn_bytes=1, min_pages_per_write=len(pages))
    with pytest.raises(Exception, match="injected failure"):
        write_lmdb(dataset(ray_local, pages, blocks=len(pages)), sink)
    assert completed_pages(path) == {p.page_id for p in pages[:10]}
    report = verify_lmdb(path)
    assert report["ok"], report["problems"]
    # rerun everything, unfiltered: markers make the retry idempotent
    summary = write_lmdb(dataset(ray_local, pages, 3), LmdbSink(path))
    ok_done = sum(p.status == "ok" for p in pages[:10])
    assert summary["pages_already_done"] == ok_done          # skipped pages' markers are simply replaced
    assert sum(summary["pages"].values()) == len(pages) - ok_done
    assert_exact(path, pages)


@pytest.mark.parametrize("per_task", [None, 5])
def test_worker_dies_after_commit_task_retried(ray_local, tmp_path, per_task):
    """The first write task's process exits right after its commit: Ray Core retries the task, markers absorb
    it (one task for all pages, or the first of 4)."""
    flag = str(tmp_path / "died-once")

    class DyingSink(LmdbSink):
        def write(self, blocks, ctx):
            result = super().write(blocks, ctx)
            if not os.path.exists(flag):
                open(flag, "w").close()
                os._exit(1)
            return result

    pages = synthetic_pages(20, seed=17, skip_every=4)
    path = str(tmp_path / "d.lmdb")
    summary = write_lmdb(dataset(ray_local, pages, 4), DyingSink(path, min_pages_per_write=per_task))
    assert os.path.exists(flag) and summary["write_tasks"] == (1 if per_task is None else 4)
    first = pages if per_task is None else pages[:per_task]   # task 0 commits first: it is the one that died
    assert summary["pages_already_done"] == sum(p.status == "ok" for p in first)   # the retry wrote nothing new
    assert summary["num_samples"] == sum(expected(pages).values())
    assert_exact(path, pages)


KILL_SCRIPT = """
import os, sys, time
import ray
ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)   # a second driver on the session's Ray
import ray.data
ray.data.DataContext.get_current().enable_progress_bars = False
from ocrvl_ray.lmdb import LmdbSink, write_lmdb
from ocrvl_ray.testing.sink import synthetic_pages

import json
SINK = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {"min_pages_per_write": 4}   # several commits before the kill
PAUSE = float(sys.argv[4]) if len(sys.argv) > 4 else 0.15

def slow(row):
    time.sleep(PAUSE)
    return row

pages = synthetic_pages(int(sys.argv[2]), seed=15, skip_every=6)
ds = ray.data.from_items([p.to_row() for p in pages], override_num_blocks=len(pages)).map(slow)
write_lmdb(ds, LmdbSink(sys.argv[1], **SINK))
print("FINISHED")
"""


def _group_alive(pgid: int) -> bool:
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _kill_after(path: str, n_pages: int, min_done: int, tmp_path, ray_address, *extra: str) -> set:
    """Runs ``KILL_SCRIPT`` as a second driver, SIGKILLs it (and its session) once ``min_done`` pages are
    committed; returns the pages committed then."""
    script = tmp_path / "writer.py"
    script.write_text(KILL_SCRIPT)
    log = open(tmp_path / "writer.log", "w")
    proc = subprocess.Popen([sys.executable, str(script), path, str(n_pages), *extra], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            cwd=os.path.dirname(os.path.dirname(__file__)), env=dict(os.environ, RAY_ADDRESS=ray_address))
    try:
        deadline = time.time() + 120
        while len(completed_pages(path)) < min_done:
            assert proc.poll() is None, (tmp_path / "writer.log").read_text()[-2000:]
            assert time.time() < deadline, "writer made no progress"
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)      # the driver dies mid-run
        proc.wait()
    finally:
        try:                                   # and anything it started in its session
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        log.close()
    deadline = time.time() + 30
    while _group_alive(proc.pid) and time.time() < deadline:
        time.sleep(0.1)
    assert "FINISHED" not in (tmp_path / "writer.log").read_text()
    return completed_pages(path)


def test_kill_minus_9_of_driver_then_rerun(ray_local, ray_address, tmp_path):
    n_pages = 80
    pages = synthetic_pages(n_pages, seed=15, skip_every=6)
    path = str(tmp_path / "k.lmdb")
    done = _kill_after(path, n_pages, 8, tmp_path, ray_address)
    assert 8 <= len(done) < n_pages
    report = verify_lmdb(path)                 # consistent right after the crash
    assert report["ok"], report["problems"]
    todo = [p for p in pages if p.page_id not in done]
    write_lmdb(dataset(ray_local, todo, 4), LmdbSink(path))
    assert_exact(path, pages)


def test_a_slow_stream_commits_every_commit_interval_s(ray_local, ray_address, tmp_path):
    """Issue 27 (6): with the default 512 MB write tasks a small, slow run committed nothing until its end;
    now a write task starts (and commits) at least every ``commit_interval_s``, so a driver killed mid-run
    leaves committed pages, and the rest follows on a rerun."""
    n_pages = 60
    pages = synthetic_pages(n_pages, seed=15, skip_every=6)
    path = str(tmp_path / "i.lmdb")
    done = _kill_after(path, n_pages, 1, tmp_path, ray_address, json.dumps({"commit_interval_s": 1.0}), "0.5")
    assert 0 < len(done) < n_pages
    assert verify_lmdb(path)["ok"]
    write_lmdb(dataset(ray_local, [p for p in pages if p.page_id not in done], 4), LmdbSink(path))
    assert_exact(path, pages)


def test_mismatched_options_refused_before_running(ray_local, tmp_path):
    path = str(tmp_path / "m.lmdb")
    write_lmdb(dataset(ray_local, synthetic_pages(3, seed=18), 1), LmdbSink(path))
    with pytest.raises(OcrvlError, match="index_base=1, label_format=pickle but this run asks index_base=0"):
        write_lmdb(dataset(ray_local, synthetic_pages(3, seed=19), 1), LmdbSink(path, index_base=0))
    assert verify_lmdb(path)["ok"] and len(completed_pages(path)) == 3


def test_empty_dataset(ray_local, tmp_path):
    path = str(tmp_path / "empty.lmdb")
    ds = dataset(ray_local, synthetic_pages(4, seed=16), 2).filter(lambda r: False)
    summary = write_lmdb(ds, LmdbSink(path))
    assert summary["num_samples"] == 0 and summary["pages"] == {} and summary["samples"] == 0
    report = verify_lmdb(path)
    assert report["ok"] and report["num_samples"] == 0 and report["pages"] == 0
