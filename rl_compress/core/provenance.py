"""Where and from what a run was made: git commit, CPU model, the machines a run trained on."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import torch


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


def machine(device: torch.device | None = None) -> str:
    """This machine in a few words, for a run's record of where its wall time was spent: the CPU
    model and core count, and the GPU's name when the run uses one (``device``), never a GPU
    that is merely present."""
    desc = f"{cpu_model() or platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    if device is not None and device.type == "cuda":
        desc += f", {torch.cuda.get_device_name(device)}"
    return desc


def machines_after(before: list[str] | None, device: torch.device | None = None) -> list[str]:
    """The machines a run has trained on, this one (with the ``device`` it uses) added: ``before``
    comes from its checkpoint (None for a checkpoint written before they were recorded, which
    stands as "unrecorded")."""
    seen = list(before) if before is not None else ["unrecorded"]
    here = machine(device)
    return seen if seen and seen[-1] == here else seen + [here]
