"""Self-contained ``report.html`` for an evaluation: headline table, per-slice bars with bootstrap intervals,
worst regressions and best gains side by side with their crops. Inline CSS, images as data URIs, the Korean
glyphs it uses as an embedded font subset, no scripts."""
from __future__ import annotations

from html import escape

from ocrvl_ray.report.inspect.html import BASE_CSS, html_page
from ocrvl_ray.report.inspect.collect import data_uri, thumbnail_jpeg

_CSS = BASE_CSS + """
.ci{position:relative;display:inline-block;width:240px;height:12px;background:#eee;vertical-align:middle}
.ci .zero{position:absolute;left:120px;top:0;width:1px;height:12px;background:#555}
.ci .iv{position:absolute;top:2px;height:8px;background:#9bb7e0}
.ci .pt{position:absolute;top:0;width:2px;height:12px;background:#1a3d7c}
.good{color:#1b5e20}.worse{color:#8b1a1a}.muted{color:#777}
.pair{display:flex;gap:24px;flex-wrap:wrap}.pair>div{flex:1;min-width:380px}
.hyp{white-space:pre-wrap;word-break:break-all;font-size:14px;margin:2px 0}
"""
EXAMPLES = 12


def _f(v, signed: bool = False, pct: bool = False) -> str:
    if v is None:
        return "n/a"
    if pct:
        return f"{v:+.1%}" if signed else f"{v:.1%}"
    return f"{v:+.4f}" if signed else f"{v:.4f}"


def _ci_bar(d: dict, scale: float) -> str:
    """The difference and its interval on a symmetric axis of ±scale around 0 (120 px per side)."""
    if d["diff"] is None or d["lo"] is None:
        return ""
    px = lambda v: 120 + max(-120.0, min(120.0, 120 * v / scale))  # noqa: E731
    lo, hi = px(d["lo"]), px(d["hi"])
    return (f'<span class="ci"><span class="iv" style="left:{lo:.0f}px;width:{max(hi - lo, 1):.0f}px"></span>'
            f'<span class="zero"></span><span class="pt" style="left:{px(d["diff"]) - 1:.0f}px"></span></span>')


def _verdict(metric: str, d: dict) -> str:
    if d["diff"] is None or not d["significant"]:
        return '<span class="muted">within noise</span>'
    better = d["diff"] > 0 if metric == "exact_match" else d["diff"] < 0
    return '<span class="good">better</span>' if better else '<span class="worse">worse</span>'


def _headline(doc: dict) -> str:
    rows = "".join(
        f'<tr><td>{escape(m)}</td><td class="n">{r["overall"]["n"]}</td><td class="n">{_f(r["overall"]["cer"])}</td>'
        f'<td class="n">{_f(r["overall"]["ned"])}</td><td class="n">{_f(r["overall"]["exact_match"], pct=True)}</td>'
        f'<td class="n">{r["loops"]}</td></tr>' for m, r in doc["models"].items())
    return ("<h2>Headline</h2><table><tr><th>model</th><th>n</th><th>CER ↓</th><th>NED ↓</th><th>exact match ↑</th>"
            f"<th>repetition loops cut</th></tr>{rows}</table>")


def _comparison_table(c: dict) -> str:
    o = c["overall"]
    rows = "".join(
        f'<tr><td>{k}</td><td class="n">{_f(o[k]["a"])}</td><td class="n">{_f(o[k]["b"])}</td>'
        f'<td class="n">{_f(o[k]["diff"], True)}</td><td class="n">[{_f(o[k]["lo"], True)}, {_f(o[k]["hi"], True)}]</td>'
        f'<td>{_verdict(k, o[k])}</td></tr>' for k in ("cer", "ned", "exact_match"))
    return (f'<h3>{escape(c["b"])} vs {escape(c["a"])}</h3><p>samples improved {o["improved"]}, '
            f'regressed {o["regressed"]}, same {o["same"]} (by edit distance)</p>'
            f"<table><tr><th>metric</th><th>{escape(c['a'])}</th><th>{escape(c['b'])}</th><th>diff</th>"
            f"<th>95% interval</th><th></th></tr>{rows}</table>")


def _slices(doc: dict) -> str:
    models = list(doc["models"])
    parts = ["<h2>Per slice (NED, lower is better)</h2>"]
    first = next(iter(doc["models"].values()), None)
    if first is None:
        return ""
    for fam, vals in first["slices"].items():
        if not vals:
            continue
        head = "".join(f"<th>{escape(m)}</th>" for m in models)
        comps = doc["comparisons"]
        head += "".join(f"<th>{escape(c['b'])} − {escape(c['a'])} (NED, 95%)</th>" for c in comps)
        scale = max([abs(x) for c in comps for s in c["slices"][fam].values()
                     for x in (s["ned"]["lo"], s["ned"]["hi"]) if x is not None] + [1e-9])
        body = []
        for v in vals:
            cells = []
            for m in models:
                s = doc["models"][m]["slices"][fam][v]
                ned = s["ned"] or 0.0
                cells.append(f'<td class="n">{_f(s["ned"])} <span class="bar" style="width:{round(120 * ned)}px">'
                             "</span></td>")
            for c in comps:
                s = c["slices"][fam][v]["ned"]
                cells.append(f"<td>{_ci_bar(s, scale)} {_f(s['diff'], True)} {_verdict('ned', s)}</td>")
            n = doc["models"][models[0]]["slices"][fam][v]["n"]
            body.append(f'<tr><td>{escape(v)}</td><td class="n">{n}</td>{"".join(cells)}</tr>')
        parts.append(f"<h3>by {escape(fam)}</h3><table><tr><th>{escape(fam)}</th><th>n</th>{head}</tr>"
                     f"{''.join(body)}</table>")
    return "".join(parts)


class _Crops:
    """Crop thumbnails from the LMDB named in the ``lmdb``/``index`` columns (none for external predictions)."""

    def __init__(self, cols: dict[str, list]):
        self.cols, self.readers = cols, {}

    def get(self, i: int) -> str | None:
        paths, idx = self.cols.get("lmdb"), self.cols.get("index")
        if not paths or not idx or not paths[i]:
            return None
        try:
            from ocrvl_ray.lmdb.reader import LmdbReader

            r = self.readers.get(paths[i]) or self.readers.setdefault(paths[i], LmdbReader(paths[i]))
            return data_uri(thumbnail_jpeg(r.image_bytes(int(idx[i]))))
        except Exception:
            return None

    def close(self) -> None:
        for r in self.readers.values():
            r.close()


def _card(cols: dict[str, list], i: int, a: str, b: str, crops: _Crops) -> str:
    img = crops.get(i)
    pic = f'<img src="{img}" alt="crop">' if img else ""
    meta = " · ".join(escape(str(cols[c][i])) for c in ("key", "dataset", "kind", "layout_label")
                      if cols.get(c) and cols[c][i] not in (None, ""))
    da, db = cols[f"distance:{a}"][i], cols[f"distance:{b}"][i]
    return (f'<div class="card">{pic}<div class="label" lang="ko"><span class="muted">reference:</span> '
            f'{escape(cols["reference"][i])}</div>'
            f'<div class="hyp" lang="ko"><b>{escape(a)}</b> <span class="muted">(edit distance {da})</span>: '
            f'{escape(cols["prediction:" + a][i])}</div>'
            f'<div class="hyp" lang="ko"><b>{escape(b)}</b> <span class="muted">(edit distance {db})</span>: '
            f'{escape(cols["prediction:" + b][i])}</div>'
            f'<div class="meta">{meta}</div></div>')


def _examples(doc: dict, cols: dict[str, list], k: int) -> str:
    crops = _Crops(cols)
    parts = []
    try:
        for c in doc["comparisons"]:
            a, b = c["a"], c["b"]
            delta = [db - da for da, db in zip(cols[f"distance:{a}"], cols[f"distance:{b}"])]
            order = sorted(range(len(delta)), key=lambda i: delta[i])
            gains = [i for i in order if delta[i] < 0][:k]
            losses = [i for i in reversed(order) if delta[i] > 0][:k]
            parts.append(f"<h2>{escape(b)} vs {escape(a)}: worst regressions and best gains</h2><div class='pair'>")
            for title, idx in (("worst regressions", losses), ("best gains", gains)):
                cards = "".join(_card(cols, i, a, b, crops) for i in idx) or "<p>none</p>"
                parts.append(f"<div><h3>{title} ({len(idx)})</h3><div class='cards'>{cards}</div></div>")
            parts.append("</div>")
    finally:
        crops.close()
    return "".join(parts)


#: The run's per-model records (``metrics.json`` ``run.models``) as table columns: (key, heading).
MODEL_COLUMNS = (("name", "model"), ("kind", "kind"), ("model_version", "model_version"), ("path", "folder"),
                 ("lora", "LoRA (merged in memory)"), ("seconds", "seconds"), ("samples_per_s", "samples/s"))


def _value(v) -> str:
    """A run value as text: lists comma-separated, mappings as ``key: value`` pairs, null as "–"."""
    if v is None or v == "":
        return "–"
    if isinstance(v, (list, tuple)):
        return ", ".join(_value(x) for x in v) or "–"
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_value(x)}" for k, x in v.items()) or "–"
    return str(v)


def _run_table(run: dict) -> str:
    """The run's inputs, one row per key; ``models`` as a table of its own (one row per model)."""
    rows = []
    for k, v in run.items():
        if k == "models" and isinstance(v, list) and all(isinstance(m, dict) for m in v):
            head = "".join(f"<th>{h}</th>" for _, h in MODEL_COLUMNS)
            body = "".join("<tr>" + "".join(f"<td>{escape(_value(m.get(c)))}</td>" for c, _ in MODEL_COLUMNS)
                           + "</tr>" for m in v)
            v_html = f"<table><tr>{head}</tr>{body}</table>"
        else:
            v_html = escape(_value(v))
        rows.append(f"<tr><td>{escape(str(k))}</td><td>{v_html}</td></tr>")
    return "".join(rows)


def render_report(doc: dict, cols: dict[str, list], examples: int = EXAMPLES) -> str:
    """The report page as one UTF-8 string (``doc`` = metrics.json content, ``cols`` = scored predictions)."""
    inputs = _run_table(doc.get("run", {}))
    defs = "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in doc["definitions"].items())
    parts = [f"<h1>Evaluation report</h1><div class=\"path\">{doc['n_samples']} samples · "
             f"{len(doc['models'])} model(s)</div>"]
    if inputs:
        parts.append(f"<h2>Run</h2><table>{inputs}</table>")
    parts.append(_headline(doc))
    if doc["comparisons"]:
        b = doc["bootstrap"]
        parts.append(f"<h2>Comparisons</h2><p>{b['resamples']} paired bootstrap resamples, seed {b['seed']}; "
                     "“within noise” = the 95% interval contains 0.</p>")
        parts += [_comparison_table(c) for c in doc["comparisons"]]
    parts.append(_slices(doc))
    parts.append(_examples(doc, cols, examples))
    parts.append(f"<h2>Definitions</h2><table>{defs}</table>")
    return html_page("ocrvl eval", "\n".join(parts), _CSS)
