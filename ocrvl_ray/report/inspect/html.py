"""Self-contained HTML for an ``inspect_lmdb`` report, with the recorded snapshot of what made the LMDB: UTF-8,
inline CSS, CSS bar charts, crops as base64 data URIs, the Korean glyphs it uses as an embedded font subset
(``report/font.py``). No scripts and no external resources, so it opens offline, renders Hangul without Korean
fonts and can be mailed around."""
from __future__ import annotations

from html import escape

from ocrvl_ray.report.font import font_face_css, missing_glyphs
from ocrvl_ray.report.inspect.collect import FLAGS, SAMPLE_KINDS, data_uri, unusual_char

#: The report pages' stylesheet (``ocrvl eval`` extends it).
BASE_CSS = """
body{font-family:"OcrvlReport","Noto Sans KR","Noto Sans CJK KR","Apple SD Gothic Neo","Malgun Gothic",
 NanumGothic,system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.path{color:#666;font-family:monospace}
.health{padding:8px 12px;border-radius:4px;margin:12px 0;font-weight:600}
.ok{background:#e3f5e1;color:#1b5e20}.bad{background:#fde7e7;color:#8b1a1a}
.grid{display:flex;flex-wrap:wrap;gap:24px}
table{border-collapse:collapse;font-size:13px}td,th{padding:2px 8px;text-align:left;vertical-align:middle}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.bar{background:#4a78c2;height:12px;display:inline-block;min-width:1px}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{background:#fff;border:1px solid #ddd;border-radius:4px;padding:6px;width:380px;font-size:13px}
.card img{max-width:360px;max-height:200px;display:block;margin:0 auto 4px;border:1px solid #eee}
.label{white-space:pre-wrap;word-break:break-all;font-size:15px;line-height:1.4}
.meta{color:#777;font-size:11px;margin-top:4px}
.uc{background:#ffd54f;color:#000;font-family:monospace;font-size:11px;padding:0 2px;border-radius:2px}
.detail{color:#8b1a1a;font-size:12px}
tr.differ td{font-weight:600;background:#fff8e1}
"""


def html_page(title: str, body: str, css: str = BASE_CSS) -> str:
    """A complete page: ``css`` plus an ``@font-face`` holding the glyphs ``body`` uses, and a note naming
    characters the embedded font lacks (they render with the viewer's fonts)."""
    missing = missing_glyphs(body)
    note = (f'<p class="meta">font: {len(missing)} character(s) are not in the embedded font and use the '
            f"viewer's fonts ({escape(missing[:40])}{'…' if len(missing) > 40 else ''}); set OCRVL_REPORT_FONT to "
            "a complete Korean .ttf to embed them</p>") if missing else ""
    return ('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{escape(title)}</title><style>{font_face_css(body)}{css}</style></head><body>\n"
            f"{body}{note}\n</body></html>")


def _label_html(text: str) -> str:
    """Escape a label; show invisible/unusual characters as visible ``U+XXXX`` marks."""
    return "".join(f'<span class="uc">U+{ord(ch):04X}</span>' if unusual_char(ch) else escape(ch) for ch in text)


def _bars(title: str, rows: list[tuple[str, int]], note: str = "", legend: dict[str, str] | None = None) -> str:
    """A bar table; ``legend``: what each row's name means, listed under the table."""
    peak = max((c for _, c in rows), default=0) or 1
    body = "".join(f'<tr><td>{escape(str(k))}</td><td class="n">{c}</td>'
                   f'<td><span class="bar" style="width:{round(240 * c / peak)}px"></span></td></tr>'
                   for k, c in rows)
    keys = "".join(f"<br><b>{escape(k)}</b>: {escape(v)}" for k, v in (legend or {}).items())
    return (f'<div><h3>{escape(title)}</h3>{f"<p>{escape(note)}</p>" if note else ""}'
            f'<table>{body or "<tr><td>(none)</td></tr>"}</table>'
            f'{f"""<p class="meta">{keys[4:]}</p>""" if keys else ""}</div>')


def _hist(title: str, h: dict) -> str:
    note = f"min {h['min']}, mean {h['mean']}, max {h['max']}" if h["n"] else ""
    return _bars(title, list(zip(h["bins"], h["counts"])), note)


def _card(item: dict, thumbs: dict[int, bytes], detail: str = "") -> str:
    img = thumbs.get(item["index"])
    pic = f'<img src="{data_uri(img)}" alt="sample {item["key"]}">' if img else "<p>(no image)</p>"
    more = "…" if item["label_len"] > len(item["label"]) else ""
    meta = " · ".join(escape(str(v)) for v in (f"#{item['key']}", item.get("dataset"), item.get("sample_kind"),
                                                  item.get("layout_label"), f"{item['width']}×{item['height']}px",
                                                  f"{item['label_len']} chars") if v is not None)
    det = f'<div class="detail">{escape(detail)}</div>' if detail else ""
    return (f'<div class="card">{pic}<div class="label" lang="ko">{_label_html(item["label"])}{more}</div>'
            f'{det}<div class="meta">{meta}</div></div>')


def _value(v) -> str:
    return "—" if v is None else ", ".join(map(str, v)) if isinstance(v, list) else str(v)


def _flat(d: dict, prefix: str = ""):
    """(dotted key, value) of a nested dict, in order (``layout.files.model.safetensors``)."""
    for k, v in d.items():
        if isinstance(v, dict) and v:
            yield from _flat(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def _snapshot(rec: dict | None) -> str:
    """What made the LMDB (its identity record): code, versions, detectors with model file hashes, compose
    options, and every resolved recipe key per dataset (rows where the datasets differ highlighted)."""
    title = "<h2>What made it</h2>"
    if not rec or not isinstance(rec.get("identity"), dict):
        return f"{title}<p>no identity record (not written by <code>ocrvl layout</code>, or by a version before " \
               "records)</p>"
    ident, code = dict(rec["identity"]), rec.get("code") or {}
    recipes = ident.pop("recipes", None) or {}
    rows = [("identity hash", rec.get("hash")), ("ocrvl-ray", code.get("ocrvl_ray")),
            ("git commit", code.get("git_commit")), *_flat(ident)]
    parts = [title, "<table>" + "".join(f"<tr><td>{escape(k)}</td><td>{escape(_value(v))}</td></tr>"
                                        for k, v in rows) + "</table>"]
    if recipes:
        names = list(recipes)
        keys = list(dict.fromkeys(k for r in recipes.values() for k in r if k != "name"))
        body = ""
        for k in keys:
            vals = [_value(recipes[n].get(k)) for n in names]
            body += (f'<tr{" class=differ" if len(set(vals)) > 1 else ""}><td>{escape(k)}</td>'
                     + "".join(f"<td>{escape(v)}</td>" for v in vals) + "</tr>")
        head = "".join(f"<th>{escape(n)}</th>" for n in names)
        parts.append(f"<h3>recipes, resolved per dataset (every key)</h3><table><tr><th>key</th>{head}</tr>"
                     f"{body}</table>")
    return "".join(parts)


def render_html(r: dict, thumbs: dict[int, bytes]) -> str:
    """The report page as one UTF-8 string."""
    h = r["health"]
    s = r["schema"]
    parts = [
        f"<h1>LMDB data report</h1><div class=\"path\">{escape(r['path'])} · index_base {s['index_base']}"
        f" · label_format {escape(str(s['label_format']))}</div>",
        f'<div class="health {"ok" if h["ok"] else "bad"}">{escape(h["line"])}</div>',
        *(f"<p>note: {escape(n)}</p>" for n in h["notes"]),
        _snapshot(r.get("identity")),
        '<h2>Counts</h2><div class="grid">',
        _bars("by dataset", list(r["counts"]["dataset"].items())),
        _bars("by sample kind", list(r["counts"]["sample_kind"].items()), legend=SAMPLE_KINDS),
        _bars("by layout label", list(r["counts"]["layout_label"].items())),
        _bars("by split", list(r["counts"]["split"].items())),
    ]
    if r["pages"]:
        parts.append(_bars("pages by status", list(r["pages"].items())))
    parts += ['</div><h2>Distributions</h2><div class="grid">',
              _hist("label length (characters)", r["text_length"]),
              _hist("crop width (px)", r["crop_width"]),
              _hist("crop height (px)", r["crop_height"]), "</div>"]
    cc = r["char_classes"]
    rows = "".join(f'<tr><td>{c}</td><td class="n">{v["chars"]}</td><td class="n">{v["share"]:.1%}</td>'
                   f'<td class="n">{v["samples"]}</td></tr>' for c, v in cc.items())
    parts.append("<h2>Character classes</h2><table><tr><th>class</th><th>characters</th><th>share</th>"
                 f"<th>samples containing</th></tr>{rows}</table>")
    if r["other_chars"]:
        rows = "".join(f'<tr><td>{_label_html(o["char"])}</td><td>{o["code"]}</td><td>{escape(o["name"])}</td>'
                       f'<td class="n">{o["count"]}</td></tr>' for o in r["other_chars"])
        parts.append(f"<h3>most common characters in “other”</h3><table>{rows}</table>")
    parts.append("<h2>Suspicious samples</h2>")
    t = r["thresholds"]
    parts.append(f"<p>near-blank: pixel std &lt; {t['blank_std']}; very long: &gt; {t['long_label']} characters.</p>")
    any_flag = False
    for flag, v in r["suspicious"].items():
        if not v["count"]:
            continue
        any_flag = True
        parts.append(f"<h3>{escape(FLAGS[flag])}: {v['count']}</h3><div class=\"cards\">")
        parts += [_card(e, thumbs, e.get("detail", "")) for e in v["examples"]]
        parts.append("</div>")
    if not any_flag:
        parts.append("<p>none</p>")
    parts.append(f"<h2>Contact sheet ({len(r['contact'])} of {r['samples_read']} samples, evenly spaced)</h2>"
                 '<div class="cards">')
    parts += [_card(item, thumbs) for item in r["contact"]]
    parts.append("</div>")
    return html_page(f"ocrvl inspect — {r['path']}", "\n".join(parts))
