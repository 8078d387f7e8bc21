"""Shared fixtures: a randomly initialised Nature-DQN teacher saved as a real agent directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from rl_compress.models.agent import make_card, save_agent
from rl_compress.models.networks import build_network, teacher_arch


def _threads_per_worker() -> int:
    """The cores each pytest-xdist worker may use (all of them without xdist, at most 2)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, min(2, (os.cpu_count() or 1) // workers))


@pytest.fixture(scope="session", autouse=True)
def _threads() -> None:
    """Torch, and the CLI runs a test starts, use this worker's share of the cores."""
    threads = _threads_per_worker()
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)


@pytest.fixture()
def random_teacher(tmp_path: Path) -> Path:
    """An agent directory holding a randomly initialised Pong teacher."""
    torch.manual_seed(0)
    arch = teacher_arch()
    net = build_network(arch, 6)
    out = tmp_path / "teacher"
    save_agent(out, net, make_card("teacher", "pong", arch, net, training={"note": "random init for tests"}))
    return out
