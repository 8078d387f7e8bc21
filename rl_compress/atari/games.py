"""The games: ALE ROM ids and their usual aliases, resolved once into a ``Game`` (id, action set, reference scores)."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from functools import cache, lru_cache

import ale_py
import gymnasium as gym
from ale_py import roms

from rl_compress.core.errors import UserError


@lru_cache(maxsize=1)
def quiet_ale() -> None:
    """Silence the emulator's start-up banner (it would break one-line CLI errors)."""

    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)


@lru_cache(maxsize=1)
def rom_ids() -> tuple[str, ...]:
    """All ROM ids that ale-py ships, in snake case (``pong``, ``space_invaders``...)."""

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


@cache
def action_names(game: str) -> tuple[str, ...]:
    """Names of the minimal action set (``NOOP``, ``FIRE``, ``RIGHT``...), in action order."""

    quiet_ale()
    ale = ale_py.ALEInterface()
    ale.loadROM(roms.get_rom_path(resolve_game(game)))
    return tuple(a.name for a in ale.getMinimalActionSet())


def num_actions(game: str) -> int:
    """Size of the minimal action set of a game."""
    return len(action_names(game))


def _env_id_name(rom_id: str) -> str:
    """``space_invaders`` -> ``SpaceInvaders`` (the gymnasium env id spelling)."""

    gym.register_envs(ale_py)
    want = rom_id.replace("_", "")
    for env_id in gym.registry:
        if env_id.startswith("ALE/") and env_id.endswith("-v5"):
            name = env_id[4:-3]
            if name.lower() == want:
                return name
    raise UserError(f"no gymnasium env registered for ROM {rom_id!r}")


# Random and human scores (DQN Zoo table) for human-normalized scores and retention.
RANDOM_SCORES: dict[str, float] = {
    "pong": -20.7, "breakout": 1.7, "space_invaders": 148.0, "seaquest": 68.4, "beam_rider": 363.9,
    "qbert": 163.9, "enduro": 0.0, "ms_pacman": 307.3, "freeway": 0.0,
}
HUMAN_SCORES: dict[str, float] = {
    "pong": 14.6, "breakout": 30.5, "space_invaders": 1668.7, "seaquest": 42054.7, "beam_rider": 16926.5,
    "qbert": 13455.0, "enduro": 860.5, "ms_pacman": 6951.6, "freeway": 29.6,
}


@dataclass(frozen=True)
class Game:
    """A game resolved once from any of its names: the ROM id, the minimal action set and the
    reference scores (random and human, DQN Zoo table; None for games not in it)."""

    id: str
    actions: tuple[str, ...]
    random_score: float | None
    human_score: float | None

    @property
    def num_actions(self) -> int:
        """Size of the minimal action set."""
        return len(self.actions)

    def human_normalized(self, score: float) -> float | None:
        """(score - random) / (human - random); None for a game without reference scores."""
        if self.random_score is None or self.human_score is None:
            return None
        return (score - self.random_score) / (self.human_score - self.random_score)

    def retention(self, student: float, teacher: float) -> float | None:
        """(student - random) / (teacher - random); None where the random score is unknown or the
        teacher is no better than random."""
        if self.random_score is None or teacher <= self.random_score:
            return None
        return (student - self.random_score) / (teacher - self.random_score)


@cache
def game_info(name: str) -> Game:
    """The ``Game`` of any accepted name (``pong``, ``Pong``, ``ALE/Pong-v5``...); UserError with the
    closest names otherwise. Cached: each name is resolved once per process."""
    rom = resolve_game(name)
    return Game(rom, action_names(rom), RANDOM_SCORES.get(rom), HUMAN_SCORES.get(rom))
