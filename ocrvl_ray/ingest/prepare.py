"""``prepare``: label files -> one Parquet manifest of pages (``records.PAGE_SCHEMA``) with image paths.

Work is cut into units that do not depend on the cluster: chunks of ``files_per_task`` small label files
(in sorted path order) and one unit per huge collection file (streamed, see ``files.py``). Units run as Ray
tasks; the driver consumes their tables in unit order, resolves image paths through the lookup index,
drops duplicates and writes row groups as they arrive, so it never holds all pages and the manifest is
identical whatever the number of workers.
"""
from __future__ import annotations

import difflib
import json
import os
import re
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field
from tqdm import tqdm

from ocrvl_ray.core.config import JobConfig
from ocrvl_ray.core.errors import OcrvlError, check_output_path
from ocrvl_ray.core.records import PAGE_SCHEMA
from ocrvl_ray.core.skips import Skip, SkipCounter
from ocrvl_ray.ingest.batch import Source
from ocrvl_ray.ingest.files import read_files, stream_collection
from ocrvl_ray.ingest.lookup import MATCH_EXTS, LookupIndex, build_lookup, load_lookup, stem_of
from ocrvl_ray.ingest.readers import FAMILIES, READERS, Options
from ocrvl_ray.ingest.scan import scan
from ocrvl_ray.ingest.splits import split_of_file

DEFAULT_SPLIT = "train"


class PrepareConfig(JobConfig):
    """``ocrvl prepare``'s keys; :func:`prepare` takes this (its defaults are the only ones)."""
    dataset: str = Field("auto", description=f"label family: auto (detect from content) or one of "
                                             f"{', '.join(FAMILIES)}")
    labels: list[str] = Field(description="label files or folders (searched recursively for *.json)")
    images: Optional[list[str]] = Field(None, description="image folders to index now (or lookup)")
    lookup: Optional[str] = Field(None, description="lookup index (.parquet from `ocrvl lookup`, or legacy .pkl.gz); "
                                                    "instead of images")
    out: str = Field("manifest.parquet", description="the manifest to write (and <name>.report.json beside it)")
    split: Optional[str] = Field(None, description="force this split for every page; null: Training/Validation "
                                                   "folders, text_in_wild a seeded hash, otherwise 'train'")
    seed: int = Field(42, description="text_in_wild split seed")
    valid_fraction: float = Field(0.1, description="text_in_wild share of valid pages")
    files_per_task: int = Field(256, ge=1, description="label files per Ray task")
    stream_above_mb: float = Field(64, ge=0, description="label files larger than this (MB) are streamed")
    partition_mb: float = Field(32, gt=0, description="streamed files are joined in partitions of about this much "
                                                      "JSON; a partition needs roughly 10x its size in memory")
    num_cpus: Optional[int] = Field(None, ge=1, description="CPUs of a local Ray (ignored on a cluster)")
    ray: bool = Field(True, description="false (--no-ray): read in this process only (small inputs)")
    quiet: bool = Field(False, description="no progress lines")


@dataclass
class Unit:
    sources: list[Source]
    stream: bool = False


def report_path(out: str) -> str:
    """``manifest.parquet`` -> ``manifest.report.json`` (beside it)."""
    base, ext = os.path.splitext(out)
    return (base if ext == ".parquet" else out) + ".report.json"


def plan(files: list[tuple[str, int]], roots: list[str], split: str | None, files_per_task: int,
         stream_above: int) -> tuple[list[Unit], int]:
    """Sorted label files -> units; also how many files got the default split (no split folder)."""
    # (root + "/", length of the root's parent + "/"), longest root first; rel paths start at the root's name
    absolute = [os.path.abspath(r) for r in roots]
    prefixes = sorted(((os.path.join(r, ""), len(os.path.dirname(r).rstrip(os.sep)) + 1) for r in absolute),
                      key=lambda t: len(t[0]), reverse=True)
    units: list[Unit] = []
    chunk: list[Source] = []
    defaulted = 0
    for path, size in files:
        cut = next((n for prefix, n in prefixes if path.startswith(prefix)), len(os.path.dirname(path)) + 1)
        rel = path[cut:].replace(os.sep, "/")
        sp = split or split_of_file(path)
        if sp is None:
            sp, defaulted = DEFAULT_SPLIT, defaulted + 1
        src = Source(path, rel, sp)
        if size > stream_above:
            units.append(Unit([src], stream=True))
            continue
        chunk.append(src)
        if len(chunk) >= files_per_task:
            units.append(Unit(chunk))
            chunk = []
    if chunk:
        units.append(Unit(chunk))
    return units, defaulted


def _run_units(units: list[Unit], dataset: str, opts: Options, use_ray: bool, window: int,
               partitions_for: Callable[[str], int], tmp_dir: str | None
               ) -> Iterator[tuple[Unit, pa.Table | None, dict]]:
    """Results in unit order; with Ray at most ``window`` units are in flight."""
    if not use_ray:
        for u in units:
            if u.stream:
                for table, sk in stream_collection(u.sources[0], dataset, opts, partitions_for(u.sources[0].path),
                                                   tmp_dir):
                    yield u, table, sk
            else:
                yield (u, *read_files(u.sources, dataset, opts))
        return
    import ray

    read_task = ray.remote(num_cpus=1)(read_files)
    stream_task = ray.remote(num_cpus=1, num_returns="streaming")(stream_collection)
    pending: deque = deque()
    todo = iter(units)

    def submit() -> None:
        u = next(todo, None)
        if u is None:
            return
        if u.stream:
            src = u.sources[0]
            pending.append((u, stream_task.remote(src, dataset, opts, partitions_for(src.path), tmp_dir)))
        else:
            pending.append((u, read_task.remote(u.sources, dataset, opts)))

    for _ in range(window):
        submit()
    while pending:
        u, ref = pending.popleft()
        if u.stream:
            for part in ref:
                yield (u, *ray.get(part))
        else:
            yield (u, *ray.get(ref))
        submit()


class _ManifestWriter:
    """Resolves image paths, drops duplicates, writes row groups; keeps only ids and counts in memory."""

    def __init__(self, out: str, lookup: LookupIndex, skips: SkipCounter):
        self.tmp = out + ".tmp"
        self.writer = pq.ParquetWriter(self.tmp, PAGE_SCHEMA)
        self.lookup, self.skips = lookup, skips
        self.seen_ids: set[str] = set()
        self.seen_images: set[tuple[str, str, str]] = set()
        self.pages = self.words = 0
        self.by_split: Counter[str] = Counter()

    def add(self, table: pa.Table) -> None:
        cols = {c: table.column(c).to_pylist() for c in ("page_id", "dataset", "split", "image_name", "source")}
        paths: list[str | None] = []
        keep: list[bool] = []
        for pid, ds, sp, name, source in zip(*cols.values()):
            path, why = None, None
            if pid in self.seen_ids:
                why = Skip.DUPLICATE_PAGE
            else:
                self.seen_ids.add(pid)
                path, why = self.lookup.match(name, sp, source.split("#", 1)[0])
                if path is not None:
                    key = (ds, sp, path)
                    if key in self.seen_images:
                        path, why = None, Skip.DUPLICATE_PAGE
                    self.seen_images.add(key)
            if why is Skip.IMAGE_UNMATCHED:
                self.skips.add(why, f"{source}: no image {stem_of(name)}{{{','.join(MATCH_EXTS)}}} "
                                    f"(label's image name {name!r}) in the image index")
            elif why is not None:
                self.skips.add(why, f"{name} ({source})")
            paths.append(path)
            keep.append(why is None)
        table = table.set_column(table.schema.get_field_index("image_path"), "image_path",
                                 pa.array(paths, pa.string())).filter(pa.array(keep))
        if table.num_rows:
            self.writer.write_table(table)
            self.pages += table.num_rows
            self.words += int(pc.sum(pc.list_value_length(table.column("words"))).as_py() or 0)
            for (ds, sp), n in Counter(zip(table.column("dataset").to_pylist(),
                                           table.column("split").to_pylist())).items():
                self.by_split[f"{ds}/{sp}"] += n

    def close(self, out: str) -> None:
        self.writer.close()
        os.replace(self.tmp, out)

    def abort(self) -> None:
        self.writer.close()
        if os.path.exists(self.tmp):
            os.remove(self.tmp)


def _check_dataset(dataset: str) -> None:
    if dataset != "auto" and dataset not in READERS:
        valid = ["auto", *READERS]
        close = difflib.get_close_matches(dataset, valid, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise OcrvlError(f"unknown dataset {dataset!r}{hint} (one of: {', '.join(valid)})")


def check_inputs(cfg: PrepareConfig) -> str:
    """Everything about the arguments that can fail, checked before Ray starts and before any work: one line
    naming the key and path. Returns the output path, absolute."""
    _check_dataset(cfg.dataset)
    if not cfg.labels:
        raise OcrvlError("no label paths given (labels=PATH or --labels PATH ...)")
    if (cfg.images is None) == (cfg.lookup is None):
        raise OcrvlError("give exactly one of --images ROOT... (index the images now) or --lookup FILE "
                         "(images=[...] / lookup=FILE)")
    given = (("labels", cfg.labels), ("images", cfg.images or []), ("lookup", [cfg.lookup] if cfg.lookup else []))
    for key, paths in given:
        for path in paths:
            if not os.path.exists(path):
                fix = "build one with `ocrvl lookup build IMAGE_ROOT --out ...`" if key == "lookup" else "check the path"
                raise OcrvlError(f"{key}: {path} does not exist ({fix})")
    if cfg.split is not None and not re.fullmatch(r"[A-Za-z0-9_.-]+", cfg.split):
        raise OcrvlError(f"split {cfg.split!r} must be a plain name like train or valid (it becomes part of file names)")
    if not 0 <= cfg.valid_fraction <= 1:
        raise OcrvlError(f"valid_fraction must be between 0 and 1, got {cfg.valid_fraction}")
    return check_output_path(cfg.out, "out")


def prepare(cfg: PrepareConfig, *, use_ray: bool | None = None, window: int | None = None,
            tmp_dir: str | None = None) -> dict:
    """Read ``cfg.labels`` into the manifest ``cfg.out`` and write ``<out stem>.report.json``; returns that summary.

    ``cfg.dataset``: a family name or ``auto``. ``cfg.images`` (image roots, indexed now) or ``cfg.lookup``
    (index file, Parquet or legacy ``.pkl.gz``). ``cfg.split`` forces one split; default: the folder names
    (``Training``...), text_in_wild by a seeded hash of the image id (``seed``, ``valid_fraction``), else
    ``train``. ``use_ray``: None = use Ray if initialised. ``window``: units in flight (default twice the
    cluster's CPUs). ``tmp_dir``: where streamed partitions spill.
    """
    dataset, labels, images, lookup, split = cfg.dataset, cfg.labels, cfg.images, cfg.lookup, cfg.split
    seed, valid_fraction, progress = cfg.seed, cfg.valid_fraction, not cfg.quiet
    t0 = time.time()
    out = check_inputs(cfg)
    if use_ray is None:
        try:
            import ray
            use_ray = ray.is_initialized()
        except ImportError:
            use_ray = False
    elif use_ray:
        from ocrvl_ray.core.runtime import init_ray
        init_ray()
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda msg: None)

    listing = scan(labels, (".json",), use_ray)
    if not listing.files:
        raise OcrvlError(f"no *.json label files under {', '.join(labels)}")
    if images is not None:
        say(f"prepare: indexing images under {', '.join(images)}")
        table, lookup_report = build_lookup(images, use_ray)
        index = LookupIndex(table)
        lookup_info = {"images_roots": [os.path.abspath(r) for r in images], "images": len(index),
                       "collisions": lookup_report["collisions"]}
    else:
        index = load_lookup(lookup)
        lookup_info = {"lookup": os.path.abspath(lookup), "images": len(index)}

    opts = Options(split=split, seed=seed, valid_fraction=valid_fraction)
    units, defaulted = plan(listing.files, labels, split, cfg.files_per_task, int(cfg.stream_above_mb * 2 ** 20))
    sizes = dict(listing.files)

    def partitions_for(path: str) -> int:
        return max(1, min(1024, -(-sizes[path] // int(cfg.partition_mb * 2 ** 20))))

    n_files = len(listing.files)
    streamed = sum(u.stream for u in units)
    say(f"prepare: {n_files} label files ({streamed} streamed) in {len(units)} units, "
        f"{'Ray' if use_ray else 'in-process'}")
    skips = SkipCounter()
    for d in listing.unreadable:
        skips.add(Skip.ERROR, f"{d} (unreadable folder)")
    writer = _ManifestWriter(out, index, skips)
    window = window or max(2, 2 * _cluster_cpus(use_ray))
    bar = tqdm(total=n_files, unit="file", desc="prepare", file=sys.stderr, mininterval=10, disable=not progress)
    try:
        prev = None
        for unit, table, sk in _run_units(units, dataset, opts, use_ray, window, partitions_for, tmp_dir):
            skips.merge(sk)
            if table is not None:
                writer.add(table)
            if unit is not prev:
                bar.update(len(unit.sources))
                bar.set_postfix(pages=writer.pages, skipped=skips.total, refresh=False)
                prev = unit
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()
    writer.close(out)
    summary = {
        "manifest": out, "dataset": dataset, "pages": writer.pages, "words": writer.words,
        "by_split": dict(sorted(writer.by_split.items())), "label_files": n_files, "streamed_files": streamed,
        "split_defaulted_files": defaulted if split is None else 0,
        "lookup": {**lookup_info, "ambiguous_resolved": dict(index.resolved)},
        "skipped": skips.to_dict(), "seconds": round(time.time() - t0, 3),
    }
    with open(report_path(out), "w", encoding="utf-8") as f:
        json.dump(summary, f, ensure_ascii=False, indent=2)
    return summary


def _cluster_cpus(use_ray: bool) -> int:
    if not use_ray:
        return 1
    import ray
    return int(ray.cluster_resources().get("CPU", 1))


def summary_lines(summary: dict) -> list[str]:
    """Human-readable summary (what ``ocrvl prepare`` prints)."""
    lines = [f"manifest {summary['manifest']}: {summary['pages']} pages, {summary['words']} words "
             f"from {summary['label_files']} label files in {summary['seconds']:.1f} s"]
    lines += [f"  {k:<32} {v:>8} pages" for k, v in summary["by_split"].items()]
    if summary["split_defaulted_files"]:
        lines.append(f"  {summary['split_defaulted_files']} label files are in no Training/Validation folder: "
                     f"split '{DEFAULT_SPLIT}' (use split=NAME to choose)")
    col = summary["lookup"].get("collisions")
    if col and col["names"]:
        lines.append(f"  image index: {col['names']} file names shared by {col['files']} files "
                     f"(e.g. {col['examples'][0]['name']})")
    sk = SkipCounter.from_dict(summary["skipped"])
    if sk.total:
        lines.append(f"skipped ({sk.total}):")
        lines += sk.lines()
    lines.append(f"report: {report_path(summary['manifest'])}")
    return lines

