"""``ocrvl`` command line: one module per command in this package, imported only when used.

A command module provides ``add_arguments(parser)`` and ``run(args) -> int`` (or, for a command with
sub-commands of its own such as ``eval``, ``main(argv) -> int``); heavy imports (Ray, Paddle) happen inside
``run`` so ``ocrvl merge`` starts fast and small. ``jobs/*.py`` call ``main`` with their
command's name, so a Ray job and its command share arguments, defaults and exit codes.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from ocrvl_ray.core.errors import user_error

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "prepare": ("ocrvl_ray.cli.prepare", "read AI-Hub label files into a Parquet manifest of pages"),
    "lookup": ("ocrvl_ray.cli.lookup", "build or import the image-name -> path lookup index"),
    "layout": ("ocrvl_ray.cli.layout", "run the layout pipeline: manifest -> *_layout.lmdb"),
    "train": ("ocrvl_ray.cli.train", "LoRA SFT of PaddleOCR-VL with erniekit under Ray Train"),
    "merge": ("ocrvl_ray.cli.merge", "merge a LoRA checkpoint into the base model (HF layout export)"),
    "fix": ("ocrvl_ray.cli.fix", "repair a Paddle-layout merged safetensors file into HF layout"),
    "verify": ("ocrvl_ray.cli.verify", "check an export against its base (and adapter)"),
    "inspect": ("ocrvl_ray.cli.inspect", "summarise an LMDB: counts, histograms, contact sheet (HTML)"),
    "eval": ("ocrvl_ray.cli.eval", "run models on a validation LMDB and score them per slice (or: eval score)"),
    "pipeline": ("ocrvl_ray.cli.pipeline", "layout -> train -> merge in one resumable job (run manifest)"),
    "cluster-check": ("ocrvl_ray.cli.cluster_check", "check a Ray cluster.yaml offline against what the jobs request"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``ocrvl`` parser; only ``command``'s module is imported to add its arguments."""
    parser = argparse.ArgumentParser(prog="ocrvl", description="PaddleOCR-VL fine-tuning data, training and export on Ray")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if name == command:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv else None
    module = importlib.import_module(COMMANDS[command][0]) if command in COMMANDS else None
    if module is not None and hasattr(module, "main"):   # a command with sub-commands parses its own arguments
        return _guarded(command, lambda: module.main(argv[1:]))
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    return _guarded(args.command, lambda: module.run(args))


def _guarded(command: str, run) -> int:
    try:
        return int(run() or 0)
    except Exception as e:  # a user error, possibly raised inside a Ray task: one line, exit 2
        err = user_error(e)
        if err is None:
            raise
        print(f"ocrvl {command}: error: {err}", file=sys.stderr)
        return 2
