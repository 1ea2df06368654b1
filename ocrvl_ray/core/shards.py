"""A sharded LMDB output and which shards each training rank reads. Plain filesystem code.
The writer side is ``layout/sink/sharded.py``; readers (training, inspect, verify) use this module.

Contract (the layout job's ``shards=N`` writes it, ``ocrvl train`` reads it): the ``output`` path is a
directory holding N LMDB directories ``shard-00000-of-0000N`` … ``shard-<N-1>-of-0000N``, all of one N.
An LMDB directory (``data.mdb`` inside) is a single shard. Rank r of a world of w reads shards
r, r+w, r+2w, … (``shards[r::w]``), so ranks never share a shard.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from ocrvl_ray.core.errors import OcrvlError

SHARD_RE = re.compile(r"^shard-(\d{5})-of-(\d{5})$")


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
    """Shards ``rank::world``; a ShardError when there are fewer shards than ranks."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is outside a world of {world}")
    if len(shards) < world:
        raise ShardError(f"{len(shards)} shard(s) for {world} training ranks: ranks would read the same samples; "
                         f"write the LMDB with shards={world} (or a multiple) or train with {len(shards)} rank(s)")
    return list(shards[rank::world])
