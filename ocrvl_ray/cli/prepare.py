"""``ocrvl prepare``: AI-Hub label files -> Parquet manifest of pages (+ ``<name>.report.json``)."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ocrvl_ray.ingest.readers import FAMILIES

    p.add_argument("--dataset", default="auto", metavar="NAME",
                   help=f"label family: auto (detect from content) or one of {', '.join(FAMILIES)}")
    p.add_argument("--labels", nargs="+", required=True, metavar="PATH",
                   help="label files or folders (searched recursively for *.json)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", nargs="+", metavar="ROOT", help="image folders to index now")
    src.add_argument("--lookup", metavar="FILE", help="lookup index (.parquet from `ocrvl lookup`, or legacy .pkl.gz)")
    p.add_argument("--out", default="manifest.parquet", help="manifest to write (default: %(default)s)")
    p.add_argument("--split", default=None,
                   help="force this split for every page (default: Training/Validation folders; "
                        "text_in_wild: seeded hash; otherwise 'train')")
    p.add_argument("--seed", type=int, default=42, help="text_in_wild split seed (default: %(default)s)")
    p.add_argument("--valid-fraction", type=float, default=0.1,
                   help="text_in_wild share of valid pages (default: %(default)s)")
    p.add_argument("--files-per-task", type=int, default=256, help="label files per Ray task (default: %(default)s)")
    p.add_argument("--stream-above-mb", type=float, default=64,
                   help="label files larger than this are streamed (default: %(default)s MB)")
    p.add_argument("--partition-mb", type=float, default=32,
                   help="streamed files are joined in partitions of about this much JSON; a partition needs "
                        "roughly 10x its size in memory (default: %(default)s MB)")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local Ray (ignored on a cluster)")
    p.add_argument("--no-ray", action="store_true", help="read in this process only (small inputs)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def run(args: argparse.Namespace) -> int:
    from ocrvl_ray.core.errors import check_output_path
    from ocrvl_ray.ingest.prepare import prepare, summary_lines

    check_output_path(args.out, "--out")  # before Ray starts and before any work
    if not args.no_ray:
        from ocrvl_ray.core.runtime import init_ray
        init_ray(num_cpus=args.num_cpus)
    summary = prepare(args.dataset, args.labels, images=args.images, lookup=args.lookup, out=args.out,
                      split=args.split, seed=args.seed, valid_fraction=args.valid_fraction,
                      files_per_task=args.files_per_task, stream_above_mb=args.stream_above_mb,
                      partition_mb=args.partition_mb,
                      use_ray=not args.no_ray, progress=not args.quiet)
    print("\n".join(summary_lines(summary)))
    return 0 if summary["pages"] else 1
