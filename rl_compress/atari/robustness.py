"""An agent played under the pipeline variants a user may have instead of ours: plain gymnasium
wrappers (``AtariPreprocessing`` + ``FrameStackObservation``), one change from the evaluation
protocol at a time: the frame stack padded by repeating the first frame instead of zeros, FIRE
pressed at the start and after a life loss, no sticky actions, no no-op starts, a bilinear resize.
A student is judged against its teacher under the same variant (retention)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import ale_py
import cv2
import gymnasium as gym
import numpy as np
import torch
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation
from torch import nn

from rl_compress.atari.evaluate import DEFAULT_PROTOCOL
from rl_compress.atari.games import _env_id_name, action_names, game_info, quiet_ale, resolve_game
from rl_compress.core.device import model_device, to_device


@dataclass(frozen=True)
class Variant:
    """One pipeline: the protocol's settings, or one of them changed."""

    name: str
    sticky: float = DEFAULT_PROTOCOL.sticky
    noop_max: int = DEFAULT_PROTOCOL.noop_max
    padding: str = "zero"  # the stack at reset: "zero" frames, or "reset": the first frame repeated
    fire: bool = False  # press FIRE at the start of a game and after each life loss
    resize: str = "area"  # "area" (ours, gymnasium's) or "bilinear"


VARIANTS = (
    Variant("protocol"),
    Variant("stack padded with the first frame", padding="reset"),
    Variant("FIRE at start and after a life loss", fire=True),
    Variant("no sticky actions", sticky=0.0),
    Variant("no no-op starts", noop_max=0),
    Variant("bilinear resize", resize="bilinear"),
)


class _Preprocessing(AtariPreprocessing):
    """gymnasium's AtariPreprocessing with a choice of resize interpolation."""

    def __init__(self, env: gym.Env, noop_max: int, resize: str) -> None:
        super().__init__(env, noop_max=noop_max, frame_skip=4, screen_size=84, grayscale_obs=True, scale_obs=False)
        self.interpolation = cv2.INTER_AREA if resize == "area" else cv2.INTER_LINEAR

    def _get_obs(self) -> np.ndarray:
        np.maximum(self.obs_buffer[0], self.obs_buffer[1], out=self.obs_buffer[0])
        return cv2.resize(self.obs_buffer[0], self.screen_size, interpolation=self.interpolation).astype(np.uint8)


class _Fire(gym.Wrapper):
    """Press FIRE after reset and after every life loss (as many pipelines do for Breakout)."""

    def __init__(self, env: gym.Env, fire: int) -> None:
        super().__init__(env)
        self.fire, self.lives = fire, 0

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        obs, _, term, trunc, info = self.env.step(self.fire)
        if term or trunc:
            obs, info = self.env.reset(**kwargs)
        self.lives = info.get("lives", 0)
        return obs, info

    def step(self, action: int) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, term, trunc, info = self.env.step(action)
        if not (term or trunc) and info.get("lives", 0) < self.lives:
            obs, more, term, trunc, info = self.env.step(self.fire)
            reward += more
        self.lives = info.get("lives", 0)
        return obs, reward, term, trunc, info


def variant_env(game: str, variant: Variant) -> gym.Env:
    """The gymnasium env of ``variant``: uint8 [4,84,84] observations, channel 0 the oldest."""
    quiet_ale()
    gym.register_envs(ale_py)
    base = gym.make(f"ALE/{_env_id_name(resolve_game(game))}-v5", frameskip=1, repeat_action_probability=variant.sticky,
                    full_action_space=False, max_num_frames_per_episode=DEFAULT_PROTOCOL.max_frames)
    env: gym.Env = _Preprocessing(base, variant.noop_max, variant.resize)
    if variant.fire and "FIRE" in action_names(game):
        env = _Fire(env, action_names(game).index("FIRE"))
    return FrameStackObservation(env, 4, padding_type=variant.padding)


def play_variant(net: nn.Module, game: str, variant: Variant, episodes: int, seed: int = 0) -> list[float]:
    """Scores of ``episodes`` whole games of ``net`` (epsilon 0.001) in the variant's env, seeds
    ``seed``, ``seed + 1``..."""
    env, rng, scores = variant_env(game, variant), np.random.default_rng(seed), []
    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            score, done = 0.0, False
            while not done:
                with torch.no_grad():
                    greedy = int(net(to_device(np.asarray(obs)[None], model_device(net))).argmax(1)[0])
                action = int(rng.integers(env.action_space.n)) if rng.random() < DEFAULT_PROTOCOL.epsilon else greedy
                obs, reward, term, trunc, _ = env.step(action)
                score, done = score + float(reward), term or trunc
            scores.append(score)
    finally:
        env.close()
    return scores


def robustness(net: nn.Module, game: str, episodes: int, seed: int = 0, teacher: nn.Module | None = None,
               variants: tuple[Variant, ...] = VARIANTS) -> list[dict[str, Any]]:
    """One row per variant: the agent's mean and std and, with ``teacher``, the teacher's under the
    same variant and the agent's retention of it."""
    rows = []
    for variant in variants:
        scores = play_variant(net, game, variant, episodes, seed)
        row: dict[str, Any] = {"variant": variant.name, **{k: v for k, v in asdict(variant).items() if k != "name"},
                               "episodes": episodes, "seed": seed, "mean": float(np.mean(scores)),
                               "std": float(np.std(scores)), "scores": scores}
        if teacher is not None:
            theirs = play_variant(teacher, game, variant, episodes, seed)
            row["teacher_mean"] = float(np.mean(theirs))
            row["retention"] = game_info(game).retention(row["mean"], row["teacher_mean"])
        rows.append(row)
    return rows

