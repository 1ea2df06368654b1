"""The bundled sample's five families: one page design per kind of sample, each with the regions the demo
detector returns for it.

``SCENES`` maps a design to its page size and scripted regions; the demo layout model picks a design by the
page's aspect ratio (``scene_for_aspect``), anything else gets the report template of ``sample.py``.

=========  =================  ==========  ==========================================================
design     family             size        what it shows
=========  =================  ==========  ==========================================================
report     ocr_public,        1240x1754   paragraphs + a ruled table (cells replace only the table)
           finance_logistics              finance: cell samples only
form       public_admin       1240x1680   printed guide text and a stamp that are not annotated (masked
                                          out of every crop); a tall narrow side note read in rows
note       handwriting        1200x600    no regions: one sample per handwritten word
photo      text_in_wild       1280x960    a shop sign with character boxes, a vertical banner whose
                                          columns read ``ud`` (bottom to top) and ``du`` (top to bottom)
=========  =================  ==========  ==========================================================

``make_bundled_sample(root)`` writes them in each family's own AI-Hub label format.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ocrvl_ray.demo.sample import (KOREAN_WORDS, PAGE_SIZE, TEMPLATE_REGIONS, font_path, label_json,
                                   random_word, render_page)

INK = (20, 20, 20)
GUIDE_INK = (90, 90, 90)          # printed form text that no annotation covers


@dataclass(frozen=True)
class Scene:
    size: tuple[int, int]
    regions: tuple[tuple, ...]    # (label, score, x1, y1, x2, y2, order), normalised

    @property
    def aspect(self) -> float:
        return self.size[0] / self.size[1]


SCENES: dict[str, Scene] = {
    "report": Scene(PAGE_SIZE, tuple(TEMPLATE_REGIONS)),
    "form": Scene((1240, 1680), (
        ("doc_title", 0.95, 0.25, 0.040, 0.75, 0.085, 0),
        ("text", 0.94, 0.08, 0.110, 0.74, 0.270, 1),        # paragraph + an unannotated guide line
        ("table", 0.92, 0.08, 0.300, 0.74, 0.640, 2),       # field names printed, values annotated
        ("text", 0.93, 0.08, 0.670, 0.74, 0.860, 3),        # paragraph under a stamp
        ("aside_text", 0.90, 0.78, 0.110, 0.92, 0.640, 4),  # tall narrow side note (read in rows)
    )),
    "note": Scene((1200, 600), ()),
    "photo": Scene((1280, 960), (
        ("text", 0.90, 0.06, 0.08, 0.66, 0.27, 0),          # shop sign
        ("vertical_text", 0.85, 0.74, 0.05, 0.95, 0.92, 1),  # banner: a ud column and a du column
        ("text", 0.80, 0.08, 0.60, 0.52, 0.78, 2),          # notice board, two lines
    )),
}
ASPECT_TOLERANCE = 0.01


def scene_for_aspect(aspect: float) -> str:
    """The design whose page has this width/height (the report template for any other page)."""
    for name, scene in SCENES.items():
        if abs(scene.aspect - aspect) < ASPECT_TOLERANCE:
            return name
    return "report"


class Canvas:
    """A page being drawn, with the words written so far: ``{text, box, data_type, attrs, chars}``."""

    def __init__(self, size: tuple[int, int], background=(255, 255, 255)):
        self.img = Image.new("RGB", size, background)
        self.draw = ImageDraw.Draw(self.img)
        self.words: list[dict] = []

    def font(self, px: int) -> ImageFont.FreeTypeFont:
        return ImageFont.truetype(font_path(), px)

    def px(self, nbox) -> tuple[int, int, int, int]:
        w, h = self.img.size
        x1, y1, x2, y2 = nbox
        return round(x1 * w), round(y1 * h), round(x2 * w), round(y2 * h)

    def text(self, text: str, x: int, y: int, font, fill=INK, annotate: bool = True, dtype: int = 0,
             **attrs) -> tuple[int, int, int, int]:
        """Draw ``text``; an annotated word records its ink box. Returns the box."""
        self.draw.text((x, y), text, fill=fill, font=font)
        box = self.draw.textbbox((x, y), text, font=font)
        if annotate:
            self.words.append({"text": text, "box": box, "data_type": dtype, "attrs": attrs})
        return box

    def turned(self, text: str, x: int, y: int, font, angle: int, fill=INK, **attrs) -> tuple[int, int, int, int]:
        """Draw ``text`` turned by ``angle`` degrees (counter-clockwise) with its top-left at (x, y)."""
        w, h = int(self.draw.textlength(text, font=font)) + 4, int(font.size * 1.4)
        layer = Image.new("L", (w, h), 0)
        ImageDraw.Draw(layer).text((2, 0), text, fill=255, font=font)
        layer = layer.rotate(angle, expand=True, resample=Image.BICUBIC)
        ink = Image.new("RGB", layer.size, fill)
        self.img.paste(ink, (x, y), layer)
        x1, y1, x2, y2 = layer.getbbox()
        box = (x + x1, y + y1, x + x2, y + y2)
        self.words.append({"text": text, "box": box, "data_type": 0, "attrs": attrs})
        return box


def _fill(c: Canvas, rng: random.Random, box, font, lines: int | None = None, gap: float = 0.45) -> int:
    """Annotated random words line by line inside ``box``; returns the y below the last line."""
    x1, y1, x2, y2 = box
    line_h, y, n = int(font.size * 1.6), y1 + 2, 0
    while y + line_h <= y2 and (lines is None or n < lines):
        x = x1 + 2
        while True:
            text, dtype = random_word(rng)
            if x + c.draw.textlength(text, font=font) > x2 - 2:
                break
            x = c.text(text, x, y, font, dtype=dtype)[2] + int(font.size * gap)
        y, n = y + line_h, n + 1
    return y


# ------------------------------------------------------------------------------------------------
# public_admin: a form
# ------------------------------------------------------------------------------------------------
FIELDS = ("성명", "주소", "연락처", "생년월일", "금액", "은행", "계좌 번호", "기한", "담당자", "결과")


def render_form(seed: int) -> tuple[Image.Image, list[dict]]:
    rng = random.Random(seed)
    scene = SCENES["form"]
    c = Canvas(scene.size)
    body = c.font(22)
    boxes = {i: c.px(r[2:6]) for i, r in enumerate(scene.regions)}
    title = c.font(40)
    x = boxes[0][0] + 60
    for word in ("공공", "행정", "신청", "접수"):
        x = c.text(word, x, boxes[0][1] + 4, title)[2] + 14
    # paragraph, then a printed guide line nobody annotated
    y = _fill(c, rng, (boxes[1][0], boxes[1][1], boxes[1][2], boxes[1][3] - 40), body, lines=4)
    x = boxes[1][0] + 2
    for word in ("안내:", "제출", "서류", "확인", "기한", "참고"):
        x = c.text(word, x, y + 4, body, fill=GUIDE_INK, annotate=False)[2] + 10
    _form_table(c, rng, boxes[2], body)
    _fill(c, rng, boxes[3], body)
    _stamp(c, boxes[3])
    # tall narrow side note: horizontal words, one or two per line
    x1, y1, x2, y2 = boxes[4]
    c.draw.rectangle(boxes[4], outline=(150, 150, 150), width=1)
    _fill(c, rng, (x1 + 8, y1 + 8, x2 - 8, y2 - 8), body, gap=0.4)
    return c.img, c.words


def _form_table(c: Canvas, rng: random.Random, box, font) -> None:
    """A 5x4 form: columns 0 and 2 hold printed field names, 1 and 3 the annotated values, each value cell
    with a small printed hint (not annotated) in its corner."""
    from ocrvl_ray.demo.sample import TABLE_GRID

    x1, y1, x2, y2 = box
    rows, cols = TABLE_GRID
    cw, ch = (x2 - x1) / cols, (y2 - y1) / rows
    for r in range(rows + 1):
        c.draw.line([(x1, round(y1 + ch * r)), (x2, round(y1 + ch * r))], fill=(0, 0, 0), width=2)
    for k in range(cols + 1):
        c.draw.line([(round(x1 + cw * k), y1), (round(x1 + cw * k), y2)], fill=(0, 0, 0), width=2)
    hint = c.font(14)
    fields = iter(FIELDS)
    for r in range(rows):
        for k in range(cols):
            cx, cy = round(x1 + k * cw), round(y1 + r * ch)
            if k % 2 == 0:
                c.draw.rectangle((cx + 2, cy + 2, round(cx + cw) - 2, round(cy + ch) - 2), fill=(236, 236, 236))
                c.text(next(fields), cx + 10, cy + round((ch - font.size) / 2), font, fill=GUIDE_INK, annotate=False)
            else:
                c.text("참고", cx + 6, cy + 4, hint, fill=GUIDE_INK, annotate=False)
                text, dtype = random_word(rng)
                if c.draw.textlength(text, font=font) > cw - 20:
                    text, dtype = str(rng.randint(1, 999)), 3
                c.text(text, cx + 14, cy + round((ch - font.size) / 2) + 6, font, dtype=dtype)


def _stamp(c: Canvas, box) -> None:
    """A red seal over the right end of a paragraph (ink that no label holds)."""
    x2, y1 = box[2], box[1]
    r = 52
    cx, cy = x2 - 90, y1 + 70
    c.draw.ellipse((cx - r, cy - r, cx + r, cy + r), outline=(200, 30, 30), width=5)
    c.text("확인", cx - 24, cy - 14, c.font(26), fill=(200, 30, 30), annotate=False)


# ------------------------------------------------------------------------------------------------
# handwriting: a note on lined paper
# ------------------------------------------------------------------------------------------------
def render_note(seed: int) -> tuple[Image.Image, list[dict]]:
    rng = random.Random(seed)
    c = Canvas(SCENES["note"].size, background=(252, 250, 240))
    w, h = c.img.size
    for y in range(110, h - 40, 90):
        c.draw.line([(40, y), (w - 40, y)], fill=(170, 200, 230), width=2)
    for y in range(110, h - 40, 90):
        x = 60 + rng.randint(0, 30)
        while True:
            word = rng.choice(KOREAN_WORDS)
            font = c.font(rng.randint(34, 42))
            if x + c.draw.textlength(word, font=font) > w - 60:
                break
            c.turned(word, x, y - int(font.size * 1.35), font, rng.randint(-4, 4), fill=(30, 40, 140))
            x = c.words[-1]["box"][2] + rng.randint(18, 40)
    return c.img, c.words


# ------------------------------------------------------------------------------------------------
# text_in_wild: a street photo
# ------------------------------------------------------------------------------------------------
def render_photo(seed: int) -> tuple[Image.Image, list[dict], list[tuple]]:
    """The photo, its words (``chars``: their character boxes) and the stray character boxes."""
    rng = random.Random(seed)
    scene = SCENES["photo"]
    c = Canvas(scene.size)
    w, h = c.img.size
    for y in range(h):  # wall: a vertical gradient
        g = 200 - int(70 * y / h)
        c.draw.line([(0, y), (w, y)], fill=(g, g - 10, g - 25))
    sign, banner, board = (c.px(r[2:6]) for r in scene.regions)
    # shop sign: big words with character boxes, and between them a sticker whose characters are annotated
    # but belong to no word (no label can hold them: hidden from the crop)
    c.draw.rectangle(sign, fill=(25, 60, 120))
    font, small = c.font(72), c.font(30)
    first, second = rng.sample(("서울특별시", "은행", "지점", "보험"), 2)
    y = sign[1] + 40
    x = c.text(first, sign[0] + 30, y, font, fill=(250, 250, 250))[2]
    c.words[-1]["chars"] = _char_boxes(c, first, sign[0] + 30, y, font)
    c.draw.rectangle((x + 20, y + 40, x + 110, y + 84), fill=(240, 200, 40))
    c.draw.text((x + 28, y + 46), "No.7", fill=(20, 20, 20), font=small)
    stray = _char_boxes(c, "No.7", x + 28, y + 46, small)
    c.text(second, x + 130, y, font, fill=(250, 250, 250))
    c.words[-1]["chars"] = _char_boxes(c, second, x + 130, y, font)
    # banner: left column reads bottom to top (ud), right column top to bottom (du)
    c.draw.rectangle(banner, fill=(180, 30, 40))
    bx1, by1, bx2, by2 = banner
    font = c.font(44)
    col_w = (bx2 - bx1) // 2
    y = by2 - 20
    for word in rng.sample(KOREAN_WORDS, 3):  # ud: turned counter-clockwise, stacked upwards
        length = int(c.draw.textlength(word, font=font)) + 4
        c.turned(word, bx1 + (col_w - 62) // 2, y - length, font, 90, fill=(255, 240, 200), word_ud=True)
        y -= length + 30
    y = by1 + 20
    for word in rng.sample(KOREAN_WORDS, 3):  # du: turned clockwise, stacked downwards
        box = c.turned(word, bx1 + col_w + (col_w - 62) // 2, y, font, -90, fill=(255, 240, 200), word_du=True)
        y = box[3] + 30
    # notice board: two lines of small words
    c.draw.rectangle(board, fill=(245, 245, 235), outline=(60, 60, 60), width=3)
    _fill(c, rng, (board[0] + 16, board[1] + 16, board[2] - 16, board[3] - 10), c.font(30), lines=2)
    return c.img, c.words, stray


def _char_boxes(c: Canvas, word: str, x: int, y: int, font) -> list[tuple[int, int, int, int]]:
    boxes, cx = [], x
    for ch in word:
        b = c.draw.textbbox((cx, y), ch, font=font)
        if b[2] > b[0]:
            boxes.append(b)
        cx += c.draw.textlength(ch, font=font)
    return boxes


# ------------------------------------------------------------------------------------------------
# label files, one format per family
# ------------------------------------------------------------------------------------------------
def _xywh(box) -> list[int]:
    x1, y1, x2, y2 = (int(v) for v in box)
    return [x1, y1, x2 - x1, y2 - y1]


def public_admin_json(file_name: str, size: tuple[int, int], words: list[dict]) -> dict:
    """Raw 공공행정문서 OCR label: one image with flat dotted keys, ``annotation.bbox`` = [x, y, w, h]."""
    return {
        "images": [{"id": 1, "image.file.name": file_name, "image.width": size[0], "image.height": size[1],
                    "image.category": "신청서", "image.make.code": "5350000", "image.make.year": "2026"}],
        "annotations": [{"id": i, "image_id": 1, "annotation.bbox": _xywh(w["box"]), "annotation.text": w["text"]}
                        for i, w in enumerate(words, start=1)],
    }


def text_in_wild_json(pages: list[tuple[int, str, tuple[int, int], list[dict], list[tuple]]]) -> dict:
    """Raw Text-in-the-wild collection of ``(image_id, file_name, size, words, stray_chars)``: words
    (``attributes.class`` word, ``word_ud``/``word_du`` flags) and character boxes (class character)."""
    images, anns = [], []

    def add(image_id, box, text, attributes):
        anns.append({"id": len(anns) + 1, "image_id": image_id, "bbox": _xywh(box), "text": text,
                     "attributes": attributes})

    for image_id, file_name, size, words, stray in pages:
        images.append({"id": image_id, "file_name": file_name, "width": size[0], "height": size[1], "type": "sign"})
        for w in words:
            add(image_id, w["box"], w["text"], {"class": "word", **w["attrs"]})
            for b in w.get("chars", ()):
                add(image_id, b, "", {"class": "character"})
        for b in stray:
            add(image_id, b, "", {"class": "character"})
    return {"info": {"name": "Text in the wild - ocrvl synthetic sample"}, "images": images, "annotations": anns}


def _write(path: Path, doc: dict) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=1), encoding="utf-8")
    return str(path)


def _save(img: Image.Image, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".png":
        img.save(path, format="PNG", optimize=False, compress_level=6)
    else:
        img.save(path, format="JPEG", quality=88)
    return str(path)


#: One folder per family, numbered so the manifest (and ``limit=N``) starts with the report pages.
FOLDERS = {"ocr_public": "01.ocr_public", "finance_logistics": "02.finance_logistics", "handwriting": "03.handwriting",
           "public_admin": "04.public_admin", "text_in_wild": "05.text_in_wild"}


def make_bundled_sample(root, seed: int = 0) -> dict:
    """The bundled sample: 2 ocr_public, 1 finance_logistics, 1 handwriting, 1 public_admin and 1 text_in_wild
    page under ``root/<FOLDERS[family]>/…`` in each family's own format. Same seed, same bytes.

    Returns ``{"root", "pages": [{"family", "id", "image", "label"}]}``.
    """
    root = Path(root)
    pages = []

    def page_doc(family: str, ident: str, img, words) -> None:
        base = root / FOLDERS[family] / "Training"
        image = _save(img, base / "01.원천데이터" / f"{ident}.png")
        label = _write(base / "02.라벨링데이터" / f"{ident}.json",
                       label_json(ident, *img.size, words, "Training", dataset=family))
        pages.append({"family": family, "id": ident, "image": image, "label": label})

    for i in range(2):
        page_doc("ocr_public", f"IMG_OCR_53_P_{seed:02d}{i:05d}", *render_page(seed * 100_003 + i))
    page_doc("finance_logistics", f"IMG_OCR_6_F_{seed:02d}00000", *render_page(seed * 100_003 + 10))
    page_doc("handwriting", f"IMG_OCR_HW_{seed:02d}00000", *render_note(seed * 100_003 + 20))

    ident = f"PA_FORM_{seed:02d}00001"
    img, words = render_form(seed * 100_003 + 30)
    base = root / FOLDERS["public_admin"] / "Training"
    pages.append({"family": "public_admin", "id": ident, "image": _save(img, base / "01.원천데이터" / f"{ident}.png"),
                  "label": _write(base / "02.라벨링데이터" / f"{ident}.json",
                                  public_admin_json(f"{ident}.png", img.size, words))})

    ident = f"tiw_sign_{seed:02d}00001"
    img, words, stray = render_photo(seed * 100_003 + 40)
    base = root / FOLDERS["text_in_wild"]
    pages.append({"family": "text_in_wild", "id": ident, "image": _save(img, base / "images" / f"{ident}.jpg"),
                  "label": _write(base / "textinthewild_data_info.json",
                                  text_in_wild_json([(1, f"{ident}.jpg", img.size, words, stray)]))})
    return {"root": str(root), "pages": pages}
