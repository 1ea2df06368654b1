"""``prepare`` end to end on the session's local Ray: every family, stable ids, streaming, bad input, CLI."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ocrvl_ray.cli import main as ocrvl
from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.core.records import PAGE_SCHEMA, Page
from ocrvl_ray.ingest.prepare import PrepareConfig, prepare


def write(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return path


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG")
    return path


def page_doc(n_words: int, seed: int, name: str = "대규모 OCR 데이터셋 (금융)", key: str = "bbox") -> dict:
    boxes = []
    for j in range(n_words):
        x, y = 20 + 90 * (j % 8), 30 + 50 * (j // 8) + seed
        boxes.append({"data": f"단어{seed}-{j}", "id": j + 1, "x": [x, x, x + 80, x + 80], "y": [y, y + 40, y, y + 40]})
    return {"Dataset": {"name": name}, "Images": {"width": 800, "height": 600}, key: boxes}


def build_corpus(root: Path) -> dict:
    """Labels of every family + matching images; returns the expected page count per dataset/split."""
    labels, images = root / "labels", root / "images"
    expected: dict[str, int] = {}
    for split_dir, split in (("1.Training", "train"), ("2.Validation", "valid")):
        for i in range(7):
            name = f"IMG_OCR_6_F_{split[0]}{i:04d}"
            write(labels / "finance" / split_dir / "2.라벨링데이터" / f"{name}.json", page_doc(5 + i, i))
            touch(images / "finance" / split_dir / "1.원천데이터" / f"{name}.png")
            expected[f"finance_logistics/{split}"] = expected.get(f"finance_logistics/{split}", 0) + 1
    for i in range(3):
        name = f"IMG_OCR_53_4PR_{i:05d}"
        write(labels / "hw" / "[라벨]Training" / f"{name}.json", page_doc(3, i, name="대용량 손글씨 OCR", key="Bbox"))
        touch(images / "hw" / "[원천]Training" / f"{name}.PNG")
    expected["handwriting/train"] = 3
    pa_images = [{"image.file.name": f"doc_{i}.jpg", "image.width": 900, "image.height": 1200, "id": i,
                  "dataset": "public_admin"} for i in range(4)]
    pa_anns = [{"annotation.bbox": [10 + 40 * k, 10 + 7 * i, 30, 20], "annotation.text": f"행정{i}{k}",
                "id": 10 * i + k, "image_id": i} for i in range(4) for k in range(3)]
    write(labels / "json" / "public_admin_train_merged.json", {"images": pa_images, "annotations": pa_anns})
    for i in range(4):
        touch(images / "admin" / f"doc_{i}.jpg")
    expected["public_admin/train"] = 4
    tiw_images = [{"id": f"{i:08d}", "file_name": f"tiw_{i}.jpg", "width": 640, "height": 480, "type": "book"}
                  for i in range(30)]
    tiw_anns = [{"id": i, "image_id": f"{i:08d}", "bbox": [5, 5, 60, 20], "text": f"글{i}",
                 "attributes": {"class": "word"}} for i in range(30)]
    write(labels / "tiw" / "textinthewild_data_info.json", {"images": tiw_images, "annotations": tiw_anns})
    for i in range(30):
        touch(images / "tiw" / "book" / f"tiw_{i}.jpg")
    return expected


def _cfg(labels: list[str], **keys) -> PrepareConfig:
    return PrepareConfig(labels=labels, quiet=True, **keys)


def read_manifest(path) -> list[Page]:
    table = pq.read_table(path)
    assert table.schema.equals(PAGE_SCHEMA, check_metadata=False)
    return [Page.from_row(r) for r in table.to_pylist()]


def test_prepare_all_families_stable_across_parallelism(ray_local, tmp_path):
    expected = build_corpus(tmp_path)
    labels, images = [str(tmp_path / "labels")], [str(tmp_path / "images")]
    a = prepare(_cfg(labels, images=images, out=str(tmp_path / "a.parquet"), files_per_task=2), use_ray=True,
                window=2)
    b = prepare(_cfg(labels, images=images, out=str(tmp_path / "b.parquet"), files_per_task=64), use_ray=True,
                window=16)
    c = prepare(_cfg(labels, images=images, out=str(tmp_path / "c.parquet")), use_ray=False)
    pages = read_manifest(tmp_path / "a.parquet")
    assert pq.read_table(tmp_path / "a.parquet").equals(pq.read_table(tmp_path / "b.parquet"))
    assert pq.read_table(tmp_path / "a.parquet").equals(pq.read_table(tmp_path / "c.parquet"))
    assert a["skipped"]["counts"] == {} and a["pages"] == len(pages) == b["pages"] == c["pages"]

    tiw = [p for p in pages if p.dataset == "text_in_wild"]
    n_valid = sum(p.split == "valid" for p in tiw)
    assert 0 < n_valid < 10                         # seeded 90/10 hash split, not all on one side
    expected["text_in_wild/train"], expected["text_in_wild/valid"] = 30 - n_valid, n_valid
    assert a["by_split"] == dict(sorted(expected.items()))
    assert a["words"] == sum(len(p.words) for p in pages)
    for p in pages:
        assert p.image_path and Path(p.image_path).is_file()
        assert Path(p.image_path).stem == Path(p.image_name).stem
    fin = next(p for p in pages if p.image_name == "IMG_OCR_6_F_v0003")
    assert fin.split == "valid" and "2.Validation" in fin.image_path and len(fin.words) == 8
    assert fin.words[0].points == [20, 33, 100, 33, 100, 73, 20, 73]
    report = json.loads((tmp_path / "a.report.json").read_text())
    assert report["pages"] == a["pages"] and report["manifest"] == str(tmp_path / "a.parquet")

    # huge-file path: every collection streamed through Ray gives the same pages
    s = prepare(_cfg(labels, images=images, out=str(tmp_path / "s.parquet"), stream_above_mb=0.0001,
                     partition_mb=0.001), use_ray=True)
    assert s["streamed_files"] == 14 + 3 + 2 and s["skipped"]["counts"] == {}
    key = lambda p: p.page_id  # noqa: E731
    assert sorted(read_manifest(tmp_path / "s.parquet"), key=key) == sorted(pages, key=key)


def test_prepare_counts_every_bad_input(ray_local, tmp_path, capsys):
    labels, images = tmp_path / "labels" / "Training", tmp_path / "images"
    write(labels / "IMG_OCR_6_F_ok.json", page_doc(4, 0))
    touch(images / "IMG_OCR_6_F_ok.png")
    write(labels / "IMG_OCR_6_F_noimage.json", page_doc(4, 1))              # no image anywhere
    bad_words = page_doc(6, 2)
    bad_words["bbox"][1]["x"][2] = "12a"
    bad_words["bbox"][2]["y"][0] = float("nan")
    bad_words["bbox"][3]["x"] = [40, 40, 40, 40]
    bad_words["bbox"][4]["data"] = " "
    del bad_words["bbox"][5]["y"]
    write(labels / "IMG_OCR_6_F_badwords.json", bad_words)
    touch(images / "IMG_OCR_6_F_badwords.jpg")
    (labels / "broken.json").write_text("{\"Images\": [", encoding="utf-8")
    (labels / "cp949.json").write_bytes('{"Images": {}, "bbox": [{"data": "한글"}]}'.encode("cp949"))
    write(labels / "other.json", {"hello": "world"})
    # a merged file listing one image twice, and a label for an image that exists in two folders
    dup = {"images": [{"image.file.name": "twice.jpg", "id": 1}, {"image.file.name": "twice.jpg", "id": 2},
                      {"image.file.name": "amb.jpg", "id": 3}],
           "annotations": [{"annotation.bbox": [1, 1, 5, 5], "annotation.text": "t", "image_id": i}
                           for i in (1, 2, 3)]}
    write(labels / "public_admin_train_merged.json", dup)
    touch(images / "twice.jpg")
    touch(images / "a" / "amb.jpg")
    touch(images / "b" / "amb.jpg")
    # the same image labelled again by a second file
    write(tmp_path / "labels" / "copy" / "Training" / "IMG_OCR_6_F_ok.json", page_doc(2, 9))

    out = tmp_path / "out" / "manifest.parquet"
    code = ocrvl(["prepare", "--labels", str(tmp_path / "labels"), "--images", str(images), "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "manifest.report.json").read_text())
    counts, examples = report["skipped"]["counts"], report["skipped"]["examples"]
    assert counts == {"malformed_json": 1, "not_utf8": 1, "unknown_format": 1, "bad_coordinate": 2,
                      "degenerate_box": 1, "empty_text": 1, "missing_field": 1, "image_unmatched": 1,
                      "image_ambiguous": 1, "duplicate_page": 2}
    assert examples["malformed_json"] == ["labels/Training/broken.json (line 1 column 13: Expecting value)"]
    assert "IMG_OCR_6_F_noimage.json: no image IMG_OCR_6_F_noimage{.png,.jpg,.jpeg}" in examples["image_unmatched"][0]
    assert any(e.startswith("twice.jpg") for e in examples["duplicate_page"])
    assert any("copy/Training/IMG_OCR_6_F_ok.json" in e for e in examples["duplicate_page"])
    assert "image_ambiguous" in printed and "duplicate_page" in printed and "manifest.report.json" in printed
    pages = read_manifest(out)
    assert sorted(p.image_name for p in pages) == ["IMG_OCR_6_F_badwords", "IMG_OCR_6_F_ok", "twice.jpg"]
    assert report["pages"] == 3 and report["words"] == 4 + 1 + 1
    ok = next(p for p in pages if p.image_name == "IMG_OCR_6_F_ok")
    assert ok.source.endswith("labels/Training/IMG_OCR_6_F_ok.json")   # the first in path order is kept

    # the same input with every file over 100 bytes streamed through Ray: the same counts and pages
    streamed = prepare(_cfg([str(tmp_path / "labels")], images=[str(images)], out=str(tmp_path / "s.parquet"),
                            stream_above_mb=100 / 2 ** 20, partition_mb=0.0005), use_ray=True)
    assert streamed["streamed_files"] == 5          # all but the three tiny broken files
    assert streamed["skipped"]["counts"] == counts
    assert sorted(p.page_id for p in read_manifest(tmp_path / "s.parquet")) == sorted(p.page_id for p in pages)


def test_prepare_user_errors(tmp_path):
    write(tmp_path / "l" / "a.json", page_doc(1, 0))
    with pytest.raises(OcrvlError, match="did you mean 'handwriting'"):
        prepare(_cfg([str(tmp_path / "l")], dataset="handwritting", images=[str(tmp_path)],
                     out=str(tmp_path / "m.parquet")))
    with pytest.raises(OcrvlError, match="must be a plain name"):
        prepare(_cfg([str(tmp_path / "l")], images=[str(tmp_path)], split="my split"))
    with pytest.raises(OcrvlError, match="exactly one of --images"):
        prepare(_cfg([str(tmp_path / "l")], out=str(tmp_path / "m.parquet")))
    with pytest.raises(OcrvlError, match="does not exist"):
        prepare(_cfg([str(tmp_path / "nope")], images=[str(tmp_path)], out=str(tmp_path / "m.parquet")),
                use_ray=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(OcrvlError, match="no \\*.json label files"):
        prepare(_cfg([str(tmp_path / "empty")], images=[str(tmp_path)], out=str(tmp_path / "m.parquet")),
                use_ray=False)
    assert ocrvl(["prepare", "--dataset", "nope", "--labels", str(tmp_path / "l"), "--images", str(tmp_path),
                  "--no-ray"]) == 2
