"""layout -> train -> merge in one Ray job; a rerun skips finished stages and resumes the unfinished one.

    ray job submit --working-dir . -- python jobs/pipeline.py pipeline.yaml [key=value ...]
    python jobs/pipeline.py pipeline.yaml                 # one machine

See ``ocrvl_ray/workflow.py`` for the config; the run manifest is ``<run_dir>/run_manifest.json``.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv: list[str]) -> int:
    from ocrvl_ray.config import load_config, split_cli_args
    from ocrvl_ray.errors import OcrvlError
    from ocrvl_ray.runtime import init_ray
    from ocrvl_ray.workflow import PipelineConfig, run_pipeline

    try:
        yaml_path, overrides = split_cli_args(argv)
        cfg = load_config(PipelineConfig, yaml_path, overrides)
        init_ray()
        run_pipeline(cfg)
    except OcrvlError as e:
        print(f"pipeline: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
