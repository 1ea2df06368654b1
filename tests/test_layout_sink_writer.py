"""LmdbWriter, rows, reader and verify on real lmdb, without Ray."""
from __future__ import annotations

import json
import os
import pickle

import lmdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.lmdb.schema import decode_label
from ocrvl_ray.lmdb import LmdbReader, LmdbWriter, SinkPage, SinkSample, completed_pages, verify_lmdb
from ocrvl_ray.lmdb.sink import iter_pages
from ocrvl_ray.testing.sink import synthetic_pages, tiny_jpeg


def raw(path):
    env = lmdb.open(str(path), readonly=True, lock=False)
    with env.begin() as txn:
        items = dict(txn.cursor())
    env.close()
    return items


def ok_samples(pages):
    return [s for p in pages if p.status == "ok" for s in p.samples]


def test_pickle_layout_is_the_erniekit_contract(tmp_path):
    pages = synthetic_pages(6, seed=1, skip_every=3)
    with LmdbWriter(tmp_path / "a.lmdb") as w:
        stats = w.write_pages(pages)
    kv = raw(tmp_path / "a.lmdb")
    samples = ok_samples(pages)
    assert kv[b"num-samples"] == str(len(samples)).encode()
    assert json.loads(kv[b"ocrvl-schema"]) == {"version": 1, "index_base": 1, "label_format": "pickle",
                                               "writer": "ocrvl-ray"}
    assert (kv[b"scheme"], kv[b"serializer"], kv[b"bboxes_type"]) == (b"det", b"pickle", b"ic15_flat8")
    for i, s in enumerate(samples, start=1):
        assert kv[b"image-%09d" % i] == s.image
        gt = pickle.loads(kv[b"gt-%09d" % i])
        assert gt == {"bboxes": [[0.0, 0.0, s.width, 0.0, s.width, s.height, 0.0, s.height]],
                      "words": [s.label], "filename": s.filename}
        assert all(isinstance(v, float) for v in gt["bboxes"][0])
        assert json.loads(kv[b"meta-%09d" % i]) == json.loads(s.meta)
    assert b"image-%09d" % 0 not in kv and b"image-%09d" % (len(samples) + 1) not in kv
    assert not any(k.startswith(b"label-") for k in kv)
    # markers: every page, skipped ones with count 0, ok ones tiling 1..N in page order
    first = 1
    for p in pages:
        m = json.loads(kv[b"page/" + p.page_id.encode()])
        n = len(p.samples) if p.status == "ok" else 0
        assert (m["first"], m["count"], m["status"]) == (first, n, p.status)
        first += n
    assert stats.pages == {"ok": 4, "no_regions": 2} and stats.samples == len(samples)


def test_text_format_and_zero_base(tmp_path):
    pages = synthetic_pages(4, seed=2)
    with LmdbWriter(tmp_path / "t.lmdb", index_base=0, label_format="text") as w:
        w.write_pages(pages)
    kv = raw(tmp_path / "t.lmdb")
    samples = ok_samples(pages)
    assert kv[b"scheme"] == b"recog"
    assert [kv[b"label-%09d" % i].decode() for i in range(len(samples))] == [s.label for s in samples]
    assert not any(k.startswith(b"gt-") for k in kv)
    with LmdbReader(tmp_path / "t.lmdb") as r:          # honours the recorded base
        assert [r.label(i) for i in range(len(r))] == [s.label.strip() for s in samples]
    with LmdbReader(tmp_path / "t.lmdb", index_base=1) as r:   # what erniekit would do: off by one
        assert r.label(0) == samples[1].label.strip()
        with pytest.raises(KeyError):
            r.label(len(samples) - 1)


def test_map_grows_from_tiny_size(tmp_path):
    pages = synthetic_pages(12, samples_per_page=2, seed=3, payload_bytes=60_000)
    path = tmp_path / "g.lmdb"
    with LmdbWriter(path, map_size=64 << 10, max_txn_bytes=200_000) as w:
        stats = w.write_pages(pages)
        map_size = w.env.info()["map_size"]
    payload = sum(len(s.image) for s in ok_samples(pages))
    assert stats.map_growths >= 1                    # grown ahead of the txns, by doubling
    assert payload < map_size < 8 * payload          # doubled on demand, not a huge sparse map
    assert os.path.getsize(path / "data.mdb") < 2 * payload
    report = verify_lmdb(str(path), decode=False)
    assert report["ok"], report["problems"]
    kv = raw(path)
    assert [kv[b"image-%09d" % (i + 1)] for i in range(len(ok_samples(pages)))] == \
        [s.image for s in ok_samples(pages)]
    with LmdbWriter(path, map_size=64 << 10) as w:     # reopening a grown LMDB with a tiny map works
        w.write_pages(synthetic_pages(2, seed=4, payload_bytes=60_000))
    assert verify_lmdb(str(path), decode=False)["ok"]


def test_mismatched_or_foreign_lmdb_refused(tmp_path):
    path = tmp_path / "m.lmdb"
    with LmdbWriter(path) as w:
        w.write_pages(synthetic_pages(1))
    with pytest.raises(OcrvlError, match="index_base=1, label_format=pickle"):
        LmdbWriter(path, index_base=0).open()
    with pytest.raises(OcrvlError, match="label_format"):
        LmdbWriter(path, label_format="text").open()
    foreign = tmp_path / "f.lmdb"
    env = lmdb.open(str(foreign))
    with env.begin(write=True) as txn:
        txn.put(b"num-samples", b"0")
    env.close()
    with pytest.raises(OcrvlError, match="ocrvl-schema"):
        LmdbWriter(foreign).open()
    with pytest.raises(OcrvlError):
        LmdbWriter(tmp_path / "x", index_base=2)
    with pytest.raises(OcrvlError):
        LmdbWriter(tmp_path / "x", label_format="json")
    (tmp_path / "file").write_text("x")
    with pytest.raises(OcrvlError, match="not a directory"):
        LmdbWriter(tmp_path / "file").open()
    with pytest.raises(OcrvlError, match="no LMDB"):
        LmdbReader(tmp_path / "nothing")


def test_idempotent_rewrites_and_retry_skipped(tmp_path):
    path = tmp_path / "i.lmdb"
    pages = synthetic_pages(9, seed=5, skip_every=3)
    with LmdbWriter(path) as w:
        w.write_pages(pages)
        n = w.num_samples
        again = w.write_pages(pages)
        assert (again.pages_already_done, again.samples, w.num_samples) == (6, 0, n)
    skipped = {p.page_id for p in pages if p.status != "ok"}
    assert completed_pages(str(path)) == {p.page_id for p in pages}
    assert completed_pages(str(path), retry_skipped=True) == {p.page_id for p in pages} - skipped
    assert completed_pages(str(tmp_path / "absent")) == set()
    # a skipped page processed again with samples replaces its marker and appends its samples
    sid = sorted(skipped)[0]
    redo = SinkPage(sid, "ok", "", [SinkSample(tiny_jpeg(9), "다시", "r.jpg", 5, 6, "{}", "layout", "text")])
    with LmdbWriter(path) as w:
        st = w.write_pages([redo])
        assert (st.pages, w.num_samples) == ({"ok": 1}, n + 1)
        assert w.write_pages([redo]).pages_already_done == 1
    assert json.loads(raw(path)[b"page/" + sid.encode()]) == {"first": n + 1, "count": 1, "status": "ok"}
    assert verify_lmdb(str(path))["ok"]


def test_bad_samples_and_pages_are_counted_not_written(tmp_path):
    # kinds and labels are counted from the typed fields; meta is stored as it is (here: not even JSON)
    good = SinkSample(tiny_jpeg(1), "좋은", "g.jpg", 4, 4, "not json", "cell", "table")
    pages = [SinkPage("p1", "ok", "", [good, SinkSample(b"", "no image", "e.jpg", 1, 1, "{}", "cell", "table"),
                                       SinkSample(tiny_jpeg(2), "  ", "blank.jpg", 1, 1, "{}", "layout", "text")],
                      skips=json.dumps({"counts": {"word_outside_page": 2}, "examples": {"word_outside_page": ["w7"]}})),
             SinkPage("", "ok", "", [good]),
             SinkPage("p2", "image_corrupt", "OSError: truncated")]
    with LmdbWriter(tmp_path / "b.lmdb") as w:
        st = w.write_pages(pages)
        assert w.num_samples == 1
    assert st.item_skips.counts == {"image_corrupt": 1, "empty_label": 1, "word_outside_page": 2}
    assert st.page_skips.counts == {"missing_field": 1, "image_corrupt": 1}
    assert st.page_skips.examples["image_corrupt"] == ["p2: OSError: truncated"]
    assert (st.samples_by_kind, st.samples_by_label) == ({"cell": 1}, {"table": 1})
    assert completed_pages(str(tmp_path / "b.lmdb")) == {"p1", "p2"}
    with LmdbReader(str(tmp_path / "b.lmdb")) as r:
        assert r.txn.get(b"meta-%09d" % 1) == b"not json"


def test_rows_from_arrow_pandas_and_empty_blocks():
    pages = synthetic_pages(3, seed=6, skip_every=3)
    rows = [p.to_row() for p in pages]
    from ocrvl_ray.lmdb.rows import SINK_ROW_SCHEMA
    table = pa.Table.from_pylist(rows, schema=SINK_ROW_SCHEMA)
    df = table.to_pandas()   # list<struct> -> object arrays of dicts, as Ray's pandas blocks carry them
    assert isinstance(df["samples"][0], np.ndarray)
    empty_no_cols, empty_df = pa.table({}), pd.DataFrame()
    got_arrow = list(iter_pages([empty_no_cols, table, empty_df]))
    got_pandas = list(iter_pages([df]))
    assert got_arrow == pages and got_pandas == pages
    assert list(iter_pages([table.slice(1, 2)])) == pages[1:3]          # Ray hands out zero-copy slices
    large = pa.schema([("page_id", pa.string()), ("status", pa.string()), ("detail", pa.string()),
                       ("samples", pa.large_list(pa.struct([("image", pa.large_binary()), ("label", pa.string()),
                                                            ("width", pa.int64())]))), ("skips", pa.string())])
    slim = [{**r, "samples": [{"image": s["image"], "label": s["label"], "width": s["width"]} for s in r["samples"]]}
            for r in rows]
    got_large = list(iter_pages([pa.Table.from_pylist(slim, schema=large)]))
    assert [[(bytes(s.image), s.label, s.width, s.height, s.meta, s.kind) for s in p.samples] for p in got_large] == \
        [[(s.image, s.label, s.width, 0, "", "") for s in p.samples] for p in pages]
    all_skipped = pa.Table.from_pylist([{"page_id": "s", "status": "no_regions", "detail": "", "samples": [],
                                         "skips": ""}])             # samples typed list<null>
    assert list(iter_pages([all_skipped])) == [SinkPage("s", "no_regions")]
    odd = SinkPage.from_row({"page_id": np.str_("x"), "status": "ok", "detail": None, "skips": float("nan"),
                             "samples": np.array([{"image": np.frombuffer(b"\xff\xd8", np.uint8), "label": "a",
                                                   "filename": "f", "width": np.int64(3), "height": np.int32(2),
                                                   "meta": "{}", "kind": np.str_("cell"), "layout_label": "table"}],
                                                 dtype=object)})
    assert odd == SinkPage("x", "ok", "", [SinkSample(b"\xff\xd8", "a", "f", 3, 2, "{}", "cell", "table")], "")


def test_decode_label_rules():
    assert decode_label(pickle.dumps({"words": ["가", 3, "나"], "bboxes": []})) == "가 나"
    assert decode_label(pickle.dumps({"words": "  한 줄 \n"})) == "한 줄"
    assert decode_label("  plain 텍스트\n".encode()) == "plain 텍스트"
    assert decode_label(b"ok\xff\xfe") == "ok"
    assert decode_label(pickle.dumps(["not", "a dict"])) == pickle.dumps(["not", "a dict"]).decode("utf-8", "ignore").strip()


def test_verify_finds_gaps_and_reader_probes_length(tmp_path):
    path = tmp_path / "v.lmdb"
    pages = synthetic_pages(5, seed=8)
    with LmdbWriter(path) as w:
        w.write_pages(pages)
        n = w.num_samples
    assert verify_lmdb(str(path))["ok"]
    env = lmdb.open(str(path))
    with env.begin(write=True) as txn:
        txn.delete(b"num-samples")
    env.close()
    with LmdbReader(path) as r:
        assert (len(r), r.length_source) == (n, "probe")
        assert r[n - 1][1] == ok_samples(pages)[-1].label
        assert r[-1][0].mode == "RGB"
    env = lmdb.open(str(path))
    with env.begin(write=True) as txn:
        txn.put(b"num-samples", str(n).encode())
        txn.delete(b"image-%09d" % 2)
        txn.put(b"meta-%09d" % (n + 1), b"{}")
    env.close()
    report = verify_lmdb(str(path))
    assert not report["ok"] and not report["erniekit_compatible"]
    text = " | ".join(report["problems"])
    assert "image-: missing key near 2" in text and f"meta-: {n + 1} keys, num-samples is {n}" in text
    assert report["undecodable"][0].startswith("sample 1 (key 2): KeyError")
