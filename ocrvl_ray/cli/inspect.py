"""``ocrvl inspect LMDB [--html [report.html]]``: console summary and optional self-contained HTML report."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("lmdb", nargs="?", help="the LMDB directory (e.g. out/sample_layout.lmdb)")
    p.add_argument("--html", nargs="?", const="", default=None, metavar="FILE",
                   help="write the HTML report (default file: <lmdb>.report.html)")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    p.add_argument("--contact", type=int, default=48, metavar="N", help="crops on the contact sheet (default 48)")
    p.add_argument("--examples", type=int, default=12, metavar="N",
                   help="examples kept per suspicious reason (default 12)")
    p.add_argument("--long-label", type=int, default=1000, metavar="CHARS",
                   help="labels longer than this are flagged (default 1000)")
    p.add_argument("--blank-std", type=float, default=3.0, metavar="STD",
                   help="crops with grayscale std below this are flagged near-blank (default 3.0)")
    p.add_argument("--strict", action="store_true", help="exit 1 when the health check finds problems")


def run(args: argparse.Namespace) -> int:
    from ocrvl_ray.report.inspect import format_summary, inspect_lmdb

    lmdb, html = _lmdb_and_html(args.lmdb, args.html)
    report = inspect_lmdb(lmdb, html=html, contact=args.contact, examples=args.examples,
                          long_label=args.long_label, blank_std=args.blank_std)
    print(format_summary(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    return 1 if args.strict and not report["health"]["ok"] else 0


def _lmdb_and_html(lmdb: str | None, html: str | None) -> tuple[str, str | bool | None]:
    """(LMDB path, ``inspect_lmdb``'s ``html``). ``--html X.lmdb`` with no other path means the default report
    of X.lmdb: argparse hands the path to ``--html``, which takes an optional file."""
    from ocrvl_ray.core.errors import OcrvlError

    if lmdb is None and html and not html.lower().endswith((".html", ".htm")):
        lmdb, html = html, ""
    if lmdb is None:
        raise OcrvlError("give the LMDB folder to inspect, e.g. ocrvl inspect out/sample_layout.lmdb --html")
    return lmdb, None if html is None else (html or True)
