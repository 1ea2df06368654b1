"""The console summary of an ``inspect_lmdb`` report."""
from __future__ import annotations


def _bar(count: int, peak: int, width: int = 30) -> str:
    return "#" * (max(1, round(width * count / peak)) if count else 0)


def _detector(key: str, d: dict | None) -> str:
    if not d:
        return f"{key} off"
    files = d.get("files")
    weights = ", ".join(f"{f} {h[:8]}" for f, h in files.items()) if files else f"{d.get('weights', '?')} weights"
    return f"{key} {d.get('name')} ({weights}; threshold {d.get('threshold')})"


def snapshot_lines(rec: dict | None) -> list[str]:
    """Three lines on what made the LMDB (its identity record): code, versions and hash; detectors and model
    file hashes; mask, JPEG quality and the recipes' datasets (keys in which they differ). The HTML report and
    ``--json`` hold every resolved key."""
    if not rec or not isinstance(rec.get("identity"), dict):
        return ["made by: (no identity record: not written by `ocrvl layout`, or by a version before records)"]
    ident, code = rec["identity"], rec.get("code") or {}
    git = f" (git {code['git_commit'][:10]})" if code.get("git_commit") else ""
    out = [f"made by: ocrvl-ray {code.get('ocrvl_ray', '?')}{git}, compose v{ident.get('compose_version', '?')}, "
           f"schema v{ident.get('schema_version', '?')}, split {ident.get('split')}, identity {rec.get('hash')}"]
    if "detections" in ident:
        out.append(f"  detections {(ident['detections'] or {}).get('path')} (detectors not run)")
    else:
        out.append("  " + "; ".join(_detector(k, ident.get(k)) for k in ("layout", "cells")))
    recipes = ident.get("recipes") or {}
    if recipes:
        keys = sorted({k for r in recipes.values() for k in r if k != "name"})
        differ = [k for k in keys if len({repr(r.get(k)) for r in recipes.values()}) > 1]
        recipe = f"recipes {', '.join(recipes)}" + (f" (differ in {', '.join(differ)})" if differ else "")
    else:
        recipe = "no recipes recorded"
    out.append(f"  mask {ident.get('mask')}, jpeg_quality {ident.get('jpeg_quality')}; {recipe}")
    return out


def format_summary(r: dict, snapshot: bool = True) -> str:
    """The readable console summary of an ``inspect_lmdb`` report (of each shard, for a shard folder; the
    snapshot of what made it once)."""
    if "shards" in r:
        return "\n\n".join([*(["\n".join(snapshot_lines(r.get("identity")))] if snapshot else []),
                             *(format_summary(part, snapshot=False) for part in r["shards"])])
    s = r["schema"]
    out = [f"LMDB {r['path']}  (index_base {s['index_base']}, label_format {s['label_format']}"
           f"{'' if s['declared'] else ', no ocrvl-schema key'})", r["health"]["line"]]
    if snapshot:
        out += snapshot_lines(r.get("identity"))
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
