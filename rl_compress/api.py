"""The Python API: load an agent, act with it, look inside it, play it in a gymnasium loop,
evaluate it, and train or distill new ones. The CLI calls these same functions.

    import rl_compress as rlc

    agent = rlc.load_agent("agents/pong/gmp32-w5-1pct-tuned")
    env = rlc.make_env("pong")
    obs, info = env.reset(seed=0)
    action, _ = agent.predict(obs)                   # uint8 [4,84,84] -> int (SB3's (actions, state))
    maps, peaks = agent.attention(obs[None])         # [1,210,160] map, [1,K,(x, y, weight)] peaks
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rl_compress.atari.envs import EnvConfig, make_gym_env
from rl_compress.atari.evaluate import DEFAULT_PROTOCOL, Protocol
from rl_compress.atari.evaluate import evaluate as evaluate_net
from rl_compress.attention.video import render_overlay
from rl_compress.core.config import MAX_SEED, check_int, check_number
from rl_compress.core.device import resolve_device
from rl_compress.core.errors import UserError
from rl_compress.models.agent import Agent
from rl_compress.models.sources import load_source

MAX_NOOPS = 1000  # no-op starts at reset; the protocol uses 30


def load_agent(source: str | Path, game: str | None = None, device: str | torch.device = "auto") -> Agent:
    """An agent from an agent directory, or from any source ``rl-compress teacher import`` reads: a
    stable-baselines3 / RL Zoo DQN or QR-DQN zip, a CleanRL DQN ``.cleanrl_model``, or
    ``hf:ORG/NAME[@REVISION]`` on the Hugging Face Hub (``game``: read from the name when not given),
    with its network on ``device`` (auto: CUDA when torch sees one; ``predict``, ``attention`` and
    ``evaluate`` run there). Nothing is unpickled; anything that does not fit is refused with one
    clear error (UserError)."""
    if not isinstance(source, (str, Path)):
        raise UserError(f"source must be a path or 'hf:ORG/NAME', got {type(source).__name__} {source!r}")
    if game is not None and not isinstance(game, str):
        raise UserError(f"game must be a game name such as 'pong', got {game!r}")
    torch_device = resolve_device(device, announce=False)
    agent = load_source(source, game)
    agent.net.to(torch_device)
    return agent


def make_env(game: str, sticky: float = DEFAULT_PROTOCOL.sticky, noop_max: int = DEFAULT_PROTOCOL.noop_max,
             max_frames: int = DEFAULT_PROTOCOL.max_frames, render_mode: str | None = "rgb_array") -> gym.Env:
    """A gymnasium env with exactly our preprocessing (frame skip 4 with a max over the last two
    frames, 84x84 grey, a stack of 4 with zero frames at reset, up to ``noop_max`` no-ops), under
    the evaluation protocol by default: observations uint8 [4,84,84] for ``Agent.predict``, raw
    rewards, an episode is a whole game. Its vector twin is ``rl_compress.make_vector_env``."""
    if not isinstance(game, str):
        raise UserError(f"game must be a game name such as 'pong', got {game!r}")
    check_number("sticky", sticky, 0.0, 1.0)
    check_int("noop_max", noop_max, 0, MAX_NOOPS)
    check_int("max_frames", max_frames, 1, 10**9)
    config = EnvConfig(sticky=sticky, noop_max=noop_max, max_frames=max_frames, clip_rewards=False)
    return make_gym_env(game, config, render_mode=render_mode)


class AttentionWrapper(gym.Wrapper):
    """Adds the agent's attention for its own action to ``info`` (``attention``: map [210,160],
    ``peaks``: [K,3], ``action``) at every step, and draws the overlay in ``render()``. Use it
    with the actions of ``agent.predict``: the map explains the agent's choice on that stack."""

    def __init__(self, env: gym.Env, agent: Agent, method: str = "gmp", scale: int = 2) -> None:
        super().__init__(env)
        self.agent, self.method, self.scale = agent, method, scale
        self._last: tuple[np.ndarray, np.ndarray] | None = None

    def _explain(self, obs: np.ndarray, info: dict[str, Any]) -> dict[str, Any]:
        maps, peaks = self.agent.attention(obs, self.method)
        self._last = (maps[0], peaks[0])
        return {**info, "attention": maps[0], "peaks": peaks[0], "action": self.agent.predict(obs)[0]}

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the env; ``info`` carries the attention on the first observation."""
        obs, info = self.env.reset(**kwargs)
        return obs, self._explain(obs, info)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Step the env; ``info`` carries the attention on the new observation."""
        obs, reward, term, trunc, info = self.env.step(action)
        return obs, float(reward), term, trunc, self._explain(obs, info)

    def render(self) -> np.ndarray:
        """The RGB screen with the attention map and its peaks drawn over it."""
        frame = self.env.unwrapped.ale.getScreenRGB()
        maps, peaks = self._last if self._last is not None else (None, None)
        return render_overlay(frame, maps, peaks, f"{self.agent.game} | {self.method}", scale=self.scale)


def evaluate(agent: Agent | str | Path, episodes: int = 30, seed: int = 0, protocol: Protocol = DEFAULT_PROTOCOL,
             show_progress: bool = False) -> dict[str, Any]:
    """Play ``episodes`` whole games under ``protocol`` (the default evaluation protocol) with
    seeds ``seed``, ``seed + 1``...; returns mean, std, scores and the protocol, as
    ``rl-compress evaluate --json`` writes them. ``agent``: an Agent, or any source ``load_agent``
    reads."""
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise UserError(f"episodes must be a positive integer, got {episodes!r}")
    check_int("seed", seed, 0, MAX_SEED)
    if not isinstance(agent, Agent):
        agent = load_agent(agent)
    return evaluate_net(agent.net, agent.game, episodes, seed=seed, protocol=protocol, show_progress=show_progress)
