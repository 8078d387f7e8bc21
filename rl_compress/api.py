"""The Python API: load an agent, act with it, look inside it, play it in a gymnasium loop,
evaluate it, and train or distill new ones. The CLI calls these same functions.

    import rl_compress as rlc

    agent = rlc.load_agent("agents/pong/gmp32-w5-1pct-tuned")
    env = rlc.make_env("pong")
    obs, info = env.reset(seed=0)
    action = agent.predict(obs)                      # uint8 [4,84,84] -> int
    maps, peaks = agent.attention(obs[None])         # [1,210,160] map, [1,K,(x, y, weight)] peaks
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rl_compress.atari.envs import OBS_SHAPE, SCREEN_SHAPE, EnvConfig, make_gym_env
from rl_compress.atari.evaluate import DEFAULT_PROTOCOL, Protocol
from rl_compress.atari.evaluate import evaluate as evaluate_net
from rl_compress.attention.maps import METHODS, attention
from rl_compress.attention.video import render_overlay
from rl_compress.core.device import model_device, resolve_device, to_device
from rl_compress.core.errors import UserError
from rl_compress.models.agent import Agent as StoredAgent
from rl_compress.models.sources import load_source


def check_observations(obs: Any) -> tuple[np.ndarray, bool]:
    """``obs`` as a uint8 [B,4,84,84] batch and whether it was one observation; refuses what is not
    our observation with a clear error (floats already scaled, raw RGB screens, wrong shapes)."""
    arr = obs.detach().cpu().numpy() if isinstance(obs, torch.Tensor) else np.asarray(obs)
    if arr.shape[-3:] == SCREEN_SHAPE or arr.shape[-2:] == SCREEN_SHAPE[:2]:
        raise UserError(f"got a raw screen of shape {list(arr.shape)}: agents take the preprocessed uint8 "
                        "[4,84,84] stack; play with rl_compress.make_env(game) to get it")
    if arr.dtype != np.uint8:
        raise UserError(f"observations must be uint8 stacks of 0..255 (got {arr.dtype}; already scaled by 1/255? "
                        "the networks scale them themselves)")
    if arr.shape == OBS_SHAPE:
        return arr[None], True
    if arr.ndim == 4 and arr.shape[1:] == OBS_SHAPE:
        return arr, False
    raise UserError(f"observations must be uint8 [4,84,84] or [B,4,84,84], got {list(arr.shape)}")


@dataclass
class Agent(StoredAgent):
    """An agent directory's network with a policy and attention maps (teacher or student)."""

    def predict(self, obs: Any, deterministic: bool = True, epsilon: float = DEFAULT_PROTOCOL.epsilon,
                rng: np.random.Generator | None = None) -> Any:
        """Actions for one observation (uint8 [4,84,84], gives an int) or a batch ([B,4,84,84],
        gives int64 [B]): the argmax of the network's outputs; with ``deterministic=False`` a
        uniformly random action with probability ``epsilon`` (the evaluation protocol's 0.001)."""
        batch, single = check_observations(obs)
        with torch.no_grad():
            actions = self.net(to_device(batch, model_device(self.net))).argmax(1).cpu().numpy().astype(np.int64)
        if not deterministic:
            rng = rng if rng is not None else np.random.default_rng()
            explore = rng.random(len(actions)) < epsilon
            actions = np.where(explore, rng.integers(0, self.num_actions, len(actions)), actions)
        return int(actions[0]) if single else actions

    def attention(self, obs: Any, method: str = "gmp", k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """Where the agent looks, for the action it takes: ``maps`` float32 [B,210,160] (>= 0) over
        the screen and ``peaks`` float32 [B,K,3] (x right, y down, weight) in screen pixels, as
        ``rl-compress localize`` writes them. ``method``: gmp | gmp-cell (students with a global
        max pool), gradcam, perturbation. One observation gives a batch of one."""
        if method not in METHODS:
            raise UserError(f"unknown attention method {method!r}; choose one of {', '.join(METHODS)}")
        batch, _ = check_observations(obs)
        att = attention(method, self.net, batch, k=k)
        return att.maps, att.peaks


def load_agent(source: str | Path, game: str | None = None, device: str | torch.device = "auto") -> Agent:
    """An agent from an agent directory, or from any source ``rl-compress teacher import`` reads: a
    stable-baselines3 / RL Zoo DQN or QR-DQN zip, a CleanRL DQN ``.cleanrl_model``, or
    ``hf:ORG/NAME[@REVISION]`` on the Hugging Face Hub (``game``: read from the name when not given),
    with its network on ``device`` (auto: CUDA when torch sees one; ``predict``, ``attention`` and
    ``evaluate`` run there). Nothing is unpickled; anything that does not fit is refused with one
    clear error (UserError)."""
    torch_device = resolve_device(device, announce=False)
    stored = load_source(source, game)
    return Agent(stored.path, stored.card, stored.net.to(torch_device))


def make_env(game: str, sticky: float = DEFAULT_PROTOCOL.sticky, noop_max: int = DEFAULT_PROTOCOL.noop_max,
             max_frames: int = DEFAULT_PROTOCOL.max_frames, render_mode: str | None = "rgb_array") -> gym.Env:
    """A gymnasium env with exactly our preprocessing (frame skip 4 with a max over the last two
    frames, 84x84 grey, a stack of 4 with zero frames at reset, up to ``noop_max`` no-ops), under
    the evaluation protocol by default: observations uint8 [4,84,84] for ``Agent.predict``, raw
    rewards, an episode is a whole game. Its vector twin is ``rl_compress.make_vector_env``."""
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
        return {**info, "attention": maps[0], "peaks": peaks[0], "action": self.agent.predict(obs)}

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


def evaluate(agent: StoredAgent | str | Path, episodes: int = 30, seed: int = 0, protocol: Protocol = DEFAULT_PROTOCOL,
             show_progress: bool = False) -> dict[str, Any]:
    """Play ``episodes`` whole games under ``protocol`` (the default evaluation protocol) with
    seeds ``seed``, ``seed + 1``...; returns mean, std, scores and the protocol, as
    ``rl-compress evaluate --json`` writes them. ``agent``: an Agent, or any source ``load_agent``
    reads."""
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise UserError(f"episodes must be a positive integer, got {episodes!r}")
    if not isinstance(agent, StoredAgent):
        agent = load_agent(agent)
    return evaluate_net(agent.net, agent.game, episodes, seed=seed, protocol=protocol, show_progress=show_progress)
