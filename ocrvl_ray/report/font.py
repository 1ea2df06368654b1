"""A Korean font embedded in the HTML reports: a subset holding only the glyphs a page uses, as a base64
``@font-face``, so Hangul labels render on a machine without Korean fonts (a stock Debian server shows boxes).

The bundled font is ``assets/sample-gothic.ttf`` (a NanumGothic subset, SIL OFL 1.1; see
``assets/FONT-NOTICE.md``): ASCII and the 85 Hangul syllables of the demo sample. Real labels use many more;
set ``OCRVL_REPORT_FONT=/path/to/font.ttf`` (e.g. ``NanumGothic.ttf`` of Debian's ``fonts-nanum``, any TTF/OTF
or the first face of a TTC) to embed a complete Korean font. Characters the font lacks fall back to the
viewer's fonts; reports name them (``missing_glyphs``).
"""
from __future__ import annotations

import base64
import io
import logging
import os
from functools import lru_cache
from pathlib import Path

from ocrvl_ray.core.assets import FONT

FAMILY = "OcrvlReport"
BUNDLED = FONT
ENV = "OCRVL_REPORT_FONT"


def report_font() -> Path:
    """The font to embed: ``$OCRVL_REPORT_FONT`` when set, else the bundled sample font."""
    from ocrvl_ray.core.config import ConfigError

    env = os.environ.get(ENV, "").strip()
    if not env:
        return BUNDLED
    p = Path(env).expanduser()
    if not p.is_file():
        raise ConfigError(f"{ENV}={env} is not a font file (unset it, or point it at a Korean .ttf/.otf/.ttc)")
    return p


def _wanted(text: str) -> list[int]:
    """Code points worth embedding: every non-ASCII, non-space character (ASCII uses the viewer's fonts)."""
    return sorted({ord(c) for c in text if ord(c) > 0x7F and not c.isspace()})


@lru_cache(maxsize=4)
def _cmap(path: str) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    with TTFont(path, fontNumber=0, lazy=True) as f:
        return frozenset(f.getBestCmap())


#: Hangul (jamo, compatibility jamo, syllables), CJK symbols, kana and ideographs, fullwidth forms: the
#: characters a server without CJK fonts shows as boxes (other non-ASCII such as ``·`` is in every system font).
_CJK = ((0x1100, 0x11FF), (0x2E80, 0x9FFF), (0xA960, 0xA97F), (0xAC00, 0xD7FF), (0xF900, 0xFAFF),
        (0xFF00, 0xFFEF))


def missing_glyphs(text: str, font: str | os.PathLike | None = None) -> str:
    """The distinct Hangul/CJK characters of ``text`` the report font has no glyph for, in code point order."""
    have = _cmap(str(font or report_font()))
    return "".join(chr(c) for c in _wanted(text)
                   if c not in have and any(lo <= c <= hi for lo, hi in _CJK))


def font_face_css(text: str, font: str | os.PathLike | None = None) -> str:
    """``@font-face`` for family ``OcrvlReport`` with the glyphs of ``text`` the font has, as a TrueType/OpenType
    data URI; ``""`` when ``text`` needs none. Put ``OcrvlReport`` first in the page's ``font-family``."""
    from fontTools import subset
    from fontTools.ttLib import TTFont

    logging.getLogger("fontTools").setLevel(logging.WARNING)  # its INFO lines reach the console under paddlex
    path = str(font or report_font())
    codes = [c for c in _wanted(text) if c in _cmap(path)]
    if not codes:
        return ""
    options = subset.Options()
    options.hinting = False              # smaller; browsers rasterise unhinted outlines well
    options.name_IDs = ["*"]             # keep the copyright and licence names the OFL asks to keep
    options.notdef_outline = True
    with TTFont(path, fontNumber=0) as f:
        sub = subset.Subsetter(options)
        sub.populate(unicodes=codes)
        sub.subset(f)
        buf = io.BytesIO()
        f.save(buf)
        cff = f.sfntVersion == "OTTO"
    mime, fmt = ("font/otf", "opentype") if cff else ("font/ttf", "truetype")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'@font-face{{font-family:"{FAMILY}";src:url(data:{mime};base64,{data}) format("{fmt}")}}'
