"""layout -> train -> merge in one Ray job; a rerun skips finished stages and resumes the unfinished one.

    ray job submit --working-dir . -- python jobs/pipeline.py pipeline.yaml [key=value ...]
    python jobs/pipeline.py pipeline.yaml                 # one machine

Same as ``ocrvl pipeline``; the config is described in ``ocrvl_ray/end_to_end.py`` and the README, the run
manifest is ``<run_dir>/run_manifest.json``.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ocrvl_ray.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["pipeline", *sys.argv[1:]]))
