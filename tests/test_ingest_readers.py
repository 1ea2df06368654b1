"""Ingest readers without Ray: box normalisation, every label family, detection, splits, bad input, streaming."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from ocrvl_ray.core.records import Page
from ocrvl_ray.core.skips import Skip, SkipCounter
from ocrvl_ray.ingest.batch import PageBatch, Source, WordList
from ocrvl_ray.ingest.files import read_files, stream_collection
from ocrvl_ray.ingest.geometry import box_to_xy4, boxes_to_xy, clockwise_flat8, quads_to_flat8
from ocrvl_ray.ingest.readers import Options, detect
from ocrvl_ray.ingest.splits import hashed_split, split_from_path, split_of_component

SAMPLE = Path(__file__).parent / "data" / "aihub_ocr_sample_label.json"  # the real AI-Hub finance label


def read(paths, dataset="auto", opts=Options()):
    srcs = [Source(str(p), Path(p).name, split_from_path(p) or "train") for p in paths]
    table, skips = read_files(srcs, dataset, opts)
    pages = [] if table is None else [Page.from_row(r) for r in table.to_pylist()]
    return pages, skips["counts"], skips["examples"]


def write(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return path


def page_doc(words, name="대규모 OCR 데이터셋 (금융)", key="bbox", width=1000, height=800):
    return {"Dataset": {"name": name}, "Images": {"width": width, "height": height, "type": "PNG"},
            key: [{"data": t, "id": i + 1, "x": xs, "y": ys} for i, (t, xs, ys) in enumerate(words)]}


def is_clockwise_from_tl(p):
    xs, ys = p[0::2], p[1::2]
    # shoelace in screen coordinates (y down): clockwise on screen has a positive sum
    s = sum(xs[i] * ys[(i + 1) % 4] - xs[(i + 1) % 4] * ys[i] for i in range(4))
    return s > 0 and xs[0] + ys[0] == min(x + y for x, y in zip(xs, ys))


# ------------------------------------------------------------------ geometry
def test_clockwise_by_hand():
    # tilted rectangle TL(10,20) TR(110,30) BR(105,80) BL(5,70) given counter-clockwise from BR
    assert clockwise_flat8([105, 110, 10, 5], [80, 30, 20, 70]) == [10, 20, 110, 30, 105, 80, 5, 70]
    # AI-Hub order TL, BL, TR, BR (not a polygon order) -> TL, TR, BR, BL
    assert clockwise_flat8([726, 726, 1114, 1114], [1810, 1862, 1810, 1862]) == \
        [726, 1810, 1114, 1810, 1114, 1862, 726, 1862]
    assert box_to_xy4([5, 6, 10, 4], "xywh") == ([5, 15, 15, 5], [6, 6, 10, 10])
    assert box_to_xy4([0, 2, 2, 0, 0, 0, 3, 3], "xs_ys") == ([0, 2, 2, 0], [0, 0, 3, 3])
    assert box_to_xy4([1, 2, 3, 4], "xs_ys") == ([1, 4, 4, 1], [2, 2, 6, 6])  # 4-vector: xywh like the original


def test_bad_boxes_have_reasons():
    assert clockwise_flat8([0, 0, 0, 0], [0, 1, 2, 3]) is Skip.DEGENERATE_BOX
    assert clockwise_flat8([0, 1, 1, math.nan], [0, 0, 1, 1]) is Skip.BAD_COORDINATE
    assert box_to_xy4([0, 0, 0, 5], "xywh") is Skip.DEGENERATE_BOX
    assert box_to_xy4([0, 0, "a", 5], "xywh") is Skip.BAD_COORDINATE
    assert box_to_xy4([0, 0, math.inf, 5], "xywh") is Skip.BAD_COORDINATE
    assert box_to_xy4([1, 2, 3], "xs_ys") is Skip.DEGENERATE_BOX
    assert box_to_xy4(None, "xywh") is Skip.MISSING_FIELD
    assert box_to_xy4([0, 0, 10 ** 400, 5], "xywh") is Skip.BAD_COORDINATE
    assert boxes_to_xy([[0, 0, 10 ** 400, 5]], None, "xywh")[2] == [Skip.BAD_COORDINATE]
    X, Y, pre = boxes_to_xy([[0, 0, 4, 2], [1, 1, -2, 2]], None, "xywh")       # vectorised path
    assert X[0].tolist() == [0, 4, 4, 0] and Y[0].tolist() == [0, 0, 2, 2] and pre == [None, Skip.DEGENERATE_BOX]
    X, Y, pre = boxes_to_xy([[0, 1, 1, 0, 0, 0, 2, 2], [1, 2, 3], "x"], None, "xs_ys")  # box by box
    assert X[0].tolist() == [0, 1, 1, 0] and pre == [None, Skip.DEGENERATE_BOX, Skip.BAD_COORDINATE]
    flat, reasons = quads_to_flat8(np.array([[0, 4, 4, 0], [1, 1, 1, 1]]), np.array([[0, 0, 2, 2], [0, 1, 2, 3]]))
    assert flat[0].tolist() == [0, 0, 4, 0, 4, 2, 0, 2] and reasons.tolist() == [None, Skip.DEGENERATE_BOX]


# ------------------------------------------------------------------ the real sample
def test_real_sample_reordered_clockwise():
    raw = json.loads(SAMPLE.read_text(encoding="utf-8"))
    pages, counts, _ = read([SAMPLE])
    assert counts == {} and len(pages) == 1
    p = pages[0]
    assert p.dataset == "finance_logistics" and (p.width, p.height) == (2480, 3508)
    assert p.image_name == SAMPLE.stem and p.split == "train"
    assert len(p.words) == len(raw["bbox"]) == 20
    reordered = 0
    for w, b in zip(p.words, raw["bbox"]):
        assert w.text == b["data"] and w.id == str(b["id"])
        assert is_clockwise_from_tl(w.points)
        assert sorted(zip(w.points[0::2], w.points[1::2])) == sorted(zip(b["x"], b["y"]))
        given = [v for xy in zip(b["x"], b["y"]) for v in xy]
        reordered += given != w.points
    assert reordered == 20
    first = p.words[0]
    assert first.text == "952340-48-110103"
    assert first.points == [726, 1810, 1114, 1810, 1114, 1862, 726, 1862]


# ------------------------------------------------------------------ every family
WORDS = [("가나다", [10, 10, 60, 60], [20, 40, 20, 40]), ("라마", [70, 70, 120, 120], [20, 40, 20, 40])]


def test_page_families_and_Bbox_variant(tmp_path):
    fin = write(tmp_path / "1.Training" / "라벨" / "IMG_OCR_6_F_0000001.json", page_doc(WORDS))
    hw = write(tmp_path / "2.Validation" / "IMG_OCR_53_4PR_00001.json",
               page_doc(WORDS, name="대용량 손글씨 OCR", key="Bbox"))
    pub_doc = page_doc(WORDS, name="대규모 OCR 데이터셋 (공공)")
    pub_doc["images"] = pub_doc.pop("Images")                      # lower-case variant
    pub = write(tmp_path / "x" / "IMG_OCR_6_P_1.json", pub_doc)
    pages, counts, _ = read([fin, hw, pub])
    assert counts == {}
    assert [p.dataset for p in pages] == ["finance_logistics", "handwriting", "ocr_public"]
    assert [p.image_name for p in pages] == ["IMG_OCR_6_F_0000001", "IMG_OCR_53_4PR_00001", "IMG_OCR_6_P_1"]
    for p in pages:
        assert [w.text for w in p.words] == ["가나다", "라마"]
        assert p.words[0].points == [10, 20, 60, 20, 60, 40, 10, 40]
    # explicit dataset wins over content
    pages, _, _ = read([pub], dataset="handwriting")
    assert pages[0].dataset == "handwriting"


def test_public_admin_raw_flat_nested_and_merged(tmp_path):
    flat = {"images": [{"image.file.name": "5350109-2001-0001-0001.jpg", "image.width": 2000, "image.height": 3000,
                        "image.category": "행정", "image.make.code": "M1", "image.make.year": 2001}],
            "annotations": [{"annotation.bbox": [100, 200, 50, 20], "annotation.text": "공문", "id": 1},
                            {"annotation.bbox": [160, 200, 40, 20], "annotation.text": "제목", "id": 2}]}
    nested = {"images": [{"image": {"file": {"name": "nested.jpg"}, "width": 10, "height": 10}}],
              "annotations": [{"annotation": {"bbox": [1, 1, 4, 3], "text": "가", "id": 9}}]}
    merged = {"images": [{"image.file.name": "a.jpg", "id": 0, "dataset": "public_admin"},
                         {"image.file.name": "b.jpg", "id": 1, "dataset": "public_admin"}],
              "annotations": [{"annotation.bbox": [0, 0, 5, 5], "annotation.text": "b1", "id": 0, "image_id": 1},
                              {"annotation.bbox": [0, 0, 5, 5], "annotation.text": "a1", "id": 1, "image_id": 0},
                              {"annotation.bbox": [6, 0, 5, 5], "annotation.text": "b2", "id": 2, "image_id": 1}]}
    short = {"images": [{"file.name": "short.png", "id": 4}],
             "annotations": [{"annotation.bbox": [2, 2, 4, 3], "annotation.text": "나", "image_id": 4}]}
    paths = [write(tmp_path / "flat.json", flat), write(tmp_path / "nested.json", nested),
             write(tmp_path / "public_admin_valid_merged.json", merged), write(tmp_path / "short.json", short)]
    pages, counts, _ = read(paths)
    assert counts == {}
    assert [p.dataset for p in pages] == ["public_admin"] * 5
    assert [p.image_name for p in pages] == ["5350109-2001-0001-0001.jpg", "nested.jpg", "a.jpg", "b.jpg",
                                             "short.png"]
    p0 = pages[0]
    assert (p0.width, p0.height) == (2000, 3000)
    assert p0.attrs == {"category": "행정", "make_code": "M1", "make_year": 2001}
    assert p0.words[0].points == [100, 200, 150, 200, 150, 220, 100, 220]
    assert [w.text for w in pages[1].words] == ["가"] and pages[1].words[0].id == "9"
    assert [w.text for w in pages[3].words] == ["b1", "b2"] and [w.text for w in pages[2].words] == ["a1"]


def tiw_doc():
    return {"info": {}, "images": [
        {"id": "00000001", "file_name": "book_1.jpg", "width": 600, "height": 800, "type": "book"},
        {"id": "00000002", "file_name": "sign_1.jpg", "width": 600, "height": 800, "type": "sign", "UD": "true"},
        {"id": "00000003", "file_name": "sign_2.jpg", "width": 600, "height": 800, "type": "sign", "usd": 1}],
        "annotations": [
            {"id": 1, "image_id": "00000001", "bbox": [10, 10, 100, 30], "text": "한국어", "attributes": {"class": "word"}},
            {"id": 2, "image_id": "00000001", "bbox": [10, 10, 30, 30], "text": "한", "attributes": {"class": "character"}},
            {"id": 3, "image_id": "00000002", "bbox": [50, 10, 30, 200], "text": "세로",
             "attributes": {"class": "Word", "word_ud": "yes"}},
            {"id": 4, "image_id": "00000003", "bbox": [5, 5, 20, 20], "text": "x", "attributes": {"class": "word"}}]}


def test_text_in_wild(tmp_path):
    path = write(tmp_path / "textinthewild_data_info.json", tiw_doc())
    pages, counts, _ = read([path])
    assert counts == {}
    assert [p.dataset for p in pages] == ["text_in_wild"] * 3
    book, sign, usd = pages
    assert book.attrs == {"type": "book", "chars": [[10, 10, 40, 10, 40, 40, 10, 40]]}
    assert [w.text for w in book.words] == ["한국어"] and book.words[0].points == [10, 10, 110, 10, 110, 40, 10, 40]
    assert sign.attrs["orientation"] == "ud" and sign.words[0].attrs == {"word_ud": True}
    assert usd.attrs["orientation"] == "usd"
    ids = {"book_1.jpg": "00000001", "sign_1.jpg": "00000002", "sign_2.jpg": "00000003"}
    assert [p.split for p in pages] == [hashed_split(ids[p.image_name]) for p in pages]
    forced, _, _ = read([path], opts=Options(split="valid"))
    assert {p.split for p in forced} == {"valid"}


def test_original_merged_files_of_page_families(tmp_path):
    for ds in ("ocr_public", "finance_logistics", "handwriting"):
        merged = {"images": [{"dataset": ds, "sub_dataset": "IMG_1", "original_json_path": "/x/IMG_1.json",
                              "width": 100, "height": 50, "file_name": "IMG_1", "id": 0}],
                  "annotations": [{"dataset": ds, "bbox": [726, 726, 1114, 1114, 1810, 1862, 1810, 1862],
                                   "text": "글자", "id": 0, "image_id": 0}],
                  "categories": [], "info": {"description": f"Korean OCR Dataset - {ds}"}}
        write(tmp_path / f"{ds}_train_merged.json", merged)
    paths = sorted(tmp_path.glob("*.json"))
    pages, counts, _ = read(paths)
    assert counts == {}
    assert sorted(p.dataset for p in pages) == ["finance_logistics", "handwriting", "ocr_public"]
    for p in pages:
        assert p.image_name == "IMG_1" and p.words[0].points == [726, 1810, 1114, 1810, 1114, 1862, 726, 1862]


def test_merged_image_without_annotations_reads_its_original_json(tmp_path):
    raw = write(tmp_path / "raw" / "HW_1.json", page_doc(WORDS, name="손글씨", key="Bbox"))
    merged = {"images": [{"dataset": "handwriting", "file_name": "HW_1", "id": 0, "original_json_path": str(raw)},
                         {"dataset": "handwriting", "file_name": "HW_2", "id": 1,
                          "original_json_path": str(tmp_path / "gone.json")}],
              "annotations": []}
    path = write(tmp_path / "handwriting_train_merged.json", merged)
    pages, counts, examples = read([path])
    assert [p.image_name for p in pages] == ["HW_1"] and [w.text for w in pages[0].words] == ["가나다", "라마"]
    assert counts == {"page_no_words": 1} and "images[1]" in examples["page_no_words"][0]


def test_detect_without_hints_is_unknown(tmp_path):
    assert detect({"Images": {}, "bbox": []}, "/data/x/y.json") is None
    assert detect({"Images": {}, "bbox": []}, "/data/금융/y.json") == "finance_logistics"
    assert detect({"images": [], "annotations": []}, "/x.json") is None
    path = write(tmp_path / "plain.json", page_doc(WORDS, name="something"))
    pages, counts, examples = read([path])
    assert pages == [] and counts == {"unknown_format": 1}
    assert "pass --dataset" in examples["unknown_format"][0]
    pages, counts, _ = read([path], dataset="ocr_public")
    assert len(pages) == 1 and counts == {}


# ------------------------------------------------------------------ splits
def test_splits_from_folders_and_hash():
    cases = {"/d/1.Training/라벨/a.json": "train", "/d/2.Validation/a.json": "valid",
             "/d/1_Training/x.json": "train", "/d/[라벨]Validation/x.json": "valid",
             "/d/Training/02.라벨링데이터/x.json": "train", "/d/TL_금융/x.json": "train", "/d/VL_금융/x.json": "valid",
             "/j/public_admin_train_partly_merged.json": "train_partly", "/j/ocr_public_valid_merged.json": "valid",
             "/d/3.Test/x.json": "test", "/d/Validation/sub/Training_notes/x.json": "train",
             "/tmp/pytest-of-root/test_x0/labels/a.json": None, "/home/val/a.json": None}
    for path, split in cases.items():
        assert split_from_path(path) == split, path
    assert split_of_component("라벨Training") == "train"
    ids = [f"{i:08d}" for i in range(4000)]
    splits = [hashed_split(i) for i in ids]
    assert splits == [hashed_split(i) for i in ids]
    assert 300 < splits.count("valid") < 500
    assert [hashed_split(i, seed=7) for i in ids] != splits


# ------------------------------------------------------------------ bad input
def test_every_bad_input_reason_is_counted(tmp_path):
    (tmp_path / "malformed.json").write_text('{"Images": {"width": 3', encoding="utf-8")
    (tmp_path / "latin1.json").write_bytes('{"Images": {}, "bbox": [{"data": "caf\xe9"}]}'.encode("latin-1"))
    write(tmp_path / "list.json", [1, 2, 3])
    write(tmp_path / "nobbox.json", {"Dataset": {"name": "금융"}, "Images": {"width": 5}})
    good = ("ok", [0, 10, 10, 0], [0, 0, 10, 10])
    words = [good,
             ("bad-str", [0, "x1", 10, 0], [0, 0, 10, 10]),
             ("nan", [0, float("nan"), 10, 0], [0, 0, 10, 10]),
             ("inf", [0, 10, float("inf"), 0], [0, 0, 10, 10]),
             ("flat", [5, 5, 5, 5], [0, 1, 2, 3]),
             ("three", [0, 10, 10], [0, 0, 10]),
             ("", [0, 10, 10, 0], [0, 0, 10, 10]),
             ("   ", [0, 10, 10, 0], [0, 0, 10, 10])]
    doc = page_doc(words)
    doc["bbox"].append({"id": 99, "data": "no-x", "y": [0, 0, 1, 1]})
    doc["bbox"].append({"id": 100, "data": None, "x": [0, 1, 1, 0], "y": [0, 0, 1, 1]})
    doc["bbox"].append("not a dict")
    bad = tmp_path / "IMG_OCR_6_F_bad.json"
    bad.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")  # NaN/Infinity literals
    write(tmp_path / "IMG_OCR_6_F_allbad.json", page_doc([("x", [0, 0, 0, 0], [0, 0, 0, 0])]))
    paths = sorted(tmp_path.glob("*.json"))
    pages, counts, examples = read(paths)
    assert len(pages) == 1 and [w.text for w in pages[0].words] == ["ok"]
    assert counts == {"malformed_json": 1, "not_utf8": 1, "unknown_format": 1,
                      "missing_field": 1 + 2,          # nobbox page; word without x; non-dict box
                      "bad_coordinate": 3, "degenerate_box": 2 + 1,
                      "empty_text": 3, "page_no_words": 1}
    assert examples["malformed_json"] == ["malformed.json (line 1 column 23: Expecting ',' delimiter)"]
    assert examples["not_utf8"] == ["latin1.json"]
    assert examples["bad_coordinate"][0] == "IMG_OCR_6_F_bad.json:bbox[1]"
    assert "IMG_OCR_6_F_bad.json:bbox[8]" in examples["missing_field"]


def test_collection_bad_records(tmp_path):
    doc = tiw_doc()
    doc["images"].append({"id": "00000009", "width": 5})                        # no file_name
    doc["annotations"] += [{"id": 7, "image_id": "00000001", "text": "a", "attributes": {"class": "word"}},
                           {"id": 8, "image_id": "00000001", "bbox": [0, 0, -3, 5], "text": "neg"},
                           {"id": 9, "image_id": "424242", "bbox": [0, 0, 3, 5], "text": "orphan"},
                           {"id": 10, "bbox": [0, 0, 3, 5], "text": "no image id"},
                           {"id": 11, "image_id": "00000001", "bbox": [0, 0, 3, 5], "text": ""}]
    path = write(tmp_path / "tiw.json", doc)
    pages, counts, examples = read([path])
    assert len(pages) == 3
    assert counts == {"missing_field": 4, "degenerate_box": 1, "empty_text": 1}
    assert any("image_id 424242 not in images" in e for e in examples["missing_field"])


# ------------------------------------------------------------------ streaming == in-memory
def test_streamed_collection_equals_in_memory(tmp_path):
    images, anns = [], []
    for i in range(60):
        images.append({"dataset": "handwriting", "file_name": f"HW_{i:03d}", "width": 300, "height": 100, "id": i})
        for j in range(3):
            anns.append({"bbox": [10 * j, 10 * j + 5, 10 * j + 5, 10 * j, 0, 0, 9, 9], "text": f"w{i}-{j}",
                         "id": 3 * i + j, "image_id": i})
    anns.append({"bbox": [0, 1, 1, 0, 0, 0, 1, 1], "text": "orphan", "id": 999, "image_id": 12345})
    anns.reverse()  # annotations far from their images, in any order
    path = write(tmp_path / "handwriting_valid_merged.json", {"images": images, "annotations": anns})
    mem, mem_counts, _ = read([path])
    src = Source(str(path), path.name, "valid")
    streamed, skips = [], SkipCounter()
    for table, sk in stream_collection(src, "auto", Options(), partitions=4, tmp_dir=str(tmp_path)):
        skips.merge(sk)
        streamed += [] if table is None else [Page.from_row(r) for r in table.to_pylist()]
    key = lambda p: p.page_id  # noqa: E731
    assert len(streamed) == len(mem) == 60
    assert sorted(streamed, key=key) == sorted(mem, key=key)
    assert skips.to_dict()["counts"] == mem_counts == {"missing_field": 1}
    assert [w.text for w in mem[0].words] == ["w0-2", "w0-1", "w0-0"]  # file order within a page
    assert not list(tmp_path.glob("ocrvl-spill-*"))  # spill files are removed


def test_stream_malformed_and_not_utf8(tmp_path):
    bad = tmp_path / "big.json"
    bad.write_text('{"images": [{"id": 1, "file_name": "a"}], "annotations": [{"id": 1,', encoding="utf-8")
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"images": [{"id": 1, "file_name": "caf\xe9"}], "annotations": []}')
    # big.json is 67 characters long: the cut-off object ends where a key was expected
    for p, reason, example in ((bad, "malformed_json", "big.json (Expecting property name enclosed in double "
                                                       "quotes at character 67)"),
                               (latin, "not_utf8", "latin.json")):
        out = list(stream_collection(Source(str(p), p.name, "train"), "auto", Options(), partitions=2))
        assert out == [(None, {"counts": {reason: 1}, "examples": {reason: [example]}})]


def test_page_batch_matches_records_schema():
    b = PageBatch()
    words = WordList()
    words.add("1", [0, 0, 1, 1], [0, 1, 0, 1], "가", 0)
    b.add("ocr_public", "train", "a", 10, 20, "/x/a.json", "x/a.json", {"k": 1}, words)
    p = b.pages()[0]
    assert p.words[0].text == "가" and p.words[0].points == [0, 0, 1, 0, 1, 1, 0, 1]
    assert p.attrs == {"k": 1} and p.image_path is None
    from ocrvl_ray.core.records import pages_to_table
    assert pages_to_table([p]).equals(b.to_table(SkipCounter()))


def test_jsonstream_matches_json_load_at_any_chunk_size():
    import io
    from ocrvl_ray.ingest.jsonstream import Malformed, NotACollection, iter_collection
    doc = {"info": {"description": "x" * 50, "nested": [1, {"a": [2.5e3, None, True]}]},
           "images": [{"id": i, "file_name": f"이미지_{i}.jpg", "w": 1.25} for i in range(7)],
           "categories": [],
           "annotations": [{"id": j, "image_id": j % 7, "bbox": [j, 2, 3.5, -4e-2], "text": "가\"나\\다"}
                           for j in range(23)]}
    raw = json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8")
    want = [("images", e) for e in doc["images"]] + [("annotations", e) for e in doc["annotations"]]
    for chunk in (1, 2, 7, 64, 1 << 20):
        assert list(iter_collection(io.BytesIO(b"\xef\xbb\xbf" + raw), chunk=chunk)) == want
    assert list(iter_collection(io.BytesIO(b'{"images": [], "annotations": []}'), chunk=3)) == []
    assert list(iter_collection(io.BytesIO(b' { } '))) == []
    bad = [raw[:-1], raw[:len(raw) // 2], b'{"images": [{"id": 1} {"id": 2}]}', b'{"images": [1,]}',
           b'{"images": [] "x": 1}', b'{"images": [{"id": 12', b'{3: 4}', b'']
    for data in bad:
        with pytest.raises((Malformed, NotACollection)):
            list(iter_collection(io.BytesIO(data), chunk=5))
    with pytest.raises(NotACollection):
        list(iter_collection(io.BytesIO(b"[1, 2]")))
    with pytest.raises(UnicodeDecodeError):
        list(iter_collection(io.BytesIO(b'{"images": [{"n": "caf\xe9"}]}'), chunk=4))
    with pytest.raises(Malformed, match="larger than"):
        list(iter_collection(io.BytesIO(b'{"images": [{"n": "' + b"x" * 100 + b'"}]}'), chunk=8, max_element=50))


def test_odd_but_valid_json_never_breaks_a_unit(tmp_path):
    doc = page_doc([("a\ud800b", [0, 10, 10, 0], [0, 0, 10, 10]), ("ok", [0, 1e308 * 10, 10, 0], [0, 0, 10, 10])],
                   width=10 ** 12, height="3508")
    (tmp_path / "IMG_OCR_6_F_odd.json").write_text(json.dumps(doc), encoding="utf-8")  # \ud800 escaped
    pages, counts, _ = read([tmp_path / "IMG_OCR_6_F_odd.json"])
    assert counts == {"bad_coordinate": 1}
    assert (pages[0].width, pages[0].height) == (0, 3508)
    assert pages[0].words[0].text.startswith("a") and pages[0].words[0].text.endswith("b")
