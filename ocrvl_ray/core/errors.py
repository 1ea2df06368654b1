"""User-facing errors: one line that names the file/record and the fix. The CLI prints them without a traceback.

Also the one place that looks inside Ray's error wrappers (``RayTaskError.cause``).
"""
from __future__ import annotations


class OcrvlError(Exception):
    """Base of every error the user can fix (bad input, bad config, missing files)."""


def unwrap_ray(e: BaseException) -> BaseException:
    """The exception a Ray task or actor raised, from inside ``RayTaskError`` (and its subclasses that
    also inherit the cause's class); any other exception unchanged."""
    seen = set()
    while isinstance(getattr(e, "cause", None), BaseException) and id(e) not in seen:
        seen.add(id(e))
        e = e.cause
    return e


def user_error(e: BaseException | None) -> OcrvlError | None:
    """The ``OcrvlError`` inside a (possibly Ray-wrapped) failure, else None. Follows Ray's wrappers,
    ``__cause__`` and ``__context__`` (Ray Data re-raises a stage's error with the original in that chain)."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        e = unwrap_ray(e)
        if isinstance(e, OcrvlError):
            return e
        e = e.__cause__ or e.__context__
    return None
