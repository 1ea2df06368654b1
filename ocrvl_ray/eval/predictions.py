"""Predictions files: one row per sample, ``reference`` + one ``prediction:<model>`` column per model.

Read from JSONL or Parquet (``ocrvl eval score`` also scores predictions made elsewhere); written as Parquet
by ``ocrvl eval``. Optional columns: ``key``, the slice columns ``dataset``, ``kind``, ``layout_label``,
``loop:<model>`` (the repetition guard fired), and ``lmdb`` + ``index`` (where the crop image lives, for the
report). A single ``prediction`` column means one model named ``model``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ocrvl_ray.core.errors import OcrvlError

PREFIX = "prediction:"
LOOP_PREFIX = "loop:"


@dataclass
class Predictions:
    columns: dict[str, list]                  # column name -> values, all the same length
    models: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.columns["reference"])

    def hyps(self, model: str) -> list[str]:
        return self.columns[PREFIX + model]

    def loops(self, model: str) -> list[bool]:
        return [bool(v) for v in self.columns.get(LOOP_PREFIX + model, [False] * len(self))]

    def get(self, name: str) -> list | None:
        return self.columns.get(name)


def model_columns(names: list[str]) -> list[str]:
    """Model names in column order; ``prediction`` alone is the model ``model``."""
    models = [c[len(PREFIX):] for c in names if c.startswith(PREFIX)]
    if not models and "prediction" in names:
        models = ["model"]
    return models


def _read_rows(path: Path) -> dict[str, list]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pydict()
        except Exception as e:
            raise OcrvlError(f"{path}: not a readable Parquet file ({type(e).__name__}: {e}"[:300] + ")") from None
    rows = []
    with open(path, encoding="utf-8") as f:
        for no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise OcrvlError(f"{path} line {no}: not JSON ({e.msg}); write one JSON object per line") from None
            if not isinstance(row, dict):
                raise OcrvlError(f"{path} line {no}: expected a JSON object with 'reference' and 'prediction:<model>'")
            rows.append(row)
    names = list(dict.fromkeys(k for r in rows for k in r))
    return {k: [r.get(k) for r in rows] for k in names}


def read_predictions(path: str | os.PathLike) -> Predictions:
    """Reads and checks a predictions file (``.parquet``, else JSON lines)."""
    path = Path(path)
    if not path.is_file():
        raise OcrvlError(f"predictions file {path} does not exist")
    cols = _read_rows(path)
    if "reference" not in cols:
        raise OcrvlError(f"{path}: no 'reference' column; each row needs the ground-truth text as 'reference'")
    models = model_columns(list(cols))
    if not models:
        raise OcrvlError(f"{path}: no prediction column; name one column per model 'prediction:<model name>' "
                         "(or a single 'prediction')")
    if "prediction" in cols and not any(c.startswith(PREFIX) for c in cols):
        cols[PREFIX + "model"] = cols.pop("prediction")
    for i, r in enumerate(cols["reference"]):
        if not isinstance(r, str):
            raise OcrvlError(f"{path} row {i + 1}: 'reference' is {type(r).__name__}, expected text")
    for m in models:
        col = cols[PREFIX + m]
        for i, h in enumerate(col):
            if h is not None and not isinstance(h, str):
                raise OcrvlError(f"{path} row {i + 1}: '{PREFIX}{m}' is {type(h).__name__}, expected text or null")
        cols[PREFIX + m] = ["" if h is None else h for h in col]
    return Predictions(cols, models)


def write_predictions(columns: dict[str, list], path: str | os.PathLike) -> Path:
    """Parquet, written to a temp name and renamed into place."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(pa.table(columns), tmp)
    os.replace(tmp, path)
    return path
