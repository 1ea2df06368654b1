"""engine=paddleformers: model generations (template, prompt, detection), engine keys, augmentation settings
and LMDB image references (plain functions, default venv), plus the PaddleFormers 1.x suite ``tests/pf``,
which runs in its own venv ``.venv-paddleformers`` (PaddleFormers 1.x cannot share this one)."""
from __future__ import annotations

import json
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from ocrvl_ray import cli
from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.core import generations as g
from ocrvl_ray.train.config import PADDLEFORMERS_ENTRY, load_train_config
from ocrvl_ray.train.engines.lmdb_plugin import augment_params, image_ref, parse_ref
from ocrvl_ray.train.engines.paddleformers import check_config
from tests.venv_suites import PF_PYTHON, SUITES

# Chat template sources as they appear in tokenizer_config.json (JSON-escaped newlines).
V1_TEMPLATE = json.dumps({"chat_template": "{{- 'User: ' + c + '\\n' -}}{%- if add_generation_prompt -%}"
                                           "{{- 'Assistant: ' -}}{%- endif -%}"})
V15_TEMPLATE = json.dumps({"chat_template": "{{- 'User: ' + c + '\\n' -}}{%- if add_generation_prompt -%}"
                                            "{{- 'Assistant:\\n' -}}{%- endif -%}"})


def test_generation_prompts_and_templates():
    assert g.get("v1").prompt("OCR:") == ("<|begin_of_sentence|>User: <|IMAGE_START|><|IMAGE_PLACEHOLDER|>"
                                          "<|IMAGE_END|>OCR:\nAssistant: ")
    assert g.get("1.5").prompt("OCR:", image=False) == "<|begin_of_sentence|>User: OCR:\nAssistant:\n"
    assert g.get("v1.6").user_format == "User: {{content}}\nAssistant:\n"
    assert g.get("v1").prompts["table"] == "Table Recognition:"
    assert "seal" in g.get("v1.5").prompts and "seal" not in g.get("v1").prompts
    with pytest.raises(OcrvlError, match=r"model_version='2.0' is unknown; use one of v1, v1.5, v1.6"):
        g.get("2.0")


def test_detect_generation_from_files():
    assert g.detect({"tokenizer_config.json": V1_TEMPLATE}, "PaddleOCR-VL")[0].name == "v1"
    gen, why = g.detect({"tokenizer_config.json": V15_TEMPLATE}, "my-base")
    assert (gen.name, why) == ("v1.5", "the chat template in tokenizer_config.json")
    assert g.detect({"chat_template.jinja": "{{ 'Assistant:\n' }}"}, "PaddleOCR-VL-1.6")[0].name == "v1.6"
    assert g.detect({"config.json": json.dumps({"_name_or_path": "PaddlePaddle/PaddleOCR-VL-1.5"})})[0].name == "v1.5"
    with pytest.raises(OcrvlError, match="named PaddleOCR-VL v1.6 but its chat template"):
        g.detect({"tokenizer_config.json": V1_TEMPLATE}, "PaddleOCR-VL-1.6")
    with pytest.raises(OcrvlError, match="set model_version=v1\\|v1.5\\|v1.6"):
        g.detect({"config.json": "{}"}, "base")


def test_detect_dir_and_resolve(tmp_path):
    base = tmp_path / "ft-base"
    base.mkdir()
    (base / "tokenizer_config.json").write_text(V15_TEMPLATE)
    assert g.resolve(None, str(base))[0].name == "v1.5"
    assert g.resolve("v1", str(base)) == (g.V1, "model_version")      # explicit wins
    with pytest.raises(OcrvlError, match="not a local folder"):
        g.resolve(None, "PaddlePaddle/PaddleOCR-VL")


def test_v1_template_on_15_is_refused():
    g.check_template(g.V15, None)
    g.check_template(g.V1, "paddleocr_vl")
    with pytest.raises(OcrvlError, match=r"template=paddleocr_vl is the v1 chat template .* PaddleOCR-VL v1.6"):
        g.check_template(g.V16, "paddleocr_vl")
    with pytest.raises(OcrvlError, match="template=qwen3 is not the PaddleOCR-VL v1 chat template"):
        g.check_template(g.V1, "qwen3")


def test_engine_keys_checked_on_the_driver(tmp_path):
    ok = {"train_lmdb_paths": "/d/a.lmdb", "model_version": "v1.5"}
    assert check_config(ok)[0] is g.V15
    bad = [({}, "needs train_lmdb_paths"),
           ({**ok, "train_dataset_path": "x.jsonl"}, "not train_dataset_path"),
           ({**ok, "train_lmdb_prob": "0.5,0.5"}, "2 value\\(s\\) for 1 LMDB"),
           ({**ok, "template": "paddleocr_vl"}, "is the v1 chat template"),
           ({**ok, "augment": {"blur_p": 1}}, "unknown key\\(s\\) blur_p")]
    for cfg, msg in bad:
        with pytest.raises(OcrvlError, match=msg):
            check_config(cfg)


def test_cli_refuses_v1_template_for_15_in_one_line(tmp_path, capsys):
    rc = cli.main(["train", "--dry-run", "engine=paddleformers", f"output_dir={tmp_path / 'run'}",
                   "train_lmdb_paths=/d/a.lmdb", "model_version=v1.5", "template=paddleocr_vl"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("ocrvl train: error: template=paddleocr_vl is the v1")


@pytest.mark.skipif(int(version("paddleformers").split(".")[0]) >= 1, reason="PaddleFormers 1.x is installed here")
def test_cli_names_the_paddleformers_venv(tmp_path, capsys):
    rc = cli.main(["train", "engine=paddleformers", f"output_dir={tmp_path / 'run'}", "train_lmdb_paths=/d/a.lmdb",
                   "model_version=v1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "needs PaddleFormers 1.x" in err[0] and ".venv-paddleformers" in err[0]


def test_engine_selects_the_paddleformers_entry():
    ours, _ = load_train_config(None, ["engine=paddleformers"], env={})
    assert ours.entry == PADDLEFORMERS_ENTRY
    ours, _ = load_train_config(None, ["engine=paddleformers", "entry=my.mod:fn"], env={})
    assert ours.entry == "my.mod:fn"


def test_augment_settings():
    assert augment_params(None) == augment_params(True)
    assert augment_params(True)["jpeg_p"] == 0.3 and augment_params(True)["rotation_degrees"] == [90, 270]
    assert augment_params(False) is None
    assert augment_params({"jpeg_p": 0.0})["jpeg_p"] == 0.0
    with pytest.raises(OcrvlError, match="augment='yes'"):
        augment_params("yes")


def test_lmdb_image_refs(tmp_path):
    lmdb = tmp_path / "a.lmdb"
    lmdb.mkdir()
    (lmdb / "data.mdb").write_bytes(b"")
    assert image_ref(str(lmdb), 42) == f"{lmdb}/image-000000042"
    assert parse_ref(image_ref(str(lmdb), 42)) == (str(lmdb), "image-000000042", False)
    assert parse_ref(image_ref(str(lmdb), 7, clean=True)) == (str(lmdb), "image-000000007", True)
    assert parse_ref(f"{tmp_path}/photo.jpg") is None
    assert parse_ref(f"{tmp_path}/nolmdb/image-000000001") is None     # no data.mdb there


@pytest.mark.skipif(not PF_PYTHON.exists(), reason="no .venv-paddleformers; build it with: python3 -m venv "
                    ".venv-paddleformers && .venv-paddleformers/bin/pip install -e '.[paddleformers]'")
@pytest.mark.skipif(Path(sys.executable).absolute() == PF_PYTHON, reason="already in .venv-paddleformers")
def test_paddleformers_suite_in_its_venv():
    """tests/pf in .venv-paddleformers: real trainer under Ray Train, storage, merge, logits, templates."""
    SUITES["paddleformers"].assert_passed()   # started at collection (tests/venv_suites.py)
