"""``layout.engine`` / ``layout.dtype`` / ``cells.engine`` and ``model_version=v1.8`` as config, preflight and output
identity (pure functions; the transformers engine's Ray job runs in tests/torch_env)."""
from __future__ import annotations

import importlib.util
import json

import pytest

from ocrvl_ray.core import generations
from ocrvl_ray.core.config import ConfigError, load_config
from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.layout.config import LayoutConfig


def _cfg(*over) -> LayoutConfig:
    return load_config(LayoutConfig, overrides=list(over), env={})


def test_default_engine_is_paddle_and_its_identity_is_unchanged(tmp_path):
    from ocrvl_ray.demo.sample import sample_manifest
    from ocrvl_ray.layout.outputs import layout_identity

    cfg = _cfg(f"layout.model_dir={tmp_path}", "cells.enabled=false")
    assert (cfg.layout.engine, cfg.layout.dtype, cfg.cells.engine) == ("paddle", "float32", "paddle")
    layout = layout_identity(cfg, str(sample_manifest()), "train")["layout"]
    assert set(layout) == {"name", "files", "threshold", "table_threshold", "layout_nms", "shape_mode"}


def test_engine_and_dtype_and_model_files_shape_the_identity(tmp_path):
    from ocrvl_ray.demo.sample import sample_manifest
    from ocrvl_ray.layout.outputs import layout_identity

    for name, text in (("config.json", '{"model_type": "pp_doclayout_v2"}'), ("model.safetensors", "w"),
                       ("preprocessor_config.json", "{}")):
        (tmp_path / name).write_text(text)
    ids = {}
    for over in (("layout.engine=paddle",), ("layout.engine=transformers",),
                 ("layout.engine=transformers", "layout.dtype=bfloat16")):
        cfg = _cfg(f"layout.model_dir={tmp_path}", "cells.enabled=false", *over)
        ids[over] = json.dumps(layout_identity(cfg, str(sample_manifest()), "train"), sort_keys=True)
    assert len(set(ids.values())) == 3
    tr = json.loads(ids[("layout.engine=transformers",)])["layout"]
    assert tr["engine"] == "transformers" and tr["dtype"] == "float32"
    assert set(tr["files"]) == {"config.json", "model.safetensors", "preprocessor_config.json"}
    before = tr["files"]["model.safetensors"]
    (tmp_path / "model.safetensors").write_text("other weights")
    cfg = _cfg(f"layout.model_dir={tmp_path}", "cells.enabled=false", "layout.engine=transformers")
    assert layout_identity(cfg, str(sample_manifest()), "train")["layout"]["files"]["model.safetensors"] != before


def test_bfloat16_needs_transformers_on_either_detector():
    with pytest.raises(ConfigError, match="layout.dtype=bfloat16 needs layout.engine=transformers"):
        _cfg("layout.dtype=bfloat16")
    with pytest.raises(ConfigError, match="cells.dtype=bfloat16 needs cells.engine=transformers"):
        _cfg("cells.dtype=bfloat16")
    assert _cfg("cells.engine=transformers", "cells.dtype=bfloat16").cells.dtype == "bfloat16"
    with pytest.raises(ConfigError, match="layout.engine"):
        _cfg("layout.engine=onnx")


def test_demo_models_with_a_transformers_engine_is_one_line_before_ray():
    """The demo detectors are Paddle static graphs: a transformers engine left to them is refused in config."""
    for over, key in ((("model_version=v1.8",), "layout"), (("layout.engine=transformers",), "layout"),
                      (("cells.engine=transformers",), "cells")):
        with pytest.raises(ConfigError, match=f"demo_models=true builds Paddle demo detectors, which {key}.engine="
                                              f"transformers cannot load; set {key}.model_dir=DIR"):
            _cfg("demo_models=true", *over)
    assert _cfg("demo_models=true", "cells.engine=transformers", "cells.enabled=false").demo_models
    assert _cfg("demo_models=true", "layout.engine=transformers", "layout.model_dir=/x").layout.model_dir == "/x"


def test_cells_engine_shapes_the_identity(tmp_path):
    from ocrvl_ray.demo.sample import sample_manifest
    from ocrvl_ray.layout.outputs import layout_identity
    from ocrvl_ray.layout.stages.compose import detector_identities

    ids = {}
    for over in ((), ("cells.engine=transformers",), ("cells.engine=transformers", "cells.dtype=bfloat16")):
        cfg = _cfg(f"layout.model_dir={tmp_path}", f"cells.model_dir={tmp_path}", *over)
        ids[over] = layout_identity(cfg, str(sample_manifest()), "train")["cells"]
        assert json.loads(detector_identities(cfg, None))["cells"].get("engine") == (over[0][13:] if over else None)
    assert "engine" not in ids[()] and ids[("cells.engine=transformers",)]["engine"] == "transformers"
    assert len({json.dumps(v, sort_keys=True) for v in ids.values()}) == 3


def test_v18_presets_v4_on_transformers_and_explicit_keys_win():
    c = _cfg("model_version=1.8")
    assert (c.model_version, c.layout.model_name, c.layout.engine) == ("v1.8", "PP-DocLayoutV4", "transformers")
    c = _cfg("model_version=v1.8", "layout.model_name=PP-DocLayoutV3")
    assert (c.layout.model_name, c.layout.engine) == ("PP-DocLayoutV3", "transformers")
    for v in ("v1", "v1.5", "v1.6"):
        assert _cfg(f"model_version={v}").layout.engine == "paddle"


@pytest.mark.parametrize("command", ["eval", "train"])
def test_train_and_eval_refuse_v18_in_one_line(command, capsys):
    from ocrvl_ray.cli import main

    assert main([command, "model_version=v1.8"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "v1.8's chat template is not known to ocrvl yet" in err, err


def test_a_base_named_18_is_refused_not_taken_for_15():
    with pytest.raises(OcrvlError, match="v1.8's chat template is not known"):
        generations.detect({"chat_template.jinja": "User: {{x}}\nAssistant:\n"}, "PaddleOCR-VL-1.8")
    with pytest.raises(OcrvlError, match="v1.8's chat template is not known"):
        generations.get("1.8")


def test_preflight_transformers_engine_lines(tmp_path):
    from ocrvl_ray.layout.preflight import check_models

    with pytest.raises(OcrvlError, match="layout.engine=transformers runs PP-DocLayoutV2, PP-DocLayoutV3, "
                                         "PP-DocLayoutV4"):
        check_models(_cfg("layout.engine=transformers", "layout.model_name=RT-DETR-H_layout_17cls"))
    if importlib.util.find_spec("torch") is None:   # .venv: no torch -> how to get it, before Ray starts
        with pytest.raises(OcrvlError, match=r"needs torch and transformers >= 5.20 .*\./install.sh torch"):
            check_models(_cfg("model_version=v1.8"))
        return
    with pytest.raises(OcrvlError, match="needs layout.model_dir=DIR"):
        check_models(_cfg("layout.engine=transformers", "cells.enabled=false"))
    (tmp_path / "inference.yml").write_text("x")
    with pytest.raises(OcrvlError, match="convert-detector"):
        check_models(_cfg("layout.engine=transformers", f"layout.model_dir={tmp_path}", "cells.enabled=false"))


def test_preflight_transformers_cells_lines(tmp_path):
    from ocrvl_ray.layout.preflight import check_models

    layout = tmp_path / "layout"
    layout.mkdir()
    (layout / "config.json").write_text("{}")
    (layout / "model.safetensors").write_text("w")
    (layout / "inference.yml").write_text("Global:\n  model_name: PP-DocLayoutV2\n")
    cfg = (f"layout.model_dir={layout}", "cells.engine=transformers")
    if importlib.util.find_spec("torch") is None:   # .venv: no torch -> how to get it, before Ray starts
        with pytest.raises(OcrvlError, match=r"cells.engine=transformers needs torch and transformers .*\./install"):
            check_models(_cfg(*cfg))
        return
    with pytest.raises(OcrvlError, match="cells.engine=transformers needs cells.model_dir=DIR"):
        check_models(_cfg(*cfg))
    with pytest.raises(OcrvlError, match="preprocessor_config.json missing; cells.engine=transformers needs a "
                                         "transformers model folder .*convert-detector"):
        check_models(_cfg(*cfg, f"cells.model_dir={layout}"))
