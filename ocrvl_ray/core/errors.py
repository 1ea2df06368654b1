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
