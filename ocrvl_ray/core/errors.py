"""User-facing errors: one line that names the file/record and the fix. The CLI prints them without a traceback."""


class OcrvlError(Exception):
    """Base of every error the user can fix (bad input, bad config, missing files)."""
