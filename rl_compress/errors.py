"""The one exception type for user mistakes: the CLI prints it as one line and exits 2."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in what the user asked for (bad name, bad file, bad number).

    The CLI prints ``error: <message>`` on one line, no traceback, and exits with code 2.
    """
