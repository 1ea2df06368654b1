"""Lookup index: parallel build on Ray, collisions kept and reported, legacy import (safe), matching rules."""
from __future__ import annotations

import gzip
import json
import pickle
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ocrvl_ray.cli import main as ocrvl
from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.core.skips import Skip
from ocrvl_ray.ingest.lookup import (LookupIndex, build_lookup, import_legacy, load_legacy, load_lookup,
                                      lookup_table)


def touch(path: Path, size: int = 3) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return path


@pytest.fixture()
def image_tree(tmp_path):
    root = tmp_path / "images"
    for split in ("1.Training", "2.Validation"):
        for sub in ("금융", "물류"):
            for i in range(5):
                touch(root / split / sub / f"IMG_{split[0]}_{sub}_{i}.png")
    touch(root / "1.Training" / "금융" / "SAME.png")
    touch(root / "1.Training" / "물류" / "SAME.png")          # same name in two folders
    touch(root / "2.Validation" / "금융" / "SAME.png")
    touch(root / "1.Training" / "upper.JPG", size=7)
    touch(root / "1.Training" / "notes.txt")                 # not an image
    touch(root / "top.jpeg")
    return root


def test_build_on_ray_equals_in_process_and_reports_collisions(ray_local, image_tree, tmp_path):
    table, report = build_lookup([str(image_tree)], use_ray=True)
    local, _ = build_lookup([str(image_tree)], use_ray=False)
    assert table.equals(local)
    assert table.num_rows == 20 + 3 + 2 == report["images"]
    assert table.column_names == ["name", "stem", "path", "size"]
    rows = {r["path"]: r for r in table.to_pylist()}
    up = rows[str(image_tree / "1.Training" / "upper.JPG")]
    assert (up["name"], up["stem"], up["size"]) == ("upper.JPG", "upper", 7)
    col = report["collisions"]
    assert (col["names"], col["files"]) == (1, 3)
    assert col["examples"][0]["name"] == "SAME.png" and len(col["examples"][0]["paths"]) == 3

    out = tmp_path / "lookup.parquet"
    assert ocrvl(["lookup", "build", str(image_tree), "--out", str(out)]) == 0
    assert pq.read_table(out).equals(table)
    rep = json.loads((tmp_path / "lookup.report.json").read_text())
    assert rep["collisions"]["names"] == 1 and rep["images"] == 25


def test_matching_rules(image_tree):
    index = LookupIndex(build_lookup([str(image_tree)], use_ray=False)[0])
    p = str(image_tree / "1.Training" / "금융" / "IMG_1_금융_3.png")
    assert index.match("IMG_1_금융_3.png") == (p, None)        # exact
    assert index.match("IMG_1_금융_3") == (p, None)            # stem + .png
    assert index.match("img_1_금융_3.JPEG") == (p, None)       # stem, case-insensitive, other extension
    assert index.match("upper") == (str(image_tree / "1.Training" / "upper.JPG"), None)
    assert index.match("IMG_1_금융") == (None, Skip.IMAGE_UNMATCHED)   # no substring guessing
    assert index.match("금융_3.png") == (None, Skip.IMAGE_UNMATCHED)
    assert index.match("notes") == (None, Skip.IMAGE_UNMATCHED)       # only images are indexed
    # SAME.png: two in 1.Training (금융, 물류), one in 2.Validation
    assert index.match("SAME.png", "valid") == (str(image_tree / "2.Validation" / "금융" / "SAME.png"), None)
    assert index.match("SAME.png", "train") == (None, Skip.IMAGE_AMBIGUOUS)
    label = "/labels/1.Training/라벨링데이터/물류/SAME.json"
    assert index.match("SAME", "train", label) == (str(image_tree / "1.Training" / "물류" / "SAME.png"), None)
    assert index.match("SAME", "", "/elsewhere/SAME.json") == (None, Skip.IMAGE_AMBIGUOUS)
    assert index.resolved == {"split": 1, "folder": 1}


def test_legacy_round_trip(tmp_path, image_tree):
    a = str(image_tree / "1.Training" / "금융" / "IMG_1_금융_0.png")
    b = str(image_tree / "top.jpeg")
    c = "/gvfs/ftp/handwriting/4PR_09180.png"                        # path on a mount that is gone
    legacy = {"IMG_1_금융_0": a, "IMG_1_금융_0.png": a, "top.jpeg": b, "IMG_OCR_53_4PR_09180": c}
    pkl = tmp_path / "lookup_finance_logistics_train.pkl.gz"
    with gzip.open(pkl, "wb") as f:
        pickle.dump(legacy, f, protocol=pickle.HIGHEST_PROTOCOL)
    assert load_legacy(str(pkl)) == legacy
    out = tmp_path / "lookup.parquet"
    assert ocrvl(["lookup", "import", str(pkl), "--out", str(out), "--stat"]) == 0
    index = load_lookup(str(out))
    for key, path in legacy.items():
        assert index.match(key) == (path, None)
    assert index.match("4PR_09180") == (c, None)
    rep = json.loads((tmp_path / "lookup.report.json").read_text())
    assert rep["entries"] == 4 and rep["aliases"] == 1 and rep["alias_examples"] == ["IMG_OCR_53_4PR_09180"]
    sizes = {r["path"]: r["size"] for r in pq.read_table(out).to_pylist()}
    assert sizes[a] == 3 and sizes[c] == -1
    # a plain (not gzip) pickle and the .pkl.gz given directly to load_lookup work too
    plain = tmp_path / "lookup.pkl"
    plain.write_bytes(pickle.dumps(legacy))
    assert LookupIndex(import_legacy(str(plain))[0]).match("top.jpeg") == (b, None)
    assert load_lookup(str(pkl)).match("IMG_1_금융_0") == (a, None)


class _Evil:
    def __init__(self, target: str):
        self.target = target

    def __reduce__(self):
        return exec, (f"open({self.target!r}, 'w').write('pwned')",)


def test_malicious_pickle_is_refused_without_side_effect(tmp_path):
    target = tmp_path / "pwned.txt"
    payload = pickle.dumps({"a.png": "/x/a.png", "evil": _Evil(str(target))})
    pickle.loads(payload)                    # proof the payload works with a normal unpickler ...
    assert target.exists()
    target.unlink()
    pkl = tmp_path / "lookup_evil.pkl.gz"
    pkl.write_bytes(gzip.compress(payload))
    with pytest.raises(OcrvlError, match="refusing to load builtins.exec"):
        load_legacy(str(pkl))
    assert not target.exists()               # ... and that ours never ran it
    assert ocrvl(["lookup", "import", str(pkl), "--out", str(tmp_path / "l.parquet")]) == 2
    assert not target.exists() and not (tmp_path / "l.parquet").exists()


def test_legacy_wrong_shapes_are_clear_errors(tmp_path):
    dict_values = tmp_path / "lookup_ocr_public_train.pkl"    # create_ocr_public_lookup.py's variant
    dict_values.write_bytes(pickle.dumps({"a": {"file_name": "a", "width": 3}}))
    with pytest.raises(OcrvlError, match="maps to a dict, expected a path string"):
        load_legacy(str(dict_values))
    listed = tmp_path / "list.pkl"
    listed.write_bytes(pickle.dumps(["a", "b"]))
    with pytest.raises(OcrvlError, match="holds a list"):
        load_legacy(str(listed))
    junk = tmp_path / "junk.pkl.gz"
    junk.write_bytes(gzip.compress(b"not a pickle at all"))
    with pytest.raises(OcrvlError, match="not a readable pickle"):
        load_legacy(str(junk))
    with pytest.raises(OcrvlError, match="does not exist"):
        load_lookup(str(tmp_path / "missing.parquet"))
    bad_parquet = tmp_path / "bad.parquet"
    bad_parquet.write_text("nope")
    with pytest.raises(OcrvlError, match="not a Parquet file"):
        load_lookup(str(bad_parquet))


def test_lookup_table_keeps_every_candidate():
    t = lookup_table([("a.png", "/1/a.png", 1), ("a.png", "/2/a.png", 2), ("a.png", "/1/a.png", 1)])
    assert t.column("path").to_pylist() == ["/1/a.png", "/2/a.png"]
    assert LookupIndex(t).candidates("a") == ["/1/a.png", "/2/a.png"]
