"""``ocrvl prepare``: AI-Hub label files -> Parquet manifest of pages (+ ``<name>.report.json``)."""
from __future__ import annotations

from ocrvl_ray.cli import Spec


def run(cfg) -> int:
    from ocrvl_ray.ingest.prepare import check_inputs, prepare, summary_lines

    check_inputs(cfg)  # paths and options, before Ray starts and before any work
    if cfg.ray:
        from ocrvl_ray.core.runtime import init_ray
        init_ray(num_cpus=cfg.num_cpus)
    summary = prepare(cfg, use_ray=cfg.ray)
    print("\n".join(summary_lines(summary)))
    return 0 if summary["pages"] else 1


SPEC = Spec("ocrvl_ray.ingest.prepare:PrepareConfig", run, yaml=True,
            usage="--labels PATH... (--images ROOT... | --lookup FILE) [--out manifest.parquet] [key=value ...]")
