"""Synthetic Korean document pages with known word boxes, written as an AI-Hub-style dataset.

``make_sample_dataset`` writes report pages of one page family (tests and benchmarks); the bundled sample
(``sample_dataset_dir``) holds all five families, drawn by ``scenes.py``.

Every report page follows one fixed template (``TEMPLATE_REGIONS``: header, title, two paragraphs with a
heading, a ruled table, footer) in normalised coordinates; the demo models (``demo/models.py``) return
exactly these regions and the table's ``TEMPLATE_CELLS``, so the bundled sample gives meaningful crops.
Text is random but reproducible from the seed (Korean, Latin and digit words, bundled NanumGothic subset).

Label files follow the ocr_public / finance per-image format::

    {"Dataset": {...}, "Images": {"identifier", "width", "height", "type", ...},
     "bbox": [{"id", "data", "data_type", "x": [x1, x1, x2, x2], "y": [y1, y2, y1, y2]}, ...]}

Folder layout: ``<root>/<split>/01.원천데이터/<id>.png`` and ``<root>/<split>/02.라벨링데이터/<id>.json``
with split ``Training`` or ``Validation``.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ocrvl_ray.core.assets import SAMPLE_DATASET, font_path

SAMPLE_VERSION = 3
PAGE_SIZE = (1240, 1754)  # A4 at 150 dpi

#: (label, score, x1, y1, x2, y2, order) normalised to the page; order ranks the reading sequence.
TEMPLATE_REGIONS: list[tuple] = [
    ("header", 0.93, 0.08, 0.025, 0.92, 0.050, 0),
    ("doc_title", 0.96, 0.15, 0.070, 0.85, 0.110, 1),
    ("text", 0.95, 0.08, 0.135, 0.92, 0.300, 2),
    ("paragraph_title", 0.91, 0.08, 0.320, 0.55, 0.350, 3),
    ("text", 0.94, 0.08, 0.365, 0.92, 0.530, 4),
    ("table", 0.90, 0.08, 0.560, 0.92, 0.880, 5),
    ("footer", 0.88, 0.40, 0.940, 0.60, 0.965, 6),
]
TABLE_GRID = (5, 4)  # rows, columns
_INSET = 0.004
#: Table cells (x1, y1, x2, y2) normalised to the table region (what the demo cell model returns).
TEMPLATE_CELLS: list[tuple] = [
    (round(c / TABLE_GRID[1] + _INSET, 4), round(r / TABLE_GRID[0] + _INSET, 4),
     round((c + 1) / TABLE_GRID[1] - _INSET, 4), round((r + 1) / TABLE_GRID[0] - _INSET, 4))
    for r in range(TABLE_GRID[0]) for c in range(TABLE_GRID[1])
]

KOREAN_WORDS = (
    "금융 거래 내역 신고서 계좌 번호 주소 성명 생년월일 연락처 금액 원 합계 세금 납부 기한 은행 지점 "
    "서울특별시 강원도 영천시 부산광역시 대한민국 공공 행정 문서 신청 접수 처리 결과 확인 담당자 "
    "보험 계약 조건 기간 만료 갱신 해지 환급 이자 대출 상환 수수료 안내 참고 사항 제출 서류 증명"
).split()
LATIN_WORDS = "OCR PaddleOCR Ray LMDB layout page table cell KRW ID No. Tel. Fax Email Total".split()


# The bundled font (``core.assets.font_path``) covers ASCII and the Hangul of ``KOREAN_WORDS`` only: extend
# ``KOREAN_WORDS`` only with characters it covers.


def random_word(rng: random.Random) -> tuple[str, int]:
    """A word and its AI-Hub data_type (0 Korean, 1 Latin, 3 digits)."""
    x = rng.random()
    if x < 0.7:
        return rng.choice(KOREAN_WORDS), 0
    if x < 0.85:
        return rng.choice(LATIN_WORDS), 1
    return rng.choice(["{:,}", "{}", "{}-{}"]).format(*(rng.randint(1, 99999) for _ in range(2))), 3


def _px(box, w, h) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = box
    return int(round(x1 * w)), int(round(y1 * h)), int(round(x2 * w)), int(round(y2 * h))


def render_page(seed: int, size: tuple[int, int] = PAGE_SIZE) -> tuple[Image.Image, list[dict]]:
    """Render one template page; returns the RGB image and its words ``{text, box(x1,y1,x2,y2), data_type}``."""
    rng = random.Random(seed)
    w, h = size
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    fpath = font_path()
    body = ImageFont.truetype(fpath, max(8, int(h * 0.012)))
    words: list[dict] = []

    def put(text: str, x: int, y: int, font, dtype: int) -> int:
        draw.text((x, y), text, fill=(20, 20, 20), font=font)
        x1, y1, x2, y2 = draw.textbbox((x, y), text, font=font)
        words.append({"text": text, "box": (x1, y1, x2, y2), "data_type": dtype})
        return x2

    def fill_words(box, font, max_lines=None) -> None:
        x1, y1, x2, y2 = box
        line_h = int(font.size * 1.6)
        gap = int(font.size * 0.45)
        y, lines = y1 + 2, 0
        while y + line_h <= y2 and (max_lines is None or lines < max_lines):
            x = x1 + 2
            while True:
                text, dtype = random_word(rng)
                if x + draw.textlength(text, font=font) > x2 - 2:
                    break
                x = put(text, x, y, font, dtype) + gap
            y += line_h
            lines += 1

    for label, _score, *nbox, _order in TEMPLATE_REGIONS:
        box = _px(nbox, w, h)
        if label == "doc_title":
            font = ImageFont.truetype(fpath, max(10, int((box[3] - box[1]) * 0.6)))
            title = " ".join(rng.sample(KOREAN_WORDS, 3))
            tw = draw.textlength(title, font=font)
            x = box[0] + max(0, int((box[2] - box[0] - tw) / 2))
            for i, part in enumerate(title.split(" ")):
                x = put(part, x, box[1] + 2, font, 0) + int(font.size * 0.3)
        elif label == "paragraph_title":
            font = ImageFont.truetype(fpath, max(9, int((box[3] - box[1]) * 0.7)))
            x = put(f"{rng.randint(1, 9)}.", box[0] + 2, box[1] + 1, font, 3) + int(font.size * 0.3)
            put(rng.choice(KOREAN_WORDS), x, box[1] + 1, font, 0)
        elif label == "table":
            _draw_table(draw, box, body, rng, put)
        elif label == "footer":
            text = f"- {seed % 1000 + 1} -"
            tw = draw.textlength(text, font=body)
            put(text, int((box[0] + box[2] - tw) / 2), box[1] + 2, body, 3)
        else:  # header, text
            fill_words(box, body, max_lines=1 if label == "header" else None)
    return img, words


def _draw_table(draw: ImageDraw.ImageDraw, box, font, rng: random.Random, put) -> None:
    x1, y1, x2, y2 = box
    rows, cols = TABLE_GRID
    for r in range(rows + 1):
        y = int(round(y1 + (y2 - y1) * r / rows))
        draw.line([(x1, y), (x2, y)], fill=(0, 0, 0), width=2)
    for c in range(cols + 1):
        x = int(round(x1 + (x2 - x1) * c / cols))
        draw.line([(x, y1), (x, y2)], fill=(0, 0, 0), width=2)
    cw, ch = (x2 - x1) / cols, (y2 - y1) / rows
    for r in range(rows):
        for c in range(cols):
            cx, cy = x1 + c * cw, y1 + r * ch
            text, dtype = random_word(rng)
            if draw.textlength(text, font=font) > cw - 16:
                text, dtype = str(rng.randint(1, 999)), 3
            put(text, int(cx + 8), int(cy + (ch - font.size) / 2), font, dtype)


#: ``Dataset.name`` as AI-Hub writes it per family (``--dataset auto`` reads the family from it).
DATASET_NAMES = {"ocr_public": "대규모 OCR 데이터셋 (공공) - ocrvl synthetic sample",
                 "finance_logistics": "대규모 OCR 데이터셋 (금융 및 물류) - ocrvl synthetic sample",
                 "handwriting": "대용량 손글씨 OCR 데이터 - ocrvl synthetic sample"}


def label_json(identifier: str, width: int, height: int, words: list[dict], split: str,
               image_type: str = "PNG", dataset: str = "ocr_public") -> dict:
    """The AI-Hub per-image label dict (ocr_public / finance / handwriting family) for one page."""
    bbox = []
    for i, wd in enumerate(words, start=1):
        x1, y1, x2, y2 = (int(v) for v in wd["box"])
        bbox.append({"data": wd["text"], "data_type": wd["data_type"], "id": i,
                     "x": [x1, x1, x2, x2], "y": [y1, y2, y1, y2]})
    return {
        "Annotation": {"object_recognition": 1, "text_language": 0},
        "Dataset": {"category": 0, "identifier": identifier.rsplit("_", 1)[0], "name": DATASET_NAMES[dataset],
                    "label_path": f"{split}/02.라벨링데이터", "src_path": f"{split}/01.원천데이터", "type": 1},
        "Images": {"identifier": identifier, "width": width, "height": height, "type": image_type,
                   "form_type": "신고서", "data_captured": "2026.01.01"},
        "bbox": bbox,
    }


def make_sample_dataset(root: str | os.PathLike, n_pages: int = 6, seed: int = 0, dataset: str = "ocr_public",
                        split: str = "Training", size: tuple[int, int] = PAGE_SIZE,
                        image_format: str = "png") -> dict:
    """Write ``n_pages`` template pages + label JSONs under ``root``; same seed, same bytes.

    Returns ``{"root", "labels_dir", "images_dir", "pages": [{"id", "image", "label", "n_words"}]}``.
    """
    if dataset not in ("ocr_public", "finance_logistics", "handwriting"):
        raise ValueError(f"dataset {dataset!r}: only the per-image JSON families are generated")
    ext = {"png": "png", "jpeg": "jpg", "jpg": "jpg"}[image_format.lower()]
    root = Path(root)
    images_dir, labels_dir = root / split / "01.원천데이터", root / split / "02.라벨링데이터"
    images_dir.mkdir(parents=True, exist_ok=True)
    labels_dir.mkdir(parents=True, exist_ok=True)
    prefix = {"ocr_public": "IMG_OCR_53_P", "finance_logistics": "IMG_OCR_6_F", "handwriting": "IMG_OCR_HW"}[dataset]
    pages = []
    for i in range(n_pages):
        ident = f"{prefix}_{seed:02d}{i:05d}"
        img, words = render_page(seed * 100_003 + i, size)
        image_path = images_dir / f"{ident}.{ext}"
        if ext == "png":
            img.save(image_path, format="PNG", optimize=False, compress_level=6)
        else:
            img.save(image_path, format="JPEG", quality=90)
        label = label_json(ident, size[0], size[1], words, split, image_type=ext.upper(), dataset=dataset)
        label_path = labels_dir / f"{ident}.json"
        label_path.write_text(json.dumps(label, ensure_ascii=False, indent=1), encoding="utf-8")
        pages.append({"id": ident, "image": str(image_path), "label": str(label_path), "n_words": len(words)})
    return {"root": str(root), "labels_dir": str(labels_dir), "images_dir": str(images_dir), "pages": pages}


def make_validation_pages(root: str | os.PathLike, seed: int = 0) -> list[dict]:
    """The bundled sample's validation split, in ``Validation/`` folders beside the families' ``Training/``: one
    report page (ocr_public) and one handwritten note, drawn like the training pages from other seeds.

    Returns ``[{"family", "id", "image", "label"}]``.
    """
    from ocrvl_ray.demo.scenes import FOLDERS, render_note

    root = Path(root)
    report = make_sample_dataset(root / FOLDERS["ocr_public"], n_pages=1, seed=seed + 1, split="Validation")
    pages = [{"family": "ocr_public", "id": pg["id"], "image": pg["image"], "label": pg["label"]}
             for pg in report["pages"]]
    ident = f"IMG_OCR_HW_{seed + 1:02d}00000"
    img, words = render_note(seed * 100_003 + 21)
    base = root / FOLDERS["handwriting"] / "Validation"
    (base / "01.원천데이터").mkdir(parents=True, exist_ok=True)
    (base / "02.라벨링데이터").mkdir(parents=True, exist_ok=True)
    image, label = base / "01.원천데이터" / f"{ident}.png", base / "02.라벨링데이터" / f"{ident}.json"
    img.save(image, format="PNG", optimize=False, compress_level=6)
    label.write_text(json.dumps(label_json(ident, *img.size, words, "Validation", dataset="handwriting"),
                                ensure_ascii=False, indent=1), encoding="utf-8")
    return pages + [{"family": "handwriting", "id": ident, "image": str(image), "label": str(label)}]


def write_bundled_sample(root: str | os.PathLike, seed: int = 0) -> None:
    """Every page of the bundled sample: the five families' training pages and the validation pages."""
    from ocrvl_ray.demo.scenes import make_bundled_sample

    make_bundled_sample(root, seed=seed)
    make_validation_pages(root, seed=seed)


SHIPPED_SAMPLE = SAMPLE_DATASET
#: A folder of the shipped sample whose presence says it holds the validation pages too.
_VALIDATION_MARK = Path("01.ocr_public") / "Validation"


def sample_dataset_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Root of the bundled sample: one folder per family (``scenes.make_bundled_sample``, seed 0).

    Without ``cache_dir`` this is the copy shipped in the repo (``ocrvl_ray/assets/sample``, written by
    ``python -m ocrvl_ray.demo.sample DIR``); with ``cache_dir`` (or if the shipped copy is missing) it is
    generated once, reproducibly, into ``<cache_dir or $OCRVL_CACHE or <tmp>/ocrvl-cache>/sample-v3``.
    """
    from ocrvl_ray.demo.scenes import FOLDERS

    if cache_dir is None and all((SHIPPED_SAMPLE / f).is_dir() for f in (*FOLDERS.values(), _VALIDATION_MARK)):
        return SHIPPED_SAMPLE
    base = Path(cache_dir or os.environ.get("OCRVL_CACHE") or Path(tempfile.gettempdir()) / "ocrvl-cache")
    root = base / f"sample-v{SAMPLE_VERSION}"
    if (root / ".complete").is_file():
        return root
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="sample.", dir=base))
    write_bundled_sample(tmp, seed=0)
    (tmp / ".complete").write_text("ok\n")
    try:
        tmp.rename(root)
    except OSError:  # another process published it first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return root


def sample_manifest() -> Path:
    """The bundled sample's manifest (what ``ocrvl layout`` reads without ``manifest=``): every family read by
    ``--dataset auto``, split by its folders (``Training/`` -> train, ``Validation/`` -> valid; the text_in_wild
    page hashes into train); prepared once into the cache (the package folder may be read-only)."""
    from ocrvl_ray.ingest.prepare import PrepareConfig, prepare

    root = sample_dataset_dir()
    files = sorted((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in root.rglob("*.json"))
    key = hashlib.sha1(repr((str(root), files)).encode()).hexdigest()[:10]   # a changed sample is prepared anew
    cache = Path(os.environ.get("OCRVL_CACHE") or Path(tempfile.gettempdir()) / "ocrvl-cache")
    out = cache / f"sample-manifest-{key}.parquet"
    if not out.exists():
        cache.mkdir(parents=True, exist_ok=True)
        prepare(PrepareConfig(dataset="auto", labels=[str(root)], images=[str(root)], out=str(out), quiet=True),
                use_ray=False)
    return out


if __name__ == "__main__":  # regenerate the shipped sample: python -m ocrvl_ray.demo.sample ocrvl_ray/assets/sample
    import sys

    write_bundled_sample(sys.argv[1], seed=0)
