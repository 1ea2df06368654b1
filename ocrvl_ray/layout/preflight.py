"""Everything the layout job can check before Ray starts: the manifest, the models, the output paths.

Each failure is one ``OcrvlError`` line naming the file or key and the fix.
"""
from __future__ import annotations

import os
from pathlib import Path

from ocrvl_ray.core.errors import OcrvlError, check_output_path
from ocrvl_ray.core.records import PAGE_FIELDS


def manifest_splits(manifest: str) -> list[str]:
    """The manifest's splits (sorted); refuses files that are not a manifest from ``ocrvl prepare``."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    fix = f"build one with `ocrvl prepare ... --out {manifest}`"
    if not Path(manifest).exists():
        raise OcrvlError(f"manifest={manifest} does not exist; {fix}")
    try:
        ds = pads.dataset(manifest, format="parquet")
        schema = ds.schema
    except (pa.ArrowInvalid, OSError) as e:
        raise OcrvlError(f"manifest={manifest} is not a Parquet file ({str(e).splitlines()[0][:120]}); {fix}") from None
    kind = (schema.metadata or {}).get(b"ocrvl.schema")
    if kind == b"lookup":
        raise OcrvlError(f"manifest={manifest} is a lookup index, not a manifest; {fix.replace('build one', 'build the manifest')} "
                         f"(pass the index as --lookup)")
    missing = [f for f in PAGE_FIELDS if f not in schema.names]
    if missing:
        raise OcrvlError(f"manifest={manifest} lacks the columns {', '.join(missing)}: it is not a manifest; {fix}")
    splits = pc.unique(ds.to_table(columns=["split"]).column("split")).to_pylist()
    return sorted(str(s) for s in splits if s is not None)


def manifest_datasets(manifest: str, split: str) -> list[str]:
    """The datasets the manifest's ``split`` holds (sorted): whose recipes a run of it resolves."""
    import pyarrow.compute as pc
    import pyarrow.dataset as pads

    col = pads.dataset(manifest, format="parquet").to_table(columns=["dataset"],
                                                            filter=pads.field("split") == split).column("dataset")
    return sorted(str(d) for d in pc.unique(col).to_pylist() if d is not None)


def check_models(cfg) -> list[str]:
    """Given model folders must hold an exported model (the detector actors check the same when they load);
    returns notes for official weights that are not in the paddlex cache yet (downloaded on first use)."""
    from ocrvl_ray.layout.stages.actors import check_model_dir, official_model_cache

    if cfg.detections:
        return []
    notes = []
    pools = [("layout", "layout", cfg.layout)] + ([("cells", "table-cell", cfg.cells)] if cfg.cells.enabled else [])
    if cfg.layout.engine == "transformers":
        check_transformers_layout(cfg.layout)
        pools = pools[1:]
    if cfg.cells.enabled and cfg.cells.engine == "transformers":
        from ocrvl_ray.layout.engines.transformers_cells import preflight

        preflight(cfg.cells)
        pools = [p for p in pools if p[0] != "cells"]
    for key, what, pool in pools:
        check_model_dir(pool.model_dir, what, f"{key}.model_dir")
        cached = official_model_cache(pool.model_name)
        if pool.model_dir is None and not (cached / "inference.yml").is_file():
            notes.append(f"{key}: {pool.model_name} is not in the paddlex cache ({cached}); paddleocr downloads it "
                         f"on first use (needs internet; offline, set {key}.model_dir=DIR or demo_models=true)")
    return notes


def check_transformers_layout(sec) -> None:
    """``layout.engine=transformers``: torch and transformers importable, the model's classes in this transformers
    (PP-DocLayoutV4 needs >= 5.20), ``layout.model_dir`` a transformers folder holding ``layout.model_name``."""
    from ocrvl_ray.layout.engines.configs import CLASS_PREFIX, FIRST_RELEASE

    version = {f"PP-DocLayout{v.upper()}": v for v in CLASS_PREFIX}.get(sec.model_name)
    if version is None:
        raise OcrvlError(f"layout.model_name={sec.model_name}: layout.engine=transformers runs "
                         f"{', '.join(f'PP-DocLayout{v.upper()}' for v in CLASS_PREFIX)}; set layout.model_name to "
                         f"one of them or layout.engine=paddle")
    try:
        import torch  # noqa: F401
        import transformers
    except ImportError as e:
        raise OcrvlError(f"layout.engine=transformers needs torch and transformers >= {FIRST_RELEASE[version]} "
                         f"({e.name} is missing here): build .venv-torch with ./install.sh torch and run from it"
                         ) from None
    from ocrvl_ray.layout.engines.configs import available_versions
    from ocrvl_ray.layout.engines.transformers_detector import check_model_folder

    if version not in available_versions():
        raise OcrvlError(f"layout.model_name={sec.model_name} (model_version=v1.8 presets it) needs transformers >= "
                         f"{FIRST_RELEASE[version]}, this environment has {transformers.__version__}; upgrade it "
                         f"(./install.sh torch) or set model_version=v1.6 for PP-DocLayoutV3")
    if sec.model_dir is None:
        raise OcrvlError(f"layout.engine=transformers needs layout.model_dir=DIR, a transformers {sec.model_name} "
                         f"folder (config.json, model.safetensors, preprocessor_config.json; "
                         f"`ocrvl convert-detector --from PADDLE_DIR --out DIR` makes one)")
    _, found = check_model_folder(sec.model_dir, "layout.model_dir")
    if found != version:
        raise OcrvlError(f"layout.model_dir={sec.model_dir} holds PP-DocLayout{found.upper()}, but layout.model_name="
                         f"{sec.model_name}; set layout.model_name=PP-DocLayout{found.upper()} (or the model_version "
                         f"that presets it)")


def check_detections(path: str, split: str) -> str:
    p = path.replace("{split}", split)
    if not os.path.exists(p):
        raise OcrvlError(f"detections={p} does not exist; give the <output>.detections.parquet a layout run wrote "
                         f"(or a Parquet file with its columns, docs/detections.md)")
    return p


def check_output(output: str) -> str:
    """The LMDB folder: writable, no spaces (the erniekit reader strips them), not a file."""
    return check_output_path(output, "output", folder=True, no_spaces=True)

