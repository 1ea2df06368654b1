"""User-facing errors: one line that names the file/record and the fix. The CLI prints them without a traceback.

Also the one place that looks inside Ray's error wrappers.
"""
from __future__ import annotations

import re


class OcrvlError(Exception):
    """Base of every error the user can fix (bad input, bad config, missing files)."""


#: How a remote ``OcrvlError`` (or ``ConfigError``) appears in the traceback text Ray puts into errors
#: that do not carry the exception object, e.g. ``ActorDiedError`` when an actor's constructor raised.
_REMOTE = re.compile(r"ocrvl_ray\.core\.(?:errors\.OcrvlError|config\.ConfigError): (.+)")


def unwrap_ray(e: BaseException) -> BaseException:
    """The exception a Ray task or actor raised, from inside ``RayTaskError`` (and its subclasses that
    also inherit the cause's class); any other exception unchanged."""
    seen = set()
    while isinstance(getattr(e, "cause", None), BaseException) and id(e) not in seen:
        seen.add(id(e))
        e = e.cause
    return e


def user_error(e: BaseException | None) -> OcrvlError | None:
    """The ``OcrvlError`` inside a (possibly Ray-wrapped) failure, else None.

    Follows Ray's wrappers (``RayTaskError.cause``), ``__cause__`` and ``__context__``; an error that only
    carries the remote traceback as text yields a new ``OcrvlError`` with the remote message's first line.
    """
    seen, text = set(), None
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        e = unwrap_ray(e)
        if isinstance(e, OcrvlError):
            return e
        text = text or _REMOTE.search(str(e))
        e = e.__cause__ or e.__context__
    return OcrvlError(text.group(1).strip()) if text else None


def check_output_path(path: str, what: str, *, folder: bool = False, no_spaces: bool = False) -> str:
    """Checks before any work that ``path`` can be written (its parent folder is created); returns it absolute.

    ``folder``: the output is a directory (LMDB, export) rather than a file. ``no_spaces``: the erniekit LMDB
    reader strips spaces from paths, so LMDB outputs must not contain any.
    """
    import os

    p = os.path.abspath(path)
    if no_spaces and any(c.isspace() for c in p):
        raise OcrvlError(f"{what}={path} contains a space; the erniekit LMDB reader strips spaces from paths, "
                         f"choose a path without spaces")
    if os.path.exists(p) and os.path.isdir(p) != folder:
        kind, want = ("a file", "a folder path") if folder else ("a folder", f"a file name, e.g. {p}/out.parquet")
        raise OcrvlError(f"{what}={path} is {kind}; give {want}")
    anc = os.path.dirname(p)
    while not os.path.exists(anc):
        anc = os.path.dirname(anc)
    if not os.path.isdir(anc):
        raise OcrvlError(f"{what}={path}: {anc} is a file, not a folder; choose another location")
    try:
        os.makedirs(os.path.dirname(p), exist_ok=True)
    except OSError as e:
        raise OcrvlError(f"{what}={path}: cannot create {os.path.dirname(p)} ({e.strerror}); "
                         f"choose a writable location") from None
    if not os.access(os.path.dirname(p), os.W_OK):
        raise OcrvlError(f"{what}={path}: {os.path.dirname(p)} is not writable; choose a writable location")
    return p
