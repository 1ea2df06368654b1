"""Report font: the HTML reports embed a subset of the bundled Korean font, so Hangul labels render in a
browser on a machine without Korean fonts. The browser checks screenshot real pages with Debian's chromium."""
from __future__ import annotations

import base64
import io
import json
import pickle
import re
import shutil
import subprocess

import lmdb
import numpy as np
import pytest
from fontTools.ttLib import TTFont
from PIL import Image, ImageDraw, ImageFont

from ocrvl_ray.cli import main
from ocrvl_ray.lmdb import schema as schema
from ocrvl_ray.eval.report import render_report
from ocrvl_ray.report.font import BUNDLED, font_face_css, missing_glyphs
from ocrvl_ray.report.inspect import inspect_lmdb

LABELS = ["금융 거래 내역", "신고서 계좌 번호", "합계 1,234원"]   # syllables the bundled font covers
SYLLABLES = sorted({c for t in LABELS for c in t if "\uac00" <= c <= "\ud7a3"})
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")
CELL = 64


def _embedded(css: str) -> TTFont:
    m = re.search(r"url\(data:font/ttf;base64,([A-Za-z0-9+/=]+)\)", css)
    assert m, css[:200]
    return TTFont(io.BytesIO(base64.b64decode(m.group(1))))


def test_font_face_holds_only_the_glyphs_used():
    font = _embedded(font_face_css("금융 ABC 금 · 漢"))
    assert set(font.getBestCmap()) == {ord("금"), ord("융")}        # no ASCII, nothing the font lacks
    assert "NHN Corporation" in str(font["name"].getName(0, 3, 1, 0x409))   # copyright notice kept (OFL)
    assert font_face_css("plain ASCII · only") == ""
    assert missing_glyphs("금융 갉 漢 · ×") == "漢갉"                 # CJK the font lacks; not · or ×


def _lmdb(path, labels) -> str:
    """A minimal LMDB per lmdb/schema.py: white crops, pickled labels, 1-based keys."""
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as t:
        for n, label in enumerate(labels, 1):
            buf = io.BytesIO()
            Image.new("RGB", (120, 30), (255, 255, 255)).save(buf, format="JPEG")
            t.put((schema.IMAGE_FMT % n).encode(), buf.getvalue())
            t.put((schema.GT_FMT % n).encode(), pickle.dumps({"bboxes": [[0, 0, 120, 0, 120, 30, 0, 30]],
                                                              "words": [label], "filename": f"s{n}.jpg"}))
        t.put(schema.NUM_SAMPLES, str(len(labels)).encode())
        t.put(schema.SCHEMA_KEY, json.dumps({"version": schema.SCHEMA_VERSION, "index_base": 1,
                                             "label_format": "pickle"}).encode())
    env.close()
    return str(path)


def _report(tmp_path, labels=LABELS) -> str:
    tmp_path.mkdir(parents=True, exist_ok=True)
    out = tmp_path / "ko.report.html"
    inspect_lmdb(_lmdb(tmp_path / "ko_layout.lmdb", labels), html=str(out))
    return out.read_text(encoding="utf-8")


def test_reports_embed_the_font(tmp_path):
    page = _report(tmp_path)
    assert set(_embedded(page).getBestCmap()) == {ord(c) for c in SYLLABLES}
    assert 'font-family:"OcrvlReport"' in page and "not in the embedded font" not in page
    other = _report(tmp_path / "more", LABELS + ["갉 漢"])
    assert "2 character(s) are not in the embedded font" in other and "漢갉" in other

    doc = {"n_samples": 1, "models": {}, "comparisons": [], "definitions": {"cer": "금액 합계"}}
    assert set(_embedded(render_report(doc, {})).getBestCmap()) == {ord(c) for c in "금액합계"}


def test_bad_font_setting_is_one_line(tmp_path, monkeypatch, capsys):
    path = _lmdb(tmp_path / "x_layout.lmdb", LABELS[:1])
    monkeypatch.setenv("OCRVL_REPORT_FONT", str(tmp_path / "nofont.ttf"))
    assert main(["inspect", path, "--html", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "OCRVL_REPORT_FONT" in err[0] and "nofont.ttf" in err[0], err


def _shot(html: str, tmp_path, name: str, width: int, height: int) -> np.ndarray:
    """Grayscale screenshot of ``html`` in headless chromium (no network, throwaway profile)."""
    page, png = tmp_path / f"{name}.html", tmp_path / f"{name}.png"
    page.write_text(html, encoding="utf-8")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--hide-scrollbars", "--force-device-scale-factor=1", f"--user-data-dir={tmp_path / 'profile'}",
           f"--screenshot={png}", f"--window-size={width},{height}", page.as_uri()]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert png.is_file(), r.stderr[-2000:]
    return np.asarray(Image.open(png).convert("L"), dtype=np.float32)


def _no_face(html: str) -> str:
    out, n = re.subn(r"@font-face\{[^}]*\}", "", html)
    assert n == 1
    return out


def _glyph(cell: np.ndarray) -> np.ndarray | None:
    """The ink of one cell cropped to its bounding box and scaled to 32x32 (None when blank)."""
    ys, xs = np.nonzero(cell < 128)
    if len(ys) < 10:
        return None
    crop = Image.fromarray(cell[ys.min():ys.max() + 1, xs.min():xs.max() + 1].astype(np.uint8))
    g = np.asarray(crop.resize((32, 32), Image.BILINEAR), dtype=np.float32)
    return (g - g.mean()) / (g.std() + 1e-6)


def _reference_glyphs() -> list[np.ndarray]:
    """Each syllable drawn by PIL from the bundled TTF: the truth the browser's glyphs are matched against."""
    font = ImageFont.truetype(str(BUNDLED), 48)
    out = []
    for ch in SYLLABLES:
        im = Image.new("L", (CELL, CELL), 255)
        ImageDraw.Draw(im).text((4, 4), ch, font=font, fill=0)
        out.append(_glyph(np.asarray(im, dtype=np.float32)))
    return out


def _system_has_korean_font() -> bool:
    fc = shutil.which("fc-list")
    return bool(fc and subprocess.run([fc, ":lang=ko"], capture_output=True, text=True).stdout.strip())


@needs_chromium
def test_chromium_renders_hangul_labels_with_the_embedded_font(tmp_path):
    report = _report(tmp_path)
    # the whole report: the embedded font changes what chromium draws (it was accepted, not rejected)
    with_font = _shot(report, tmp_path, "report", 1000, 2400)
    without = _shot(_no_face(report), tmp_path, "report_tofu", 1000, 2400)
    assert np.abs(with_font - without).mean() > 0.05

    # each label syllable in its own cell, styled by the report's own CSS: identify every glyph
    css = re.search(r"<style>(.*?)</style>", report, re.S).group(1)
    cells = "".join(f'<div class="label" lang="ko" style="position:absolute;top:0;left:{i * CELL}px;width:{CELL}px;'
                    f'height:{CELL}px;font-size:48px;line-height:{CELL}px;color:#000">{c}</div>'
                    for i, c in enumerate(SYLLABLES))
    page = (f'<!DOCTYPE html><html><head><meta charset="utf-8"><style>{css}body{{margin:0;background:#fff}}'
            f"</style></head><body>{cells}</body></html>")
    width = CELL * len(SYLLABLES)
    shot = _shot(page, tmp_path, "cells", width, CELL)
    glyphs = [_glyph(shot[:, i * CELL:(i + 1) * CELL]) for i in range(len(SYLLABLES))]
    assert all(g is not None for g in glyphs), "a label syllable rendered blank"
    ref = _reference_glyphs()
    corr = np.array([[float((g * r).mean()) for r in ref] for g in glyphs])
    assert list(corr.argmax(axis=1)) == list(range(len(SYLLABLES))), np.round(corr, 2)
    assert corr.diagonal().min() > 0.8, np.round(corr.diagonal(), 2)

    if not _system_has_korean_font():   # this machine: without the face every syllable is the same box
        tofu = _shot(_no_face(page), tmp_path, "cells_tofu", width, CELL)
        boxes = [_glyph(tofu[:, i * CELL:(i + 1) * CELL]) for i in range(len(SYLLABLES))]
        assert all(b is not None and np.abs(b - boxes[0]).mean() < 0.05 for b in boxes)
        assert max(float((b * r).mean()) for b, r in zip(boxes, ref)) < corr.diagonal().min()
