"""Deterministic splits: from AI-Hub folder names, or a seeded hash of the image id (text_in_wild)."""
from __future__ import annotations

import hashlib
import os
import re
from functools import lru_cache
from pathlib import PurePath

_TOKEN = re.compile(r"[A-Za-z]+|[가-힣]+|\d+")
# one token of a path component -> split ("TL_"/"VL_" are AI-Hub's training/validation label archives)
_SPLIT_TOKENS = {"training": "train", "train": "train", "tl": "train", "학습": "train",
                 "validation": "valid", "valid": "valid", "vl": "valid", "검증": "valid"}


def split_of_component(component: str) -> str | None:
    """``"1.Training"``, ``"[라벨]Validation"``, ``"TL_금융"``, ``"public_admin_train_partly_merged.json"`` ->
    ``train`` / ``valid`` / ``train_partly``; ``"Test"``/``"3.Test"`` -> ``test``; anything else None."""
    tokens = [t.lower() for t in _TOKEN.findall(component)]
    if not tokens:
        return None
    words = [t for t in tokens if not t.isdigit()]
    if words in (["test"], ["테스트"]):
        return "test"
    for i, t in enumerate(tokens):
        split = _SPLIT_TOKENS.get(t)
        if split:
            if split == "train" and "partly" in tokens[i + 1:i + 2]:
                return "train_partly"
            return split
    return None


def split_from_path(path: str | PurePath) -> str | None:
    """The split named by the deepest path component (file name first) that names one, else None."""
    for comp in reversed(PurePath(path).parts):
        split = split_of_component(comp)
        if split:
            return split
    return None


@lru_cache(maxsize=1 << 16)
def _folder_split(directory: str) -> str | None:
    return split_from_path(directory)


def split_of_file(path: str) -> str | None:
    """``split_from_path`` for many files: the file name, then its folder (cached per folder)."""
    return split_of_component(os.path.basename(path)) or _folder_split(os.path.dirname(path))


def hashed_split(key: str, seed: int = 42, valid_fraction: float = 0.1) -> str:
    """``train``/``valid`` from a seeded hash of ``key``: the same on every run, machine and worker count."""
    h = int.from_bytes(hashlib.sha1(f"{seed}\x1f{key}".encode("utf-8")).digest()[:8], "big")
    return "valid" if h / 2.0 ** 64 < valid_fraction else "train"
