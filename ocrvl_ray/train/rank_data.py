"""Disjoint training data per rank, before any entry runs: every ``train_lmdb_paths`` item that is a
sharded output (:mod:`ocrvl_ray.lmdb.shards`) is replaced by this rank's shards ``rank::world``.

``train_lmdb_prob`` gets one value per resulting path: a source's probability split over its shards in
proportion to their ``num-samples``, so every sample of a source stays equally likely. The erniekit
reader pairs paths with probabilities by position (a missing probability drops the path), so both
lists are always written together. With one rank and no sharded source the config is left unchanged.
"""
from __future__ import annotations

from typing import Any, Mapping

from ocrvl_ray.lmdb.schema import NUM_SAMPLES
from ocrvl_ray.lmdb.shards import ShardError, assign, expand


def items(value: Any) -> list[str]:
    """A comma-separated string (or a YAML list) as a list of non-empty, stripped items."""
    if value is None or value == "":
        return []
    seq = value if isinstance(value, (list, tuple)) else str(value).split(",")
    return [str(v).strip() for v in seq if str(v).strip()]


def num_samples(path: str) -> int:
    """``num-samples`` of one LMDB (opened read-only and closed again)."""
    import lmdb

    env = lmdb.open(path, readonly=True, lock=False, readahead=False, subdir=True)
    try:
        with env.begin() as txn:
            raw = txn.get(NUM_SAMPLES)
    finally:
        env.close()
    if raw is None:
        raise ShardError(f"{path}: no 'num-samples' key; it was not written by a finished `ocrvl layout` run")
    return int(raw.decode("ascii"))


def for_rank(config: Mapping[str, Any], rank: int, world: int) -> tuple[dict[str, Any], list[str]]:
    """(this rank's config, one line per source saying which shards it reads)."""
    out = dict(config)
    sources = items(config.get("train_lmdb_paths"))
    if not sources:
        return out, []
    expanded = [expand(s) for s in sources]
    if world == 1 and all(len(e) == 1 and e[0] == s for e, s in zip(expanded, sources)):
        return out, []
    probs = items(config.get("train_lmdb_prob")) or ["1.0"]
    if len(probs) != len(sources):
        raise ShardError(f"train_lmdb_prob has {len(probs)} value(s) for {len(sources)} path(s) in train_lmdb_paths; "
                         "give one probability per LMDB")
    paths, weights, lines = [], [], []
    for source, shards, prob in zip(sources, expanded, probs):
        try:
            mine = assign(shards, rank, world)
        except ShardError as e:
            raise ShardError(f"train_lmdb_paths: {source}: {e}") from None
        counts = [num_samples(p) for p in mine]
        total = sum(counts) or 1
        paths += mine
        weights += [float(prob) * c / total for c in counts]
        names = ", ".join(p.rsplit("/", 1)[-1] for p in mine)
        lines.append(f"rank {rank}/{world}: {source} -> {names} ({sum(counts)} samples)")
    out["train_lmdb_paths"] = ",".join(paths)
    out["train_lmdb_prob"] = ",".join(f"{w:.8g}" for w in weights)
    return out, lines
