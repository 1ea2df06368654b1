"""LoRA checkpoints of paddleformers/erniekit and PEFT adapters: find the files, read the config, pair A/B with
base weights.

Accepted checkpoint folders (``checkpoint-N/`` or the final output dir):
* unified: ``peft_model.safetensors.index.json`` + ``peft_model-0000k-of-0000n.safetensors`` (or one
  ``peft_model*.safetensors``);
* ``lora_model_state.pdparams`` (``LoRAModel.save_pretrained``), read with Paddle (imported lazily);
* ``lora_config.json`` with ``r``, ``lora_alpha``, ``rslora``;
* a PEFT adapter (``PeftModel.save_pretrained``, e.g. ``ocrvl train engine=transformers``):
  ``adapter_config.json`` (``r``, ``lora_alpha``, ``use_rslora``) + ``adapter_model.safetensors``, or a Ray
  checkpoint holding one under ``adapter/``. Its module names are transformers' loaded names
  (``base_model.model.model.language_model.layers.0.self_attn.q_proj``), mapped back to the hub layout
  (:data:`MODEL_TO_HUB`). Only plain LoRA / rsLoRA is accepted (:func:`load_peft_config`).

Adapter tensors are Paddle layout, A ``[in, r]`` and B ``[r, out]``, named ``<module>.lora_A`` /
``.lora_B`` (sometimes with ``.weight`` or a ``base_model.model.`` prefix). HF-PEFT layout
(A ``[r, in]``, B ``[out, r]``) is recognised by shape. The base weight is ``<module>.weight`` ``[out, in]``.
"""
from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import ml_dtypes
import numpy as np

from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.export.st import TensorSet, read_tensor

# LoRA variants whose merged weight is not W + scaling·A@B: refuse rather than export something wrong.
UNSUPPORTED_FLAGS = ("pissa", "use_mora", "loraga", "lora_use_mixer", "lorapro", "do_qat")
_LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.weight)?$")
_PREFIXES = ("base_model.model.", "base_model.", "model.")
_BASE_COPY = ".base_layer.weight"
LORA_CONFIG, PEFT_CONFIG, PEFT_WEIGHTS = "lora_config.json", "adapter_config.json", "adapter_model.safetensors"
#: transformers' loaded parameter names -> the hub checkpoint's: the inverse of ``HUB_TO_MODEL``
#: (``eval/engines/transformers.py``, transformers' ``conversion_mapping`` for ``paddleocr_vl``).
MODEL_TO_HUB = ((re.compile(r"^model\.language_model\."), "model."), (re.compile(r"^model\.visual\."), "visual."),
                (re.compile(r"^model\.projector\."), "mlp_AR."))
#: adapter_config.json keys that do not change the merged weight (whatever their value), besides r, lora_alpha,
#: use_rslora, peft_type, bias and init_lora_weights (checked on their own). Any other key set to a true value
#: (use_dora, lora_bias, modules_to_save, rank_pattern, trainable_token_indices, ...) is refused.
PEFT_INERT = frozenset({"base_model_name_or_path", "revision", "task_type", "inference_mode", "lora_dropout",
                        "target_modules", "exclude_modules", "layers_to_transform", "layers_pattern", "fan_in_fan_out",
                        "auto_mapping", "peft_version", "megatron_core", "qalora_group_size", "ensure_weight_tying",
                        "eva_config"})
#: init_lora_weights values that only initialise A and B (pissa, olora, corda, loftq, lora_ga also rewrite the base).
PEFT_INITS = (True, False, "gaussian", "orthogonal", "eva")


@dataclass
class LoraPair:
    module: str           # module path as named in the adapter
    base_key: str         # the base tensor this pair updates, e.g. "model.layers.0.self_attn.q_proj.weight"
    A: np.ndarray         # [in, r] (Paddle layout, as trained)
    B: np.ndarray         # [r, out]
    scaling: float

    @property
    def rank(self) -> int:
        return self.A.shape[1]

    @cached_property
    def At32(self) -> np.ndarray:
        """Aᵀ [r, in] fp32, contiguous (computed once; merge works on row chunks of Bᵀ @ Aᵀ)."""
        return np.ascontiguousarray(self.A.astype(np.float32).T)

    @cached_property
    def Bt32(self) -> np.ndarray:
        """Bᵀ [out, r] fp32, contiguous."""
        return np.ascontiguousarray(self.B.astype(np.float32).T)


@dataclass
class Adapter:
    path: Path
    r: int
    lora_alpha: float
    rslora: bool
    scaling: float
    tensors: dict[str, np.ndarray]
    files: list[Path]        # weight files + lora_config.json / adapter_config.json (hashed in the report)
    stored_scaling: float | None = None  # the "scaling" paddleformers wrote, if any (cross-checked by merge)


def adapter_dir(path: str | Path) -> Path | None:
    """The folder holding the adapter's config: ``path`` itself, or the ``adapter/`` inside a Ray checkpoint of
    ``ocrvl train engine=transformers``; None when neither has one."""
    path = Path(path)
    for folder in (path, path / "adapter"):
        if (folder / LORA_CONFIG).is_file() or (folder / PEFT_CONFIG).is_file():
            return folder
    return None


def _read_json(cfg_path: Path) -> dict:
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise OcrvlError(f"{cfg_path} is not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(cfg, dict):
        raise OcrvlError(f"{cfg_path} is not a JSON object")
    return cfg


def load_peft_config(cfg_path: Path) -> dict:
    """A PEFT ``adapter_config.json`` that merges as ``W + scaling·B@A``; one line naming the key otherwise."""
    cfg = _read_json(cfg_path)
    why = None
    if cfg.get("peft_type", "LORA") != "LORA":
        why = f"is a {cfg['peft_type']} adapter"
    elif cfg.get("bias", "none") != "none":
        why = f"sets bias={cfg['bias']!r} (trained biases)"
    elif cfg.get("init_lora_weights", True) not in PEFT_INITS:
        why = f"sets init_lora_weights={cfg['init_lora_weights']!r}, which rewrites the base weights too"
    else:
        odd = [k for k, v in cfg.items() if v and k not in PEFT_INERT and k not in
               ("r", "lora_alpha", "use_rslora", "peft_type", "bias", "init_lora_weights")]
        if odd:
            why = f"sets {odd[0]}={cfg[odd[0]]!r}"
    if why:
        raise OcrvlError(f"{cfg_path} {why}; ocrvl merge folds plain LoRA/rsLoRA only (merge this one with PEFT's "
                         "merge_and_unload)")
    if not isinstance(cfg.get("r"), int):
        raise OcrvlError(f"{cfg_path} lacks an integer LoRA rank 'r'")
    return cfg


def load_lora_config(ckpt: Path) -> dict:
    cfg_path = ckpt / LORA_CONFIG
    if not cfg_path.is_file():
        raise OcrvlError(f"{ckpt} has no {LORA_CONFIG} or {PEFT_CONFIG}; pass the LoRA checkpoint folder "
                         "(checkpoint-N or the training output dir)")
    cfg = _read_json(cfg_path)
    if "r" not in cfg:
        hint = " (it has lora_rank; paddleformers writes r)" if "lora_rank" in cfg else ""
        raise OcrvlError(f"{cfg_path} lacks the LoRA rank key 'r'{hint}")
    for flag in UNSUPPORTED_FLAGS:
        if cfg.get(flag):
            raise OcrvlError(f"{cfg_path} sets {flag}=true; ocrvl merge supports plain LoRA/rsLoRA only")
    return cfg


def lora_scaling(r: int, lora_alpha: float, rslora: bool) -> float:
    """PEFT/paddleformers scaling: alpha / r, or alpha / sqrt(r) for rsLoRA."""
    return lora_alpha / math.sqrt(r) if rslora else lora_alpha / r


def load_adapter(ckpt: str | Path) -> Adapter:
    ckpt = Path(ckpt)
    if not ckpt.is_dir():
        raise OcrvlError(f"LoRA checkpoint {ckpt} is not a folder")
    ckpt = adapter_dir(ckpt) or ckpt
    if (ckpt / PEFT_CONFIG).is_file():
        return _load_peft(ckpt)
    cfg = load_lora_config(ckpt)
    r = int(cfg["r"])
    alpha = float(cfg.get("lora_alpha", 8))
    if r <= 0 or alpha <= 0:
        hint = " (erniekit's lora_alpha=-1 means 2·r: write the value used in training)" if alpha < 0 else ""
        raise OcrvlError(f"{ckpt / 'lora_config.json'}: r={r}, lora_alpha={alpha:g} must be positive{hint}")
    rslora = bool(cfg.get("rslora", False))
    if (ckpt / "peft_model.safetensors.index.json").is_file() or list(ckpt.glob("peft_model*.safetensors")):
        ts = TensorSet.open(ckpt, stem="peft_model")
        tensors = {name: read_tensor(info) for name, info in ts.tensors.items()}
        files = list(ts.files)
    elif (ckpt / "lora_model_state.pdparams").is_file():
        files = [ckpt / "lora_model_state.pdparams"]
        tensors = _load_pdparams(files[0])
    else:
        raise OcrvlError(f"{ckpt} has neither peft_model*.safetensors nor lora_model_state.pdparams")
    stored = cfg.get("scaling")
    return Adapter(ckpt, r, alpha, rslora, lora_scaling(r, alpha, rslora), tensors, files + [ckpt / "lora_config.json"],
                   float(stored) if isinstance(stored, (int, float)) else None)


def _load_peft(folder: Path) -> Adapter:
    cfg = load_peft_config(folder / PEFT_CONFIG)
    r, alpha, rslora = cfg["r"], float(cfg.get("lora_alpha", 8)), bool(cfg.get("use_rslora", False))
    if r <= 0 or alpha <= 0:
        raise OcrvlError(f"{folder / PEFT_CONFIG}: r={r}, lora_alpha={alpha:g} must be positive")
    weights = folder / PEFT_WEIGHTS
    if not weights.is_file():
        pickled = " (it has adapter_model.bin: save with safe_serialization=True)" \
            if (folder / "adapter_model.bin").is_file() else ""
        raise OcrvlError(f"{folder} has {PEFT_CONFIG} but no {PEFT_WEIGHTS}{pickled}")
    ts = TensorSet.open(weights)
    tensors = {name: read_tensor(info) for name, info in ts.tensors.items()}
    return Adapter(folder, r, alpha, rslora, lora_scaling(r, alpha, rslora), tensors, [weights, folder / PEFT_CONFIG])


def hub_name(name: str) -> str:
    """A transformers-loaded PaddleOCR-VL name in the hub checkpoint's layout (others unchanged)."""
    for pattern, target in MODEL_TO_HUB:
        name = pattern.sub(target, name)
    return name


def _load_pdparams(path: Path) -> dict[str, np.ndarray]:
    import paddle  # lazy: only this checkpoint format needs Paddle

    try:
        sd = paddle.load(str(path))
    except Exception as e:  # paddle raises many types for a bad pickle
        raise OcrvlError(f"cannot read {path}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    out = {}
    for k, v in sd.items():
        is_bf16 = isinstance(v, paddle.Tensor) and v.dtype == paddle.bfloat16
        a = np.asarray(v.numpy() if isinstance(v, paddle.Tensor) else v)
        out[k] = a.view(ml_dtypes.bfloat16) if is_bf16 else a  # paddle hands bf16 out as raw uint16 bits
    return out


def pair_adapter(adapter: Adapter, base: TensorSet) -> list[LoraPair]:
    """Match every lora_A/lora_B pair to a base weight; any mismatch is one error naming the key."""
    halves: dict[str, dict[str, tuple[str, np.ndarray]]] = {}
    for key, arr in adapter.tensors.items():
        m = _LORA_KEY.match(key)
        if not m and key.endswith(_BASE_COPY):
            _check_base_copy(key, arr, base)
            continue
        if not m:
            raise OcrvlError(f"adapter tensor {key!r} is not a lora_A/lora_B weight; is {adapter.path} a LoRA "
                             "checkpoint?")
        halves.setdefault(m["module"], {})[m["ab"]] = (key, arr)
    if not halves:
        raise OcrvlError(f"{adapter.path} holds no LoRA tensors")
    pairs = []
    for module, ab in sorted(halves.items()):
        if set(ab) != {"A", "B"}:
            have = next(iter(ab.values()))[0]
            missing = "lora_B" if "A" in ab else "lora_A"
            raise OcrvlError(f"adapter tensor {have!r} has no matching {missing}; the checkpoint is incomplete")
        base_key = _find_base_key(module, base)
        (ka, A), (kb, B) = ab["A"], ab["B"]
        pairs.append(_orient(module, base_key, ka, A, kb, B, base[base_key].shape, adapter))
    return pairs


def _check_base_copy(key: str, arr: np.ndarray, base: TensorSet) -> None:
    """PEFT saves the (frozen) base weight of a targeted lm_head/embedding too (``save_embedding_layers``): fine
    when it is the base's, refused when it is not (the merge would not be base + LoRA)."""
    base_key = _find_base_key(key[: -len(_BASE_COPY)], base)
    want = read_tensor(base[base_key])
    if arr.shape != want.shape or arr.dtype != want.dtype or not np.array_equal(arr, want):
        raise OcrvlError(f"adapter tensor {key!r} is a copy of base weight {base_key!r} with other values; "
                         "ocrvl merge folds LoRA A/B into this base only: pass the base the adapter was trained on")


def _find_base_key(module: str, base: TensorSet) -> str:
    candidates = [module]
    for p in _PREFIXES:
        if module.startswith(p):
            candidates.append(module[len(p):])
    candidates += [hub_name(c) for c in candidates]
    for c in candidates:
        if f"{c}.weight" in base:
            return f"{c}.weight"
    want = hub_name(re.sub(r"^base_model\.(model\.)?", "", module)) + ".weight"   # in the base's own names
    close = difflib.get_close_matches(want, list(base.tensors), n=1, cutoff=0.6)
    hint = f" (closest base key: {close[0]!r})" if close else ""
    raise OcrvlError(f"adapter module {module!r} has no base weight {want!r}{hint}; "
                     "is this adapter for this base model?")


def _orient(module: str, base_key: str, ka: str, A: np.ndarray, kb: str, B: np.ndarray,
            base_shape: tuple[int, ...], adapter: Adapter) -> LoraPair:
    r = adapter.r
    if len(base_shape) != 2 or A.ndim != 2 or B.ndim != 2:
        raise OcrvlError(f"adapter tensor {ka!r} {list(A.shape)} / {kb!r} {list(B.shape)} cannot update base "
                         f"{base_key!r} {list(base_shape)}: only 2-D Linear weights can be merged")
    out_f, in_f = base_shape
    if A.shape == (in_f, r) and B.shape == (r, out_f):          # Paddle layout
        return LoraPair(module, base_key, A, B, adapter.scaling)
    if A.shape == (r, in_f) and B.shape == (out_f, r):          # HF-PEFT layout
        return LoraPair(module, base_key, np.ascontiguousarray(A.T), np.ascontiguousarray(B.T), adapter.scaling)
    paddle_rank = A.shape[1] if A.shape[0] == in_f and B.shape[1] == out_f and A.shape[1] == B.shape[0] else None
    hf_rank = A.shape[0] if A.shape[1] == in_f and B.shape[0] == out_f and A.shape[0] == B.shape[1] else None
    if paddle_rank or hf_rank:
        raise OcrvlError(f"adapter tensor {ka!r} has rank {paddle_rank or hf_rank} but lora_config.json says r={r}; "
                         "use the lora_config.json saved with this checkpoint")
    raise OcrvlError(f"adapter tensors {ka!r} {list(A.shape)} and {kb!r} {list(B.shape)} do not fit base "
                     f"{base_key!r} [out={out_f}, in={in_f}] at r={r}; is this adapter for this base model?")


def module_families(pairs: list[LoraPair]) -> dict[str, int]:
    """``{"llm:q_proj": 18, "vision:fc1": 27, ...}``: which kinds of modules the adapter covers."""
    fam: dict[str, int] = {}
    for p in pairs:
        module = p.base_key[: -len(".weight")]    # hub layout, whatever the adapter's names
        part = "vision" if module.startswith(("visual.", "vision")) or ".visual." in module else \
               "projector" if "mlp_AR" in module else "llm"
        key = f"{part}:{module.rsplit('.', 1)[-1]}"
        fam[key] = fam.get(key, 0) + 1
    return dict(sorted(fam.items()))


def under_targeted(families: dict[str, int]) -> bool:
    """True when only o_proj/down_proj are adapted: erniekit's silent default for PaddleOCR-VL."""
    leaves = {k.split(":", 1)[1] for k in families}
    return bool(leaves) and leaves <= {"o_proj", "down_proj"}
