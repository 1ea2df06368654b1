"""``ocrvl lookup build ROOT... --out F`` / ``ocrvl lookup import legacy.pkl.gz --out F``: the image index."""
from __future__ import annotations

import argparse
import json
import sys

from ocrvl_ray.ingest.lookup import MATCH_EXTS


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="index image folders (big trees are scanned in parallel on Ray)")
    b.add_argument("roots", nargs="+", metavar="ROOT", help="image folders")
    b.add_argument("--out", default="lookup.parquet", help="index to write (default: %(default)s)")
    b.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray (ignored on a cluster)")
    b.add_argument("--no-ray", action="store_true", help="scan in this process only (default: Ray only for "
                                                          "trees wide enough to gain from it)")
    i = sub.add_parser("import", help="convert the original lookup_<name>.pkl.gz (never runs code from it)")
    i.add_argument("legacy", help="lookup_<name>.pkl.gz or .pkl")
    i.add_argument("--out", default="lookup.parquet", help="index to write (default: %(default)s)")
    i.add_argument("--stat", action="store_true", help="record file sizes (stats every path)")


def run(args: argparse.Namespace) -> int:
    from ocrvl_ray.ingest.lookup import build_lookup, import_legacy, write_lookup
    from ocrvl_ray.core.errors import check_output_path
    from ocrvl_ray.ingest.prepare import report_path

    check_output_path(args.out, "--out")
    if args.action == "build":
        if args.num_cpus and not args.no_ray:
            from ocrvl_ray.core.runtime import init_ray
            init_ray(num_cpus=args.num_cpus)
        table, report = build_lookup(args.roots, use_ray=False if args.no_ray else None)
    else:
        table, report = import_legacy(args.legacy, stat=args.stat)
    write_lookup(table, args.out)
    report["out"] = args.out
    with open(report_path(args.out), "w", encoding="utf-8") as f:
        json.dump(report, f, ensure_ascii=False, indent=2)
    print(f"lookup {args.out}: {table.num_rows} images")
    if not table.num_rows:
        print(f"warning: no {'/'.join(MATCH_EXTS)} images under {', '.join(getattr(args, 'roots', None) or [args.legacy])}"
              f"; check the path", file=sys.stderr)
    col = report["collisions"]
    if col["names"]:
        print(f"  {col['names']} file names are shared by {col['files']} files (all kept; matching them "
              f"needs the split folder or label folder to decide, else they are skipped as image_ambiguous)")
        for ex in col["examples"][:3]:
            print(f"    {ex['name']}: {', '.join(ex['paths'][:3])}")
    if report.get("aliases"):
        print(f"  {report['aliases']} legacy keys are not file names; kept as aliases "
              f"(e.g. {', '.join(report['alias_examples'][:3])})")
    if report.get("unreadable_count"):
        print(f"  {report['unreadable_count']} folders could not be read (see the report)")
    print(f"report: {report_path(args.out)}")
    return 0
