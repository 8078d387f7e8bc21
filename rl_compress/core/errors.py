"""The exception types for what the CLI reports as one line: ``error: <message>``, no traceback."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

_COMMAND_LINE_NAMES: ContextVar[bool] = ContextVar("command_line_names", default=False)


class UserError(Exception):
    """A mistake in what the user asked for (bad name, bad file, bad number).

    The CLI prints ``error: <message>`` on one line, no traceback, and exits with ``exit_code`` (2).
    """

    exit_code = 2


class StorageError(UserError):
    """A write the disk refused (full, read-only, I/O error): one line naming the path, exit code 1."""

    exit_code = 1


class Diverged(UserError):
    """A training run whose weights became NaN or Inf: stopped before they are saved, exit code 1."""

    exit_code = 1


class StoppedRun(UserError):
    """A study (or a run in it) that SIGINT / SIGTERM stopped after its runs checkpointed: the CLI
    prints the message (how to resume it) and exits with 128 + the signal number."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class Stopped(BaseException):
    """SIGTERM / SIGINT outside a training loop: unwinds (temp files removed) to the CLI, which exits
    with 128 + the signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def first_line(exc: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message (or its type name), for one-line errors; a long
    line is cut at a word boundary and marked with an ellipsis, never mid-word."""
    lines = str(exc).strip().splitlines()
    line = lines[0].strip() if lines else type(exc).__name__
    if len(line) <= limit:
        return line
    cut = line[:limit].rsplit(" ", 1)[0].rstrip(" ,;:")
    return cut + " ..."


def arg_name(name: str) -> str:
    """How an error names a setting: ``buffer_size`` for a Python caller (the argument or config
    field), ``--buffer-size`` inside the CLI (``command_line_names``)."""
    return "--" + name.replace("_", "-") if _COMMAND_LINE_NAMES.get() else name


@contextlib.contextmanager
def command_line_names() -> Iterator[None]:
    """While inside, ``arg_name`` names settings by their CLI flags (the CLI runs every command in it)."""
    token = _COMMAND_LINE_NAMES.set(True)
    try:
        yield
    finally:
        _COMMAND_LINE_NAMES.reset(token)
