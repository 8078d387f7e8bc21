"""Replay memory that stores each 84x84 frame once and rebuilds 4-frame stacks on sampling.

One ring per environment of the vector env, so frames of one episode sit next to each
other. Slot ``t`` of ring ``k`` holds the newest frame of the observation at time t, the
action taken from it, the (clipped) reward that followed, whether that transition ended
the episode for bootstrapping (game over or life loss), whether frame t starts an
episode (the stack is padded with zero frames before it, as the env does at reset) and
whether it has an action at all (the final frame of an episode has none).

1M transitions take about 7.1 GB (84*84 bytes each plus a few bytes of bookkeeping).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FRAME = (84, 84)
STACK = 4
SLOT_BYTES = FRAME[0] * FRAME[1] + 8 + 4 + 3  # frame, action (int64), reward (float32), three flags


@dataclass
class Batch:
    """A sampled batch of n-step transitions (numpy, ready for torch.from_numpy)."""

    obs: np.ndarray  # uint8 [B,4,84,84]
    actions: np.ndarray  # int64 [B]
    returns: np.ndarray  # float32 [B], discounted sum of up to n rewards
    next_obs: np.ndarray  # uint8 [B,4,84,84], the state to bootstrap from
    discounts: np.ndarray  # float32 [B], gamma^k, or 0 where the episode ended


class FrameReplay:
    """Ring buffers of frames for ``num_envs`` environments, ``capacity`` slots in all."""

    def __init__(self, capacity: int, num_envs: int, n_step: int = 1, gamma: float = 0.99) -> None:
        if capacity < num_envs * (n_step + STACK + 2):
            raise ValueError(f"replay capacity {capacity} too small for {num_envs} envs")
        self.num_envs = num_envs
        self.cap = capacity // num_envs
        self.n_step = n_step
        self.gamma = gamma
        shape = (num_envs, self.cap)
        self.frames = np.zeros(shape + FRAME, dtype=np.uint8)
        self.actions = np.zeros(shape, dtype=np.int64)
        self.rewards = np.zeros(shape, dtype=np.float32)
        self.terminal = np.zeros(shape, dtype=bool)
        self.start = np.zeros(shape, dtype=bool)
        self.has_action = np.zeros(shape, dtype=bool)
        self.pos = np.zeros(num_envs, dtype=np.int64)  # next slot to write
        self.count = np.zeros(num_envs, dtype=np.int64)  # slots written, capped at cap
        self._rows = np.arange(num_envs)

    def __len__(self) -> int:
        return int(self.count.sum())

    @property
    def capacity(self) -> int:
        """Slots in all rings together."""
        return self.cap * self.num_envs

    def add_frames(self, frames: np.ndarray, starts: np.ndarray, envs: np.ndarray | None = None) -> None:
        """Append one newest frame per env (uint8 [k,84,84]); ``starts`` marks reset frames."""
        rows = self._rows if envs is None else envs
        p = self.pos[rows]
        self.frames[rows, p] = frames
        self.start[rows, p] = starts
        self.has_action[rows, p] = False
        self.terminal[rows, p] = False
        self.rewards[rows, p] = 0.0
        self.pos[rows] = (p + 1) % self.cap
        self.count[rows] = np.minimum(self.count[rows] + 1, self.cap)

    def set_transitions(
        self, actions: np.ndarray, rewards: np.ndarray, terminals: np.ndarray, envs: np.ndarray | None = None
    ) -> None:
        """Record the action taken from each env's newest frame and what followed it."""
        rows = self._rows if envs is None else envs
        last = (self.pos[rows] - 1) % self.cap
        self.actions[rows, last] = actions
        self.rewards[rows, last] = rewards
        self.terminal[rows, last] = terminals
        self.has_action[rows, last] = True

    def record_step(
        self,
        next_obs: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        terminals: np.ndarray,
        after_reset: np.ndarray,
    ) -> None:
        """Store one step of the vector env (NEXT_STEP autoreset).

        ``after_reset[k]`` says env k ended an episode on the previous step, so this step
        was its reset: its action was ignored and ``next_obs[k]`` starts a new episode.
        """
        rows = np.flatnonzero(~after_reset)
        self.set_transitions(actions[rows], rewards[rows], terminals[rows], rows)
        self.add_frames(next_obs[:, -1], after_reset)

    def _stack(self, rows: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """4-frame stacks ending at slot ``idx`` of ring ``rows``, zero-padded before a start."""
        offs = np.arange(-(STACK - 1), 1)
        cols = (idx[:, None] + offs[None, :]) % self.cap  # [B,4], oldest first
        out = self.frames[rows[:, None], cols]  # [B,4,84,84]
        starts = self.start[rows[:, None], cols][:, 1:]  # a start at column c+1 hides columns <= c
        hidden = np.flip(np.cumsum(np.flip(starts, 1), 1), 1) > 0  # [B,3]
        if hidden.any():
            out[:, :-1][hidden] = 0
        return out

    def pick_slots(self, batch_size: int, rng: np.random.Generator, lookahead: int) -> tuple[np.ndarray, np.ndarray]:
        """Uniform (ring, slot) pairs of states that have an action, ``lookahead`` written
        slots after them and, once the ring has wrapped, 3 intact slots of history before."""
        rows_out: list[np.ndarray] = []
        idx_out: list[np.ndarray] = []
        got = 0
        for _ in range(100):
            k = rng.integers(0, self.num_envs, size=2 * batch_size)
            cnt = self.count[k]
            # age 1 is the newest slot
            hi = np.where(cnt == self.cap, cnt - (STACK - 1), cnt)
            lo = lookahead + 1
            ok = hi > lo
            age = lo + (rng.random(2 * batch_size) * np.maximum(hi - lo, 1)).astype(np.int64)
            idx = (self.pos[k] - age) % self.cap
            ok &= self.has_action[k, idx]
            rows_out.append(k[ok])
            idx_out.append(idx[ok])
            got += int(ok.sum())
            if got >= batch_size:
                break
        else:
            raise RuntimeError("replay memory holds no valid transitions yet")
        return np.concatenate(rows_out)[:batch_size], np.concatenate(idx_out)[:batch_size]

    def sample_states(self, batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sample states alone (for distillation): (rings, slots, uint8 [B,4,84,84] stacks)."""
        rows, idx = self.pick_slots(batch_size, rng, 0)
        return rows, idx, self._stack(rows, idx)

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        """Sample ``batch_size`` n-step transitions uniformly over valid slots."""
        n = self.n_step
        rows, idx = self.pick_slots(batch_size, rng, n)

        returns = np.zeros(batch_size, dtype=np.float32)
        discount = np.ones(batch_size, dtype=np.float32)
        alive = np.ones(batch_size, dtype=bool)  # still accumulating
        boot = idx.copy()
        for j in range(n):
            cur = (idx + j) % self.cap
            returns += np.where(alive, discount * self.rewards[rows, cur], 0.0).astype(np.float32)
            discount = np.where(alive, discount * self.gamma, discount).astype(np.float32)
            ended = alive & self.terminal[rows, cur]
            discount[ended] = 0.0
            alive &= ~ended
            nxt = (cur + 1) % self.cap
            boot = np.where(alive, nxt, boot)
            # the next frame has no action (truncated final frame) or we have n steps: stop
            alive &= self.has_action[rows, nxt]
        return Batch(
            obs=self._stack(rows, idx),
            actions=self.actions[rows, idx],
            returns=returns,
            next_obs=self._stack(rows, boot),
            discounts=discount,
        )

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Everything needed to restore the memory (see ``npz_writer``)."""
        return {
            "frames": self.frames,
            "actions": self.actions,
            "rewards": self.rewards,
            "terminal": self.terminal,
            "start": self.start,
            "has_action": self.has_action,
            "pos": self.pos,
            "count": self.count,
        }

    def npz_writer(self, step: int) -> Any:
        """A writer (for ``rundir.write_generation``) of the memory as an uncompressed .npz that
        records the env ``step`` it belongs to."""
        arrays = {**self.state_arrays(), "step": np.array(step, dtype=np.int64)}

        def write(f: Any) -> None:
            np.savez(f, **arrays)

        write.nbytes = sum(a.nbytes for a in arrays.values())  # type: ignore[attr-defined]
        return write

    def load(self, path: Path, step: int | None = None) -> bool:
        """Restore from a file ``npz_writer`` wrote if its shapes fit this memory (and, when ``step`` is given,
        if it was saved at that env step); returns success."""
        try:
            with np.load(path) as data:
                if step is not None and ("step" not in data or int(data["step"]) != step):
                    return False
                arrays = self.state_arrays()
                if any(data[k].shape != v.shape for k, v in arrays.items()):
                    return False
                for k, v in arrays.items():
                    v[...] = data[k]
        except (OSError, KeyError, ValueError):
            return False
        return True

    @staticmethod
    def saved_step(path: Path) -> int | None:
        """The env step a saved memory belongs to (None where the file has no record of it)."""
        try:
            with np.load(path) as data:
                return int(data["step"]) if "step" in data else None
        except (OSError, KeyError, ValueError):
            return None
