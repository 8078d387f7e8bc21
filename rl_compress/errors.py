"""The one exception type for user mistakes: the CLI prints it as one line and exits 2."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user asked for (bad name, bad file, bad number).

    The CLI prints ``error: <message>`` on one line, no traceback, and exits with code 2.
    """


def first_line(exc: BaseException, limit: int = 120) -> str:
    """The first line of an exception's message (or its type name), for one-line errors."""
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:limit]
