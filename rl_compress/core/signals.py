"""SIGINT / SIGTERM in this package: a stop that belongs to its run.

- A training loop stops when its ``StopToken`` is set. The token is the caller's (the CLI's, a
  study's) or the loop's own; no stop outlives the token it was asked of, so a second run in the
  same process (a notebook after a Ctrl-C) trains all its steps.
- ``signals_to(token)`` routes SIGINT / SIGTERM to a token while it is entered (main thread only):
  the loop ends at its next step, checkpoints, and the CLI exits with 128 + the signal number after
  saying how to resume. The CLI does this once per command, study workers once per process.
- Outside a loop, the CLI's SIGTERM handler (``raise_stopped``) raises ``Stopped``, which unwinds
  like Ctrl-C so that every temp file is removed.
- A study's worker processes get the stop through a public mechanism: the parent sets a
  ``multiprocessing`` Event, and ``watch_stop_event`` (a thread in each worker) sets the worker's
  token, so that a worker's loop checkpoints and stops.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rl_compress.core.errors import Stopped


class StopToken:
    """A request to stop: set by a signal routed to it, by a study's stop event or by a caller's
    ``request()``; a loop given the token ends at its next step. ``signum`` is the signal that set
    it (0 when none did)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signum = 0

    def request(self, signum: int = 0, frame: Any = None) -> None:
        """Ask for the stop (usable as a signal handler)."""
        self.signum = int(signum) or self.signum
        self._event.set()

    @property
    def requested(self) -> bool:
        """Whether a stop was asked for."""
        return self._event.is_set()


@contextmanager
def stops_end_at_once() -> Iterator[None]:
    """While entered (main thread only), SIGINT and SIGTERM take their default action: the process
    ends at once with 128 + the signal. For a long C++ call that holds the GIL before a run has
    anything to save (building hundreds of emulators), where no Python handler could run until it
    returns; the previous handlers come back on exit."""
    old: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, signal.SIG_DFL)
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


@contextmanager
def signals_to(token: StopToken) -> Iterator[StopToken]:
    """While entered, SIGINT / SIGTERM set ``token`` instead of ending the process; the previous
    handlers come back on exit. Outside the main thread (where handlers cannot be set) it does
    nothing, and the caller stops the token itself."""
    old: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, token.request)
    try:
        yield token
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def raise_stopped(signum: int, frame: Any) -> None:
    """SIGTERM outside a training loop: unwind like Ctrl-C, so that every temp file is removed."""
    raise Stopped(signum)


def watch_stop_event(event: Any, token: StopToken) -> threading.Thread:
    """In a worker process: a daemon thread that sets ``token`` when the parent sets ``event`` (a
    multiprocessing Event)."""

    def wait() -> None:
        event.wait()
        token.request(signal.SIGTERM)

    thread = threading.Thread(target=wait, name="stop-watch", daemon=True)
    thread.start()
    return thread
