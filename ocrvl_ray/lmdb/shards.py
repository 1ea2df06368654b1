"""A sharded LMDB output: which shard a page goes to, the folder and its index, and which shards each training
rank reads. Plain filesystem code; the writer is ``sink.LmdbSink(path, shards=N)``.

Contract (the layout job's ``shards=N`` writes it, ``ocrvl train`` reads it): the ``output`` path is a
directory holding N LMDB directories ``shard-00000-of-0000N`` … ``shard-<N-1>-of-0000N``, all of one N.
An LMDB directory (``data.mdb`` inside) is a single shard. Rank r of a world of w reads shards
r, r+w, r+2w, … (``shards[r::w]``), so ranks never share a shard.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from ocrvl_ray.core.errors import OcrvlError

SHARD_RE = re.compile(r"^shard-(\d{5})-of-(\d{5})$")
HASH_RULE = "blake2b(page_id utf-8, digest_size=8) big-endian mod N"


class ShardError(OcrvlError):
    """A sharded output is incomplete, or has fewer shards than training ranks."""


def shard_name(index: int, count: int) -> str:
    """``shard_name(0, 2) == "shard-00000-of-00002"``."""
    return f"shard-{index:05d}-of-{count:05d}"


def index_path(path: str | os.PathLike) -> str:
    """``out/x.lmdb`` -> ``out/x.lmdb.shards.json``: the index the writer keeps beside the shard folder."""
    return os.fspath(path).rstrip("/\\") + ".shards.json"


def is_sharded(path: str | os.PathLike) -> bool:
    p = Path(path)
    return p.is_dir() and not (p / "data.mdb").exists() and any(SHARD_RE.match(c.name) for c in p.iterdir())


def expand(path: str | os.PathLike) -> list[str]:
    """The shard directories of ``path`` in order; ``[path]`` for an LMDB or a path that does not exist."""
    p = Path(path)
    if not is_sharded(p):
        return [os.fspath(path)]
    found: dict[int, Path] = {}
    counts = set()
    for child in p.iterdir():
        m = SHARD_RE.match(child.name)
        if m and child.is_dir():
            found[int(m.group(1))] = child
            counts.add(int(m.group(2)))
    if len(counts) != 1:
        raise ShardError(f"{p}: shard folders of {len(counts)} different counts ({', '.join(map(str, sorted(counts)))}); "
                         "remove the stale ones or write the output again")
    n = counts.pop()
    missing = [shard_name(i, n) for i in range(n) if i not in found]
    if missing or len(found) != n:
        raise ShardError(f"{p}: {len(missing) or len(found) - n} of {n} shards missing or extra "
                         f"(e.g. {(missing or [''])[0]}); finish the layout run (it resumes) or write it again")
    return [os.fspath(found[i]) for i in range(n)]


def assign(shards: list[str], rank: int, world: int) -> list[str]:
    """Shards ``rank::world``; a ShardError, naming ``ocrvl reshard``, when there are fewer shards than ranks."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is outside a world of {world}")
    if len(shards) < world:
        raise ShardError(f"{len(shards)} shard(s) for {world} training ranks: ranks would read the same samples; "
                         f"copy it into {world} shards with `ocrvl reshard IN --shards {world} --out OUT` (or write "
                         f"it with shards={world} or a multiple), or train with {len(shards)} rank(s)")
    return list(shards[rank::world])


# -- the writer's side ----------------------------------------------------------------------------
def shard_of(page_id: str, n: int) -> int:
    """The shard of a page (``HASH_RULE``): stable across runs, processes and machines (unlike ``hash``), so
    reruns and resumes look for a page where it was written."""
    return int.from_bytes(hashlib.blake2b(page_id.encode("utf-8"), digest_size=8).digest(), "big") % n


def shard_paths(path: str, n: int) -> list[str]:
    return [os.path.join(path, shard_name(i, n)) for i in range(n)]


def check_shard_folder(path: str, n: int) -> None:
    """Refuses to write ``n`` shards into a single LMDB or over shards of another count."""
    if os.path.isfile(os.path.join(path, "data.mdb")):
        raise OcrvlError(f"{path} holds a single LMDB (written with shards=1); use shards=1 or a new output")
    if os.path.exists(path) and not os.path.isdir(path):
        raise OcrvlError(f"{path}: exists and is not a directory; a sharded output is a directory")
    if os.path.isdir(path):
        other = {m.group(2) for m in map(SHARD_RE.match, os.listdir(path)) if m} - {f"{n:05d}"}
        if other:
            raise OcrvlError(f"{path} holds shards of a run with shards={int(min(other))}; resume with "
                             f"that count or write to a new output")


def write_index(path: str, paths: list[str], counts: list[int], index_base: int, label_format: str) -> None:
    """``<path>.shards.json``: count, folder names, hash rule, samples per shard (replaced atomically)."""
    index = {"shards": len(paths), "dirs": [os.path.basename(p) for p in paths], "page_to_shard": HASH_RULE,
             "num_samples": counts, "total_samples": sum(counts), "index_base": index_base,
             "label_format": label_format}
    tmp = index_path(path) + f".tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(index, f, indent=1)
    os.replace(tmp, index_path(path))
