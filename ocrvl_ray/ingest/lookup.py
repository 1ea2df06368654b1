"""The lookup index: image file name -> path, built from image trees or imported from the legacy pickle.

Stored as Parquet with columns ``name, stem, path, size`` (``size`` -1 when unknown). Names are never
overwritten: every file is a row, so a basename shared by several files keeps all its candidates.

Matching a label's image name (``LookupIndex.match``):
1. exact file name;  2. else the stem (name without ``.png/.jpg/.jpeg``) plus ``.png``, ``.jpg`` or ``.jpeg``,
   case-insensitive.  No substring guessing.
Several candidates: keep those whose folders name the page's split (``1.Training`` ...); then the one sharing
the most folder names with the label file; still tied -> ``Skip.IMAGE_AMBIGUOUS``.
"""
from __future__ import annotations

import gzip
import os
import pickle
from collections import Counter
from pathlib import PurePath

import pyarrow as pa
import pyarrow.parquet as pq

from ocrvl_ray.core import safe_pickle
from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.core.skips import Skip
from ocrvl_ray.ingest.splits import split_from_path

MATCH_EXTS = (".png", ".jpg", ".jpeg")
LOOKUP_SCHEMA = pa.schema([("name", pa.string()), ("stem", pa.string()), ("path", pa.string()),
                           ("size", pa.int64())], metadata={b"ocrvl.schema": b"lookup"})


def stem_of(name: str) -> str:
    base, ext = os.path.splitext(name)
    return base if ext.lower() in MATCH_EXTS else name


def lookup_table(rows: list[tuple[str, str, int]]) -> pa.Table:
    """``(name, path, size)`` rows -> a lookup table sorted by (name, path)."""
    rows = sorted(set(rows))
    return pa.Table.from_arrays([pa.array([r[0] for r in rows], pa.string()),
                                 pa.array([stem_of(r[0]) for r in rows], pa.string()),
                                 pa.array([r[1] for r in rows], pa.string()),
                                 pa.array([r[2] for r in rows], pa.int64())], schema=LOOKUP_SCHEMA)


def collisions(table: pa.Table, examples: int = 10) -> dict:
    """Names that more than one file carries: how many, and the first examples with their paths."""
    names = table.column("name").to_pylist()
    counts = Counter(names)
    dup = sorted(n for n, c in counts.items() if c > 1)
    paths: dict[str, list[str]] = {n: [] for n in dup[:examples]}
    for n, p in zip(names, table.column("path").to_pylist()):
        if n in paths:
            paths[n].append(p)
    return {"names": len(dup), "files": sum(counts[n] for n in dup),
            "examples": [{"name": n, "paths": paths[n]} for n in dup[:examples]]}


class LookupIndex:
    def __init__(self, table: pa.Table):
        self.paths: list[str] = table.column("path").to_pylist()
        self.by_name: dict[str, list[int]] = {}
        self.by_stem: dict[str, list[int]] = {}
        for i, (name, stem) in enumerate(zip(table.column("name").to_pylist(), table.column("stem").to_pylist())):
            self.by_name.setdefault(name, []).append(i)
            if os.path.splitext(name)[1].lower() in MATCH_EXTS:
                self.by_stem.setdefault(stem.lower(), []).append(i)
        self.resolved = Counter()  # how ambiguous names were resolved: "split", "folder"

    def __len__(self) -> int:
        return len(self.paths)

    def candidates(self, image_name: str) -> list[str]:
        idx = self.by_name.get(image_name) or self.by_stem.get(stem_of(image_name).lower()) or []
        return [self.paths[i] for i in idx]

    def match(self, image_name: str, split: str = "", label_path: str = "") -> tuple[str | None, Skip | None]:
        """``(path, None)`` or ``(None, IMAGE_UNMATCHED | IMAGE_AMBIGUOUS)``."""
        cands = self.candidates(image_name)
        if len(cands) == 1:
            return cands[0], None
        if not cands:
            return None, Skip.IMAGE_UNMATCHED
        same_split = [c for c in cands if split_from_path(os.path.dirname(c)) == split]
        if len(same_split) == 1:
            self.resolved["split"] += 1
            return same_split[0], None
        cands = same_split or cands
        label_dirs = {p.lower() for p in PurePath(label_path).parent.parts}
        scores = [len(label_dirs & {p.lower() for p in PurePath(c).parent.parts}) for c in cands]
        best = max(scores)
        if scores.count(best) == 1:
            self.resolved["folder"] += 1
            return cands[scores.index(best)], None
        return None, Skip.IMAGE_AMBIGUOUS


def build_lookup(roots: list[str], use_ray: bool) -> tuple[pa.Table, dict]:
    """Scan image trees -> (lookup table, report with counts and collisions)."""
    from ocrvl_ray.ingest.scan import scan

    listing = scan(roots, MATCH_EXTS, use_ray)
    table = lookup_table([(os.path.basename(p), p, s) for p, s in listing.files])
    return table, {"roots": [os.path.abspath(r) for r in roots], "images": table.num_rows,
                   "collisions": collisions(table), "unreadable_dirs": listing.unreadable[:20],
                   "unreadable_count": len(listing.unreadable)}


# ------------------------------------------------------------------------------------------------
# legacy lookup_<name>.pkl(.gz): a gzip pickle of dict[str, str]
# ------------------------------------------------------------------------------------------------
def load_legacy(path: str) -> dict[str, str]:
    """Read the original ``lookup_<name>.pkl.gz`` (or plain ``.pkl``) without running any code from it."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise OcrvlError(f"cannot read legacy lookup {path}: {e.strerror or e}") from None
    try:
        data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        obj = safe_pickle.loads(data)
    except pickle.UnpicklingError as e:
        if str(e).startswith("refusing"):
            raise OcrvlError(f"{path} is not a plain legacy lookup ({e}); only a pickled dict of "
                             f"file name -> path strings is accepted") from None
        raise OcrvlError(f"{path} is not a readable pickle ({e}); expected the gzip pickle written by "
                         f"convert_lookup_to_pickle.py") from None
    except (EOFError, OSError, ValueError, IndexError, KeyError, TypeError, AttributeError) as e:
        raise OcrvlError(f"{path} is not a readable pickle ({type(e).__name__}); expected the gzip "
                         f"pickle written by convert_lookup_to_pickle.py") from None
    if not isinstance(obj, dict):
        raise OcrvlError(f"{path} holds a {type(obj).__name__}, expected a dict of file name -> path")
    bad = next(((k, v) for k, v in obj.items() if not (isinstance(k, str) and isinstance(v, str))), None)
    if bad is not None:
        raise OcrvlError(f"{path}: entry {bad[0]!r} maps to a {type(bad[1]).__name__}, expected a path string "
                         f"(files from create_ocr_public_lookup.py are not lookups; rebuild with `ocrvl lookup build`)")
    return obj


def import_legacy(path: str, stat: bool = False) -> tuple[pa.Table, dict]:
    """Legacy dict -> lookup table. One row per file (its basename); a key that is neither the file's name
    nor its stem is kept as an extra row under that key (an alias the user's lookup chose)."""
    mapping = load_legacy(path)
    rows, aliases = set(), []
    for key, value in mapping.items():
        base = os.path.basename(value)
        size = -1
        if stat:
            try:
                size = os.path.getsize(value)
            except OSError:
                pass
        rows.add((base, value, size))
        if key not in (base, stem_of(base)):
            rows.add((key, value, size))
            aliases.append(key)
    table = lookup_table(list(rows))
    return table, {"legacy": os.path.abspath(path), "entries": len(mapping), "images": table.num_rows,
                   "aliases": len(aliases), "alias_examples": sorted(aliases)[:10],
                   "collisions": collisions(table)}


def write_lookup(table: pa.Table, out: str) -> None:
    tmp = out + ".tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, out)


def load_lookup(path: str) -> LookupIndex:
    """A lookup Parquet file, or a legacy ``.pkl``/``.pkl.gz`` (imported on the fly)."""
    if not os.path.isfile(path):
        raise OcrvlError(f"lookup {path} does not exist (build one with `ocrvl lookup build IMAGE_ROOT --out ...`)")
    if path.endswith((".pkl", ".pkl.gz", ".gz")):
        return LookupIndex(import_legacy(path)[0])
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise OcrvlError(f"lookup {path} is not a Parquet file ({str(e).splitlines()[0]})") from None
    missing = {"name", "stem", "path"} - set(table.column_names)
    if missing:
        raise OcrvlError(f"lookup {path} lacks columns {sorted(missing)}; rebuild it with `ocrvl lookup build`")
    return LookupIndex(table)
