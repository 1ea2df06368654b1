"""``ocrvl reshard``: a verified copy of an LMDB (or a shard folder) into N shards of the layout job's contract.
Real lmdb, no Ray: inputs written by ``LmdbWriter`` (synthetic pages) or raw like the FAST tools."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
from collections import Counter

import lmdb
import pytest

from ocrvl_ray import cli
from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.lmdb import LmdbReader, LmdbWriter, completed_pages, verify_lmdb
from ocrvl_ray.lmdb import schema as S
from ocrvl_ray.lmdb.identity import identity_record
from ocrvl_ray.lmdb.reshard import reshard
from ocrvl_ray.lmdb.shards import ShardError
from ocrvl_ray.testing.sink import synthetic_pages, tiny_jpeg
from ocrvl_ray.train import preflight

RECORD = identity_record({"compose_version": 1, "recipe": "synthetic"})


def _page_shard(page_id: str, n: int) -> int:
    """The documented hash rule, spelled out here: blake2b(page_id, 8 bytes) big-endian mod N."""
    return int.from_bytes(hashlib.blake2b(page_id.encode(), digest_size=8).digest(), "big") % n


def _samples(path) -> list[tuple]:
    """(page_id, label, image sha1, meta) of every sample, in key order, read through ``LmdbReader``."""
    with LmdbReader(str(path)) as r:
        return [(r.meta(i).get("page_id"), r.label(i), hashlib.sha1(r.image_bytes(i)).hexdigest(), r.meta(i))
                for i in range(len(r))]


def _raw(path, *keys: bytes) -> list[bytes | None]:
    env = lmdb.open(str(path), readonly=True, lock=False)
    with env.begin() as t:
        out = [t.get(k) for k in keys]
    env.close()
    return out


def _fast_tools_lmdb(path, labels: list[str], images: list[bytes] | None = None) -> str:
    """An LMDB as the original FAST tools write it: 0-based image-/gt- keys, num-samples and their metadata
    keys; no ocrvl-schema, no meta-, no page markers."""
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as t:
        for n, label in enumerate(labels):
            t.put(b"image-%09d" % n, images[n] if images else tiny_jpeg(n))
            t.put(b"gt-%09d" % n, pickle.dumps({"bboxes": [[0, 0, 24, 0, 24, 16, 0, 16]], "words": [label],
                                                "filename": f"s{n}.jpg"}))
        t.put(b"num-samples", str(len(labels)).encode())
        for k, v in {b"scheme": b"det", b"format_version": b"1", b"image_ext": b"jpg", b"serializer": b"pickle",
                     b"bboxes_type": b"ic15_flat8"}.items():
            t.put(k, v)
    env.close()
    return str(path)


@pytest.mark.parametrize("index_base,label_format", [(1, "pickle"), (0, "text")])
def test_one_lmdb_with_pages_to_three_shards(tmp_path, index_base, label_format):
    src, out = tmp_path / "in.lmdb", tmp_path / "out.lmdb"
    pages = synthetic_pages(30, skip_every=7)
    with LmdbWriter(str(src), index_base=index_base, label_format=label_format, identity=RECORD) as w:
        w.write_pages(pages)
    before = _samples(src)

    res = reshard(str(src), str(out), 3)

    dirs = [f"shard-0000{i}-of-00003" for i in range(3)]
    assert sorted(os.listdir(out)) == dirs
    per_shard = [_samples(out / d) for d in dirs]
    assert Counter(s[:3] for part in per_shard for s in part) == Counter(s[:3] for s in before)
    for i, part in enumerate(per_shard):   # each shard: its pages' samples, in input order
        assert [s[:3] for s in part] == [s[:3] for s in before if _page_shard(s[0], 3) == i]
    assert res.samples == len(before) and res.shard_samples == [len(p) for p in per_shard]
    assert res.shards == 3 and res.pages == 30

    fixed = [S.SCHEMA_KEY, S.IDENTITY_KEY, *S.LEGACY_META]
    for i, d in enumerate(dirs):
        assert _raw(out / d, *fixed) == _raw(src, *fixed)       # identity, options, metadata copied as they are
        with LmdbReader(str(out / d)) as r:
            markers = dict(r.markers())
            assert r.index_base == index_base
            for page_id, m in markers.items():
                assert _page_shard(page_id, 3) == i
                assert m["first"] >= index_base
                assert [r.meta(k - index_base)["page_id"] for k in range(m["first"], m["first"] + m["count"])] == \
                    [s[0] for s in before if s[0] == page_id]
        assert {p for p, m in markers.items() if m["status"] != "ok"} == \
            {p.page_id for p in pages if p.status != "ok" and _page_shard(p.page_id, 3) == i}
    assert completed_pages(str(out)) == completed_pages(str(src)) == {p.page_id for p in pages}

    report = verify_lmdb(str(out))
    assert report["ok"], report["problems"]
    assert report["num_samples"] == len(before) and report["pages"] == 30
    with open(f"{out}.shards.json") as f:
        index = json.load(f)
    assert (index["shards"], index["dirs"], index["num_samples"], index["total_samples"]) == \
        (3, dirs, [len(p) for p in per_shard], len(before))
    assert (index["index_base"], index["label_format"]) == (index_base, label_format)

    # a layout resume into OUT finds each page in the shard the hash rule names: nothing is written again
    done = pages[0]
    with LmdbWriter(str(out / dirs[_page_shard(done.page_id, 3)]), index_base=index_base,
                    label_format=label_format, identity=RECORD) as w:
        assert w.write_pages([done]).pages_already_done == 1


def test_fast_tools_lmdb_is_dealt_round_robin(tmp_path):
    labels = [f"word {i}" for i in range(7)]
    src = _fast_tools_lmdb(tmp_path / "fast.lmdb", labels)
    out = tmp_path / "two.lmdb"

    res = reshard(src, str(out), 2)

    assert res.shard_samples == [4, 3] and res.pages == 0
    for i in range(2):
        shard = out / f"shard-0000{i}-of-00002"
        # schema and meta records added; no page markers, as in the input (the one problem verify_lmdb sees)
        assert verify_lmdb(str(shard))["problems"] == [f"page markers cover 0 samples, num-samples is {4 - i}"]
        with LmdbReader(str(shard)) as r:
            assert (r.index_base, len(r)) == (0, len(labels[i::2]))
            assert [r.label(k) for k in range(len(r))] == labels[i::2]
            assert [r.image_bytes(k) for k in range(len(r))] == [tiny_jpeg(n) for n in range(i, 7, 2)]
            assert [r.meta(k) for k in range(len(r))] == [{"source_lmdb": src, "source_key": n}
                                                          for n in range(i, 7, 2)]
            assert json.loads(r.txn.get(S.SCHEMA_KEY))["index_base"] == 0
        # gt- records byte for byte, 0-based keys as the FAST tools read them, their metadata keys kept
        assert _raw(shard, b"gt-000000000", *S.LEGACY_META) == _raw(src, b"gt-%09d" % i, *S.LEGACY_META)
        assert _raw(shard, S.IDENTITY_KEY) == [None]


def test_shard_folder_merges_back_in_shard_order(tmp_path):
    src, three, one = tmp_path / "in.lmdb", tmp_path / "three.lmdb", tmp_path / "one.lmdb"
    with LmdbWriter(str(src), identity=RECORD) as w:
        w.write_pages(synthetic_pages(12))
    reshard(str(src), str(three), 3)
    res = reshard(str(three), str(one), 1)
    assert res.shards == 1 and not os.path.exists(f"{one}.shards.json")
    assert [s[:3] for s in _samples(one)] == [s[:3] for i in range(3)
                                              for s in _samples(three / f"shard-0000{i}-of-00003")]
    assert verify_lmdb(str(one))["ok"] and _raw(one, S.IDENTITY_KEY) == _raw(src, S.IDENTITY_KEY)


def test_refusals_are_one_line_and_touch_nothing(tmp_path):
    src = _fast_tools_lmdb(tmp_path / "fast.lmdb", ["a", "b", "c"])
    out = tmp_path / "out.lmdb"
    reshard(src, str(out), 2)
    stamp = os.path.getmtime(out / "shard-00000-of-00002" / "data.mdb")
    with pytest.raises(OcrvlError, match=r"^out=.*out.lmdb exists; pass overwrite=true") as e:
        reshard(src, str(out), 3)
    assert "\n" not in str(e.value) and sorted(os.listdir(out))[0] == "shard-00000-of-00002"
    assert os.path.getmtime(out / "shard-00000-of-00002" / "data.mdb") == stamp

    reshard(src, str(out), 1, overwrite=True)           # a shard folder replaced by one LMDB, its index gone
    assert os.path.isfile(out / "data.mdb") and not os.path.exists(f"{out}.shards.json")

    (tmp_path / "notes").mkdir()
    with pytest.raises(OcrvlError, match="exists and is no LMDB or shard folder"):
        reshard(src, str(tmp_path / "notes"), 2, overwrite=True)
    with pytest.raises(OcrvlError, match=r"missing.lmdb: no LMDB here"):
        reshard(str(tmp_path / "missing.lmdb"), str(tmp_path / "x.lmdb"), 2)
    with pytest.raises(OcrvlError, match="overlaps the input"):
        reshard(src, os.path.join(src, "inside"), 2)
    os.rename(out, tmp_path / "keep.lmdb")
    reshard(str(tmp_path / "keep.lmdb"), str(tmp_path / "s4.lmdb"), 4)
    os.rename(tmp_path / "s4.lmdb" / "shard-00002-of-00004", tmp_path / "gone")
    with pytest.raises(ShardError, match="shard-00002-of-00004"):
        reshard(str(tmp_path / "s4.lmdb"), str(tmp_path / "y.lmdb"), 2)
    assert not any(n.startswith(("x.lmdb", "y.lmdb")) for n in os.listdir(tmp_path))


def test_inconsistent_input_is_one_line_naming_it(tmp_path):
    src = tmp_path / "in.lmdb"
    pages = synthetic_pages(5, samples_per_page=1)
    with LmdbWriter(str(src), identity=RECORD) as w:
        w.write_pages(pages)
    env = lmdb.open(str(src))
    with env.begin(write=True) as t:
        t.delete(S.page_key(pages[2].page_id))          # sample 3 (key 3) belongs to no page now
    env.close()
    with pytest.raises(OcrvlError, match=r"in.lmdb: page markers do not tile the samples at key 3 \(page "):
        reshard(str(src), str(tmp_path / "a.lmdb"), 2)
    env = lmdb.open(str(src))
    with env.begin(write=True) as t:
        t.put(S.NUM_SAMPLES, b"2")
    env.close()
    with pytest.raises(OcrvlError, match=r"in.lmdb: extra key gt-000000003 beyond num-samples 2"):
        reshard(str(src), str(tmp_path / "b.lmdb"), 2)
    assert sorted(os.listdir(tmp_path)) == ["in.lmdb"]


def test_a_copy_that_does_not_verify_is_refused_and_leaves_nothing(tmp_path):
    src = _fast_tools_lmdb(tmp_path / "bad.lmdb", ["a", "b"], images=[tiny_jpeg(0), b"not a jpeg"])
    with pytest.raises(OcrvlError, match=r"does not verify \(shard-00001-of-00002: 1 undecodable samples"):
        reshard(src, str(tmp_path / "out.lmdb"), 2)
    assert sorted(os.listdir(tmp_path)) == ["bad.lmdb"]


def test_cli_in_process(tmp_path, capsys):
    src, out = tmp_path / "in.lmdb", tmp_path / "out.lmdb"
    with LmdbWriter(str(src), identity=RECORD) as w:
        w.write_pages(synthetic_pages(10))
    n = len(_samples(src))
    assert cli.main(["reshard", str(src), "--shards", "2", "--out", str(out)]) == 0
    line = capsys.readouterr().out
    assert line.startswith(f"ocrvl reshard: {out}: {n} samples (10 pages) in 2 shard(s) [")
    assert line.count("\n") == 1 and line.rstrip().endswith("MB/s), verified")
    assert cli.main(["reshard", str(src), "--shards", "3", "--out", str(out)]) == 2
    assert capsys.readouterr().err == (f"ocrvl reshard: error: out={out} exists; pass overwrite=true to replace it "
                                       f"or choose a new output\n")
    assert cli.main(["reshard", str(tmp_path / "nope"), "shards=2", f"out={tmp_path / 'o2'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ocrvl reshard: error: {tmp_path / 'nope'}: no LMDB here") and err.count("\n") == 1
    assert cli.main(["reshard", str(src), "shards=3", f"out={out}", "overwrite=true"]) == 0
    assert len(os.listdir(out)) == 3


def test_training_refusal_names_reshard_and_resharding_clears_it(tmp_path):
    src, out = tmp_path / "in.lmdb", tmp_path / "two.lmdb"
    with LmdbWriter(str(src), identity=RECORD) as w:
        w.write_pages(synthetic_pages(6))
    base = {"output_dir": str(tmp_path / "run"), "fine_tuning": "LoRA", "stage": "OCR-VL-SFT",
            "use_huggingface_model": True}
    found = preflight.audit({**base, "train_lmdb_paths": str(src)}, world=2)
    assert [f.message for f in found] == [
        f"train_lmdb_paths: {src}: 1 shard(s) for 2 training ranks: ranks would read the same samples; copy it "
        f"into 2 shards with `ocrvl reshard IN --shards 2 --out OUT` (or write it with shards=2 or a multiple), "
        f"or train with 1 rank(s)"]
    reshard(str(src), str(out), 2)
    assert preflight.audit({**base, "train_lmdb_paths": str(out)}, world=2) == []


def test_layout_resumes_into_a_resharded_output(ray_local, tmp_path):
    """Integration (Ray): the sink with shards=3 and the same identity resumes into OUT: the copied pages are
    found where the hash rule says and not written again; the rest are added; OUT verifies."""
    from ocrvl_ray.lmdb import LmdbSink, write_lmdb

    src, out = tmp_path / "in.lmdb", tmp_path / "out.lmdb"
    pages = synthetic_pages(30, skip_every=9)
    with LmdbWriter(str(src), identity=RECORD) as w:
        w.write_pages(pages[:20])
    reshard(str(src), str(out), 3)
    ds = ray_local.data.from_items([p.to_row() for p in pages], override_num_blocks=4)
    summary = write_lmdb(ds, LmdbSink(str(out), 3, identity=RECORD, min_pages_per_write=4))
    copied_ok = sum(p.status == "ok" for p in pages[:20])     # skipped pages' markers are retried, as always
    assert (summary["pages_already_done"], sum(summary["pages"].values())) == (copied_ok, 30 - copied_ok)
    assert copied_ok == 18
    assert verify_lmdb(str(out))["ok"] and completed_pages(str(out)) == {p.page_id for p in pages}
    want = Counter((p.page_id, s.label, hashlib.sha1(s.image).hexdigest()) for p in pages for s in p.samples)
    got = Counter(s[:3] for i in range(3) for s in _samples(out / f"shard-0000{i}-of-00003"))
    assert got == want
