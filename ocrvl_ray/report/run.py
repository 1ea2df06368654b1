"""The layout job's run report: what went in, what came out, what was skipped and why, how fast."""
from __future__ import annotations

import json
import os
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
        "inspect": f"ocrvl inspect {cfg.output} --html {str(Path(cfg.output.rstrip('/'))) + '.report.html'}",
    }


def write_report(report: dict, lmdb: str) -> str:
    path = report_path(lmdb)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)
    report["report_json"] = path
    return path


def print_report(report: dict) -> None:
    lines = [
        f"layout run -> {report['output']}",
        f"  pages in {report['pages_in']}  already done {report['pages_already_done']}  "
        f"processed {report['pages_processed']}  ok {report['pages_ok']}  "
        f"({report['pages_per_s']} pages/s, {report['elapsed_s']} s)",
        f"  samples written {report['samples_written']}  (LMDB now holds {report['num_samples']})",
    ]
    if report["samples_by_kind"]:
        lines.append("  by kind:  " + ", ".join(f"{k} {v}" for k, v in report["samples_by_kind"].items()))
    if report["samples_by_label"]:
        lines.append("  by label: " + ", ".join(f"{k} {v}" for k, v in report["samples_by_label"].items()))
    if report["pages_skipped"]:
        lines.append("  pages skipped:")
        for reason, n in report["pages_skipped"].items():
            ex = report["page_skip_examples"].get(reason, [])
            lines.append(f"    {reason:<20} {n:>8}" + (f"   e.g. {', '.join(ex[:3])}" if ex else ""))
    items = SkipCounter.from_dict(report["item_skips"])
    if items.total:
        lines.append("  words/regions skipped inside pages:")
        lines += ["  " + line for line in items.lines()]
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
