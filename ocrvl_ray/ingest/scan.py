"""Listing big file trees in parallel: one Ray task per subtree, files filtered by extension.

Used for label trees (``*.json``) and image trees (the lookup index). Without Ray the same walk runs
in-process. Results are sorted, so the listing never depends on task completion order.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from ocrvl_ray.core.errors import OcrvlError


@dataclass
class Listing:
    files: list[tuple[str, int]] = field(default_factory=list)   # (absolute path, size in bytes), sorted
    unreadable: list[str] = field(default_factory=list)          # directories that could not be listed


def _list_dir(d: str, exts: tuple[str, ...], files: list, unreadable: list) -> list[str]:
    """Appends the matching files of ``d`` to ``files``; returns its subdirectories."""
    try:
        with os.scandir(d) as it:
            entries = list(it)
    except OSError:
        unreadable.append(d)
        return []
    subdirs = []
    for e in entries:
        try:
            if e.is_dir():
                subdirs.append(e.path)
            elif e.name.lower().endswith(exts) and e.is_file():
                files.append((e.path, e.stat().st_size))
        except OSError:
            unreadable.append(e.path)
    return subdirs


def walk(directory: str, exts: tuple[str, ...]) -> tuple[list[tuple[str, int]], list[str]]:
    """Every file below ``directory`` whose lower-cased name ends with one of ``exts``."""
    files, unreadable, stack, seen = [], [], [directory], set()
    while stack:
        d = stack.pop()
        try:
            st = os.stat(d)
        except OSError:
            unreadable.append(d)
            continue
        if (st.st_dev, st.st_ino) in seen:      # symlink loop
            continue
        seen.add((st.st_dev, st.st_ino))
        stack += _list_dir(d, exts, files, unreadable)
    return files, unreadable


def _split_tree(root: str, exts: tuple[str, ...], want: int, max_depth: int = 3
                ) -> tuple[list[str], list[tuple[str, int]], list[str]]:
    """Subdirectories to hand to tasks (breadth-first until there are ``want`` of them) + files seen on the way."""
    dirs, files, unreadable = [root], [], []
    for _ in range(max_depth):
        if len(dirs) >= want:
            break
        dirs = [sub for d in dirs for sub in _list_dir(d, exts, files, unreadable)]
        if not dirs:
            break
    return dirs, files, unreadable


#: ``use_ray=None`` starts Ray only for trees with at least this many subtrees to walk in parallel:
#: starting Ray costs seconds, walking a small tree in-process milliseconds.
MIN_RAY_SUBTREES = 16


def scan(roots: list[str], exts: tuple[str, ...], use_ray: bool | None, tasks: int = 32) -> Listing:
    """List files under ``roots`` (files given directly are kept if they exist). Raises if a root is missing.

    ``use_ray``: True walks subtrees as Ray tasks, False in-process, None decides by the tree's breadth.
    """
    listing = Listing()
    subtrees: list[str] = []
    for root in roots:
        root = os.path.abspath(root)
        if os.path.isfile(root):
            listing.files.append((root, os.path.getsize(root)))
        elif os.path.isdir(root):
            dirs, files, bad = _split_tree(root, exts, tasks)
            subtrees += dirs
            listing.files += files
            listing.unreadable += bad
        else:
            raise OcrvlError(f"{root} does not exist (check the path)")
    if use_ray is None:
        use_ray = len(subtrees) >= MIN_RAY_SUBTREES
        if use_ray:
            from ocrvl_ray.core.runtime import init_ray
            init_ray()
    if use_ray and len(subtrees) > 1:
        import ray
        remote_walk = ray.remote(num_cpus=0.5)(walk)
        results = ray.get([remote_walk.remote(d, exts) for d in subtrees])
    else:
        results = [walk(d, exts) for d in subtrees]
    for files, bad in results:
        listing.files += files
        listing.unreadable += bad
    listing.files = sorted(set(listing.files))
    listing.unreadable.sort()
    return listing
