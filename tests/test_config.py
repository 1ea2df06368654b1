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
