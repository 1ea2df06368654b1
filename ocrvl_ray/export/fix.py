"""Repair a Paddle-layout merged safetensors file into HF layout, by evidence rather than key names.

For each tensor of the merged file, against the base tensor of the same name:
* same shape, not a square matrix -> kept;
* reversed shape (Paddle Linear ``[in, out]`` vs HF ``[out, in]``) -> transposed;
* square matrix -> the orientation closer to the base weight wins (fine-tuning moves weights little); when
  neither is clearly closer the tool refuses instead of guessing;
* a ``*.bias`` the base lacks and that is all zeros (paddleformers' ``restore_original_model`` adds them) -> dropped.
Everything else (unknown keys, missing keys, other shapes) is an error naming the key.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.export.st import StreamWriter, TensorSet, read_tensor

#: the chosen orientation must be at most this fraction of the other one's distance to the base
CLEAR_MARGIN = 0.5


@dataclass
class FixResult:
    out: Path
    kept: list[str] = field(default_factory=list)
    transposed: list[str] = field(default_factory=list)
    dropped_bias: list[str] = field(default_factory=list)
    square_decisions: dict[str, tuple[str, float, float]] = field(default_factory=dict)  # key -> (choice, d_keep, d_T)


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    """Relative Frobenius distance ||a - b|| / ||b|| in fp32."""
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    return float(np.linalg.norm(a32 - b32) / max(float(np.linalg.norm(b32)), 1e-30))


def square_orientation(w: np.ndarray, base: np.ndarray, key: str) -> tuple[bool, float, float]:
    """(transpose?, distance as is, distance transposed); raises when the evidence is ambiguous."""
    d_keep, d_t = _distance(w, base), _distance(w.T, base)
    lo, hi = min(d_keep, d_t), max(d_keep, d_t)
    if not lo <= CLEAR_MARGIN * hi:
        raise OcrvlError(f"cannot tell the orientation of square tensor {key!r}: distance to the base is "
                         f"{d_keep:.3g} as stored and {d_t:.3g} transposed; check that --base is the model this "
                         "file was fine-tuned from")
    return d_t < d_keep, d_keep, d_t


def fix_file(file: str | os.PathLike, base_dir: str | os.PathLike, out: str | os.PathLike, *,
             overwrite: bool = False, log: Callable[[str], None] = print) -> FixResult:
    file, out = Path(file), Path(out)
    if out.exists() and not overwrite:
        raise OcrvlError(f"{out} already exists; pass --overwrite to replace it")
    src_files = {p.resolve() for p in TensorSet.open(file).files}
    if out.resolve() in src_files:
        raise OcrvlError(f"--out {out} is the input file; inputs are never modified, pick another path")
    src, base = TensorSet.open(file), TensorSet.open(base_dir)
    res = FixResult(out)

    missing = sorted(set(base.tensors) - set(src.tensors))
    if missing:
        raise OcrvlError(f"{file} lacks base tensor {missing[0]!r} ({len(missing)} missing); is it a merge of "
                         f"{base_dir}?")
    plan = []  # (name, dtype, HF shape, transpose?)
    for info in src.in_file_order():
        name = info.name
        if name not in base:
            if name.endswith(".bias") and not np.any(read_tensor(info).astype(np.float32)):
                res.dropped_bias.append(name)
                continue
            raise OcrvlError(f"tensor {name!r} of {file} is not in the base and is not a zero bias; is it a merge of "
                             f"{base_dir}?")
        want = base[name].shape
        if info.shape == want and not (len(want) == 2 and want[0] == want[1]):
            plan.append((name, info.dtype, want, False))
        elif len(want) == 2 and info.shape == want[::-1] and want[0] != want[1]:
            plan.append((name, info.dtype, want, True))
        elif len(want) == 2 and info.shape == want:
            flip, d_keep, d_t = square_orientation(read_tensor(info), read_tensor(base[name]), name)
            res.square_decisions[name] = ("transposed" if flip else "kept", d_keep, d_t)
            plan.append((name, info.dtype, want, flip))
        else:
            raise OcrvlError(f"tensor {name!r} has shape {list(info.shape)} in {file} but {list(want)} in the base; "
                             "it cannot be repaired by transposing")

    out.parent.mkdir(parents=True, exist_ok=True)
    w = StreamWriter(out, [(n, d, s) for n, d, s, _ in plan], {"format": "pt"})
    try:
        for name, _, _, flip in plan:
            a = read_tensor(src[name])
            w.write(name, np.ascontiguousarray(a.T) if flip else a)
            (res.transposed if flip else res.kept).append(name)
        os.replace(w.close(), out)
    except BaseException:
        w.abort()
        raise
    squares = sum(v[0] == "transposed" for v in res.square_decisions.values())
    log(f"fixed {file} -> {out}: {len(res.transposed)} transposed ({squares} square by distance), "
        f"{len(res.kept)} kept, {len(res.dropped_bias)} zero bias keys dropped")
    return res
