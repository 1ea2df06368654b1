"""``ocrvl lookup build ROOT... --out F`` / ``ocrvl lookup import legacy.pkl.gz --out F``: the image index."""
from __future__ import annotations

import json
import sys
from typing import Optional

from pydantic import Field

from ocrvl_ray.cli import Spec
from ocrvl_ray.core.config import JobConfig


class LookupOut(JobConfig):
    out: str = Field("lookup.parquet", description="index to write (and <name>.report.json beside it)")


class LookupBuildConfig(LookupOut):
    roots: list[str] = Field(min_length=1, description="image folders")
    num_cpus: Optional[int] = Field(None, ge=1, description="CPUs of a local Ray (ignored on a cluster)")
    ray: Optional[bool] = Field(None, description="false (--no-ray): scan in this process only; null: Ray only "
                                                  "for trees wide enough to gain from it")


class LookupImportConfig(LookupOut):
    legacy: str = Field(description="lookup_<name>.pkl.gz or .pkl (never runs code from it)")
    stat: bool = Field(False, description="record file sizes (stats every path)")


def run(cfg: LookupBuildConfig | LookupImportConfig) -> int:
    from ocrvl_ray.core.errors import check_output_path
    from ocrvl_ray.ingest.lookup import MATCH_EXTS, build_lookup, import_legacy, write_lookup
    from ocrvl_ray.ingest.prepare import report_path

    check_output_path(cfg.out, "out")
    if isinstance(cfg, LookupBuildConfig):
        if cfg.num_cpus and cfg.ray is not False:
            from ocrvl_ray.core.runtime import init_ray
            init_ray(num_cpus=cfg.num_cpus)
        table, report = build_lookup(cfg.roots, use_ray=cfg.ray)
    else:
        table, report = import_legacy(cfg.legacy, stat=cfg.stat)
    write_lookup(table, cfg.out)
    report["out"] = cfg.out
    with open(report_path(cfg.out), "w", encoding="utf-8") as f:
        json.dump(report, f, ensure_ascii=False, indent=2)
    print(f"lookup {cfg.out}: {table.num_rows} images")
    if not table.num_rows:
        print(f"warning: no {'/'.join(MATCH_EXTS)} images under {', '.join(getattr(cfg, 'roots', None) or [cfg.legacy])}"
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
    print(f"report: {report_path(cfg.out)}")
    return 0


SPECS = {
    "build": Spec("ocrvl_ray.cli.lookup:LookupBuildConfig", run, usage="ROOT... [--out lookup.parquet] [key=value ...]",
                  positionals=("roots",), help="index image folders (big trees are scanned in parallel on Ray)"),
    "import": Spec("ocrvl_ray.cli.lookup:LookupImportConfig", run,
                   usage="legacy.pkl.gz [--out lookup.parquet] [--stat] [key=value ...]", positionals=("legacy",),
                   help="convert the original lookup_<name>.pkl.gz (never runs code from it)"),
}
DEFAULT = None
