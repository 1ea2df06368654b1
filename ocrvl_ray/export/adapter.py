"""LoRA checkpoints of paddleformers/erniekit: find the files, read the config, pair A/B with base weights.

Accepted checkpoint folders (``checkpoint-N/`` or the final output dir):
* unified: ``peft_model.safetensors.index.json`` + ``peft_model-0000k-of-0000n.safetensors`` (or one
  ``peft_model*.safetensors``);
* ``lora_model_state.pdparams`` (``LoRAModel.save_pretrained``), read with Paddle (imported lazily);
* ``lora_config.json`` with ``r``, ``lora_alpha``, ``rslora``.

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


@dataclass
class LoraPair:
    module: str           # module path as named in the adapter (prefix stripped)
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
    files: list[Path]        # weight files + lora_config.json (hashed in the report)
    stored_scaling: float | None = None  # the "scaling" paddleformers wrote, if any (cross-checked by merge)


def load_lora_config(ckpt: Path) -> dict:
    cfg_path = ckpt / "lora_config.json"
    if not cfg_path.is_file():
        raise OcrvlError(f"{ckpt} has no lora_config.json; pass the LoRA checkpoint folder (checkpoint-N or the "
                         "training output dir)")
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise OcrvlError(f"{cfg_path} is not valid JSON ({e.msg} at line {e.lineno})") from None
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


def _find_base_key(module: str, base: TensorSet) -> str:
    candidates = [module]
    for p in _PREFIXES:
        if module.startswith(p):
            candidates.append(module[len(p):])
    for c in candidates:
        if f"{c}.weight" in base:
            return f"{c}.weight"
    close = difflib.get_close_matches(f"{module}.weight", list(base.tensors), n=1, cutoff=0.6)
    hint = f" (closest base key: {close[0]!r})" if close else ""
    raise OcrvlError(f"adapter module {module!r} has no base weight {module + '.weight'!r}{hint}; "
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
        part = "vision" if p.module.startswith(("visual.", "vision")) or ".visual." in p.module else \
               "projector" if "mlp_AR" in p.module else "llm"
        key = f"{part}:{p.module.rsplit('.', 1)[-1]}"
        fam[key] = fam.get(key, 0) + 1
    return dict(sorted(fam.items()))


def under_targeted(families: dict[str, int]) -> bool:
    """True when only o_proj/down_proj are adapted: erniekit's silent default for PaddleOCR-VL."""
    leaves = {k.split(":", 1)[1] for k in families}
    return bool(leaves) and leaves <= {"o_proj", "down_proj"}
