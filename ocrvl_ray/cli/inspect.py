"""``ocrvl inspect LMDB [--html [report.html]]``: console summary and optional self-contained HTML report."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional, Union

from pydantic import Field

from ocrvl_ray.cli import Spec
from ocrvl_ray.core.config import JobConfig


class InspectConfig(JobConfig):
    lmdb: Optional[str] = Field(None, description="the LMDB directory (e.g. out/sample_layout.lmdb)")
    html: Union[bool, str] = Field(False, description="write the HTML report: true = <lmdb>.report.html, or a "
                                                      "file name (--html [FILE])")
    json_file: Optional[str] = Field(None, description="also write the report as JSON (--json FILE)")
    contact: int = Field(48, ge=0, description="crops on the contact sheet")
    examples: int = Field(12, ge=0, description="examples kept per suspicious reason")
    long_label: int = Field(1000, ge=1, description="labels longer than this (characters) are flagged")
    blank_std: float = Field(3.0, ge=0, description="crops with grayscale std below this are flagged near-blank")
    strict: bool = Field(False, description="exit 1 when the health check finds problems")


def run(cfg: InspectConfig) -> int:
    from ocrvl_ray.core.errors import check_output_path
    from ocrvl_ray.report.inspect import default_html_path, format_summary, inspect_lmdb

    lmdb, html = _lmdb_and_html(cfg.lmdb, cfg.html)
    if html is not None:   # the output files can be written: checked before the LMDB is read
        check_output_path(default_html_path(lmdb) if html is True else str(html), "--html")
    if cfg.json_file:
        check_output_path(cfg.json_file, "--json")
    report = inspect_lmdb(lmdb, html=html, contact=cfg.contact, examples=cfg.examples,
                          long_label=cfg.long_label, blank_std=cfg.blank_std)
    if cfg.json_file:
        Path(cfg.json_file).write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    try:
        print(format_summary(report), flush=True)
    except BrokenPipeError:   # `ocrvl inspect ... | head`: the reader left; end quietly (Python's own recipe)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 1 if cfg.strict and not report["health"]["ok"] else 0


def _lmdb_and_html(lmdb: str | None, html: bool | str) -> tuple[str, str | bool | None]:
    """(LMDB path, ``inspect_lmdb``'s ``html``). ``--html X.lmdb`` with no other path means the default report
    of X.lmdb: the flag takes an optional file, so the path lands in ``html``."""
    from ocrvl_ray.core.errors import OcrvlError

    if lmdb is None and isinstance(html, str) and html and not html.lower().endswith((".html", ".htm")):
        lmdb, html = html, True
    if lmdb is None:
        raise OcrvlError("give the LMDB folder to inspect, e.g. ocrvl inspect out/sample_layout.lmdb --html")
    return lmdb, None if html is False else (html or True)


SPEC = Spec("ocrvl_ray.cli.inspect:InspectConfig", run, usage="LMDB [--html [FILE]] [--json FILE] [key=value ...]",
            positionals=("lmdb",), aliases={"--json": "json_file"})
