"""Safetensors read/write without loading a model: header parsing, ranged reads, streaming writes.

File layout: ``u64 little-endian header length | JSON header | data``; the header maps each tensor name to
``{"dtype", "shape", "data_offsets": [begin, end]}`` relative to the data section, plus ``__metadata__``.
We read tensors with ``readinto`` (no mmap, so untouched bytes never count as resident memory) and view
bf16 through ``ml_dtypes``. Writers take the full list of (name, dtype, shape) up front, write the
header, then tensor bytes in that order; files appear only via an atomic rename.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import ml_dtypes
import numpy as np

from ocrvl_ray.core.errors import OcrvlError

DTYPES: dict[str, np.dtype] = {
    "BF16": np.dtype(ml_dtypes.bfloat16), "F16": np.dtype(np.float16), "F32": np.dtype(np.float32),
    "F64": np.dtype(np.float64), "I64": np.dtype(np.int64), "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16), "I8": np.dtype(np.int8), "U8": np.dtype(np.uint8), "BOOL": np.dtype(np.bool_),
}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
FLOAT_DTYPES = {"BF16", "F16", "F32", "F64"}
MAX_HEADER = 100 * 1024 * 1024
CHUNK_BYTES = 4 * 1024 * 1024  # unit of streaming reads/writes: small enough to stay in cache and be reused


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str            # safetensors dtype name, e.g. "BF16"
    shape: tuple[int, ...]
    path: Path            # file holding the tensor
    begin: int            # absolute byte offset in the file
    nbytes: int

    @property
    def np_dtype(self) -> np.dtype:
        return DTYPES[self.dtype]


def dtype_name(dtype: np.dtype) -> str:
    try:
        return DTYPE_NAMES[np.dtype(dtype)]
    except KeyError:
        raise OcrvlError(f"dtype {dtype} cannot be stored in safetensors by ocrvl") from None


def read_header(path: str | os.PathLike) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Parse and validate one file's header: (tensors by name, metadata). Truncation is an error."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise OcrvlError(f"{path} is not a safetensors file (only {size} bytes); re-copy or re-save it")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER or 8 + n > size:
                raise OcrvlError(f"{path} has a corrupt or truncated header (declares {n} bytes, file has {size}); "
                                 "re-copy or re-save it")
            header = json.loads(f.read(n))
    except OSError as e:
        raise OcrvlError(f"cannot read {path}: {e.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise OcrvlError(f"{path} has a header that is not JSON; it is not a safetensors file") from None
    meta = header.pop("__metadata__", None) or {}
    data_start, data_len = 8 + n, size - 8 - n
    tensors: dict[str, TensorInfo] = {}
    for name, h in header.items():
        try:
            dt, shape, (b, e) = h["dtype"], tuple(int(s) for s in h["shape"]), h["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise OcrvlError(f"{path}: header entry {name!r} is malformed") from None
        if dt not in DTYPES:
            raise OcrvlError(f"{path}: tensor {name!r} has dtype {dt}, which ocrvl does not handle")
        if e - b != int(np.prod(shape, dtype=np.int64)) * DTYPES[dt].itemsize or b < 0:
            raise OcrvlError(f"{path}: tensor {name!r} has offsets {b}..{e} that do not fit shape {list(shape)} {dt}")
        if e > data_len:
            raise OcrvlError(f"{path} is truncated: tensor {name!r} ends at byte {data_start + e} but the file has "
                             f"{size} bytes; re-copy or re-download it")
        tensors[name] = TensorInfo(name, dt, shape, path, data_start + b, e - b)
    prev = None
    for t in sorted(tensors.values(), key=lambda t: t.begin):
        if prev is not None and t.begin < prev.begin + prev.nbytes:
            raise OcrvlError(f"{path}: tensors {prev.name!r} and {t.name!r} overlap; the file is corrupt")
        prev = t
    return tensors, {str(k): str(v) for k, v in meta.items()}


def read_tensor(info: TensorInfo, f=None) -> np.ndarray:
    """The whole tensor as a fresh, writable, C-contiguous array."""
    buf = np.empty(info.nbytes, dtype=np.uint8)
    _read_into(info.path, info.begin, buf, f)
    return buf.view(info.np_dtype).reshape(info.shape)


def row_nbytes(info: TensorInfo) -> int:
    """Bytes of one row of the leading axis (of the whole value for a 0-d tensor)."""
    return int(np.prod(info.shape[1:], dtype=np.int64)) * info.np_dtype.itemsize


def read_rows(info: TensorInfo, start: int, stop: int, f=None, out: np.ndarray | None = None) -> np.ndarray:
    """Rows ``start:stop`` of the leading axis (rows are contiguous on disk); ``out``: a uint8 buffer of
    exactly that many bytes to read into (None: a fresh one)."""
    row = row_nbytes(info)
    buf = np.empty((stop - start) * row, dtype=np.uint8) if out is None else out
    _read_into(info.path, info.begin + start * row, buf, f)
    return buf.view(info.np_dtype).reshape((stop - start, *info.shape[1:]))


def row_chunks(info: TensorInfo, chunk_bytes: int = CHUNK_BYTES) -> Iterator[tuple[int, int]]:
    """(start, stop) row ranges of about ``chunk_bytes`` each; a 0-d or empty tensor is one range."""
    rows = info.shape[0] if info.shape else 1
    step = max(1, chunk_bytes // max(1, row_nbytes(info)))
    for s in range(0, max(rows, 1), step):
        yield s, min(rows, s + step)


def _read_into(path: Path, offset: int, buf: np.ndarray, f=None) -> None:
    own = f is None
    f = open(path, "rb") if own else f
    try:
        f.seek(offset)
        view, got = memoryview(buf), 0
        while got < len(view):
            n = f.readinto(view[got:])
            if not n:
                raise OcrvlError(f"{path} ended early at byte {offset + got}; the file is truncated")
            got += n
    finally:
        if own:
            f.close()


class Ordered:
    """Runs calls in order on one worker thread, at most one pending: overlaps file writes and hashing (which
    release the GIL) with the numpy work of the next chunk."""

    def __init__(self):
        self._ex = ThreadPoolExecutor(1, thread_name_prefix="ocrvl-io")
        self._last: Future | None = None

    def submit(self, fn, *args) -> None:
        self.drain()
        self._last = self._ex.submit(fn, *args)

    def drain(self) -> None:
        if self._last is not None:
            last, self._last = self._last, None
            last.result()  # re-raises the worker's exception here

    def close(self) -> None:
        """Wait for the pending call (re-raising its error) and stop the worker."""
        try:
            self.drain()
        finally:
            self._ex.shutdown()

    def abort(self) -> None:
        """Stop the worker after a failure elsewhere; the pending call's own error is secondary and dropped."""
        self._ex.shutdown(wait=True)
        self._last = None


class TensorSet:
    """All tensors of a model folder (``model.safetensors`` or shards + index) or of one file, by name."""

    def __init__(self, tensors: dict[str, TensorInfo], files: list[Path], metadata: dict[str, str]):
        self.tensors, self.files, self.metadata = tensors, files, metadata

    @classmethod
    def open(cls, path: str | os.PathLike, stem: str = "model") -> "TensorSet":
        path = Path(path)
        if path.is_dir():
            index = path / f"{stem}.safetensors.index.json"
            single = path / f"{stem}.safetensors"
            if index.is_file():
                try:
                    wmap = json.loads(index.read_text())["weight_map"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise OcrvlError(f"{index} is not a valid safetensors index (needs a weight_map)") from None
                files = sorted({path / f for f in wmap.values()})
            elif single.is_file():
                files = [single]
            else:
                files = sorted(path.glob(f"{stem}*.safetensors"))
            if not files:
                raise OcrvlError(f"{path} holds no {stem}*.safetensors weights; pass a Hugging Face model folder")
        elif path.is_file() and path.name.endswith(".index.json"):
            return cls.open(path.parent, path.name[: -len(".safetensors.index.json")])
        elif path.is_file():
            files = [path]
        else:
            raise OcrvlError(f"{path} does not exist")
        tensors: dict[str, TensorInfo] = {}
        meta: dict[str, str] = {}
        for f in files:
            if not f.is_file():
                raise OcrvlError(f"{f} is listed in the index but missing; re-copy the model folder")
            t, m = read_header(f)
            dup = set(t) & set(tensors)
            if dup:
                raise OcrvlError(f"tensor {sorted(dup)[0]!r} appears in two files ({f.name} and another shard)")
            tensors.update(t)
            meta = meta or m
        return cls(tensors, files, meta)

    def __contains__(self, name: str) -> bool:
        return name in self.tensors

    def __getitem__(self, name: str) -> TensorInfo:
        return self.tensors[name]

    def in_file_order(self) -> list[TensorInfo]:
        """Tensors file by file, by offset: the order that reads each file front to back."""
        order = {p: i for i, p in enumerate(self.files)}
        return sorted(self.tensors.values(), key=lambda t: (order[t.path], t.begin))


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------

def build_header(specs: Iterable[tuple[str, str, tuple[int, ...]]], metadata: dict[str, str]) -> bytes:
    """Header bytes (length prefix included) for tensors written back to back in ``specs`` order."""
    header: dict = {"__metadata__": dict(metadata)} if metadata else {}
    off = 0
    for name, dt, shape in specs:
        n = int(np.prod(shape, dtype=np.int64)) * DTYPES[dt].itemsize
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + n]}
        off += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # data section 8-byte aligned, like the reference writer
    return struct.pack("<Q", len(raw)) + raw


class StreamWriter:
    """Writes one safetensors file tensor by tensor; ``write`` accepts chunks of rows in order."""

    def __init__(self, path: Path, specs: list[tuple[str, str, tuple[int, ...]]], metadata: dict[str, str]):
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self.f = open(self.tmp, "wb")
        self.f.write(build_header(specs, metadata))
        self._bg = Ordered()
        self._expected = {n: int(np.prod(s, dtype=np.int64)) * DTYPES[d].itemsize for n, d, s in specs}
        self._dtypes = {n: d for n, d, _ in specs}
        self._order = [n for n, _, _ in specs]
        self._i, self._written = 0, 0

    def write(self, name: str, chunk: np.ndarray | memoryview | bytes) -> None:
        """Append bytes of tensor ``name`` (the current or next one in spec order). The write happens on a worker
        thread: do not modify ``chunk`` afterwards."""
        if self._i < len(self._order) and self._order[self._i] != name:
            self._finish_tensor()
        if self._i >= len(self._order) or self._order[self._i] != name:
            raise RuntimeError(f"tensor {name!r} written out of order")
        if isinstance(chunk, np.ndarray):
            if chunk.dtype != DTYPES[self._dtypes[name]]:
                raise RuntimeError(f"tensor {name!r}: dtype {chunk.dtype} != {self._dtypes[name]}")
            chunk = memoryview(np.ascontiguousarray(chunk).reshape(-1).view(np.uint8))
        self._bg.submit(self.f.write, chunk)
        self._written += len(chunk)

    def _finish_tensor(self) -> None:
        name = self._order[self._i]
        if self._written != self._expected[name]:
            raise RuntimeError(f"tensor {name!r}: wrote {self._written} bytes, expected {self._expected[name]}")
        self._i, self._written = self._i + 1, 0

    def close(self) -> Path:
        """Flush and sync; returns the temp path (the caller renames it into place)."""
        if self._i < len(self._order):
            self._finish_tensor()
        if self._i != len(self._order):
            raise RuntimeError(f"{self.path}: only {self._i} of {len(self._order)} tensors written")
        self._bg.close()
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        return self.tmp

    def abort(self) -> None:
        """Drop the temp file after a failure."""
        self._bg.abort()
        self.f.close()
        self.tmp.unlink(missing_ok=True)


def save_file(tensors: dict[str, np.ndarray], path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Path:
    """Small helper: write a dict of arrays atomically (used for fixed files and test fixtures)."""
    path = Path(path)
    specs = [(n, dtype_name(a.dtype), tuple(a.shape)) for n, a in tensors.items()]
    w = StreamWriter(path, specs, metadata if metadata is not None else {"format": "pt"})
    try:
        for n, a in tensors.items():
            w.write(n, a)
        os.replace(w.close(), path)
    except BaseException:
        w.abort()
        raise
    return path


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            h.update(chunk)
    return h.hexdigest()
