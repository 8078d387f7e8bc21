"""Evaluation under the fixed protocol (docs/formats.md), episodes run in parallel envs.

Protocol: ALE v5 rules (sticky actions p = 0.25, minimal action set), an episode is one
whole game (life losses do not end it), at most 108,000 frames, raw unclipped score, up to
30 no-op starts, epsilon-greedy with epsilon 0.001.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from rl_compress.atari.acting import epsilon_greedy
from rl_compress.atari.envs import EnvConfig, make_vector_env
from rl_compress.atari.games import game_info, resolve_game
from rl_compress.core.device import model_device, to_device
from rl_compress.core.errors import UserError, arg_name
from rl_compress.core.progress import progress_bar


@dataclass(frozen=True)
class Protocol:
    """The evaluation protocol; its dict goes into every result and card."""

    sticky: float = 0.25
    """Sticky-action probability."""
    noop_max: int = 30
    """Up to this many no-ops at the start of each game."""
    max_frames: int = 108_000
    """Frames after which a game is cut off."""
    epsilon: float = 0.001
    """Probability of a uniformly random action."""
    full_action_space: bool = False
    """The minimal action set of the game."""
    episode: str = "game over (life loss does not end it)"
    """What ends an episode."""
    score: str = "raw, unclipped"
    """What is summed."""

    def env_config(self) -> EnvConfig:
        """The env settings that implement this protocol."""
        return EnvConfig(sticky=self.sticky, noop_max=self.noop_max, max_frames=self.max_frames, clip_rewards=False)


DEFAULT_PROTOCOL = Protocol()
"""The evaluation protocol of every score rl-compress reports (ALE v5 rules, see ``Protocol``)."""

def human_normalized(game: str, score: float) -> float | None:
    """(score - random) / (human - random) from the DQN Zoo table; None for a game not in it."""
    return game_info(game).human_normalized(score)


def retention(game: str, student: float, teacher: float) -> float | None:
    """(student - random) / (teacher - random); None where the random score is unknown or
    the teacher is no better than random."""
    return game_info(game).retention(student, teacher)


def evaluate(
    net: nn.Module,
    game: str,
    episodes: int,
    seed: int = 0,
    protocol: Protocol = DEFAULT_PROTOCOL,
    max_envs: int = 16,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Play ``episodes`` whole games with ``net`` (greedy with protocol epsilon), on the device
    its weights are on.

    Env i of the vector env is seeded with seed + i and plays a fixed share of the
    episodes, so the result does not favour short games and is the same for the same seed.
    Returns {"protocol", "episodes", "seed", "mean", "std", "human_normalized", "scores",
    "lengths", "truncated"}; human_normalized is None for a game without reference scores.
    """
    if episodes < 1:
        raise UserError(f"{arg_name('episodes')} must be >= 1, got {episodes}")
    game = resolve_game(game)
    k = min(episodes, max_envs)
    quota = np.full(k, episodes // k, dtype=np.int64)
    quota[: episodes % k] += 1
    env = make_vector_env(game, k, protocol.env_config())
    net.eval()
    try:
        with progress_bar(show_progress) as bar, torch.inference_mode():
            task = bar.add_task(f"evaluate {game}", total=episodes, info="")
            games = _play_quota(net, env, quota, seed, protocol.epsilon, lambda mean: bar.update(
                task, advance=1, info=f"mean {mean:.1f}"))
    finally:
        env.close()
    scores = [g[0] for per_env in games for g in per_env]
    return {
        "protocol": asdict(protocol),
        "episodes": episodes,
        "seed": seed,
        "mean": float(np.mean(scores)),
        "std": float(np.std(scores)),
        "human_normalized": human_normalized(game, float(np.mean(scores))),
        "scores": scores,
        "lengths": [g[1] for per_env in games for g in per_env],
        "truncated": sum(g[2] for per_env in games for g in per_env),
    }


def _play_quota(net: nn.Module, env: Any, quota: np.ndarray, seed: int, epsilon: float,
                on_game: Any) -> list[list[tuple[float, int, bool]]]:
    """Play until env i has finished ``quota[i]`` games: per env, (score, length, truncated) of
    each game, in order; ``on_game(mean so far)`` after each counted game."""
    k, device = len(quota), model_device(net)
    rng = np.random.default_rng(seed)
    games: list[list[tuple[float, int, bool]]] = [[] for _ in range(k)]
    ret, length = np.zeros(k, dtype=np.float64), np.zeros(k, dtype=np.int64)
    obs, _ = env.reset(seed=seed)
    done_before = np.zeros(k, dtype=bool)
    while any(len(g) < q for g, q in zip(games, quota)):
        actions = epsilon_greedy(k, epsilon, rng, env.single_action_space.n,
                                 lambda obs=obs: net(to_device(obs, device)).argmax(1).cpu().numpy())
        obs, reward, term, trunc, _ = env.step(actions)
        # a step right after an episode's end is the env's reset step (reward 0)
        ret += np.where(done_before, 0.0, reward)
        length += ~done_before
        done = term | trunc
        for i in np.flatnonzero(done & ~done_before):
            if len(games[i]) < quota[i]:
                games[i].append((float(ret[i]), int(length[i]), bool(trunc[i] and not term[i])))
                on_game(np.mean([g[0] for per_env in games for g in per_env]))
            ret[i], length[i] = 0.0, 0
        done_before = done
    return games
