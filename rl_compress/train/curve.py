"""The learning curve of a run directory: returns.csv drawn as learning_curve.png."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from rl_compress.core.files import atomic_write_bytes
from rl_compress.core.rundir import CURVE, RETURNS


def _read_returns(path: Path) -> np.ndarray:
    """(step, return) rows of a returns.csv (rows that cannot be read skipped); empty when the file
    is missing."""
    rows = path.read_bytes().decode("utf-8", errors="replace").splitlines()[1:] if path.exists() else []
    return np.array([pair for r in rows if (pair := _pair(r)) is not None]).reshape(-1, 2)


def _pair(row: str) -> tuple[float, float] | None:
    try:
        step, ret = (float(x) for x in row.split(",")[:2])
    except ValueError:
        return None
    return (step, ret) if np.isfinite(step) and np.isfinite(ret) else None


def plot_curve(
    out: Path, ylabel: str = "return (raw, training protocol)", before: tuple[Path, int, int] | None = None
) -> None:
    """Draw out/returns.csv as out/learning_curve.png (env steps vs return, raw and smoothed).

    ``before`` = (source agent directory, its env steps, the env steps of the runs before the
    source's own) for a run started from another agent's weights (``--init-from``): the source's
    returns are drawn first, where they lie in the whole training, and this run's steps continue
    from there.
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
        src = src[src[:, 0] <= before[1] - before[2]] + [before[2], 0.0]
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
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(out / CURVE, buf.getvalue())
