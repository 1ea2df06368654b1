"""The layout job end to end: real Ray Data, real paddleocr predictors (tiny offline models), real LMDB.

Expected labels come from the generator's ground truth (the label files), not from the code under test:
the template table has one word per cell, and text regions are rendered line by line.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from ocrvl_ray.core.config import load_config
from ocrvl_ray.demo.sample import TEMPLATE_REGIONS, make_sample_dataset
from ocrvl_ray.layout.config import LayoutConfig
from ocrvl_ray.testing.sink import lmdb_contents
from ocrvl_ray.lmdb import LmdbReader, completed_pages, verify_lmdb
from ocrvl_ray.testing.images import write_image

REPO = Path(__file__).resolve().parents[1]
SMALL = (620, 877)  # half-size pages keep the suite fast; the template is resolution independent
N_GOOD = 4


def _label_words(label_path: str) -> list[tuple[str, tuple[int, int, int, int]]]:
    doc = json.loads(Path(label_path).read_text("utf-8"))
    return [(b["data"], (min(b["x"]), min(b["y"]), max(b["x"]), max(b["y"]))) for b in doc["bbox"]]


def _region_px(label: str, size=SMALL):
    (x1, y1, x2, y2), = [r[2:6] for r in TEMPLATE_REGIONS if r[0] == label][:1]
    return x1 * size[0], y1 * size[1], x2 * size[0], y2 * size[1]


def _inside(box, region) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return region[0] <= cx <= region[2] and region[1] <= cy <= region[3]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, ray_local, demo_model_dirs):
    """4 good pages, 4 pages with bad images, one word far outside its page; prepared into a manifest."""
    from ocrvl_ray.ingest.prepare import PrepareConfig, prepare

    root = tmp_path_factory.mktemp("layout-data")
    data = make_sample_dataset(root / "ds", n_pages=N_GOOD, seed=3, size=SMALL)
    labels, images = Path(data["labels_dir"]), Path(data["images_dir"])
    template = json.loads(Path(data["pages"][0]["label"]).read_text("utf-8"))
    for kind in ("corrupt", "zero_byte", "truncated_png", "bomb_png", "missing"):
        ident = f"BAD_{kind}"
        doc = json.loads(json.dumps(template))
        doc["Images"]["identifier"] = ident
        (labels / f"{ident}.json").write_text(json.dumps(doc, ensure_ascii=False), "utf-8")
        write_image(images / f"{ident}.png", "rgb_png" if kind == "missing" else kind, *SMALL)
    outside = json.loads(Path(data["pages"][1]["label"]).read_text("utf-8"))
    outside["bbox"].append({"id": 9999, "data": "밖", "x": [5000, 5000, 5100, 5100], "y": [9000, 9050, 9000, 9050]})
    Path(data["pages"][1]["label"]).write_text(json.dumps(outside, ensure_ascii=False), "utf-8")
    manifest = root / "manifest.parquet"
    prep = prepare(PrepareConfig(dataset="ocr_public", labels=[str(labels)], images=[str(images)], out=str(manifest),
                                 quiet=True))
    (images / "BAD_missing.png").unlink()  # matched at prepare time, gone by the time the job runs
    layout_dir, cell_dir = demo_model_dirs
    truth = {p["id"]: _label_words(p["label"]) for p in data["pages"]}
    return {"root": root, "manifest": str(manifest), "layout": str(layout_dir), "cells": str(cell_dir),
            "truth": truth, "prepare": prep}


def _cfg(corpus, out: Path, **over) -> LayoutConfig:
    base = {"manifest": corpus["manifest"], "output": str(out), "progress": False, "report_html": False,
            "layout.model_dir": corpus["layout"], "cells.model_dir": corpus["cells"]}
    base.update(over)
    return load_config(LayoutConfig, overrides=[f"{k}={v}" for k, v in base.items()], env={})


@pytest.fixture(scope="module")
def baseline(corpus, tmp_path_factory):
    from ocrvl_ray.layout.job import run_layout

    out = tmp_path_factory.mktemp("run-a") / "ocr_public_train_layout.lmdb"
    report = run_layout(_cfg(corpus, out, report_html=True))   # the one run that also writes the HTML report
    return out, report


def test_run_report_and_lmdb_contract(corpus, baseline):
    out, report = baseline
    assert report["pages_in"] == N_GOOD + 5 and report["pages_processed"] == N_GOOD + 5
    assert report["pages_ok"] == N_GOOD
    assert report["pages_skipped"] == {"image_corrupt": 3, "image_missing": 1, "image_too_large": 1}
    on_disk = json.loads(Path(str(out) + ".report.json").read_text("utf-8"))
    assert on_disk["pages_skipped"] == report["pages_skipped"]
    html = Path(on_disk["report_html"]).read_text("utf-8")   # the data report is linked and written
    assert "data:image/jpeg;base64" in html
    # the word 5000 px outside its page is counted (by prepare or by compose), never silently dropped
    prep_counts = corpus["prepare"].get("skips", corpus["prepare"]).get("counts", {})
    assert prep_counts.get("word_outside_page", 0) + prep_counts.get("degenerate_box", 0) \
        + report["item_skips"].get("counts", {}).get("word_outside_page", 0) >= 1
    check = verify_lmdb(str(out))
    assert check["ok"], check["problems"]
    # default ocr_public recipe: the template table's cells replace the table's layout sample; the title,
    # heading and two paragraphs stay layout samples (header and footer are not sample labels)
    got, layouts = Counter(), Counter()
    with LmdbReader(str(out)) as r:
        assert len(r) == report["num_samples"] == 24 * N_GOOD
        for i in range(len(r)):
            meta, (img, label) = r.meta(i), r[i]
            assert img.mode == "RGB" and img.size[0] > 10 and img.size[1] > 10
            if meta["sample_kind"] == "layout":
                layouts[meta["layout_label"]] += 1
                continue
            assert meta["sample_kind"] == "cell" and meta["layout_label"] == "table"
            got[(meta["source_image"].rsplit("/", 1)[-1].split(".")[0], label)] += 1
    assert layouts == {"doc_title": N_GOOD, "paragraph_title": N_GOOD, "text": 2 * N_GOOD}
    assert report["guards"]["counts"]["guard.layout_beside_cells"] == 4 * N_GOOD
    table = _region_px("table")
    expected = Counter((ident, text) for ident, words in corpus["truth"].items()
                       for text, box in words if _inside(box, table))
    assert got == expected


def test_rerun_is_a_no_op_and_worker_counts_do_not_change_content(corpus, baseline, tmp_path, capsys):
    """A rerun of a finished LMDB starts no stream (one "nothing to do" line) and its report.json still describes
    the whole LMDB: the first run's pages and skips, each run kept in <output>.runs/ (issue 26, items 5-6)."""
    from ocrvl_ray.layout.job import run_layout

    out, first = baseline
    capsys.readouterr()
    again = run_layout(_cfg(corpus, out))
    said = capsys.readouterr().out
    assert again["pages_already_done"] == N_GOOD + 5 and again["pages_processed"] == 0
    assert again["num_samples"] == 24 * N_GOOD
    assert said.strip().splitlines() == [f"layout [train]: nothing to do: {N_GOOD + 5} pages already in {out}"]
    runs = sorted(Path(str(out) + ".runs").glob("*.json"))
    assert len(runs) == 2 and json.loads(runs[1].read_text("utf-8"))["pages_processed"] == 0
    whole = json.loads(Path(str(out) + ".report.json").read_text("utf-8"))
    assert whole["pages_ok"] == N_GOOD and whole["pages_done"] == N_GOOD + 5
    assert whole["pages_skipped"] == {"image_corrupt": 3, "image_missing": 1, "image_too_large": 1}
    assert whole["samples_written"] == whole["num_samples"] == 24 * N_GOOD
    assert whole["guards"]["counts"]["guard.layout_beside_cells"] == 4 * N_GOOD
    assert whole["item_skips"] == first["item_skips"] and whole["runs"] == [str(p) for p in runs]
    wide = tmp_path / "wide_layout.lmdb"
    run_layout(_cfg(corpus, wide, **{"layout.max_actors": 2, "cells.max_actors": 2, "layout.batch_size": 1,
                                     "cells.batch_size": 3, "decode_batch_size": 1, "compose_batch_size": 2}))
    assert lmdb_contents(wide) == lmdb_contents(out)


def test_text_regions_read_in_rows(corpus, tmp_path):
    """With cells replacing only their table, text regions become samples whose rows follow the page."""
    from ocrvl_ray.layout.job import run_layout

    out = tmp_path / "rows_layout.lmdb"
    run_layout(_cfg(corpus, out, **{"recipes.ocr_public.cells_replace": "table",
                                    "handoff": "bytes"}))
    region = _region_px("text")  # the first text paragraph
    with LmdbReader(str(out)) as r:
        texts = {}
        for i in range(len(r)):
            m = r.meta(i)
            if m["sample_kind"] == "layout" and m["layout_label"] == "text":
                texts.setdefault(m["source_image"].rsplit("/", 1)[-1].split(".")[0], []).append(r.label(i))
    assert len(texts) == N_GOOD
    for ident, labels in texts.items():
        words = [(t, b) for t, b in corpus["truth"][ident] if _inside(b, region)]
        rows: list[list] = []   # the generator renders lines 16 px apart: centres within 6 px share a line
        for t, b in sorted(words, key=lambda w: (w[1][1] + w[1][3]) / 2):
            cy = (b[1] + b[3]) / 2
            if not rows or cy - rows[-1][0] > 6:
                rows.append([cy, []])
            rows[-1][1].append((b[0], t))
        expected = "\n".join(" ".join(t for _, t in sorted(ws)) for _, ws in rows)
        assert expected in labels


def test_kill_minus_9_of_the_driver_then_rerun_is_exactly_once(corpus, baseline, tmp_path, ray_address):
    from ocrvl_ray.layout.job import run_layout

    out = tmp_path / "killed_layout.lmdb"
    env = dict(os.environ, RAY_ADDRESS=ray_address, PYTHONPATH=str(REPO))   # a second driver on the session Ray
    args = [sys.executable, str(REPO / "jobs" / "layout.py"), f"manifest={corpus['manifest']}", f"output={out}",
            f"layout.model_dir={corpus['layout']}", f"cells.model_dir={corpus['cells']}", "progress=false",
            "decode_batch_size=1", "compose_batch_size=1", "layout.batch_size=1", "cells.batch_size=1",
            "write_batch_pages=1", "report_html=false"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    killed_at = None
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            done = completed_pages(str(out)) if (out / "data.mdb").exists() else set()
            if done:
                os.kill(proc.pid, signal.SIGKILL)   # the driver only, mid-run
                killed_at = len(done)
                break
            time.sleep(0.1)
    finally:
        proc.wait(timeout=60)
    assert killed_at is not None, "the job finished or never committed a page before it could be killed"
    assert 0 < killed_at < N_GOOD + 5
    partial = verify_lmdb(str(out))
    assert partial["ok"], partial["problems"]          # committed pages are whole, keys contiguous
    report = run_layout(_cfg(corpus, out))
    assert report["pages_already_done"] >= killed_at
    assert verify_lmdb(str(out))["ok"]
    assert lmdb_contents(out) == lmdb_contents(baseline[0])


def test_ctrl_c_is_one_line_and_exit_130(corpus, tmp_path, ray_address):
    """SIGINT mid-run: no traceback, exit 130 and one line saying how to resume (issue 26, item 6)."""
    out = tmp_path / "interrupted_layout.lmdb"
    env = dict(os.environ, RAY_ADDRESS=ray_address, PYTHONPATH=str(REPO))
    args = [sys.executable, str(REPO / "jobs" / "layout.py"), f"manifest={corpus['manifest']}", f"output={out}",
            f"layout.model_dir={corpus['layout']}", f"cells.model_dir={corpus['cells']}", "progress=false",
            "decode_batch_size=1", "compose_batch_size=1", "layout.batch_size=1", "cells.batch_size=1",
            "write_batch_pages=1", "report_html=false"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    said = []
    try:
        for line in proc.stdout:        # the pools are starting: the stream is running
            said.append(line)
            if "loading models" in line:
                break
        time.sleep(2)
        os.kill(proc.pid, signal.SIGINT)
        rest, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert any("loading models" in line for line in said), "".join(said)
    assert proc.returncode == 130, err
    ours = [line for line in err.splitlines() if line.strip() and "INFO worker.py" not in line]  # Ray's connect log
    assert ours == ["ocrvl layout: interrupted; rerun the same command to resume"], err
    assert "Traceback" not in rest + err and "KeyboardInterrupt" not in rest + err


def test_cli_and_plan(corpus, tmp_path, capsys):
    """`ocrvl layout` is the same job; CPU decode and both detector pools are separate operators named after
    their stages, and the split filter is pushed down into the Parquet read."""
    from ocrvl_ray.cli import main
    from ocrvl_ray.layout.job import build_dataset, pending_pages, resolve_inputs

    cfg, manifest = resolve_inputs(_cfg(corpus, tmp_path / "x.lmdb"))
    build_dataset(cfg, manifest, pending_pages(manifest, "train", set(), 0), None).explain()
    plan = capsys.readouterr().out.split("Physical Plan (Optimized)")[-1]
    assert "TaskPoolMapOperator[MapBatches(decode)]" in plan
    assert "ActorPoolMapOperator[MapBatches(detect_layout)]" in plan
    assert "TaskPoolMapOperator[MapBatches(table_crops)]" in plan
    assert "ActorPoolMapOperator[MapBatches(detect_cells)]" in plan
    assert "TaskPoolMapOperator[MapBatches(compose)]" in plan and "Filter" not in plan
    assert main(["layout", "outptu=/tmp/x"]) == 2
    assert "did you mean 'output'" in capsys.readouterr().err
    assert main(["layout", f"manifest={tmp_path / 'nope.parquet'}", "progress=false"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_resume_leaves_done_pages_out_of_the_read_and_out_of_every_stage(corpus, baseline, tmp_path):
    """Bug 4: the done set went into every decode task's kwargs. Now the driver filters the manifest read;
    no stage's function, arguments or constructor arguments carry a finished page id."""
    import cloudpickle
    import pyarrow.parquet as pq

    from ocrvl_ray.layout.job import build_dataset, pending_pages, read_manifest, resolve_inputs

    cfg, manifest = resolve_inputs(_cfg(corpus, tmp_path / "r.lmdb"))
    ids = pq.read_table(manifest, columns=["page_id"]).column("page_id").to_pylist()
    done = set(ids[::2])
    todo = pending_pages(manifest, "train", done, 0)
    assert (todo.pages_in, todo.already_done) == (N_GOOD + 5, len(done))
    ds = build_dataset(cfg, manifest, todo, None)

    def ops(op):
        yield op
        for dep in op.input_dependencies:
            yield from ops(dep)

    maps = [op for op in ops(ds._logical_plan.dag) if type(op).__name__ == "MapBatches"]
    assert [op.name for op in maps][::-1] == [f"MapBatches({n})" for n in
                                              ("decode", "detect_layout", "table_crops", "detect_cells", "compose")]
    for op in maps:
        blob = cloudpickle.dumps((op.fn, op.fn_args, op.fn_kwargs, op.fn_constructor_args, op.fn_constructor_kwargs))
        assert not [pid for pid in done if pid.encode() in blob], op.name
    for few_left in (done, set(ids[::3])):     # the read keeps the shorter list: is_in those left / not_in done
        todo = pending_pages(manifest, "train", few_left, 0)
        got = {r["page_id"] for r in
               read_manifest(manifest).filter(expr=todo.keep).select_columns(["page_id"]).take_all()}
        assert got == set(ids) - few_left and todo.already_done == len(few_left)
    # limit counts the manifest's first pages, done or not (as before): what is left of the first 4
    first = pending_pages(manifest, "train", done, 4)
    assert (first.pages_in, first.already_done) == (4, len(set(ids[:4]) & done))
    got = {r["page_id"] for r in read_manifest(manifest).filter(expr=first.keep).select_columns(["page_id"]).take_all()}
    assert got == set(ids[:4]) - done


def test_model_that_cannot_load_is_one_line_error(corpus, tmp_path, capsys):
    """An OcrvlError raised inside a detector actor reaches the user as one line, not a Ray traceback."""
    from ocrvl_ray.cli import main

    (tmp_path / "no-model").mkdir()   # a folder without a model (a missing one is named as such)
    rc = main(["layout", f"manifest={corpus['manifest']}", f"output={tmp_path / 'y.lmdb'}", "progress=false",
               f"layout.model_dir={tmp_path / 'no-model'}", f"cells.model_dir={corpus['cells']}"])
    assert rc == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("ocrvl layout: error: layout.model_dir=") and "inference.yml missing" in last


def test_progress_counts_composed_pages(corpus, tmp_path, capfd):
    """Write tasks commit up to write_batch_mb at a time, so progress also counts pages composed: each
    compose batch tells the counter (checked through the graph), the sink tells it what it committed (no
    rescan of the LMDB's markers), and the job prints well-formed lines."""
    import re

    import ray

    from ocrvl_ray.core.console import page_counter
    from ocrvl_ray.layout.job import build_dataset, pending_pages, resolve_inputs, run_layout

    cfg, manifest = resolve_inputs(_cfg(corpus, tmp_path / "x.lmdb", compose_batch_size=2))
    counter = page_counter()
    todo = pending_pages(manifest, "train", set(), 0)
    assert build_dataset(cfg, manifest, todo, None, progress=counter).count() == N_GOOD + 5
    deadline = time.time() + 10
    while ray.get(counter.totals.remote())["composed"] < N_GOOD + 5 and time.time() < deadline:
        time.sleep(0.1)
    assert ray.get(counter.totals.remote()) == {"composed": N_GOOD + 5, "written": 0}
    ray.kill(counter)

    run_layout(_cfg(corpus, tmp_path / "p.lmdb", progress=True, progress_every_s=0.2))
    lines = [ln for ln in capfd.readouterr().out.splitlines() if " pages composed, " in ln]
    assert lines, "no progress line in a run of several seconds"
    seen = [tuple(map(int, m.groups())) for m in
            (re.fullmatch(r"layout \[train\]: (\d+)/9 pages composed, (\d+) written \(\d+\.\d pages/s\)", ln)
             for ln in lines) if m]
    assert len(seen) == len(lines), lines
    assert all(0 <= w <= 9 and 0 <= c <= 9 for c, w in seen) and [c for c, _ in seen] == sorted(c for c, _ in seen)


def test_sink_tells_the_counter_what_it_committed(ray_local, tmp_path):
    """Written pages are counted by the sink after each transaction (progress never rescans markers)."""
    import ray

    from ocrvl_ray.core.console import page_counter
    from ocrvl_ray.lmdb import LmdbSink, write_lmdb
    from ocrvl_ray.testing.sink import synthetic_pages

    pages = synthetic_pages(12, seed=4, skip_every=5)
    counter = page_counter()
    ds = ray.data.from_items([p.to_row() for p in pages], override_num_blocks=4)
    write_lmdb(ds, LmdbSink(str(tmp_path / "c.lmdb"), min_pages_per_write=3, progress=counter))
    deadline = time.time() + 10
    while ray.get(counter.totals.remote())["written"] < len(pages) and time.time() < deadline:
        time.sleep(0.1)
    assert ray.get(counter.totals.remote()) == {"composed": 0, "written": len(pages)}
    ray.kill(counter)


def test_stall_watchdog_names_what_the_cluster_cannot_give(corpus, tmp_path, ray_address):
    """Issue 27 (2): detectors asking for a GPU on a cluster without one used to wait forever, the console
    repeating "0/N pages composed"; now the job stops with one line naming the request, within its timeout."""
    out = tmp_path / "stall_layout.lmdb"
    env = dict(os.environ, RAY_ADDRESS=ray_address, PYTHONPATH=str(REPO))   # a second driver on the session Ray
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "ocrvl_ray.cli", "layout", f"manifest={corpus['manifest']}",
                           f"output={out}", f"layout.model_dir={corpus['layout']}", "cells.enabled=false",
                           "layout.device=gpu", "stall_timeout_s=3", "progress=false", "report_html=false"],
                          env=env, capture_output=True, text=True, timeout=150, start_new_session=True)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ocrvl layout: error: layout [train]: no page composed for ") and \
        "Ray cannot place {GPU: 1} x 1 and launches no node for it (nodes: {CPU: 4} x 1)" in last \
        and "wait_for_nodes=true" in last, last
    assert time.time() - t0 < 120


def test_progress_goes_on_through_a_lost_or_restarted_counter(ray_local):
    """Issue 27 (8): a failed read of the counter is a note and the job goes on; a restarted counter's totals
    add to what was seen."""
    import ray

    from ocrvl_ray.core.console import page_counter
    from ocrvl_ray.layout.job import Todo, Watch

    cfg = load_config(LayoutConfig, overrides=["manifest=m.parquet", "progress_every_s=0.01"], env={})
    counter, lines = page_counter(), []
    watch = Watch(cfg, "train", Todo(None, 10, 1), counter, lines.append, time.time())
    ray.get([counter.add.remote("composed", 3), counter.add.remote("written", 2)])
    time.sleep(0.02)
    watch.tick()
    assert lines[-1].startswith("layout [train]: 4/10 pages composed, 3 written (")
    ray.kill(counter, no_restart=False)             # restarts, from zero
    deadline = time.time() + 30
    while True:   # the kill is asynchronous: wait for the restarted counter (its totals back at zero)
        try:
            if ray.get(counter.totals.remote(), timeout=5)["composed"] == 0:
                break
        except Exception:  # noqa: BLE001 - restarting
            pass
        assert time.time() < deadline
        time.sleep(0.2)
    ray.get(counter.add.remote("composed", 2))
    time.sleep(0.02)
    watch.tick()
    assert lines[-1].startswith("layout [train]: 6/10 pages composed, 3 written (")
    ray.kill(counter)                               # gone for good
    time.sleep(0.02)
    watch.tick()
    assert lines[-1].startswith("note: layout [train]: cannot read the page counter (") and \
        lines[-1].endswith(" s)") and "the job goes on" in lines[-1]
