"""Launcher mode: ``python child.py module:function CONFIG.yaml`` in each process that
``paddle.distributed.launch`` starts (the launcher has set the collective environment): picks the
process's shards by its global rank, then calls the entry (erniekit's by default)."""
from __future__ import annotations

import os
import sys

import yaml


def main(argv: list[str]) -> int:
    from ocrvl_ray.train.entries import load_entry
    from ocrvl_ray.train.worker import rank_config

    spec, config_file = argv
    with open(config_file, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    rank, world = int(os.environ.get("PADDLE_TRAINER_ID", 0)), int(os.environ.get("PADDLE_TRAINERS_NUM", 1))
    load_entry(spec)(rank_config(config, rank, world))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
