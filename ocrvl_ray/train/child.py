"""Launcher mode, custom entry: ``python child.py module:function CONFIG.yaml`` in each process that
``paddle.distributed.launch`` starts (the launcher has set the collective environment)."""
from __future__ import annotations

import sys

import yaml


def main(argv: list[str]) -> int:
    from ocrvl_ray.train.entries import load_entry

    spec, config_file = argv
    with open(config_file, encoding="utf-8") as f:
        load_entry(spec)(yaml.safe_load(f))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
