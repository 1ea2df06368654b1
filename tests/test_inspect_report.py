"""``ocrvl inspect``: a small LMDB written with raw lmdb per sink/schema.py, inspected via API and CLI."""
from __future__ import annotations

import io
import json
import pickle
import re
import shutil

import lmdb
import numpy as np
import pytest
from PIL import Image, ImageDraw

from ocrvl_ray.cli import main
from ocrvl_ray.lmdb import schema as schema
from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.report.inspect import Histogram, char_class, contact_indices, inspect_lmdb, unusual_chars


def _jpeg(w: int, h: int, blank: bool = False, seed: int = 0) -> bytes:
    im = Image.new("RGB", (w, h), (255, 255, 255))
    d = ImageDraw.Draw(im)
    if blank:
        d.point((w // 2, h // 2), fill=(200, 200, 200))
    else:
        rng = np.random.default_rng(seed)
        for _ in range(8):   # "glyphs": dark blocks across the crop
            x = int(rng.integers(0, w - 12))
            d.rectangle([x, h // 4, x + 10, 3 * h // 4], fill=(0, 0, 0))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


LONG = "가나다라마" * 250   # 1250 Hangul characters
SAMPLES = [  # label, dataset, kind, layout_label, (w, h), blank
    ("안녕하세요 세계", "finance", "layout", "text", (200, 40), False),
    ("빈 칸", "finance", "layout", "text", (240, 60), True),
    (LONG, "public", "layout", "text", (400, 120), False),
    ("ABC\x07123", "public", "cell", "table", (90, 30), False),
    ("합계: 1,234원 <VAT>", "finance", "word", "table", (160, 32), False),
    ("잘못\ufffd된", "finance", "layout", "text", (120, 40), False),
]


def _write(path, samples, base=1, fmt="pickle", schema_key=True, meta=True):
    env = lmdb.open(str(path), map_size=1 << 26)
    with env.begin(write=True) as t:
        for i, (label, ds, kind, ll, (w, h), blank) in enumerate(samples):
            n = i + base
            t.put((schema.IMAGE_FMT % n).encode(), _jpeg(w, h, blank, seed=i))
            if fmt == "pickle":
                t.put((schema.GT_FMT % n).encode(), pickle.dumps(
                    {"bboxes": [[0, 0, w, 0, w, h, 0, h]], "words": [label], "filename": f"s{n}.jpg"}))
            else:
                t.put((schema.LABEL_FMT % n).encode(), label.encode("utf-8"))
            if meta:
                t.put((schema.META_FMT % n).encode(), json.dumps(
                    {"page_id": f"p{i // 3}", "dataset": ds, "split": "train", "source_image": f"{ds}/{i}.jpg",
                     "region_box": [0, 0, w, h], "layout_label": ll, "sample_kind": kind, "recipe": "default"},
                    ensure_ascii=False).encode())
        t.put(schema.NUM_SAMPLES, str(len(samples)).encode())
        if schema_key:
            t.put(schema.SCHEMA_KEY, json.dumps({"version": schema.SCHEMA_VERSION, "index_base": base,
                                                 "label_format": fmt}).encode())
            t.put(schema.PAGE_PREFIX + b"p0", json.dumps({"first": base, "count": 3, "status": "ok"}).encode())
            t.put(schema.PAGE_PREFIX + b"p1", json.dumps({"first": base + 3, "count": 3, "status": "ok"}).encode())
    env.close()
    return str(path)


@pytest.fixture(scope="module")
def good_lmdb(tmp_path_factory):
    return _write(tmp_path_factory.mktemp("inspect") / "good_layout.lmdb", SAMPLES)


def test_pure_helpers():
    assert [char_class(c) for c in "한A7 ,\x07漢ㄱé５"] == [
        "hangul", "latin", "digit", "space", "symbol", "other", "other", "hangul", "latin", "digit"]
    assert unusual_chars("줄\n바꿈") == []
    assert unusual_chars("a\tb\ue000c\u200bd\ufffd") == [
        "U+0009 control", "U+E000 private use", "U+200B format", "U+FFFD replacement"]
    assert contact_indices(6, 3) == [0, 2, 5]
    assert contact_indices(4, 10) == [0, 1, 2, 3]
    assert contact_indices(1000, 1) == [0]
    h = Histogram((10, 100))
    for v in (0, 9, 10, 99, 100, 5000):
        h.add(v)
    assert h.labels() == ["<10", "10-99", ">=100"] and h.counts == [2, 2, 2] and (h.min, h.max) == (0, 5000)


def test_api_counts_classes_and_flags(good_lmdb):
    r = inspect_lmdb(good_lmdb, contact=3)
    assert r["health"]["ok"], r["health"]["line"]
    assert r["health"]["line"].startswith("health: OK — 6 samples")
    assert r["num_samples"] == 6 and r["schema"]["index_base"] == 1 and r["schema"]["label_format"] == "pickle"
    assert r["counts"]["dataset"] == {"finance": 4, "public": 2}
    assert r["counts"]["sample_kind"] == {"layout": 4, "cell": 1, "word": 1}
    assert r["counts"]["layout_label"] == {"text": 4, "table": 2}
    assert r["pages"] == {"ok": 2}
    # characters counted by hand from SAMPLES
    cc = {c: (v["chars"], v["samples"]) for c, v in r["char_classes"].items()}
    assert cc == {"hangul": (1265, 5), "latin": (6, 2), "digit": (7, 2), "space": (4, 3),
                  "symbol": (5, 2), "other": (1, 1)}
    assert r["other_chars"][0]["code"] == "U+0007"
    # text lengths 8, 3, 1250, 7, 17, 4 ; widths 200,240,400,90,160,120 ; heights 40,60,120,30,32,40
    tl = r["text_length"]
    assert (tl["min"], tl["max"], tl["n"]) == (3, 1250, 6)
    assert dict(zip(tl["bins"], tl["counts"]))["1-4"] == 2 and dict(zip(tl["bins"], tl["counts"]))["5-9"] == 2
    cw = dict(zip(r["crop_width"]["bins"], r["crop_width"]["counts"]))
    assert (cw["64-127"], cw["128-255"], cw["256-511"]) == (2, 3, 1)
    ch = dict(zip(r["crop_height"]["bins"], r["crop_height"]["counts"]))
    assert (ch["16-31"], ch["32-63"], ch["64-127"]) == (1, 4, 1)
    sus = r["suspicious"]
    assert [e["key"] for e in sus["near_blank"]["examples"]] == [2]
    assert [e["key"] for e in sus["long_label"]["examples"]] == [3]
    assert [e["key"] for e in sus["unusual_chars"]["examples"]] == [4, 6]
    assert "U+0007 control" in sus["unusual_chars"]["examples"][0]["detail"]
    assert sus["empty_label"]["count"] == sus["undecodable_image"]["count"] == sus["tiny_crop"]["count"] == 0
    assert [c["key"] for c in r["contact"]] == [1, 3, 6]
    json.dumps(r)   # the API result is plain JSON


def test_cli_html_is_self_contained(good_lmdb, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert main(["inspect", good_lmdb, "--html", str(out), "--contact", "6", "--json", str(tmp_path / "r.json")]) == 0
    console = capsys.readouterr().out
    assert "health: OK" in console and "by dataset: finance 4, public 2" in console
    assert "near_blank" in console and "long_label" in console and "unusual_chars" in console
    html = out.read_text(encoding="utf-8")
    assert '<meta charset="utf-8">' in html
    assert "안녕하세요 세계" in html and "합계: 1,234원 &lt;VAT&gt;" in html and "<VAT>" not in html
    assert '<span class="uc">U+0007</span>' in html and "\x07" not in html
    # 6 contact crops + flagged examples, every one embedded
    assert html.count('src="data:image/jpeg;base64,') >= 6
    text = re.sub(r"data:image/jpeg;base64,[A-Za-z0-9+/=]+", "", html)
    text = re.sub(r'src:url\(data:font/ttf;base64,[A-Za-z0-9+/=]+\) format\("truetype"\)', "", text)  # Hangul
    assert not re.search(r"https?:|//[a-z]|<script|<link|@import|url\(", text, re.I)
    assert json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))["counts"]["dataset"]["finance"] == 4
    # the sample kinds are explained next to their counts
    kinds = html.split("<h3>by sample kind</h3>", 1)[1].split("</div>", 1)[0]
    assert "<b>layout</b>: a layout region" in kinds and "<b>cell</b>: one table cell" in kinds
    assert "<b>word</b>: one word" in kinds


def test_broken_lmdb_health_and_errors(tmp_path, capsys):
    # written like the original generator: 0-based keys, text labels, no meta, no schema key
    path = _write(tmp_path / "legacy.lmdb", SAMPLES[:3], base=0, fmt="text", schema_key=False, meta=False)
    r = inspect_lmdb(path)
    h = r["health"]
    assert not h["ok"] and h["found"] == {"image": 2, "label": 2, "meta": 0}
    assert any("0-based" in p and "image-000000000" in p for p in h["problems"])
    assert r["schema"]["label_format"] == "text" and r["counts"]["dataset"] == {"(no meta)": 3}
    assert main(["inspect", path, "--html", "--strict"]) == 1
    assert "health: 4 problem(s)" in capsys.readouterr().out
    # a truncated JPEG and bytes that are no image at all
    env = lmdb.open(path, map_size=1 << 26)
    with env.begin(write=True) as t:
        t.put(b"image-000000001", _jpeg(200, 40)[:300])
        t.put(b"image-000000002", b"not an image")
    env.close()
    r = inspect_lmdb(path)
    bad = r["suspicious"]["undecodable_image"]
    assert bad["count"] == 2 and [e["key"] for e in bad["examples"]] == [1, 2]
    assert "truncated" in bad["examples"][0]["detail"] and r["crop_width"]["n"] == 0
    assert "2 image(s) do not decode" in r["health"]["line"]
    assert (tmp_path / "legacy.lmdb.report.html").is_file()
    empty = _write(tmp_path / "empty.lmdb", [])
    assert inspect_lmdb(empty)["health"]["problems"] == ["no samples"]
    with pytest.raises(OcrvlError, match="no LMDB here"):
        inspect_lmdb(tmp_path / "missing.lmdb")
    assert main(["inspect", str(tmp_path / "missing.lmdb")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ocrvl inspect: error:") and "\n" not in err


@pytest.mark.parametrize("base, fmt", [(1, "pickle"), (0, "text")])
def test_agrees_with_the_sink_writer_and_verifier(tmp_path, base, fmt):
    from ocrvl_ray.lmdb.reader import verify_lmdb
    from ocrvl_ray.lmdb.writer import LmdbWriter
    from ocrvl_ray.testing.sink import synthetic_pages

    path = str(tmp_path / f"syn_{base}_{fmt}.lmdb")
    with LmdbWriter(path, index_base=base, label_format=fmt) as w:
        w.write_pages(synthetic_pages(20, samples_per_page=3, skip_every=5))
    v = verify_lmdb(path)
    r = inspect_lmdb(path, contact=5)
    assert v["ok"] and r["health"]["ok"], r["health"]["line"]
    assert r["num_samples"] == v["num_samples"] and r["schema"]["index_base"] == base
    assert r["schema"]["label_format"] == fmt
    assert r["counts"]["sample_kind"] == v["samples_by_kind"]
    assert r["pages"] == {k: v["pages_by_status"][k] for k in r["pages"]} and sum(r["pages"].values()) == 20
    assert r["counts"]["dataset"] == {"synthetic": v["num_samples"]}
    # the synthetic crops are single-colour JPEGs: every one is near-blank
    assert r["suspicious"]["near_blank"]["count"] == v["num_samples"]
    assert bool(r["health"]["notes"]) == (base == 0)


def test_html_flag_before_the_lmdb_keeps_the_path(good_lmdb, tmp_path, capsys):
    """``ocrvl inspect --html X.lmdb``: the path is the LMDB (default report beside it), not the report file."""
    lmdb_copy = tmp_path / "copy_layout.lmdb"
    shutil.copytree(good_lmdb, lmdb_copy)
    assert main(["inspect", "--html", str(lmdb_copy)]) == 0
    assert "health: OK" in capsys.readouterr().out
    assert (tmp_path / "copy_layout.lmdb.report.html").is_file()
    assert main(["inspect", "--html", str(tmp_path / "named.html"), str(lmdb_copy)]) == 0   # --html FILE LMDB
    assert (tmp_path / "named.html").is_file()
    capsys.readouterr()
    assert main(["inspect", "--html", str(tmp_path / "r.html")]) == 2
    assert capsys.readouterr().err == ("ocrvl inspect: error: give the LMDB folder to inspect, e.g. "
                                       "ocrvl inspect out/sample_layout.lmdb --html\n")


def test_shows_the_snapshot_of_what_made_it(tmp_path, capsys):
    """The identity record a layout run stores (resolved recipes, models with file hashes, compose version) is
    on the console in three lines and in full in the HTML report."""
    import hashlib

    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from ocrvl_ray.core.config import load_config
    from ocrvl_ray.demo.sample import sample_manifest
    from ocrvl_ray.layout.compose import COMPOSE_VERSION
    from ocrvl_ray.layout.config import LayoutConfig
    from ocrvl_ray.layout.outputs import layout_identity
    from ocrvl_ray.lmdb.identity import identity_record

    model = tmp_path / "model"
    model.mkdir()
    weights = b"static weights"
    for name, data in (("inference.yml", b"Global: {}\n"), ("inference.json", b"{}"), ("inference.pdiparams", weights)):
        (model / name).write_bytes(data)
    manifest = str(sample_manifest())
    cfg = load_config(LayoutConfig, overrides=[f"layout.model_dir={model}", "mask=words"], env={})
    path = _write(tmp_path / "made_layout.lmdb", SAMPLES[:2])
    env = lmdb.open(path, map_size=1 << 26)
    with env.begin(write=True) as t:
        t.put(schema.IDENTITY_KEY, identity_record(layout_identity(cfg, manifest, "train")))
    env.close()

    assert main(["inspect", path, "--html"]) == 0
    console = capsys.readouterr().out.splitlines()
    made = [i for i, ln in enumerate(console) if ln.startswith("made by: ")]
    assert len(made) == 1
    head, models, compose = console[made[0]:made[0] + 3]
    assert f"compose v{COMPOSE_VERSION}," in head and "split train" in head
    assert f"inference.pdiparams {hashlib.sha256(weights).hexdigest()[:8]}" in models
    assert "cells RT-DETR-L_wired_table_cell_det (official weights" in models
    datasets = sorted(pc.unique(pq.read_table(manifest, columns=["dataset"]).column("dataset")).to_pylist())
    assert compose.startswith(f"  mask words, jpeg_quality 80; recipes {', '.join(datasets)} (differ in ")
    assert "crop" in compose.split("differ in ")[1]       # text_in_wild crops words, the others regions
    html = (tmp_path / "made_layout.lmdb.report.html").read_text(encoding="utf-8")
    assert "recipes, resolved per dataset" in html and "column_requires_tall_words" in html
    assert hashlib.sha256(weights).hexdigest()[:16] in html and "compose_version" in html

    bare = _write(tmp_path / "bare_layout.lmdb", SAMPLES[:1])
    assert inspect_lmdb(bare)["identity"] is None
    main(["inspect", bare])
    assert "made by: (no identity record" in capsys.readouterr().out
