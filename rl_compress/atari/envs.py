"""Atari environments: game names, the fast vector env for training and evaluation,
and a single env that also yields the RGB screen and the RAM for recording.

Both paths apply the same preprocessing (Nature DQN): frame skip 4 with a max over the
last two frames, 84x84 grey (area resize), a stack of 4 with channel 0 the oldest frame and
zero frames as padding at reset, up to 30 no-op starts. With the same actions they give
byte-identical observations (tests/test_envs.py proves it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import ale_py
import gymnasium as gym
import numpy as np
from ale_py.vector_env import AtariVectorEnv
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

from rl_compress.atari.acting import epsilon_greedy
from rl_compress.atari.games import _env_id_name, quiet_ale, resolve_game
from rl_compress.core.errors import UserError

OBS_SHAPE: tuple[int, int, int] = (4, 84, 84)


SCREEN_SHAPE: tuple[int, int, int] = (210, 160, 3)


RAM_SIZE: int = 128


@dataclass(frozen=True)
class EnvConfig:
    """How the emulator is driven. Defaults: the evaluation protocol (docs/formats.md, Evaluation protocol)."""

    sticky: float = 0.25
    """Probability that the previous action repeats (ALE v5: 0.25)."""
    noop_max: int = 30
    """Up to this many no-op actions after each reset."""
    max_frames: int = 108_000
    """Emulator frames after which an episode is truncated (30 minutes of play)."""
    clip_rewards: bool = False
    """Clip rewards to their sign (training only)."""
    fire_reset: bool = False
    """Press FIRE after reset (off: the ALE v5 rules do not)."""


EVAL_CONFIG = EnvConfig()


def make_vector_env(game: str, num_envs: int, config: EnvConfig = EVAL_CONFIG, num_threads: int = 0):
    """The C++ vector env (``ale_py.vector.AtariVectorEnv``) yielding uint8 [K,4,84,84] stacks.

    Autoreset is NEXT_STEP: after a step that ends an episode, the next step ignores its
    action and returns the reset observation with reward 0.
    """

    quiet_ale()
    if num_envs < 1:
        raise UserError(f"number of environments must be >= 1, got {num_envs}")
    return AtariVectorEnv(
        resolve_game(game),
        num_envs,
        num_threads=num_threads,
        max_num_frames_per_episode=config.max_frames,
        repeat_action_probability=config.sticky,
        full_action_space=False,
        img_height=OBS_SHAPE[1],
        img_width=OBS_SHAPE[2],
        grayscale=True,
        stack_num=OBS_SHAPE[0],
        frameskip=4,
        maxpool=True,
        noop_max=config.noop_max,
        episodic_life=False,
        life_loss_info=False,
        reward_clipping=config.clip_rewards,
        use_fire_reset=config.fire_reset,
    )


def played_observations(game: str, n: int, greedy: Callable[[np.ndarray], np.ndarray], seed: int, epsilon: float,
                        every: int = 1, num_envs: int = 8) -> np.ndarray:
    """``n`` observations uint8 [n,4,84,84] met playing ``game`` epsilon-greedy with ``greedy``
    (a uint8 [K,4,84,84] batch -> int64 [K] actions), ``num_envs`` environments of the evaluation
    protocol seeded ``seed``, one batch every ``every`` steps."""
    env = make_vector_env(game, num_envs, num_threads=1)
    rng = np.random.default_rng(seed)
    out = np.empty((n, 4, 84, 84), dtype=np.uint8)
    try:
        obs, _ = env.reset(seed=seed)
        got = t = 0
        while got < n:
            if t % every == 0:
                take = min(num_envs, n - got)
                out[got:got + take] = obs[:take]
                got += take
            t += 1
            actions = epsilon_greedy(num_envs, epsilon, rng, env.single_action_space.n, lambda obs=obs: greedy(obs))
            obs, *_ = env.step(actions)
    finally:
        env.close()
    return out


def sample_observations(game: str = "pong", n: int = 16, seed: int = 0, warmup: int = 60, num_envs: int = 4) -> np.ndarray:
    """``n`` real uint8 [4,84,84] observations from random play (after ``warmup`` steps, so
    that the stacks are full and the game is under way), for tests and benchmarks."""
    env = make_vector_env(game, num_envs)
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    steps = 0
    while sum(len(o) for o in out) < n:
        obs, *_ = env.step(rng.integers(0, env.single_action_space.n, num_envs).astype(np.int64))
        steps += 1
        if steps > warmup:
            out.append(obs)
    env.close()
    return np.concatenate(out)[:n]


def make_gym_env(game: str, config: EnvConfig = EVAL_CONFIG, render_mode: str | None = None) -> gym.Env:
    """One gymnasium env with the vector env's preprocessing (frame skip 4 with a max over the last
    two frames, 84x84 grey, area resize, a stack of 4 with zero frames at reset, up to
    ``config.noop_max`` no-ops): uint8 [4,84,84] observations, channel 0 the oldest frame."""
    quiet_ale()
    gym.register_envs(ale_py)
    if config.fire_reset:
        raise UserError("the gymnasium env does not implement fire_reset")
    base = gym.make(
        f"ALE/{_env_id_name(resolve_game(game))}-v5",
        frameskip=1,
        repeat_action_probability=config.sticky,
        full_action_space=False,
        max_num_frames_per_episode=config.max_frames,
        render_mode=render_mode,
    )
    env = AtariPreprocessing(
        base, noop_max=config.noop_max, frame_skip=4, screen_size=84, grayscale_obs=True, scale_obs=False
    )
    return FrameStackObservation(env, OBS_SHAPE[0], padding_type="zero")


class ScreenEnv:
    """One environment with the same observations as the vector env, plus the RGB screen
    (210x160x3) and the 128-byte RAM at every step. Used for recording and localization."""

    def __init__(self, game: str, config: EnvConfig = EVAL_CONFIG) -> None:
        self.game = resolve_game(game)
        self.env = make_gym_env(self.game, config)
        self.ale = self.env.unwrapped.ale
        self.clip_rewards = config.clip_rewards
        self.num_actions = int(self.env.action_space.n)

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Start a new game; returns the uint8 [4,84,84] observation."""
        obs, _ = self.env.reset(seed=seed)
        return np.asarray(obs)

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool]:
        """Play one agent step (4 frames): (obs, reward, terminated, truncated)."""
        obs, reward, term, trunc, _ = self.env.step(int(action))
        if self.clip_rewards:
            reward = float(np.sign(reward))
        return np.asarray(obs), float(reward), bool(term), bool(trunc)

    def screen(self) -> np.ndarray:
        """The RGB screen now shown, uint8 [210,160,3]."""
        return self.ale.getScreenRGB()

    def ram(self) -> np.ndarray:
        """The console RAM now, uint8 [128]."""
        return self.ale.getRAM()

    def close(self) -> None:
        """Release the emulator."""
        self.env.close()
