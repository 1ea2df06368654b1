"""Check an export against its base (and adapter): file set, key set, shapes, dtypes and values.

* every non-weight file of the base is present and byte-identical; weights load the HF way
  (``model.safetensors`` or an index whose shards all exist, ``format=pt`` metadata);
* the key set, shapes and dtypes equal the base's;
* tensors the adapter does not touch are bit-identical;
* with ``--lora``: merged tensors equal ``base + scaling·(A@B)ᵀ`` within one rounding step of their dtype.
Without ``--lora`` the merge report (if any) says which tensors may differ.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import ml_dtypes
import numpy as np

from ocrvl_ray.core.errors import OcrvlError
from ocrvl_ray.export.adapter import LoraPair, load_adapter, pair_adapter
from ocrvl_ray.export.merge import REPORT, bool_tie_word_embeddings, lora_delta_rows, support_files
from ocrvl_ray.export.st import CHUNK_BYTES, DTYPES, TensorSet, read_rows, row_chunks

MAX_LINES = 10  # per problem kind


@dataclass
class VerifyResult:
    problems: dict[str, list[str]] = field(default_factory=dict)   # kind -> lines
    notes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, kind: str, line: str) -> None:
        self.problems.setdefault(kind, []).append(line)

    def lines(self) -> list[str]:
        out = [f"{k}: {v}" for k, v in self.counts.items()]
        for kind, items in self.problems.items():
            out.append(f"FAIL {kind} ({len(items)}):")
            out += [f"  {x}" for x in items[:MAX_LINES]]
            if len(items) > MAX_LINES:
                out.append(f"  ... and {len(items) - MAX_LINES} more")
        out += [f"note: {n}" for n in self.notes]
        out.append("OK: export matches its base" + (" and adapter" if self.counts.get("merged checked") else "")
                   if self.ok else "FAILED")
        return out


def verify_export(export: str | Path, base: str | Path, lora: str | Path | None = None,
                  chunk_bytes: int = CHUNK_BYTES) -> VerifyResult:
    export, base_dir = Path(export), Path(base)
    res = VerifyResult()
    if not export.is_dir():
        raise OcrvlError(f"export {export} is not a folder")
    base_ts = TensorSet.open(base_dir)
    _check_files(export, base_dir, res)
    try:
        exp_ts = TensorSet.open(export)
    except OcrvlError as e:
        res.add("weights", str(e))
        return res
    if exp_ts.metadata.get("format") != "pt":
        res.add("weights", f"metadata format={exp_ts.metadata.get('format')!r}; transformers needs format=pt")

    missing = sorted(set(base_ts.tensors) - set(exp_ts.tensors))
    extra = sorted(set(exp_ts.tensors) - set(base_ts.tensors))
    for k in missing:
        res.add("missing tensors", k)
    for k in extra:
        res.add("extra tensors", f"{k} {list(exp_ts[k].shape)} {exp_ts[k].dtype}")
    common = [t for t in base_ts.in_file_order() if t.name in exp_ts]
    comparable = []
    for b in common:
        e = exp_ts[b.name]
        if e.shape != b.shape:
            hint = " (transposed: Paddle layout? run ocrvl fix)" if e.shape == b.shape[::-1] else ""
            res.add("shape", f"{b.name}: base {list(b.shape)}, export {list(e.shape)}{hint}")
        elif e.dtype != b.dtype:
            res.add("dtype", f"{b.name}: base {b.dtype}, export {e.dtype}")
        else:
            comparable.append(b)

    pairs: dict[str, LoraPair] = {}
    may_differ: set[str] = set()
    judge_untouched = True          # False: nothing says which tensors were merged
    if lora is not None:
        pairs = {p.base_key: p for p in pair_adapter(load_adapter(lora), base_ts)}
    else:
        report = export / REPORT
        if report.is_file():
            may_differ = set(json.loads(report.read_text()).get("merged", {}))
        else:
            judge_untouched = False
            res.notes.append("no --lora and no merge_report.json: tensors that differ from the base are listed, "
                             "not judged")
    identical = merged_ok = 0
    changed = []
    for b in comparable:
        e = exp_ts[b.name]
        if b.name in pairs:
            bad, worst = _check_merged(b, e, pairs[b.name], chunk_bytes)
            if bad:
                res.add("merged values", f"{b.name}: {bad} elements off base+delta by more than one "
                                          f"{b.dtype} rounding step (worst {worst:.3g} over the tolerance)")
            else:
                merged_ok += 1
        elif _same_bytes(b, e, chunk_bytes):
            identical += 1
        elif b.name in may_differ or not judge_untouched:
            changed.append(b.name)
        else:
            res.add("untouched tensors changed", f"{b.name} differs from the base but the adapter does not touch it")
    res.counts = {"tensors in base": len(base_ts.tensors), "bit-identical to base": identical}
    if lora is not None:
        res.counts["merged checked"] = merged_ok
    else:
        res.counts["changed (not judged without --lora)"] = len(changed)
    return res


def _check_files(export: Path, base: Path, res: VerifyResult) -> None:
    for rel in support_files(base):
        dst = export / rel
        if not dst.is_file():
            res.add("missing files", rel)
        elif dst.read_bytes() != _expected(base, rel):
            res.add("files differ from base", rel)
    if not (export / "model.safetensors").is_file() and not (export / "model.safetensors.index.json").is_file():
        odd = sorted(p.name for p in export.glob("*.safetensors"))
        res.add("weights", f"no model.safetensors or model.safetensors.index.json (found {odd or 'none'}); "
                           "transformers, PaddleX and vLLM look for those names")


def _expected(base: Path, rel: str) -> bytes:
    """What the export holds for a copied base file: its bytes; ``config.json`` with a bool ``tie_word_embeddings``."""
    if rel != "config.json":
        return (base / rel).read_bytes()
    return bool_tie_word_embeddings((base / rel).read_text("utf-8")).encode("utf-8")


def _same_bytes(b, e, chunk_bytes: int) -> bool:
    with open(b.path, "rb") as fb, open(e.path, "rb") as fe:
        for s, t in row_chunks(b, chunk_bytes):
            if read_rows(b, s, t, fb).tobytes() != read_rows(e, s, t, fe).tobytes():
                return False
    return True


def _check_merged(b, e, pair: LoraPair, chunk_bytes: int) -> tuple[int, float]:
    """Elements where |export - (base + delta)| exceeds one rounding step of the dtype, and the worst excess."""
    info = ml_dtypes.finfo(DTYPES[b.dtype])  # numpy's finfo does not know bfloat16
    eps, tiny = float(info.eps), float(info.tiny)
    bad, worst = 0, 0.0
    with open(b.path, "rb") as fb, open(e.path, "rb") as fe:
        for s, t in row_chunks(b, chunk_bytes):
            ref = read_rows(b, s, t, fb).astype(np.float32)
            ref += lora_delta_rows(pair, s, t)
            got = read_rows(e, s, t, fe).astype(np.float32)
            excess = np.abs(got - ref) - (eps * np.abs(ref) + tiny)
            n = int(np.count_nonzero(excess > 0))
            if n:
                bad += n
                worst = max(worst, float(excess.max()))
    return bad, worst
