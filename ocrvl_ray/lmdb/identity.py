"""The identity of an LMDB's content: a JSON record (``{"hash", "identity", "code"}``) kept under
``ocrvl-identity`` inside the LMDB (every shard holds the same one), so a rerun resumes only under the same hash
and refuses to mix outputs of two configs. What goes into the identity is the producer's business
(``layout/outputs.py``); ``code`` names the code that first wrote it and is not hashed.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from ocrvl_ray.core.config import config_hash


def code_version() -> dict:
    """The code writing a record: the installed ocrvl-ray version and, run from a git checkout, its commit."""
    from importlib import metadata

    try:
        version = metadata.version("ocrvl-ray")
    except metadata.PackageNotFoundError:
        version = None
    root, commit = Path(__file__).resolve().parents[2], None
    if (root / ".git").exists():
        try:
            commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                    timeout=10).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            pass
    return {"ocrvl_ray": version, "git_commit": commit}


def identity_record(identity: dict) -> bytes:
    """``{"hash", "identity", "code"}``: ``code`` (``code_version``) is recorded beside the identity, outside
    its hash, so an upgrade resumes unless what the identity holds (``COMPOSE_VERSION``, the schema) moved."""
    return json.dumps({"hash": config_hash(identity), "identity": identity, "code": code_version()},
                      sort_keys=True).encode()


def stored_identity(path: str) -> dict | None:
    """The identity record an LMDB holds; ``{}`` for an LMDB with pages but no record; None if none exists."""
    from ocrvl_ray.lmdb.schema import IDENTITY_KEY, PAGE_PREFIX, open_readonly
    from ocrvl_ray.lmdb.shards import expand, is_sharded

    if is_sharded(path):
        path = expand(path)[0]   # every shard holds the same record
    if not os.path.isfile(os.path.join(path, "data.mdb")):
        return None
    env = open_readonly(path)
    try:
        with env.begin() as txn:
            raw = txn.get(IDENTITY_KEY)
            if raw is not None:
                return json.loads(raw)
            with txn.cursor() as cur:
                has_pages = cur.set_range(PAGE_PREFIX) and cur.key().startswith(PAGE_PREFIX)
    finally:
        env.close()
    return {} if has_pages else None


def differing_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ, in order (``recipes.ocr_public.cells_replace``)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for k in list(old) + [k for k in new if k not in old]:
            out += differing_keys(old.get(k), new.get(k), f"{prefix}{k}.")
        return out
    return [] if old == new else [prefix.rstrip(".")]


def identity_state(path: str, identity: dict) -> str | list[str]:
    """"new" (nothing there yet), "same" (resume), or the differing keys (``["(no record)"]`` for an LMDB
    written before identities were recorded)."""
    rec = stored_identity(path)
    if rec is None:
        return "new"
    if not rec:
        return ["(no identity record: written by an older ocrvl-ray)"]
    if rec.get("hash") == config_hash(identity):
        return "same"
    return differing_keys(rec.get("identity", {}), identity) or ["(hash)"]
