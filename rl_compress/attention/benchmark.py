"""The localization benchmark (``rl-compress bench localization``): for each agent, the frames it
plays itself (seed 0, the evaluation protocol), and for each map method on those same frames the
pointing game (the map's top pixel within ``radius`` screen pixels of an OCAtari object, overall and
per class), deletion and insertion areas, the cascading-randomisation sanity check and the cost
per frame. Every map is on one scale (it sums to 1 over the 84x84 input)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rl_compress.attention.faithfulness import (
    ALL_METHODS,
    check_method,
    deletion_insertion,
    grid_maps,
    sanity_check,
)
from rl_compress.attention.playback import play
from rl_compress.attention.score import DEFAULT_RADIUS, localization_score, objects_from_ram
from rl_compress.core.device import model_device, to_device
from rl_compress.core.errors import UserError, arg_name
from rl_compress.models.agent import Agent
from rl_compress.models.maps import GRID, grid_to_screen
from rl_compress.models.networks import GMPStudent

CHUNK = 32  # frames per batched map call


@dataclass(frozen=True)
class LocalizationBenchConfig:
    """How much of the benchmark to run: frames each agent plays, the methods, the frames of the
    sanity check (its cost is one map per layer per frame), the pointing radius and the seed."""

    frames: int = 200
    methods: tuple[str, ...] = ALL_METHODS
    sanity_frames: int = 16
    radius: float = DEFAULT_RADIUS
    seed: int = 0


@dataclass
class PlayedFrames:
    """What an agent saw and did on the benchmark's frames."""

    obs: np.ndarray  # uint8 [N,4,84,84]
    rams: np.ndarray  # uint8 [N,128]
    actions: np.ndarray  # int64 [N], the greedy actions the maps explain


def played_frames(agent: Agent, frames: int, seed: int) -> PlayedFrames:
    """``frames`` agent steps of the agent playing its own game (as many games as it takes)."""
    steps = list(play(agent.net, agent.game, None, frames, episodes=10**6, seed=seed))
    obs = np.stack([s.obs for s in steps])
    with torch.no_grad():
        actions = np.concatenate([agent.net(to_device(obs[i:i + CHUNK], model_device(agent.net))).argmax(1).cpu().numpy()
                                  for i in range(0, len(obs), CHUNK)])
    return PlayedFrames(obs, np.stack([s.ram for s in steps]), actions)


def top_pixels(maps: np.ndarray) -> np.ndarray:
    """The highest pixel of each 84x84 map as a screen point (x, y): [N,2]."""
    flat = maps.reshape(len(maps), -1).argmax(1)
    return np.stack([grid_to_screen(flat % GRID, "x"), grid_to_screen(flat // GRID, "y")], axis=1)


def methods_for(agent: Agent, methods: tuple[str, ...]) -> list[str]:
    """The methods that apply to the agent's network (GMP maps need a global-max-pool student)."""
    return [m for m in methods if not (m.startswith("gmp") and not isinstance(agent.net, GMPStudent))]


def method_row(agent: Agent, method: str, played: PlayedFrames, objects: list[Any], cfg: LocalizationBenchConfig
               ) -> dict[str, Any]:
    """One method on one agent's frames: pointing, deletion / insertion, sanity, ms per frame."""
    start = time.perf_counter()
    maps = np.concatenate([grid_maps(method, agent.net, played.obs[i:i + CHUNK], played.actions[i:i + CHUNK],
                                     cfg.seed + i) for i in range(0, len(played.obs), CHUNK)])
    ms = 1000 * (time.perf_counter() - start) / len(maps)
    faith = deletion_insertion(agent.net, played.obs, maps, played.actions, seed=cfg.seed)
    n = cfg.sanity_frames
    sanity = sanity_check(method, agent.net, played.obs[:n], played.actions[:n], cfg.seed, trained=maps[:n]) if n else None
    return {"agent": str(agent.path), "game": agent.game, "method": method, "frames": len(maps),
            "ms_per_frame": round(ms, 2), "pointing": localization_score(top_pixels(maps), objects, cfg.radius),
            **faith, "sanity": sanity}


def localization_benchmark(agents: list[Agent], cfg: LocalizationBenchConfig) -> dict[str, Any]:
    """Every method of ``cfg`` that applies, on every agent's own frames; rows in that order."""
    if cfg.frames < 1 or cfg.sanity_frames < 0:
        raise UserError(f"{arg_name('frames')} must be >= 1 and {arg_name('sanity_frames')} >= 0, "
                        f"got {cfg.frames}, {cfg.sanity_frames}")
    for method in cfg.methods:
        if method not in ALL_METHODS:
            raise UserError(f"unknown map method {method!r}; choose from {', '.join(ALL_METHODS)}")
    rows = []
    for agent in agents:
        played = played_frames(agent, cfg.frames, cfg.seed)
        objects = objects_from_ram(agent.game, played.rams)
        for method in methods_for(agent, cfg.methods):
            check_method(method, agent.net)
            rows.append(method_row(agent, method, played, objects, cfg))
    return {"benchmark": "localization", "config": {**cfg.__dict__, "methods": list(cfg.methods)}, "rows": rows}


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None or value != value else f"{value:.{digits}f}"


def localization_table(result: dict[str, Any]) -> str:
    """The benchmark's rows as a markdown table (per-class pointing: the classes of each game)."""
    lines = ["| agent | method | frames | pointing (any object) | per class | deletion AUC (lower: more faithful) | "
             "insertion AUC (higher) | action kept at 2% deleted | sanity: Spearman after all layers randomised "
             "(passes) | ms per frame |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        classes = ", ".join(f"{c} {_fmt(v['hit'], 2)}" for c, v in r["pointing"]["per_class"].items())
        at2 = r["deletion_kept"][r["fractions"].index(0.02)] if 0.02 in r["fractions"] else None
        sanity = "-" if not r["sanity"] else (f"{_fmt(r['sanity']['stages'][-1]['spearman'], 2)} "
                                              f"({'yes' if r['sanity']['passes'] else 'no'})")
        lines.append(f"| {r['agent']} | {r['method']} | {r['frames']} | {_fmt(r['pointing']['any'])} | {classes} | "
                     f"{_fmt(r['deletion_auc'])} | {_fmt(r['insertion_auc'])} | {_fmt(at2, 2)} | {sanity} | "
                     f"{r['ms_per_frame']:.1f} |")
    return "\n".join(lines)
