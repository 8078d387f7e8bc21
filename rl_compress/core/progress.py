"""Progress of long work on stderr (so that ``--json`` stdout stays clean): a Rich bar in a terminal,
and in a log file, a pipe or a batch job one plain line every ``LOG_EVERY_S`` seconds and at the end
(count, rate, ETA and the task's own fields), as SB3's logger does."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

LOG_EVERY_S = 30.0


def progress_bar(enabled: bool = True) -> Progress | LogLines:
    """A progress display with count, elapsed and remaining time, and a free text field ``info``: a
    Rich bar when stderr is a terminal, else ``LogLines``; nothing at all unless ``enabled``."""
    if enabled and not sys.stderr.isatty():
        return LogLines()
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=Console(file=sys.stderr),
        disable=not enabled,
        transient=False,
    )


@dataclass
class _Task:
    description: str
    total: float | None
    completed: float
    fields: dict[str, Any]
    started: float = field(default_factory=time.monotonic)
    start_count: float = 0.0
    last_line: float = field(default_factory=time.monotonic)


class LogLines:
    """The part of Rich's ``Progress`` interface our loops use (``add_task``, ``update``,
    ``advance``, a context manager), as one line per ``every`` seconds and a last line at the end:
    ``distill gmp16 (pong): 12,000/500,000 (2.4%) 850/s elapsed 0:00:14 ETA 0:09:34 | info``."""

    def __init__(self, every: float = LOG_EVERY_S, file: TextIO | None = None) -> None:
        self.every = every
        self.file = file or sys.stderr
        self.tasks: list[_Task] = []

    def __enter__(self) -> LogLines:
        return self

    def __exit__(self, *exc: object) -> None:
        for task in self.tasks:
            self._print(task)

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **fields: Any) -> int:
        """Start a task; returns its id."""
        self.tasks.append(_Task(description, total, completed, dict(fields), start_count=completed))
        return len(self.tasks) - 1

    def update(self, task_id: int, completed: float | None = None, advance: float | None = None,
               total: float | None = None, **fields: Any) -> None:
        """Set or advance a task's count (and its total and fields); prints when its time has come."""
        task = self.tasks[task_id]
        if completed is not None:
            task.completed = completed
        if advance is not None:
            task.completed += advance
        if total is not None:
            task.total = total
        task.fields.update(fields)
        if time.monotonic() - task.last_line >= self.every:
            self._print(task)

    def advance(self, task_id: int, advance: float = 1) -> None:
        """Add ``advance`` to a task's count."""
        self.update(task_id, advance=advance)

    def _print(self, task: _Task) -> None:
        task.last_line = now = time.monotonic()
        elapsed = now - task.started
        rate = (task.completed - task.start_count) / elapsed if elapsed > 0 else 0.0
        count = f"{task.completed:,.0f}"
        eta = ""
        if task.total:
            count += f"/{task.total:,.0f} ({100 * task.completed / task.total:.1f}%)"
            if rate > 0 and task.completed < task.total:
                eta = f" ETA {_clock((task.total - task.completed) / rate)}"
        info = str(task.fields.get("info") or "").strip()
        print(f"{task.description}: {count} {rate:,.0f}/s elapsed {_clock(elapsed)}{eta}" + (f" | {info}" if info else ""),
              file=self.file, flush=True)


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
