"""What every training run keeps in its directory: the checkpoint, the returns log and its
learning curve, and the SIGINT / SIGTERM flag that lets a loop checkpoint before it stops."""

from __future__ import annotations

import csv
import os
import platform
import signal
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rl_compress.errors import UserError, first_line

CHECKPOINT = "checkpoint.pt"
REPLAY = "replay.npz"
RETURNS = "returns.csv"
CURVE = "learning_curve.png"


def git_commit() -> str | None:
    """The current git commit of the source tree, if any."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ('' where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def machine() -> str:
    """This machine in a few words, for a run's record of where its wall time was spent:
    the CPU model and core count, and the GPU's name where torch sees one."""
    desc = f"{cpu_model() or platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    if torch.cuda.is_available():
        desc += f", {torch.cuda.get_device_name(0)}"
    return desc


def machines_after(before: list[str] | None) -> list[str]:
    """The machines a run has trained on, this one added: ``before`` comes from its checkpoint
    (None for a checkpoint written before they were recorded, which stands as "unrecorded")."""
    seen = list(before) if before is not None else ["unrecorded"]
    here = machine()
    return seen if seen and seen[-1] == here else seen + [here]


_stop_requested = False


def request_stop(signum: int = 0, frame: Any = None) -> None:
    """Signal handler for a process that runs training loops (a study's worker): a SIGINT /
    SIGTERM that arrives before a loop's StopFlag is in place still stops that loop at once."""
    global _stop_requested
    _stop_requested = True


def stop_requested() -> bool:
    """Whether ``request_stop`` was called in this process."""
    return _stop_requested


class StopFlag:
    """Turns SIGINT / SIGTERM into a flag so the loop can checkpoint and stop cleanly."""

    def __init__(self) -> None:
        self.stop = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "StopFlag":
        self.stop = _stop_requested
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.stop = True
        request_stop()

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def save_checkpoint(out: Path, state: dict[str, Any]) -> None:
    """Write ``state`` (tensors and plain values only) to out/checkpoint.pt, atomically."""
    tmp = out / f".{CHECKPOINT}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, out / CHECKPOINT)


def load_checkpoint(out: Path) -> dict[str, Any]:
    """Read out/checkpoint.pt with ``weights_only=True`` (no arbitrary unpickling)."""
    path = out / CHECKPOINT
    if not path.exists():
        raise UserError(f"{path}: missing, nothing to resume")
    try:
        return torch.load(path, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is one user-facing error
        raise UserError(f"{path}: unreadable checkpoint ({first_line(e)})") from None


class ReturnsLog:
    """Appends one row per finished episode to out/returns.csv (step, return, length, wall time)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.file = open(out / RETURNS, "a", newline="")
        self.writer = csv.writer(self.file)
        if self.file.tell() == 0:
            self.writer.writerow(["step", "return", "length", "wall_time"])

    def add(self, step: int, ret: float, length: int, wall: float) -> None:
        """Log one episode."""
        self.writer.writerow([step, float(ret), int(length), round(wall, 1)])
        self.file.flush()

    def close(self) -> None:
        """Close the file."""
        self.file.close()


def _read_returns(path: Path) -> np.ndarray:
    """(step, return) rows of a returns.csv; empty when the file is missing."""
    rows = path.read_text().splitlines()[1:] if path.exists() else []
    return np.array([[float(x) for x in r.split(",")[:2]] for r in rows]).reshape(-1, 2)


def plot_curve(
    out: Path, ylabel: str = "return (raw, training protocol)", before: tuple[Path, int] | None = None
) -> None:
    """Draw out/returns.csv as out/learning_curve.png (env steps vs return, raw and smoothed).

    ``before`` = (source agent directory, its env steps) for a run started from another
    agent's weights (``--init-from``): the source's returns up to those steps are drawn
    first and this run's steps continue from there, so the curve shows the whole training.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = _read_returns(out / RETURNS)
    if len(data) < 2:
        return
    src = np.zeros((0, 2))
    if before is not None:
        src = _read_returns(Path(before[0]) / RETURNS)
        src = src[src[:, 0] <= before[1]]
        data = data + [before[1], 0.0]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    if len(src):
        ax.plot(src[:, 0], src[:, 1], ".", color="grey", alpha=0.3, ms=3, label=f"episode of {Path(before[0]).name}")
        ax.axvline(before[1], color="grey", lw=1, ls="--")
    steps, rets = data[:, 0], data[:, 1]
    ax.plot(steps, rets, ".", alpha=0.3, ms=3, label="episode")
    allsteps = np.concatenate([src[:, 0], steps])
    allrets = np.concatenate([src[:, 1], rets])
    w = min(20, len(allrets))
    smooth = np.convolve(allrets, np.ones(w) / w, mode="valid")
    ax.plot(allsteps[w - 1 :], smooth, "-", lw=2, label=f"mean of {w}")
    ax.set_xlabel("env steps (4 frames each)")
    ax.set_ylabel(ylabel)
    ax.set_title(f"{out.parent.name}/{out.name}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    tmp = out / f".{CURVE}.tmp.png"
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, out / CURVE)
