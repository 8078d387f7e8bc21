"""Shared fixtures: a randomly initialised Nature-DQN teacher saved as a real agent directory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rl_compress.models.agent import make_card, save_agent
from rl_compress.models.networks import build_network, teacher_arch


@pytest.fixture(scope="session", autouse=True)
def _threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture()
def random_teacher(tmp_path: Path) -> Path:
    """An agent directory holding a randomly initialised Pong teacher."""
    torch.manual_seed(0)
    arch = teacher_arch()
    net = build_network(arch, 6)
    out = tmp_path / "teacher"
    save_agent(out, net, make_card("teacher", "pong", arch, net, training={"note": "random init for tests"}))
    return out
