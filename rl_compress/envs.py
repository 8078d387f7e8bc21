"""Atari environments: game names, the fast vector env for training and evaluation,
and a single env that also yields the RGB screen and the RAM for recording.

Both paths apply the same preprocessing (Nature DQN): frame skip 4 with a max over the
last two frames, 84x84 grey (area resize), a stack of 4 with channel 0 the oldest frame and
zero frames as padding at reset, up to 30 no-op starts. With the same actions they give
byte-identical observations (tests/test_envs.py proves it).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np

from rl_compress.errors import UserError

OBS_SHAPE: tuple[int, int, int] = (4, 84, 84)
SCREEN_SHAPE: tuple[int, int, int] = (210, 160, 3)
RAM_SIZE: int = 128


@lru_cache(maxsize=1)
def quiet_ale() -> None:
    """Silence the emulator's start-up banner (it would break one-line CLI errors)."""
    import ale_py

    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)


@lru_cache(maxsize=1)
def rom_ids() -> tuple[str, ...]:
    """All ROM ids that ale-py ships, in snake case (``pong``, ``space_invaders``...)."""
    from ale_py import roms

    return tuple(sorted(roms.get_all_rom_ids()))


def resolve_game(name: str) -> str:
    """Map a game name or usual alias to its ALE ROM id.

    Accepts ``pong``, ``Pong``, ``ALE/Pong-v5``, ``PongNoFrameskip-v4``, ``SpaceInvaders``,
    ``space-invaders``... Raises UserError listing the closest valid names otherwise.
    """
    ids = rom_ids()
    raw = name.strip()
    core = raw.split("/", 1)[1] if raw.upper().startswith("ALE/") else raw
    core = re.sub(r"(NoFrameskip|Deterministic)?-v\d+$", "", core)
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", core).lower().replace("-", "_")
    if snake in ids:
        return snake
    squashed = {i.replace("_", ""): i for i in ids}
    key = snake.replace("_", "")
    if key in squashed:
        return squashed[key]
    close = difflib.get_close_matches(snake, ids, n=5, cutoff=0.5)
    hint = ", ".join(close) if close else ", ".join(ids[:8]) + ", ..."
    raise UserError(f"unknown game {name!r}; closest valid names: {hint}")


@dataclass(frozen=True)
class EnvConfig:
    """How the emulator is driven. Defaults: the evaluation protocol of design.md."""

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
    from ale_py.vector_env import AtariVectorEnv

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


@cache
def action_names(game: str) -> tuple[str, ...]:
    """Names of the minimal action set (``NOOP``, ``FIRE``, ``RIGHT``...), in action order."""
    import ale_py
    from ale_py import roms

    quiet_ale()
    ale = ale_py.ALEInterface()
    ale.loadROM(roms.get_rom_path(resolve_game(game)))
    return tuple(a.name for a in ale.getMinimalActionSet())


def num_actions(game: str) -> int:
    """Size of the minimal action set of a game."""
    return len(action_names(game))


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


class ScreenEnv:
    """One environment with the same observations as the vector env, plus the RGB screen
    (210x160x3) and the 128-byte RAM at every step. Used for recording and localization."""

    def __init__(self, game: str, config: EnvConfig = EVAL_CONFIG) -> None:
        import ale_py
        import gymnasium as gym
        from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

        quiet_ale()
        gym.register_envs(ale_py)
        if config.fire_reset:
            raise UserError("ScreenEnv does not implement fire_reset")
        self.game = resolve_game(game)
        base = gym.make(
            f"ALE/{_env_id_name(self.game)}-v5",
            frameskip=1,
            repeat_action_probability=config.sticky,
            full_action_space=False,
            max_num_frames_per_episode=config.max_frames,
        )
        env = AtariPreprocessing(
            base, noop_max=config.noop_max, frame_skip=4, screen_size=84, grayscale_obs=True, scale_obs=False
        )
        self.env = FrameStackObservation(env, OBS_SHAPE[0], padding_type="zero")
        self.ale = base.unwrapped.ale
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


def _env_id_name(rom_id: str) -> str:
    """``space_invaders`` -> ``SpaceInvaders`` (the gymnasium env id spelling)."""
    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)
    want = rom_id.replace("_", "")
    for env_id in gym.registry:
        if env_id.startswith("ALE/") and env_id.endswith("-v5"):
            name = env_id[4:-3]
            if name.lower() == want:
                return name
    raise UserError(f"no gymnasium env registered for ROM {rom_id!r}")
