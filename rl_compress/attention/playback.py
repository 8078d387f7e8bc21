"""Games played by an agent with its attention on every frame: the RGB screen, the RAM, the map and
its peaks (for record, localize and TensorBoard clips)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from rl_compress.atari.envs import ScreenEnv
from rl_compress.atari.evaluate import DEFAULT_PROTOCOL
from rl_compress.core.device import model_device, to_device
from rl_compress.models.maps import attention


@dataclass
class Step:
    """One played step with what the agent saw and where it looked."""

    frame: np.ndarray  # uint8 [210,160,3], the screen the agent acted on
    obs: np.ndarray  # uint8 [4,84,84], what the agent saw
    ram: np.ndarray  # uint8 [128]
    map: np.ndarray | None  # float32 [210,160]
    peaks: np.ndarray | None  # float32 [K,3]
    action: int
    episode: int
    t: int  # agent step within the episode
    score: float  # raw score so far in the episode, before this action's reward


def play(
    net: nn.Module,
    game: str,
    method: str | None,
    max_steps: int,
    episodes: int = 1,
    seed: int = 0,
    epsilon: float = 0.001,
    k: int = 5,
):
    """Play ``net`` in the screen env (default protocol) and yield a Step per agent step:
    at most ``max_steps`` steps over at most ``episodes`` episodes. ``method`` None: no maps."""

    env = ScreenEnv(game, DEFAULT_PROTOCOL.env_config())
    rng = np.random.default_rng(seed)
    n = 0
    try:
        for ep in range(episodes):
            obs = env.reset(seed=seed + ep)
            score, t, done = 0.0, 0, False
            while not done and n < max_steps:
                batch = obs[None]
                if method is None:
                    with torch.no_grad():
                        greedy = int(net(to_device(batch, model_device(net))).argmax(1)[0])
                    att = None
                else:
                    att = attention(method, net, batch, None, k)
                    greedy = int(att.actions[0])
                action = int(rng.integers(0, env.num_actions)) if rng.random() < epsilon else greedy
                yield Step(env.screen().copy(), obs, env.ram().copy(), None if att is None else att.maps[0],
                           None if att is None else att.peaks[0], action, ep, t, score)
                obs, reward, term, trunc = env.step(action)
                score += reward
                t += 1
                n += 1
                done = term or trunc
            if n >= max_steps:
                break
    finally:
        env.close()
