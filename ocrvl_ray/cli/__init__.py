"""``ocrvl`` command line: one module per command in this package, imported only when used.

One convention for every command: ``ocrvl CMD [PATH ...] [config.yaml] [key=value ...]`` over the command's
pydantic config, ``--key-name VALUE`` as the same key (the flags README and docs show), ``ocrvl CMD --help``
generated from the model (every key with its default and description), and one error handler: a user error
(``OcrvlError`` / ``ConfigError``, also one raised inside a Ray task) is one line, exit 2, no traceback.

A command module provides ``SPEC`` (a :class:`Spec`), or ``SPECS`` (name -> Spec) and ``DEFAULT`` (the
sub-command a bare ``ocrvl CMD`` runs, or None) for commands with sub-commands (``eval run|score``,
``lookup build|import``). Heavy imports (Ray, Paddle) happen inside ``Spec.run`` so ``ocrvl merge``
starts fast and small. ``jobs/*.py`` call :func:`main` with their command's name, so a Ray job and its
command share arguments, defaults and exit codes.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import sys
import textwrap
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

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
    "reshard": ("ocrvl_ray.cli.reshard", "copy an LMDB into N shards (one or more per training rank), verified"),
    "inspect": ("ocrvl_ray.cli.inspect", "summarise an LMDB: counts, histograms, contact sheet (HTML)"),
    "eval": ("ocrvl_ray.cli.eval", "run models on a validation LMDB and score them per slice (or: eval score)"),
    "pipeline": ("ocrvl_ray.cli.pipeline", "layout -> train -> merge -> eval in one resumable job (run manifest)"),
    "demo-loop": ("ocrvl_ray.cli.demo_loop", "the whole loop offline on CPU: sample -> layout -> tiny model -> train -> merge -> eval"),
    "cluster-check": ("ocrvl_ray.cli.cluster_check", "check a Ray cluster.yaml offline against what the jobs request"),
    "convert-detector": ("ocrvl_ray.cli.convert_detector", "convert a Paddle layout or table-cell checkpoint to a transformers folder"),
}


@dataclass(frozen=True)
class Spec:
    """How a command's arguments map onto its pydantic config."""
    config: str                                   # "module:Class" of the config model (imported when used)
    run: Callable[[Any], Optional[int]]           # run(config) -> exit code
    usage: str = "[key=value ...]"                # the synopsis after ``ocrvl CMD``
    positionals: tuple[str, ...] = ()             # keys that bare arguments fill, in order (a list key: the rest)
    yaml: bool = False                            # a bare *.yaml / *.yml argument is a config file of these keys
    aliases: Mapping[str, str] = field(default_factory=dict)   # extra --flag -> key, e.g. --model -> models
    help: str = ""                                # description (default: the command's line in COMMANDS)
    note: str = ""                                # a paragraph after the keys (e.g. what else the command accepts)
    load: Optional[Callable[[list[str]], Any]] = None   # its own argv -> config (train: erniekit's keys pass through)

    def model(self):
        module, _, name = self.config.partition(":")
        return getattr(importlib.import_module(module), name)

    def parse(self, argv: list[str]) -> Any:
        """argv (after the command's name) -> the validated config."""
        if self.load is not None:
            return self.load(argv)
        from ocrvl_ray.core.config import load_config, parse_argv

        model = self.model()
        yaml_path, overrides = parse_argv(model, argv, positionals=self.positionals, yaml=self.yaml,
                                          aliases=self.aliases)
        return load_config(model, yaml_path, overrides)

    def help_text(self, prog: str, description: str) -> str:
        from ocrvl_ray.core.config import describe_keys, flag_names

        model = self.model()
        aliases = "".join(f"; {flag} = {key}" for flag, key in self.aliases.items())
        how = ("Each key is key=value (nested keys with dots: a.b=value)"
               + (", or in a YAML file of the same keys" if self.yaml else "")
               + (f"; bare arguments fill {', '.join(self.positionals)}" if self.positionals else "")
               + ("; a top-level key also as --key-name VALUE (booleans: --key / --no-key)" if flag_names(model)
                  else "") + aliases + ".")
        lines = [f"usage: {prog} {self.usage}", "", self.help or description, "", *textwrap.wrap(how, 110), ""]
        if self.note:
            lines += [*textwrap.wrap(self.note, 110), ""]
        lines.append("config keys (defaults shown):")
        lines += ["  " + ln for ln in describe_keys(model)]
        return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The top-level ``ocrvl`` parser (the list of commands); each command parses its own arguments."""
    parser = argparse.ArgumentParser(prog="ocrvl", description="PaddleOCR-VL fine-tuning data, training and export on Ray")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, description=help_text, add_help=False)
    return parser


def command_spec(command: str, argv: list[str]) -> tuple[str, Spec, list[str]]:
    """(program name, spec, remaining argv) of ``ocrvl COMMAND argv...``, sub-commands resolved."""
    module = importlib.import_module(COMMANDS[command][0])
    specs: Mapping[str, Spec] | None = getattr(module, "SPECS", None)
    if specs is None:
        return f"ocrvl {command}", module.SPEC, argv
    if argv[:1] and argv[0] in specs:
        return f"ocrvl {command} {argv[0]}", specs[argv[0]], argv[1:]
    default = getattr(module, "DEFAULT", None)
    if default is None:
        return f"ocrvl {command}", None, argv
    return f"ocrvl {command}", specs[default], argv


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv else None
    if command not in COMMANDS:
        parser = build_parser()
        if command is None or command in ("-h", "--help"):
            parser.print_help(sys.stdout if command else sys.stderr)
            return 0 if command else 2
        close = difflib.get_close_matches(command, list(COMMANDS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; one of {', '.join(COMMANDS)}"
        print(f"ocrvl: error: unknown command {command!r}{hint}", file=sys.stderr)
        return 2
    prog, spec, rest = command_spec(command, argv[1:])
    if spec is None:
        subs = getattr(importlib.import_module(COMMANDS[command][0]), "SPECS")
        if any(a in ("-h", "--help") for a in rest):
            print(f"usage: {prog} {{{'|'.join(subs)}}} ...  (ocrvl {command} ACTION --help for its keys)")
            return 0
        return _report(command, f"give the action first: {prog} {' | '.join(subs)} ...")
    if any(a in ("-h", "--help") for a in rest):
        print(spec.help_text(prog, COMMANDS[command][1]))
        return 0
    return _guarded(command, lambda: spec.run(spec.parse(rest)))


def _guarded(command: str, run: Callable[[], Optional[int]]) -> int:
    """The one error handler: a user error, possibly raised inside a Ray task, is one line and exit 2; Ctrl-C is one
    line and exit 130 (every job resumes from what it committed)."""
    try:
        return int(run() or 0)
    except KeyboardInterrupt:
        print(f"ocrvl {command}: interrupted; rerun the same command to resume", file=sys.stderr, flush=True)
        return 130
    except Exception as e:
        err = user_error(e)
        if err is None:
            raise
        return _report(command, err)


def _report(command: str, err: Any) -> int:
    print(f"ocrvl {command}: error: {err}", file=sys.stderr)
    return 2
