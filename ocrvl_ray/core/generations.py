"""PaddleOCR-VL model generations (v1, v1.5, v1.6, v1.8), one table for every stage: the chat template and prompts
(training, eval), detection from a base's files, and the layout preset (``LAYOUT``: the layout detector the
generation's document pipeline runs, the ``layout_shape_mode`` it crops regions with and, for v1.8, the engine).

1.8 ships PP-DocLayoutV4 (transformers >= 5.20 only, so its preset is ``layout.engine=transformers``); its chat
template is not known here yet (/work/shared/reference/platform-notes-training.md lists none), so training and
eval refuse v1.8 (``ModelVersion``, :func:`get`, :func:`detect`) while the layout job takes it
(``LayoutModelVersion``).

1.5 (2026-01) and 1.6 (2026-05) share v1's architecture and config.json but open the assistant turn with
``"Assistant:\\n"`` instead of v1's ``"Assistant: "``; fine-tuning 1.5 with v1's template is reported to
cause hallucination (PaddlePaddle/ERNIE#1442, PaddleOCR#17589), so it is refused. Pure functions: no Paddle,
no Ray (training, eval and layout share this table).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Optional

from pydantic import BeforeValidator

from ocrvl_ray.core.errors import OcrvlError

BOS, EOS = "<|begin_of_sentence|>", "<|end_of_sentence|>"
IMAGE = "<|IMAGE_START|><|IMAGE_PLACEHOLDER|><|IMAGE_END|>"
V1_PROMPTS = {"ocr": "OCR:", "table": "Table Recognition:", "formula": "Formula Recognition:",
              "chart": "Chart Recognition:"}
V15_PROMPTS = {**V1_PROMPTS, "spotting": "Spotting:", "seal": "Seal Recognition:"}


@dataclass(frozen=True)
class Generation:
    name: str                    # "v1" | "v1.5" | "v1.6" | "v1.8"
    assistant: Optional[str]     # what opens the assistant turn (None: not known yet, no training/eval)
    template: Optional[str]      # the PaddleFormers template name (v1: built in; 1.5+: registered by us)
    prompts: Mapping[str, str]   # task -> prompt text

    @property
    def user_format(self) -> str:
        """The user turn, PaddleFormers ``StringFormatter`` style: ``User: {{content}}\\n<assistant>``."""
        return "User: {{content}}\n" + self.assistant

    def prompt(self, content: str, image: bool = True) -> str:
        """The full generation prompt: ``<|begin_of_sentence|>User: [image]content\\n<assistant>``."""
        return f"{BOS}User: {IMAGE if image else ''}{content}\n{self.assistant}"


V1 = Generation("v1", "Assistant: ", "paddleocr_vl", V1_PROMPTS)
V15 = Generation("v1.5", "Assistant:\n", "paddleocr_vl_1.5", V15_PROMPTS)
V16 = Generation("v1.6", "Assistant:\n", "paddleocr_vl_1.5", V15_PROMPTS)
V18 = Generation("v1.8", None, None, {})
GENERATIONS = {g.name: g for g in (V1, V15, V16, V18)}
#: The generations training and eval support (a known chat template).
CHAT_VERSIONS = tuple(g.name for g in GENERATIONS.values() if g.template)
_ALIASES = {"1": "v1", "1.0": "v1", "v1.0": "v1", "1.5": "v1.5", "1.6": "v1.6", "1.8": "v1.8"}


def canonical(name: Any) -> str:
    """``1.5``, ``v1.5``, ``V1.5 `` (also the YAML/CLI number 1.5) -> ``v1.5``; ValueError naming the valid values."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in GENERATIONS:
        raise ValueError(f"unknown generation {name!r}; use one of {', '.join(GENERATIONS)} "
                         f"(also written 1.5, 1.6, 1.8)")
    return key


def _no_template(name: str) -> str:
    return (f"model_version={name}: PaddleOCR-VL {name}'s chat template is not known to ocrvl yet, so training and "
            f"eval cannot use it (the layout job can); use one of {', '.join(CHAT_VERSIONS)}")


def canonical_chat(name: Any) -> str:
    """:func:`canonical`, refusing a generation without a known chat template (v1.8) in one line."""
    key = canonical(name)
    if not GENERATIONS[key].template:
        raise ValueError(_no_template(key))
    return key


def get(name: str) -> Generation:
    """``v1``/``v1.5``/``v1.6`` (also ``1.5``, ``1.0``...) -> its Generation; a one-line error otherwise (also for
    v1.8, whose chat template is not known yet)."""
    try:
        return GENERATIONS[canonical_chat(name)]
    except ValueError as e:
        msg = str(e) if str(e).startswith("model_version=") else \
            f"model_version={name!r} is unknown; use one of {', '.join(CHAT_VERSIONS)}"
        raise OcrvlError(msg) from None


#: The config type of a generation where the chat template matters (key ``model_version`` of training, eval,
#: ``ocrvl pipeline``): accepts every spelling :func:`canonical` knows, holds the canonical name, refuses v1.8.
ModelVersion = Annotated[Literal[CHAT_VERSIONS], BeforeValidator(canonical_chat)]
#: The layout job's ``model_version``: every generation (v1.8 presets PP-DocLayoutV4).
LayoutModelVersion = Annotated[Literal[tuple(GENERATIONS)], BeforeValidator(canonical)]


def check_template(gen: Generation, template: Optional[str]) -> None:
    """Refuse a template that is not the generation's (above all v1's ``paddleocr_vl`` on 1.5+)."""
    if template in (None, "", gen.template):
        return
    if template == V1.template and gen is not V1:
        raise OcrvlError(f"template={template} is the v1 chat template ('Assistant: '), but the base is PaddleOCR-VL "
                         f"{gen.name}, which uses 'Assistant:\\n' (v1 scripts on 1.5 cause hallucination); remove "
                         "`template` from the config (ocrvl picks it from model_version)")
    raise OcrvlError(f"template={template} is not the PaddleOCR-VL {gen.name} chat template ({gen.template}); remove "
                     "`template` from the config (ocrvl picks it from model_version) or set model_version")


_NAME_RE = re.compile(r"paddleocr[-_ ]?vl[-_ ]?v?(1\.[568])", re.I)
# The assistant opener as it appears in a chat template's source: literal newline, or escaped in a string.
_V15_RE = re.compile(r"Assistant:(\n|\\n)")
_V1_RE = re.compile(r"Assistant: ")


def template_family(template_source: str) -> Optional[str]:
    """``"v1.5"`` when the template opens the assistant turn with a newline, ``"v1"`` with a space, else None."""
    if _V15_RE.search(template_source):
        return "v1.5"
    if _V1_RE.search(template_source):
        return "v1"
    return None


def detect(files: Mapping[str, str], folder_name: str = "") -> tuple[Generation, str]:
    """(generation, evidence) from a base's file texts (name -> text) and folder name.

    Evidence: the chat template (``chat_template.jinja``, ``chat_template.json``, or ``chat_template`` in
    ``tokenizer_config.json``/``processor_config.json``) gives v1 vs 1.5+; a ``PaddleOCR-VL-1.5``/``-1.6``
    name (folder, ``_name_or_path`` in config.json) gives the exact version. 1.5 and 1.6 share template and
    prompts, so a 1.5+ template without a name counts as v1.5.
    """
    source, where = _chat_template(files)
    family = template_family(source) if source else None
    names = [folder_name]
    try:
        cfg = json.loads(files.get("config.json") or "{}")
        names += [str(cfg.get(k) or "") for k in ("_name_or_path", "name_or_path")]
    except ValueError:
        pass
    m = next((m for m in map(_NAME_RE.search, names) if m), None)
    named = f"v{m.group(1)}" if m else None
    if named and not GENERATIONS[named].template:
        raise OcrvlError(_no_template(named) + f" (the base is named {m.group(0)!r})")
    if named and family == "v1":
        raise OcrvlError(f"the base is named PaddleOCR-VL {named} but its chat template ({where}) is v1's; set "
                         "model_version=v1|v1.5|v1.6 explicitly")
    if named:
        return GENERATIONS[named], f"name {m.group(0)!r}" + (f" and the chat template in {where}" if family else "")
    if family:
        return GENERATIONS[family], f"the chat template in {where}"
    raise OcrvlError("cannot tell the PaddleOCR-VL generation of the base (no chat template, no 1.5/1.6 in its "
                     "name); set model_version=v1|v1.5|v1.6")


def _chat_template(files: Mapping[str, str]) -> tuple[str, str]:
    if files.get("chat_template.jinja"):
        return files["chat_template.jinja"], "chat_template.jinja"
    for name in ("chat_template.json", "tokenizer_config.json", "processor_config.json"):
        try:
            value = json.loads(files.get(name) or "{}").get("chat_template")
        except (ValueError, AttributeError):
            continue
        if isinstance(value, str) and value:
            return value, name
    return "", ""


def detect_dir(base: str | Path) -> tuple[Generation, str]:
    """:func:`detect` on a base model folder."""
    p = Path(base)
    names = ("chat_template.jinja", "chat_template.json", "tokenizer_config.json", "processor_config.json",
             "config.json")
    files = {n: (p / n).read_text(encoding="utf-8") for n in names if (p / n).is_file()}
    return detect(files, p.resolve().name)


def resolve(model_version: Optional[str], base: Optional[str]) -> tuple[Generation, str]:
    """``model_version`` when given (evidence "model_version"), else :func:`detect_dir` on the base."""
    if model_version:
        return get(model_version), "model_version"
    if not base or not Path(base).is_dir():
        raise OcrvlError(f"model_name_or_path {base!r} is not a local folder, so its PaddleOCR-VL generation cannot "
                         "be detected; set model_version=v1|v1.5|v1.6")
    return detect_dir(base)


# -- layout side ----------------------------------------------------------------------------------
# paddlex ``PaddleOCRVL.predict`` defaults ``layout_shape_mode`` to ``auto`` for every generation; with
# PP-DocLayoutV2, which has no masks, ``auto`` crops plain boxes.
VERSIONS = tuple(GENERATIONS)

#: generation -> layout preset: ``model_name`` (paddleocr ``LayoutDetection``) and ``shape_mode``
#: (paddlex ``layout_shape_mode``: rect | quad | poly | auto).
LAYOUT: dict[str, dict[str, str]] = {
    "v1": {"model_name": "PP-DocLayoutV2", "shape_mode": "auto"},
    "v1.5": {"model_name": "PP-DocLayoutV3", "shape_mode": "auto"},
    "v1.6": {"model_name": "PP-DocLayoutV3", "shape_mode": "auto"},
    "v1.8": {"model_name": "PP-DocLayoutV4", "shape_mode": "auto", "engine": "transformers"},
}
