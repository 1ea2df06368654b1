"""Streaming LoRA merge into a Hugging Face model folder.

For every adapted Linear (HF layout ``W[out, in]``, Paddle-layout adapter ``A[in, r]``, ``B[r, out]``)::

    W[out, in] += scaling * (A @ B)[in, out].T        # in fp32, rounded once to W's dtype

Tensors are processed one at a time, in row chunks, in the order they sit in the base files, so peak memory
is a few chunks (4 MiB each by default) whatever the model size; untouched tensors are copied byte for byte.
Output appears atomically: everything is written into a temp folder next to ``out`` and renamed at the end.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ocrvl_ray.core.errors import OcrvlError, check_output_path
from ocrvl_ray.export.adapter import LoraPair, load_adapter, module_families, pair_adapter, under_targeted
from ocrvl_ray.export.config import DEFAULT_MAX_SHARD_BYTES
from ocrvl_ray.export.st import (CHUNK_BYTES, FLOAT_DTYPES, Ordered, StreamWriter, TensorInfo, TensorSet, file_sha256,
                                 read_rows, row_chunks, row_nbytes)

WEIGHT_SUFFIXES = (".safetensors", ".pdparams", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".ckpt", ".gguf")
WEIGHT_INDEXES = (".safetensors.index.json", ".bin.index.json", ".pdparams.index.json")
REPORT = "merge_report.json"
BLOCK_ROWS = 64   # rows of the LoRA update per matmul call


def lora_delta_rows(pair: LoraPair, start: int, stop: int, out: np.ndarray | None = None) -> np.ndarray:
    """Rows ``start:stop`` of the HF-layout update ``scaling · (A @ B)ᵀ`` in fp32, shape [stop-start, in]
    (written into ``out`` when given)."""
    bt, at = pair.Bt32, pair.At32                                # ((A @ B)ᵀ)[start:stop] = Bᵀ[start:stop] @ Aᵀ
    delta = np.empty((stop - start, at.shape[1]), np.float32) if out is None else out
    for s in range(start, stop, BLOCK_ROWS):                    # cache-sized, single-threaded BLAS calls:
        e = min(stop, s + BLOCK_ROWS)                           # ~3x less CPU than one call per chunk
        np.matmul(bt[s:e], at, out=delta[s - start:e - start])
    delta *= np.float32(pair.scaling)
    return delta


def merged_rows(w: np.ndarray, pair: LoraPair, start: int, stop: int,
                scratch: np.ndarray | None = None, out: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Base rows ``w[start:stop]`` plus their LoRA update, rounded once to ``w``'s dtype; and max |update|.

    ``scratch`` (fp32) and ``out`` (``w``'s dtype), both shaped like ``w``, avoid fresh allocations."""
    delta = lora_delta_rows(pair, start, stop, scratch)         # [rows, in] fp32
    peak = float(max(delta.max(), -delta.min())) if delta.size else 0.0  # max |update| without a temp array
    delta += w                                                  # fp32 sum (w is upcast inside the ufunc)
    if out is None:
        return delta.astype(w.dtype), peak
    np.copyto(out, delta, casting="unsafe")                     # the same rounding as astype
    return out, peak


class _Ring:
    """A few reusable chunk buffers, handed out in turn. A buffer handed to the hashing or writing thread is
    reused only after two later chunks, and each of those threads holds at most one chunk pending."""

    def __init__(self, nbytes: int, n: int = 3):
        self.nbytes, self._bufs, self._i = nbytes, [np.empty(nbytes, np.uint8) for _ in range(n)], 0

    def take(self, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray | None:
        """A view of the next buffer, or None when the chunk does not fit (the caller allocates)."""
        n = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if n > self.nbytes:
            return None
        buf, self._i = self._bufs[self._i], (self._i + 1) % len(self._bufs)
        return buf[:n].view(dtype).reshape(shape)


def is_weight_file(rel: str) -> bool:
    return rel.endswith(WEIGHT_SUFFIXES) or rel.endswith(WEIGHT_INDEXES)


def support_files(base: Path) -> list[str]:
    """Every non-weight file of a model folder (config, tokenizer, processor, chat template, remote code).

    Hidden files and a ``merge_report.json`` (when the base is itself an export) are not part of the model.
    """
    out = []
    for p in sorted(base.rglob("*")):
        rel = p.relative_to(base).as_posix()
        if (p.is_file() and not any(part.startswith(".") for part in Path(rel).parts) and not is_weight_file(rel)
                and rel != REPORT):
            out.append(rel)
    return out


def bool_tie_word_embeddings(text: str) -> str:
    """``config.json`` text with an int ``tie_word_embeddings`` (the hub config's) rewritten as a bool, else as is:
    transformers 5.4-5.12 refuse the int. What the export writes and ``ocrvl verify`` expects."""
    cfg = json.loads(text)
    tie = cfg.get("tie_word_embeddings") if isinstance(cfg, dict) else None
    if not isinstance(tie, int) or isinstance(tie, bool):
        return text
    return json.dumps({**cfg, "tie_word_embeddings": bool(tie)}, indent=2, ensure_ascii=False) + "\n"


def plan_shards(infos: list[TensorInfo], max_shard_bytes: int) -> list[list[TensorInfo]]:
    """Greedy split in order; one shard when everything fits (then the file is ``model.safetensors``)."""
    shards: list[list[TensorInfo]] = [[]]
    size = 0
    for t in infos:
        if shards[-1] and size + t.nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(t)
        size += t.nbytes
    return shards


def shard_names(n: int) -> list[str]:
    return ["model.safetensors"] if n == 1 else [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]


@dataclass
class MergeResult:
    out: Path
    report: dict
    warnings: list[str] = field(default_factory=list)


class _HashingSource:
    """Reads base tensors file by file in offset order; a worker thread hashes each file's bytes as they pass."""

    def __init__(self, ring: "_Ring"):
        self.hashes: dict[Path, str] = {}
        self._ring = ring
        self._path, self._f, self._h, self._pos = None, None, None, 0
        self._bg = Ordered()

    def rows(self, info: TensorInfo, start: int, stop: int) -> np.ndarray:
        if info.path != self._path:
            self._finish()
            self._path, self._f, self._h = info.path, open(info.path, "rb"), hashlib.sha256()
            self._h.update(self._f.read(info.begin))  # length prefix + header
            self._pos = info.begin
        offset = info.begin + start * row_nbytes(info)
        if offset > self._pos:                        # padding between tensors: part of the file's bytes too
            self._f.seek(self._pos)
            self._bg.submit(self._h.update, self._f.read(offset - self._pos))
        arr = read_rows(info, start, stop, self._f, out=self._ring.take(np.uint8, ((stop - start) * row_nbytes(info),)))
        self._bg.submit(self._h.update, memoryview(arr.reshape(-1).view(np.uint8)))
        self._pos = offset + arr.nbytes
        return arr

    def _finish(self) -> None:
        if self._f is not None:
            self._f.seek(self._pos)
            self._bg.submit(self._h.update, self._f.read())
            self._bg.drain()
            self._f.close()
            self.hashes[self._path] = self._h.hexdigest()
            self._f = None

    def close(self) -> dict[Path, str]:
        self._finish()
        self._bg.close()
        return self.hashes

    def discard(self) -> None:
        """Release the open file and the worker after a failure."""
        if self._f is not None:
            self._f.close()
            self._f = None
        self._bg.abort()


def merge_lora(base_dir: str | os.PathLike, lora_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
               max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES, overwrite: bool = False,
               chunk_bytes: int = CHUNK_BYTES, log: Callable[[str], None] = print) -> MergeResult:
    """Merge ``lora_dir`` into ``base_dir`` and write an HF-layout export to ``out_dir``."""
    t0 = time.perf_counter()
    base_dir, lora_dir, out = Path(base_dir), Path(lora_dir), Path(out_dir)
    _check_paths(base_dir, lora_dir, out, overwrite)
    base = TensorSet.open(base_dir)
    adapter = load_adapter(lora_dir)
    pairs = pair_adapter(adapter, base)
    by_key = {p.base_key: p for p in pairs}
    for p in pairs:
        if base[p.base_key].dtype not in FLOAT_DTYPES:
            raise OcrvlError(f"base tensor {p.base_key!r} is {base[p.base_key].dtype}; only float weights can merge")

    families = module_families(pairs)
    warnings = []
    if adapter.stored_scaling is not None and abs(adapter.stored_scaling - adapter.scaling) > 1e-6 * adapter.scaling:
        warnings.append(f"lora_config.json says scaling={adapter.stored_scaling:g} but r={adapter.r}, "
                        f"lora_alpha={adapter.lora_alpha:g}, rslora={adapter.rslora} give {adapter.scaling:g}; "
                        "using the latter (what paddleformers computes when it loads the adapter)")
        log("WARNING: " + warnings[-1])
    log("adapter covers: " + ", ".join(f"{k} ×{v}" for k, v in families.items()))
    if under_targeted(families):
        warnings.append("the adapter only covers o_proj/down_proj: erniekit's default LoRA targets for PaddleOCR-VL "
                        "(set use_huggingface_model: true or lora target modules to train q/k/v/gate/up too)")
        log("WARNING: " + warnings[-1])

    infos = base.in_file_order()
    shards = plan_shards(infos, max_shard_bytes)
    names = shard_names(len(shards))
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    src = _HashingSource(_Ring(2 * chunk_bytes))
    outs, scratch = _Ring(2 * chunk_bytes), _Ring(4 * chunk_bytes, n=1)   # merged chunks; the fp32 update
    merged_report, untouched, written = {}, [], []
    try:
        for shard, name in zip(shards, names):
            specs = [(t.name, t.dtype, t.shape) for t in shard]
            w = StreamWriter(tmp / name, specs, {"format": "pt"})
            try:
                for info in shard:
                    pair = by_key.get(info.name)
                    max_delta = 0.0
                    for s, e in row_chunks(info, chunk_bytes):
                        rows = src.rows(info, s, e)
                        if pair is None:
                            w.write(info.name, rows)
                            continue
                        new, peak = merged_rows(rows, pair, s, e, scratch.take(np.float32, rows.shape),
                                                outs.take(rows.dtype, rows.shape))
                        max_delta = max(max_delta, peak)
                        w.write(info.name, new)
                    if pair is None:
                        untouched.append(info.name)
                    else:
                        merged_report[info.name] = {"module": pair.module, "rank": pair.rank,
                                                    "scaling": pair.scaling, "max_abs_delta": max_delta}
                written.append((w.close(), tmp / name))
            except BaseException:
                w.abort()
                raise
        hashes = src.close()
        if len(names) > 1:
            index = {"metadata": {"total_size": sum(t.nbytes for t in infos)},
                     "weight_map": {t.name: n for shard, n in zip(shards, names) for t in shard}}
            (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
        for done, final in written:
            os.replace(done, final)
        copied = support_files(base_dir)
        for rel in copied:
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(base_dir / rel, tmp / rel)
        if "config.json" in copied:
            text = (tmp / "config.json").read_text("utf-8")
            if bool_tie_word_embeddings(text) != text:
                (tmp / "config.json").write_text(bool_tie_word_embeddings(text), "utf-8")
        for p in adapter.files:
            if p not in hashes:
                hashes[p] = file_sha256(p)
        report = {
            "base": str(base_dir.resolve()), "lora": str(lora_dir.resolve()),
            "r": adapter.r, "lora_alpha": adapter.lora_alpha, "rslora": adapter.rslora, "scaling": adapter.scaling,
            "module_families": families, "warnings": warnings,
            "merged": merged_report, "untouched": untouched,
            "weight_files": names, "copied_files": copied,
            "input_sha256": {str(p.resolve()): h for p, h in sorted(hashes.items())},
            "seconds": round(time.perf_counter() - t0, 3),
        }
        (tmp / REPORT).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        _publish(tmp, out)
    except BaseException:
        src.discard()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log(f"merged {len(merged_report)} tensors, copied {len(untouched)} untouched, {len(copied)} support files "
        f"-> {out} ({report['seconds']} s)")
    return MergeResult(out, report, warnings)


def _check_paths(base: Path, lora: Path, out: Path, overwrite: bool) -> None:
    if not base.is_dir():
        raise OcrvlError(f"base model {base} is not a folder (expected config.json + model.safetensors)")
    r_out = out.resolve()
    for name, p in (("base", base), ("LoRA checkpoint", lora)):
        rp = p.resolve()
        if r_out == rp or rp in r_out.parents or r_out in rp.parents:
            raise OcrvlError(f"--out {out} overlaps the {name} folder {p}; inputs are never modified, pick another path")
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise OcrvlError(f"{out} already exists; pass --overwrite to replace it")
    check_output_path(str(out), "--out", folder=True)


def _publish(tmp: Path, out: Path) -> None:
    """Rename the finished temp folder into place; an old export is replaced only after success."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink()
