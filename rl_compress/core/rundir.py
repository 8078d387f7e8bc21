"""The run and agent directory format, owned here alone: its file names, the run lock, the claim
of an output directory, the checkpoint written as one consistent generation, the returns log
(stop signals: ``signals``). Every layer above (models, attention, train, studies) uses these.

Guarantees (README, "What is guaranteed"):
- one writer per run directory: ``RunLock`` holds an OS lock (``flock``) that dies with its
  process, so a kill -9 never leaves a stale lock; a second writer is refused naming the owner PID;
- a checkpoint is staged in full (every file written to a hidden temp file) before any file of the
  previous generation is replaced, so a full disk or an I/O error leaves the previous one intact and
  no temp file behind; ``checkpoint.pt`` carries the step the other files must hold, and a resume
  repairs or refuses what does not match, with a line saying so;
- temp files of a killed process are swept when the next writer takes the lock.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import torch
from safetensors import SafetensorError, safe_open

from rl_compress.core.errors import StorageError, UserError, arg_name, first_line
from rl_compress.core.files import atomic_write_bytes, bytes_writer

WEIGHTS = "model.safetensors"
CARD = "agent.json"
CHECKPOINT = "checkpoint.pt"
REPLAY = "replay.npz"
RETURNS = "returns.csv"
CURVE = "learning_curve.png"
LOCK = ".lock"
MODEL_CARD = "README.md"
RESULT = "result.json"
STILL = "attention.png"
CONFIG = "config.yml"  # the settings a run trains with, as `--config` reads them

# what a run or agent directory of ours holds; --force removes exactly these
RUN_FILES = (CARD, WEIGHTS, CHECKPOINT, REPLAY, RETURNS, CURVE, MODEL_CARD, RESULT, STILL, CONFIG)


def is_temp_file(name: str) -> bool:
    """Whether a file name is one of our hidden temp files (``.NAME.tmp``, ``.NAME.XXXX.tmp``,
    ``.NAME.tmp.png``...): what a killed writer can leave behind."""
    return name.startswith(".") and ".tmp" in name and name != LOCK


def sweep_temp_files(directory: Path) -> list[str]:
    """Remove the temp files a killed writer left in ``directory``; returns their names.
    Call it only while holding the directory's ``RunLock``."""
    removed = []
    for p in Path(directory).iterdir() if Path(directory).is_dir() else []:
        if p.is_file() and is_temp_file(p.name):
            p.unlink(missing_ok=True)
            removed.append(p.name)
    return sorted(removed)


class RunLock:
    """Exclusive ownership of a run or agent directory for one process.

    ``flock`` on ``DIR/.lock``: the kernel releases it when the process dies (kill -9 included),
    so a lock is never stale. A second writer gets a UserError naming the owner's PID. The lock
    file is removed on release; taking the lock checks that the file locked is still the one at
    the path, so a writer that raced a release retries instead of sharing.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.fd: int | None = None
        self.created = False

    def __enter__(self) -> RunLock:
        self.created = not self.directory.exists()
        path = self.directory / LOCK
        for _ in range(20):
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:  # a read-only disk or folder: nothing can be written there
                raise StorageError(f"{self.directory}: cannot write there ({e.strerror or e})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise UserError(f"{self.directory}: in use by process {owner} (one writer per run directory); "
                                "wait for it to finish or stop it") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                try:
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                except OSError:
                    pass  # a full disk: the lock holds all the same, only the owner's PID is not shown
                self.fd = fd
                return self
            os.close(fd)  # the owner released (and removed) it between our open and flock: retry
        raise UserError(f"{path}: could not take the lock")

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            (self.directory / LOCK).unlink(missing_ok=True)
            os.close(self.fd)
            self.fd = None
        if self.created and not any(self.directory.iterdir()):
            self.directory.rmdir()  # refused before anything was written: no half-made directory


@contextlib.contextmanager
def own_run_dir(out: Path, resume: bool = False, force: bool = False, can_resume: bool = True) -> Iterator[None]:
    """Hold ``out`` for one writer (``RunLock``), sweep the temp files a killed writer left and check
    that it may be written (new or empty, the run resumed, or ``force``), for the whole block. A new
    run that ends in an exception (an interrupt during its setup) before its first save leaves no
    run files behind."""
    with RunLock(out):
        swept = sweep_temp_files(out)
        if swept:
            note(f"{out}: removed temp files of a stopped writer: {', '.join(swept)}")
        claim_output_dir(out, resume, force, can_resume)
        try:
            yield
        except BaseException:
            if not resume and not (out / CHECKPOINT).exists():  # a new run stopped before its first save
                for name in RUN_FILES:
                    (out / name).unlink(missing_ok=True)
            raise


def checkpoint_writer(state: dict[str, Any]) -> Callable[[BinaryIO], None]:
    """A writer for ``write_generation`` of ``state`` (tensors and plain values) as checkpoint.pt."""
    buf = io.BytesIO()
    torch.save(state, buf)
    return bytes_writer(buf.getvalue())


def note(message: str) -> None:
    """A one-line notice on stderr (what a resume repaired, what a sweep removed)."""
    print(f"note: {message}", file=sys.stderr)


def card_step(out: Path) -> int | None:
    """The env step the agent card in ``out`` was written at (None where it cannot be read)."""
    try:
        card = json.loads((out / CARD).read_text())
        return int((card.get("training") or {}).get("steps"))
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def weights_steps(path: Path) -> int | None:
    """The env step recorded in a safetensors file's metadata (None for files saved without it)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            value = (f.metadata() or {}).get("steps")
        return int(value) if value is not None else None
    except (SafetensorError, OSError, ValueError):
        return None


def reconcile_resume(out: Path, step: int) -> bool:
    """Bring a run directory back to its checkpoint's ``step`` before a resume: drop the returns
    logged after it (a kill between checkpoints), and report whether the weights and card hold
    another step (a kill inside a checkpoint write): then the caller rewrites them from the
    checkpoint. Each repair is said in one line."""
    dropped = truncate_returns(out, step)
    if dropped:
        note(f"{out / RETURNS}: dropped {dropped} row(s) logged after the checkpoint's step {step} or unreadable")
    held, weights = card_step(out), weights_steps(out / WEIGHTS)
    if weights not in (None, held):
        note(f"{out}: {WEIGHTS} held step {weights}, {CARD} step {held}, {CHECKPOINT} step {step}: "
             "rewriting them from the checkpoint")
        return True
    if held != step:
        note(f"{out}: {CARD} and {WEIGHTS} held step {held}, {CHECKPOINT} step {step}: "
             "rewriting them from the checkpoint")
        return True
    return False


def load_checkpoint(out: Path) -> dict[str, Any]:
    """Read out/checkpoint.pt with ``weights_only=True`` (no arbitrary unpickling)."""
    path = out / CHECKPOINT
    if not path.exists():
        raise UserError(f"{path}: missing, nothing to resume (--force starts the run again)")
    try:
        with warnings.catch_warnings():  # torch's notes on odd pickles would break the one-line error
            warnings.simplefilter("ignore")
            return torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is one user-facing error
        raise UserError(f"{path}: unreadable checkpoint ({first_line(e)})") from None


def truncate_returns(out: Path, step: int) -> int:
    """Drop the rows of out/returns.csv logged after ``step`` (episodes of steps that a resume
    discards, after a kill between checkpoints) and rows that cannot be read (damaged bytes);
    returns how many were dropped."""
    path = out / RETURNS
    if not path.exists():
        return 0
    lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    keep = lines[:1] + [r for r in lines[1:] if r and _row_step(r) <= step]
    dropped = len(lines) - len(keep)
    if dropped:
        atomic_write_bytes(path, ("\n".join(keep) + "\n").encode())
    return dropped


def _row_step(row: str) -> float:
    try:
        return float(row.split(",", 1)[0])
    except ValueError:
        return float("inf")


class ReturnsLog:
    """Appends one row per finished episode to out/returns.csv (step, return, length, wall time)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.file = open(out / RETURNS, "a", newline="")  # noqa: SIM115 - open for the whole run, closed by close()
        self.writer = csv.writer(self.file)
        if self.file.tell() == 0:
            self.writer.writerow(["step", "return", "length", "wall_time"])

    def add(self, step: int, ret: float, length: int, wall: float) -> None:
        """Log one episode."""
        try:
            self.writer.writerow([step, float(ret), int(length), round(wall, 1)])
            self.file.flush()
        except OSError as e:
            raise StorageError(f"{self.out / RETURNS}: could not write ({e.strerror or e}); "
                               "the last checkpoint is intact") from None

    def close(self) -> None:
        """Close the file (a full disk at this point loses nothing: rows are flushed as they come)."""
        with contextlib.suppress(OSError):
            self.file.close()


def holds_run(out: Path) -> bool:
    """Whether ``out`` holds a run or an agent of ours."""
    return any((out / name).exists() for name in (CARD, WEIGHTS, CHECKPOINT))


def claim_output_dir(out: Path, resume: bool = False, force: bool = False, can_resume: bool = True) -> list[str]:
    """Check that ``out`` may be written by a new run (or resumed with ``resume``); with ``force``
    remove the run files of ours it holds (``RUN_FILES``) and return their names. Call it while
    holding the directory's ``RunLock``, so that nobody writes between the check and the run.
    ``can_resume``: whether the command has a ``--resume`` to suggest."""
    out = Path(out)
    if resume or not out.exists():
        return []
    entries = [p for p in out.iterdir() if not p.name.startswith(".")]
    if not entries:
        return []
    if not force:
        if holds_run(out):
            how = (f"pass {arg_name('resume')} to continue it, {arg_name('force')} to replace it" if can_resume
                   else f"{arg_name('force')} replaces it")
            raise UserError(f"{out}: already holds a run; {how}, or choose another {arg_name('out')}")
        raise UserError(f"{out}: not empty; choose another {arg_name('out')} (or {arg_name('force')} to write into it)")
    removed = [p.name for p in entries if p.name in RUN_FILES and p.is_file()]
    for name in removed:
        (out / name).unlink()
    return removed
