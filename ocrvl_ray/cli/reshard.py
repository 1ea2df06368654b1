"""``ocrvl reshard IN --shards N --out OUT``: copy an LMDB (or a shard folder) into N shards, one per rank or more."""
from __future__ import annotations

from pydantic import Field

from ocrvl_ray.cli import Spec
from ocrvl_ray.core.config import JobConfig


class ReshardConfig(JobConfig):
    input: str = Field(description="the LMDB directory or shard folder to copy (left as it is)")
    shards: int = Field(ge=1, description="how many shards to write (training ranks read whole shards; "
                                          "1 merges a shard folder into one LMDB)")
    out: str = Field(description="the shard folder to write (its index: <out>.shards.json)")
    overwrite: bool = Field(False, description="replace an existing out (an LMDB or shard folder only)")


def run(cfg: ReshardConfig) -> int:
    from ocrvl_ray.lmdb.reshard import reshard

    print(f"ocrvl reshard: {reshard(cfg.input, cfg.out, cfg.shards, overwrite=cfg.overwrite).line()}")
    return 0


SPEC = Spec("ocrvl_ray.cli.reshard:ReshardConfig", run, usage="IN --shards N --out OUT [--overwrite]",
            positionals=("input",),
            note="Samples keep their order in each shard; with page markers a page goes to the shard the layout "
                 "job's hash rule names (a later layout run resumes into OUT), without them samples are dealt "
                 "round-robin. The copy is verified before it replaces anything (docs/lmdb.md, \"Resharding\").")
