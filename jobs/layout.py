"""Layout job: manifest -> ``*_layout.lmdb``.

    ray job submit --working-dir . -- python jobs/layout.py [config.yaml] [key=value ...]
    python jobs/layout.py demo_models=true            # one machine, bundled sample, offline demo models

Connects to the cluster in ``RAY_ADDRESS`` (set by ``ray job submit``), else starts a local Ray.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ocrvl_ray.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["layout", *sys.argv[1:]]))
