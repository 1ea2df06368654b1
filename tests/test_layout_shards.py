"""``shards=N``: N LMDBs in one folder written by parallel Ray write tasks; exactly once, resumable, read back
by verify/inspect/completed_pages and the training contract (``expand``/``assign``)."""
from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from pathlib import Path

import pytest

from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.lmdb import LmdbReader, LmdbSink, completed_pages, verify_lmdb, write_lmdb
from ocrvl_ray.lmdb.shards import assign, expand
from ocrvl_ray.testing.sink import synthetic_pages


def documented_shard(page_id: str, n: int) -> int:
    """The rule docs/performance.md states, written out independently of the sink."""
    return int(hashlib.blake2b(page_id.encode(), digest_size=8).hexdigest(), 16) % n


def contents(path) -> Counter:
    out = Counter()
    with LmdbReader(str(path)) as r:
        for i in range(len(r)):
            out[(r.meta(i)["page_id"], r.label(i), hashlib.sha1(r.image_bytes(i)).hexdigest())] += 1
    return out


def expected(pages) -> Counter:
    return Counter((p.page_id, s.label.strip(), hashlib.sha1(bytes(s.image)).hexdigest())
                   for p in pages if p.status == "ok" for s in p.samples if s.label.strip())


def dataset(ray, pages, blocks=8):
    return ray.data.from_items([p.to_row() for p in pages], override_num_blocks=blocks)


def test_two_shards_round_trip_resume_and_readers(ray_local, tmp_path):
    pages = synthetic_pages(40, seed=5, skip_every=7)
    for p in pages:                                   # page ids carry the page into each sample's meta
        for s in p.samples:
            s.meta = json.dumps({**json.loads(s.meta), "page_id": p.page_id})
    out = tmp_path / "out.lmdb"
    first = write_lmdb(dataset(ray_local, pages[:25]), LmdbSink(str(out), 2, min_pages_per_write=4))
    summary = write_lmdb(dataset(ray_local, pages), LmdbSink(str(out), 2, min_pages_per_write=4))

    shards = expand(out)
    assert [Path(s).name for s in shards] == ["shard-00000-of-00002", "shard-00001-of-00002"]
    final = sum(p.status == "ok" for p in pages[:25])          # skipped pages may be retried, ok pages never
    assert summary["pages_already_done"] == final and first["pages_already_done"] == 0
    assert first["samples"] + summary["samples"] == summary["num_samples"]       # resumed, nothing twice
    got = Counter()
    for i, shard in enumerate(shards):
        c = contents(shard)
        assert {pid for pid, _, _ in c} <= {p.page_id for p in pages if documented_shard(p.page_id, 2) == i}
        assert completed_pages(shard) == {p.page_id for p in pages if documented_shard(p.page_id, 2) == i}
        got += c
    assert got == expected(pages)
    assert completed_pages(str(out)) == {p.page_id for p in pages}
    report = verify_lmdb(str(out))
    assert report["ok"], report["problems"]
    assert report["num_samples"] == summary["num_samples"] == sum(expected(pages).values())
    index = json.loads((tmp_path / "out.lmdb.shards.json").read_text())
    assert index["shards"] == 2 and index["dirs"] == [Path(s).name for s in shards]
    assert index["num_samples"] == [len(LmdbReader(s)) for s in shards]
    assert assign(shards, 1, 2) == [shards[1]]

    from ocrvl_ray.report.inspect import format_summary, inspect_lmdb

    ins = inspect_lmdb(out, html=True)
    assert [Path(h).name for h in ins["html"]] == [f"{Path(s).name}.report.html" for s in shards]
    assert all(os.path.isfile(h) for h in ins["html"]) and ins["num_samples"] == report["num_samples"]
    assert format_summary(ins).count("LMDB ") == 2


@pytest.mark.parametrize("shards", [1, 3])
def test_write_time_and_span_lie_inside_the_call(ray_local, tmp_path, shards):
    """Bug: the sharded sink reused its start time for the first shard's index (write_s ~3.6e9 s)."""
    import time

    t0 = time.time()
    summary = write_lmdb(dataset(ray_local, synthetic_pages(12, seed=3), 4),
                         LmdbSink(str(tmp_path / "t.lmdb"), shards, min_pages_per_write=2))
    t1 = time.time()
    first, last = summary["write_span"]
    assert t0 < first < last < t1
    assert 0 < summary["write_s"] <= (t1 - t0) * shards


def test_shard_count_and_kind_must_match(ray_local, tmp_path):
    out = tmp_path / "s.lmdb"
    LmdbSink(str(out), 2).prepare()
    with pytest.raises(OcrvlError, match="shards=2"):
        LmdbSink(str(out), 3).prepare()
    single = tmp_path / "one.lmdb"
    LmdbSink(str(single)).prepare()
    with pytest.raises(OcrvlError, match="single LMDB"):
        LmdbSink(str(single), 2).prepare()


def test_layout_job_with_shards_matches_one_lmdb(ray_local, demo_model_dirs, tmp_path):
    from ocrvl_ray.core.config import load_config
    from ocrvl_ray.demo.sample import make_sample_dataset
    from ocrvl_ray.ingest.prepare import PrepareConfig, prepare
    from ocrvl_ray.layout.config import LayoutConfig
    from ocrvl_ray.layout.job import run_layout

    data = make_sample_dataset(tmp_path / "ds", n_pages=5, seed=8, size=(620, 877))
    manifest = tmp_path / "m.parquet"
    prepare(PrepareConfig(dataset="ocr_public", labels=[data["labels_dir"]], images=[data["images_dir"]],
                          out=str(manifest), quiet=True), use_ray=False)

    def run(out, **over):
        o = {"manifest": str(manifest), "output": str(out), "progress": False, "report_html": False,
             "layout.model_dir": str(demo_model_dirs[0]), "cells.model_dir": str(demo_model_dirs[1]), **over}
        return run_layout(load_config(LayoutConfig, overrides=[f"{k}={v}" for k, v in o.items()], env={}))

    run(tmp_path / "one.lmdb")
    report = run(tmp_path / "two.lmdb", shards=2)
    again = run(tmp_path / "two.lmdb", shards=2)
    merged = sum((contents(s) for s in expand(tmp_path / "two.lmdb")), Counter())
    assert merged == contents(tmp_path / "one.lmdb") and sum(merged.values()) > 0
    assert verify_lmdb(str(tmp_path / "two.lmdb"))["ok"]
    assert report["pages_in"] == 5 and again["pages_already_done"] == 5
