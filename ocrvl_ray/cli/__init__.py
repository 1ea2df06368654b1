"""``ocrvl`` command line: each subcommand lives beside its stage and is imported only when used.

A subcommand module provides ``add_arguments(parser)`` and ``run(args) -> int``; heavy imports
(Ray, Paddle) happen inside ``run`` so ``ocrvl merge`` starts fast and small.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from ocrvl_ray.errors import OcrvlError

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("ocrvl_ray.sources.cli_prepare", "read AI-Hub label files into a Parquet manifest of pages"),
    "lookup": ("ocrvl_ray.sources.cli_lookup", "build or import the image-name -> path lookup index"),
    "layout": ("ocrvl_ray.pipeline_cli", "run the layout pipeline: manifest -> *_layout.lmdb"),
    "train": ("ocrvl_ray.train.cli", "LoRA SFT of PaddleOCR-VL with erniekit under Ray Train"),
    "merge": ("ocrvl_ray.export.cli_merge", "merge a LoRA checkpoint into the base model (HF layout export)"),
    "fix": ("ocrvl_ray.export.cli_fix", "repair a Paddle-layout merged safetensors file into HF layout"),
    "verify": ("ocrvl_ray.export.cli_verify", "check an export against its base (and adapter)"),
    "inspect": ("ocrvl_ray.report.cli_inspect", "summarise an LMDB: counts, histograms, contact sheet (HTML)"),
    "pipeline": ("ocrvl_ray.workflow_cli", "layout -> train -> merge in one resumable job (run manifest)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ocrvl", description="PaddleOCR-VL fine-tuning data, training and export on Ray")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if _wants(name):
            importlib.import_module(module).add_arguments(p)
    return parser


def _wants(name: str) -> bool:
    argv = sys.argv[1:]
    return bool(argv) and argv[0] == name


def main(argv: list[str] | None = None) -> int:
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:])
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except OcrvlError as e:
        print(f"ocrvl {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
