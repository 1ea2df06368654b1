"""Typed configs: YAML + FAST_* env + key=value with the documented precedence, clear errors."""
import pytest

from ocrvl_ray.core.config import ConfigError, load_config, parse_overrides
from ocrvl_ray.layout.config import LayoutConfig


def test_overrides_parse_like_erniekit():
    got = parse_overrides(["a=3", "b=0.5", "c=true", "d=[1, 2]", "e.f=x", "g=", "h=gpu:0"])
    assert got == {"a": 3, "b": 0.5, "c": True, "d": [1, 2], "e": {"f": "x"}, "g": "", "h": "gpu:0"}


def test_precedence_cli_over_env_over_yaml(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("jpeg_quality: 70\nlayout:\n  device: cpu\n  threshold: 0.6\nlimit: 3\n")
    env = {"FAST_JPEG_QUALITY": "90", "FAST_LAYOUT_DEVICE": "gpu", "FAST_GPU_ID": "1"}
    cfg = load_config(LayoutConfig, y, ["jpeg_quality=95"], env=env)
    assert cfg.jpeg_quality == 95            # command line beats env and YAML
    assert cfg.layout.device == "gpu:1"      # env beats YAML; FAST_GPU_ID picks the card
    assert cfg.layout.threshold == 0.6       # YAML beats defaults
    assert cfg.limit == 3
    assert cfg.cells.device == "cpu"         # default


@pytest.mark.parametrize("raw,limit", [("1", 500), ("true", 500), ("0", 0), ("37", 37), ("no", 0)])
def test_fast_debug_is_a_sample_limit(raw, limit):
    assert load_config(LayoutConfig, env={"FAST_DEBUG": raw}).limit == limit


def test_table_threshold_from_env():
    assert load_config(LayoutConfig, env={"FAST_TABLE_LAYOUT_THR": "0.25"}).layout.table_threshold == 0.25


def test_unknown_key_names_closest():
    with pytest.raises(ConfigError, match=r"unknown config key 'outptu'; did you mean 'output'"):
        load_config(LayoutConfig, overrides=["outptu=/x"], env={})
    with pytest.raises(ConfigError, match=r"'layout.treshold'.*'layout.threshold'"):
        load_config(LayoutConfig, overrides=["layout.treshold=0.4"], env={})


def test_bad_values_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="jpeg_quality"):
        load_config(LayoutConfig, overrides=["jpeg_quality=500"], env={})
    with pytest.raises(ConfigError, match="FAST_JPEG_QUALITY"):
        load_config(LayoutConfig, env={"FAST_JPEG_QUALITY": "high"})
    with pytest.raises(ConfigError, match="device must be cpu, gpu or gpu:N"):
        load_config(LayoutConfig, overrides=["layout.device=cuda"], env={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(LayoutConfig, bad, env={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(LayoutConfig, tmp_path / "missing.yaml", env={})
    with pytest.raises(ConfigError, match="not key=value"):
        parse_overrides(["justakey"])


# -- one spelling of a model generation (issue 25, bug 8) ----------------------------------------------------

GENERATION_SPELLINGS = [("1.5", "v1.5"), ("v1.5", "v1.5"), ("1.6", "v1.6"), ("V1.6", "v1.6"), ("v1", "v1"),
                        ("1.0", "v1")]


def _version_of(command: str, spelling: str) -> str:
    """The model_version a command's config holds after ``model_version=<spelling>`` on its command line."""
    from ocrvl_ray.cli import command_spec

    extra = {"pipeline": ["run_dir=/tmp/r"], "train": []}.get(command, [])
    cfg = command_spec(command, [])[1].parse([*extra, f"model_version={spelling}"])
    return cfg.ours.model_version if command == "train" else cfg.model_version


@pytest.mark.parametrize("command", ["layout", "eval", "train", "pipeline"])
@pytest.mark.parametrize("spelling,canonical", GENERATION_SPELLINGS)
def test_model_version_accepts_every_spelling_in_every_command(command, spelling, canonical):
    assert _version_of(command, spelling) == canonical


@pytest.mark.parametrize("command", ["layout", "eval", "train", "pipeline"])
def test_unknown_model_version_is_one_line_listing_the_valid_values(command, capsys):
    from ocrvl_ray.cli import main

    extra = ["run_dir=/tmp/r"] if command == "pipeline" else []
    assert main([command, *extra, "model_version=v2"]) == 2
    assert capsys.readouterr().err == (f"ocrvl {command}: error: config key 'model_version': unknown generation 'v2'; "
                                       "use one of v1, v1.5, v1.6, v1.8 (also written 1.5, 1.6, 1.8) (got 'v2')\n")


def test_layout_preset_follows_any_spelling():
    """``model_version=1.5`` was refused by layout; it now presets PP-DocLayoutV3 like ``v1.5``."""
    assert load_config(LayoutConfig, overrides=["model_version=1.5"], env={}).layout.model_name == "PP-DocLayoutV3"
    assert load_config(LayoutConfig, overrides={"model_version": 1.6}, env={}).model_version == "v1.6"


def test_one_table_of_generations():
    import typing

    from ocrvl_ray.core import generations as g

    assert typing.get_args(typing.get_args(g.LayoutModelVersion)[0]) == tuple(g.GENERATIONS) == g.VERSIONS
    assert typing.get_args(typing.get_args(g.ModelVersion)[0]) == g.CHAT_VERSIONS == ("v1", "v1.5", "v1.6")
    assert set(g.LAYOUT) == set(g.GENERATIONS)


def test_eval_template_key_is_refused_with_the_new_key(capsys):
    from ocrvl_ray.cli import main
    from ocrvl_ray.eval.config import EvalConfig

    with pytest.raises(ConfigError, match="config key 'template' was renamed: use model_version=v1|v1.5|v1.6"):
        load_config(EvalConfig, overrides=["template=1.5"])
    assert main(["eval", "template=auto"]) == 2
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_pipeline_model_version_reaches_layout_and_eval():
    from ocrvl_ray.end_to_end import PipelineConfig, _eval_stage, _layout_cfg

    cfg = load_config(PipelineConfig, overrides={"run_dir": "/tmp/r", "model_version": "1.5", "merge": {"base": "b"}})
    assert _layout_cfg(cfg).model_version == "v1.5" and _eval_stage(cfg).options["model_version"] == "v1.5"
    own = load_config(PipelineConfig, overrides={"run_dir": "/tmp/r", "model_version": "1.5",
                                                  "layout": {"model_version": "v1"},
                                                  "eval": {"options": {"model_version": "1.6"}}})
    assert _layout_cfg(own).model_version == "v1" and _eval_stage(own).options["model_version"] == "1.6"
    plain = load_config(PipelineConfig, overrides={"run_dir": "/tmp/r"})
    assert _eval_stage(plain) is plain.eval          # no model_version: the eval stage's hash is unchanged


# -- one default, one place (issue 25, bug 7) ------------------------------------------------------------------

def test_max_shard_size_has_one_default():
    """``"5GB"`` was written in the merge CLI and the pipeline, and the library merged at 5 GiB."""
    import inspect

    from ocrvl_ray.end_to_end import MergeStage
    from ocrvl_ray.export.config import MergeConfig
    from ocrvl_ray.export.merge import merge_lora

    cli = MergeConfig(base="b", lora="l", out="o")
    assert MergeStage(base="b").max_shard_size == cli.max_shard_size == "5GB"
    assert inspect.signature(merge_lora).parameters["max_shard_bytes"].default == cli.max_shard_bytes == 5 * 10**9


def test_prepare_takes_its_config():
    """``prepare`` has no defaults of its own: every option lives in PrepareConfig (the CLI's model)."""
    import inspect

    from ocrvl_ray.ingest.prepare import PrepareConfig, prepare

    params = inspect.signature(prepare).parameters
    assert list(params)[0] == "cfg" and params["cfg"].default is inspect.Parameter.empty
    assert {n: p.default for n, p in params.items() if n != "cfg"} == {"use_ray": None, "window": None,
                                                                         "tmp_dir": None}
    assert not set(params) & set(PrepareConfig.model_fields)


def test_eval_scoring_options_have_one_default():
    import inspect

    from ocrvl_ray.eval.config import EvalConfig, EvalScoreConfig, ScoreOptions
    from ocrvl_ray.eval.compare import paired_bootstrap
    from ocrvl_ray.eval.data import read_samples
    from ocrvl_ray.eval.metrics import cut_loop, find_loop
    from ocrvl_ray.eval.score import score, score_file, write_outputs

    for cls in (EvalConfig, EvalScoreConfig):   # both inherit the keys; neither writes them again
        assert issubclass(cls, ScoreOptions) and not {"bootstrap", "seed", "examples"} & set(cls.__annotations__)
    # the library takes the values (bootstrap and loop-guard settings, limit) from EvalConfig; it had 8 where
    # the config says loop_min_repeats=16
    for fn in (score, score_file, write_outputs, paired_bootstrap, find_loop, cut_loop, read_samples):
        assert all(p.default is inspect.Parameter.empty or n in ("extra", "level")
                   for n, p in inspect.signature(fn).parameters.items()), fn.__name__
