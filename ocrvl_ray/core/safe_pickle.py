"""Unpickling data we did not write (LMDB labels, legacy lookup files) without running code from it."""
from __future__ import annotations

import io
import pickle
from typing import Any


class _NoGlobals(pickle.Unpickler):
    """Builds only plain containers, strings and numbers: any class or function reference is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing persistent ids")


def loads(data: bytes) -> Any:
    """``pickle.loads`` restricted to plain values; raises ``pickle.UnpicklingError`` on references."""
    return _NoGlobals(io.BytesIO(data)).load()
