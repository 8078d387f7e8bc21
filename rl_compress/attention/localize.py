"""The ``localize`` .npz: frames, ram, maps, peaks and actions of games an agent plays (design contract)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from torch import nn

from rl_compress.attention.playback import play
from rl_compress.core.errors import UserError, arg_name
from rl_compress.core.files import atomic_write_bytes


def localize_to_npz(net: nn.Module, game: str, frames: int, out, method: str = "gmp", seed: int = 0, k: int = 5) -> dict:
    """Play ``frames`` steps and write the .npz of docs/formats.md (frames, ram, maps, peaks, actions)
    atomically; returns a summary. The maps explain the greedy action the agent chose."""


    if frames < 1:
        raise UserError(f"{arg_name('frames')} must be >= 1, got {frames}")
    steps = list(play(net, game, method, frames, episodes=10**6, seed=seed, epsilon=0.0, k=k))
    data = {
        "frames": np.stack([s.frame for s in steps]).astype(np.uint8),
        "ram": np.stack([s.ram for s in steps]).astype(np.uint8),
        "maps": np.stack([s.map for s in steps]).astype(np.float32),
        "peaks": np.stack([s.peaks for s in steps]).astype(np.float32),
        "actions": np.array([s.action for s in steps], dtype=np.int64),
    }

    buf = io.BytesIO()
    np.savez_compressed(buf, **data)
    atomic_write_bytes(Path(out), buf.getvalue())
    return {"frames": len(steps), "method": method, "episodes": int(steps[-1].episode) + 1, "path": str(out)}
