"""The one owner of SIGINT / SIGTERM in this package.

- In a training loop (``StopFlag``), a signal sets the stop flag: the loop ends at its next step,
  checkpoints, and the CLI exits with 128 + the signal number after saying how to resume.
- Outside a loop, the CLI's handler (``raise_stopped``) raises ``Stopped``, which unwinds like
  Ctrl-C so that every temp file is removed.
- A study's worker processes get the stop through a public mechanism: the parent sets a
  ``multiprocessing`` Event, and ``watch_stop_event`` (a thread in each worker) turns it into the
  same flag, so that a worker's loop checkpoints and stops. A study's own process holds the
  signals with ``request_stop`` until its loops reach a step.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from rl_compress.core.errors import Stopped

_stop_requested = False
_stop_signal = 0


def request_stop(signum: int = 0, frame: Any = None) -> None:
    """Signal handler (and plain function) that asks every training loop of this process to stop:
    one that arrives before a loop's StopFlag is in place still stops that loop at once."""
    global _stop_requested, _stop_signal
    _stop_requested = True
    _stop_signal = int(signum) or _stop_signal


def stop_requested() -> bool:
    """Whether a stop was asked for in this process."""
    return _stop_requested


def stop_signal() -> int:
    """The signal number that stopped this process's loops (0 when none did)."""
    return _stop_signal


def raise_stopped(signum: int, frame: Any) -> None:
    """SIGTERM outside a training loop: unwind like Ctrl-C, so that every temp file is removed."""
    raise Stopped(signum)


class StopFlag:
    """While entered, SIGINT / SIGTERM ask for a stop (``stop``) instead of ending the process, so
    that the loop can checkpoint and stop cleanly. The previous handlers come back on exit."""

    def __init__(self) -> None:
        self._old: dict[int, Any] = {}

    @property
    def stop(self) -> bool:
        """Whether the loop should stop now."""
        return _stop_requested

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, request_stop)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def watch_stop_event(event: Any) -> threading.Thread:
    """In a worker process: a daemon thread that asks this process's loops to stop when the parent
    sets ``event`` (a multiprocessing Event)."""

    def wait() -> None:
        event.wait()
        request_stop(signal.SIGTERM)

    thread = threading.Thread(target=wait, name="stop-watch", daemon=True)
    thread.start()
    return thread
