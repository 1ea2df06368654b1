"""The layout job's run report: what went in, what came out, what was skipped and why, how fast."""
from __future__ import annotations

import json
import os
from collections import Counter
from datetime import datetime, timezone
from functools import reduce
from pathlib import Path

from ocrvl_ray.core.config import config_hash
from ocrvl_ray.core.skips import GUARD_PREFIX, SkipCounter


def report_path(lmdb: str | os.PathLike) -> str:
    """``out/x_layout.lmdb`` -> ``out/x_layout.lmdb.report.json`` (beside the LMDB directory)."""
    return str(Path(os.fspath(lmdb).rstrip("/\\"))) + ".report.json"


def build_report(cfg, manifest: str, *, pages_in: int, already_done: int, summary: dict, elapsed_s: float) -> dict:
    """One dict from the sink's summary; ``pages_*`` count this run, ``num_samples`` the whole LMDB."""
    pages = summary.get("pages", {})
    processed = sum(pages.values())
    items = summary.get("item_skips", {})
    guard = {k: {key: v for key, v in items.get(k, {}).items() if key.startswith(GUARD_PREFIX)}
             for k in ("counts", "examples")}
    skips = {k: {key: v for key, v in items.get(k, {}).items() if not key.startswith(GUARD_PREFIX)}
             for k in ("counts", "examples")}
    ok = pages.get("ok", 0)
    busy, writers = summary.get("write_s", 0.0), summary.get("shards", 1)
    return {
        "output": cfg.output, "manifest": manifest, "config_hash": config_hash(cfg),
        "pages_in": pages_in, "pages_already_done": already_done, "pages_processed": processed,
        "pages_ok": ok, "pages_skipped": {k: v for k, v in sorted(pages.items()) if k != "ok"},
        "page_skip_examples": summary.get("page_skips", {}).get("examples", {}),
        "item_skips": skips if items else {},
        "guards": guard if items else {},  # samples where composition departs from the original (docs/compose.md)
        "samples_written": summary.get("samples", 0), "samples_by_kind": summary.get("samples_by_kind", {}),
        "samples_by_label": summary.get("samples_by_label", {}), "num_samples": summary.get("num_samples", 0),
        "elapsed_s": round(elapsed_s, 2), "pages_per_s": round(processed / elapsed_s, 3) if elapsed_s > 0 else 0.0,
        # time inside the LMDB write tasks over what the writers had: near 1, the sink is the bottleneck
        "writer_busy_s": round(busy, 2),
        "writer_busy_share": round(busy / (writers * elapsed_s), 3) if elapsed_s > 0 else 0.0,
        "inspect": f"ocrvl inspect {cfg.output} --html {str(Path(cfg.output.rstrip('/'))) + '.report.html'}",
    }


#: Why a skip reason usually dominates, and the setting that changes it (printed for the largest reason).
HINTS = {
    "word_unused": "words in no kept region or cell: labels the recipe does not keep (headers, footers: "
                   "recipes.<dataset>.labels), layout=false (finance_logistics), words below min_coverage, or "
                   "cells_replace=page; see recipes.<dataset>.* in docs/compose.md",
    "no_regions": "the layout model found no region above layout.threshold: check the model and the threshold",
    "no_words_assigned": "detected regions cover none of the page's labelled words: label coordinates and image "
                         "may disagree (scale, orientation)",
    "no_detections": "pages missing from the detections file: it was made from another manifest or split",
    "image_missing": "image files named in the manifest are gone: rerun `ocrvl prepare` or mount the images",
}

#: A writer busy for this share of the run is the pipeline's bottleneck (the report suggests shards).
WRITER_BOUND = 0.7

_SUMMED = ("pages_in", "pages_already_done", "pages_processed", "pages_ok", "samples_written", "num_samples")


def combine_reports(reports: dict[str, dict]) -> dict:
    """The per-split reports of one run as one dict: totals, ``splits`` and ``outputs``; a single split's
    report stays as it is (plus those two keys)."""
    if len(reports) == 1:
        [(split, only)] = reports.items()
        return {**only, "splits": reports, "outputs": {split: only["output"]}}
    out = {k: sum(r[k] for r in reports.values()) for k in _SUMMED}
    out["pages_skipped"] = {}
    for r in reports.values():
        for k, v in r["pages_skipped"].items():
            out["pages_skipped"][k] = out["pages_skipped"].get(k, 0) + v
    out.update(splits=reports, outputs={s: r["output"] for s, r in reports.items()})
    return out


def runs_dir(lmdb: str | os.PathLike) -> str:
    """``out/x_layout.lmdb`` -> ``out/x_layout.lmdb.runs`` (one ``<UTC time>.json`` per run)."""
    return str(Path(os.fspath(lmdb).rstrip("/\\"))) + ".runs"


def page_statuses(lmdb: str) -> Counter:
    """Pages by status, from the LMDB's page markers (all shards): what the whole LMDB holds, whatever runs made it
    (a run killed before its report still left its markers)."""
    from ocrvl_ray.lmdb import schema as S
    from ocrvl_ray.lmdb.shards import expand, is_sharded

    out: Counter = Counter()
    for path in expand(lmdb) if is_sharded(lmdb) else [lmdb]:
        if not os.path.isfile(os.path.join(path, "data.mdb")):
            continue
        env = S.open_readonly(path)
        try:
            with env.begin() as txn, txn.cursor() as cur:
                if cur.set_range(S.PAGE_PREFIX):
                    for k, v in cur:
                        if not k.startswith(S.PAGE_PREFIX):
                            break
                        out[json.loads(v).get("status", "unknown")] += 1
        finally:
            env.close()
    return out


def _add_counts(total: dict, more: dict) -> dict:
    for k, v in more.items():
        total[k] = total.get(k, 0) + v
    return total


def aggregate_runs(runs: list[dict], statuses: Counter) -> dict:
    """The LMDB's report over its runs (oldest first): page counts from its markers (``statuses``), samples and
    skips inside pages summed over the runs since the LMDB was started (the last run that found no page done;
    a deleted and remade LMDB starts afresh), the other keys from the last run."""
    start = max((i for i, r in enumerate(runs) if r["pages_already_done"] == 0), default=0)
    runs = runs[start:]
    out = dict(runs[-1])
    item, guard, page_ex = SkipCounter(), SkipCounter(), SkipCounter()
    for r in runs:
        item.merge(r.get("item_skips") or {})
        guard.merge(r.get("guards") or {})
        page_ex.merge({"counts": {}, "examples": r.get("page_skip_examples", {})})
    elapsed = sum(r["elapsed_s"] for r in runs)
    out.update(
        pages_done=sum(statuses.values()), pages_ok=statuses.get("ok", 0),
        pages_skipped={k: v for k, v in sorted(statuses.items()) if k != "ok"},
        page_skip_examples=page_ex.examples, item_skips=item.to_dict() if item.total else {},
        guards=guard.to_dict() if guard.total else {},
        pages_already_done=runs[0]["pages_already_done"],   # done before the first recorded run (e.g. killed)
        pages_processed=sum(r["pages_processed"] for r in runs),
        samples_written=sum(r["samples_written"] for r in runs),
        samples_by_kind=reduce(_add_counts, (r["samples_by_kind"] for r in runs), {}),
        samples_by_label=reduce(_add_counts, (r["samples_by_label"] for r in runs), {}),
        elapsed_s=round(elapsed, 2), writer_busy_s=round(sum(r.get("writer_busy_s", 0) for r in runs), 2),
        pages_per_s=round(sum(r["pages_processed"] for r in runs) / elapsed, 3) if elapsed > 0 else 0.0,
        runs=[r["run_json"] for r in runs if r.get("run_json")])
    return out


def _dump(obj: dict, path: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)


def write_report(report: dict, lmdb: str) -> str:
    """Keeps this run's report as ``<lmdb>.runs/<UTC time>.json`` and rewrites ``<lmdb>.report.json``, the whole
    LMDB over its runs (``aggregate_runs``); returns the latter's path (also set as ``report["report_json"]``)."""
    runs = Path(runs_dir(lmdb))
    runs.mkdir(parents=True, exist_ok=True)
    report["run_json"] = str(runs / (datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ") + ".json"))
    _dump(report, report["run_json"])
    history = [json.loads(p.read_text("utf-8")) for p in sorted(runs.glob("*.json"))]
    path = report_path(lmdb)
    _dump(aggregate_runs(history, page_statuses(lmdb)), path)
    report["report_json"] = path
    return path


def _pct(n: int, total: int) -> str:
    return f"{100 * n / total:.1f}%" if total else "-"


def print_report(report: dict) -> None:
    processed = report["pages_processed"]
    lines = [
        f"layout run [{report.get('split', '')}] -> {report['output']}",
        f"  pages in {report['pages_in']}  already done {report['pages_already_done']}  "
        f"processed {processed}  ok {report['pages_ok']} ({_pct(report['pages_ok'], processed)})  "
        f"({report['pages_per_s']} pages/s, {report['elapsed_s']} s)",
        f"  samples written {report['samples_written']}  (LMDB now holds {report['num_samples']})  "
        f"writer busy {report.get('writer_busy_s', 0)} s ({report.get('writer_busy_share', 0):.0%} of the run)",
    ]
    if report.get("writer_busy_share", 0) >= WRITER_BOUND and report["elapsed_s"] >= 60:
        lines.append("  note: the LMDB writer was busy most of the run, so it bounds the throughput: shards=N writes "
                     "N LMDB shards in parallel (docs/lmdb.md)")
    if report["samples_by_kind"]:
        lines.append("  by kind:  " + ", ".join(f"{k} {v}" for k, v in report["samples_by_kind"].items()))
    if report["samples_by_label"]:
        lines.append("  by label: " + ", ".join(f"{k} {v}" for k, v in report["samples_by_label"].items()))
    skipped = report["pages_skipped"]
    if skipped:
        lines.append(f"  pages skipped: {sum(skipped.values())} of {processed} ({_pct(sum(skipped.values()), processed)})")
        for reason, n in skipped.items():
            ex = report["page_skip_examples"].get(reason, [])
            lines.append(f"    {reason:<20} {n:>8} {_pct(n, processed):>7}" + (f"   e.g. {', '.join(ex[:2])}" if ex else ""))
    items = SkipCounter.from_dict(report["item_skips"])
    if items.total:
        lines.append(f"  words/regions skipped inside pages: {items.total} in all")
        lines += ["  " + line for line in items.lines()]
    reasons = {**skipped, **items.counts}
    if reasons:
        top = max(reasons, key=reasons.get)
        if top in HINTS:
            lines.append(f"  note: most skips are {top}: {HINTS[top]}")
    guards = SkipCounter.from_dict(report.get("guards", {}))
    if guards.total:
        lines.append("  guards (departures from the original, docs/compose.md):")
        lines += ["  " + line for line in guards.lines()]
    if report.get("report_json"):
        lines.append(f"  report: {report['report_json']}")
    if report.get("report_html"):
        lines.append(f"  data report: {report['report_html']}")
    else:
        lines.append(f"  data report: {report['inspect']}")
    print("\n".join(lines), flush=True)
