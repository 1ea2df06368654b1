"""The console summary of an ``inspect_lmdb`` report."""
from __future__ import annotations


def _bar(count: int, peak: int, width: int = 30) -> str:
    return "#" * (max(1, round(width * count / peak)) if count else 0)


def format_summary(r: dict) -> str:
    """The readable console summary of an ``inspect_lmdb`` report (of each shard, for a shard folder)."""
    if "shards" in r:
        return "\n\n".join(format_summary(part) for part in r["shards"])
    s = r["schema"]
    out = [f"LMDB {r['path']}  (index_base {s['index_base']}, label_format {s['label_format']}"
           f"{'' if s['declared'] else ', no ocrvl-schema key'})", r["health"]["line"]]
    out += [f"note: {note}" for note in r["health"]["notes"]]
    if r["pages"]:
        out.append("pages: " + ", ".join(f"{k} {v}" for k, v in r["pages"].items()))
    for key, title in (("dataset", "by dataset"), ("sample_kind", "by sample kind"),
                       ("layout_label", "by layout label"), ("split", "by split")):
        c = r["counts"][key]
        if c:
            out.append(f"{title}: " + ", ".join(f"{k} {v}" for k, v in c.items()))
    for key, title in (("text_length", "label length (chars)"), ("crop_width", "crop width (px)"),
                       ("crop_height", "crop height (px)")):
        h = r[key]
        if not h["n"]:
            continue
        out.append(f"{title}: min {h['min']}, mean {h['mean']}, max {h['max']}")
        peak = max(h["counts"])
        for label, cnt in zip(h["bins"], h["counts"]):
            if cnt:
                out.append(f"  {label:>10} {cnt:>8} {_bar(cnt, peak)}")
    out.append("characters: " + ", ".join(f"{c} {v['chars']} ({v['share']:.1%}, in {v['samples']} samples)"
                                          for c, v in r["char_classes"].items() if v["chars"]))
    if r["other_chars"]:
        out.append("  most common 'other': " + " ".join(f"{o['code']}×{o['count']}" for o in r["other_chars"][:10]))
    sus = [(f, v) for f, v in r["suspicious"].items() if v["count"]]
    out.append("suspicious:" + ("" if sus else " none"))
    for flag, v in sus:
        ex = ", ".join(f"#{e['key']}" + (f" ({e['detail']})" if e["detail"] else "") for e in v["examples"][:3])
        out.append(f"  {flag:<18} {v['count']:>8}   e.g. {ex}")
    if r.get("html"):
        out.append(f"HTML report: {r['html']}")
    return "\n".join(out)
