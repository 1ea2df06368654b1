"""``ocrvl inspect``: a data report of a layout LMDB.

collect.py  one streaming pass: counts, histograms, character classes, suspicious samples, health, identity
text.py     the console summary
html.py     the self-contained HTML report
"""
from __future__ import annotations

import os
from pathlib import Path

from ocrvl_ray.report.inspect.collect import Histogram, char_class, collect_lmdb, contact_indices, unusual_chars
from ocrvl_ray.report.inspect.html import render_html
from ocrvl_ray.report.inspect.text import format_summary

__all__ = ["Histogram", "char_class", "contact_indices", "default_html_path", "format_summary", "inspect_lmdb",
           "unusual_chars"]


def default_html_path(lmdb: str | os.PathLike) -> str:
    """``out/x_layout.lmdb`` -> ``out/x_layout.lmdb.report.html`` (beside the LMDB directory)."""
    return str(Path(os.fspath(lmdb).rstrip("/\\"))) + ".report.html"


def inspect_lmdb(path: str | os.PathLike, html: str | os.PathLike | bool | None = None, contact: int = 48, *,
                 examples: int = 12, long_label: int = 1000, blank_std: float = 3.0) -> dict:
    """Summarise the LMDB at ``path``; write a self-contained HTML report to ``html`` when given
    (``html=True``: ``default_html_path(path)``).

    Returns a JSON-serialisable dict (counts, histograms, char classes, suspicious, contact, health, and
    ``identity``: the recorded snapshot of what made the LMDB, or None).
    A shard folder (``shards=N``): one report per shard under ``shards`` (HTML beside each shard, or ``html``
    with the shard's name before the suffix), ``health.ok`` of them all, ``html`` the list of files.
    """
    from ocrvl_ray.lmdb.shards import expand, is_sharded

    if is_sharded(path):
        parts = []
        for shard in expand(path):
            name = Path(shard).name
            one = html if html in (None, False, True) else Path(html).with_suffix(f".{name}{Path(html).suffix}")
            parts.append(inspect_lmdb(shard, one, contact, examples=examples, long_label=long_label,
                                      blank_std=blank_std))
        return {"path": os.fspath(path), "shards": parts, "num_samples": sum(p["num_samples"] or 0 for p in parts),
                "identity": parts[0]["identity"] if parts else None,   # every shard holds the same record
                "health": {"ok": all(p["health"]["ok"] for p in parts)},
                "html": [p["html"] for p in parts] if html else None}
    if html is True:
        html = default_html_path(path)
    report, thumbs = collect_lmdb(path, contact, examples=examples, long_label=long_label, blank_std=blank_std)
    if html:
        Path(html).parent.mkdir(parents=True, exist_ok=True)
        Path(html).write_text(render_html(report, thumbs), encoding="utf-8")
        report["html"] = str(html)
    return report
