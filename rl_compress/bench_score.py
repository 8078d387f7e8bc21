"""``bench time-to-score``: env steps and wall-clock from scratch to a score, for our PQN, our DQN
and stable-baselines3's DQN at RL Zoo's Atari settings, one after another on one machine.

Each trainer trains from scratch with a wall-time budget and a 5-game evaluation of the protocol
every ``eval_every`` env steps; an evaluation that reaches the target is confirmed on
``confirm_episodes`` games (the protocol, seed 0), and training goes on if it falls short. The time
to score is the training wall-clock (our trainers' card: the loop and its 5-game evaluations; SB3:
its ``learn`` minus our evaluations) and the env steps at the first confirmed evaluation. The 30-game
confirmations are not counted. Runs are kept in ``out`` (ours resume on a second call; SB3 starts
again). A result is a ratio of trainers measured in the same call, never a test.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ale_py
import gymnasium as gym

from rl_compress.atari.evaluate import DEFAULT_PROTOCOL, evaluate
from rl_compress.atari.games import _env_id_name, quiet_ale, resolve_game
from rl_compress.core.errors import UserError, arg_name
from rl_compress.core.optional import require
from rl_compress.core.provenance import cpu_model
from rl_compress.core.rundir import CHECKPOINT
from rl_compress.models.agent import load_agent
from rl_compress.models.sb3_import import convert_sb3
from rl_compress.train.pqn import PQNConfig
from rl_compress.train.teacher import TeacherConfig, train_teacher

TRAINERS = ("pqn", "dqn", "sb3")

# RL Zoo's hyperparams/dqn.yml for Atari (n_timesteps aside)
ZOO_DQN = {"buffer_size": 100_000, "learning_rate": 1e-4, "batch_size": 32, "learning_starts": 100_000,
           "target_update_interval": 1_000, "train_freq": 4, "gradient_steps": 1, "exploration_fraction": 0.1,
           "exploration_final_eps": 0.01, "optimize_memory_usage": False}
ZOO_STEPS = 10_000_000  # the schedule's horizon (exploration over its first 10%)


@dataclass
class TimeToScoreConfig:
    """What ``bench time-to-score`` runs."""

    game: str = "pong"
    target: float = 18.0
    budget: float = 2700.0
    """seconds of training each trainer may take"""
    eval_every: int = 100_000
    confirm_episodes: int = 30
    seed: int = 1
    threads: int = 0
    trainers: tuple[str, ...] = TRAINERS


def check_time_to_score(cfg: TimeToScoreConfig) -> TimeToScoreConfig:
    """Refuse impossible settings with one line; the game resolved."""
    unknown = [t for t in cfg.trainers if t not in TRAINERS]
    if unknown or not cfg.trainers:
        raise UserError(f"{arg_name('trainers')} must name some of {', '.join(TRAINERS)}, got {','.join(cfg.trainers)}")
    if cfg.budget <= 0 or cfg.eval_every <= 0 or cfg.confirm_episodes <= 0:
        names = ", ".join(arg_name(n) for n in ("budget", "eval_every")) + f" and {arg_name('confirm_episodes')}"
        raise UserError(f"bench time-to-score needs {names} > 0")
    if "sb3" in cfg.trainers:
        require("stable_baselines3")
    return TimeToScoreConfig(**{**asdict(cfg), "game": resolve_game(cfg.game)})


def _confirm(net: Any, cfg: TimeToScoreConfig) -> dict[str, Any]:
    """The confirming evaluation: ``confirm_episodes`` games of the protocol, seed 0."""
    res = evaluate(net, cfg.game, cfg.confirm_episodes, seed=0, protocol=DEFAULT_PROTOCOL)
    return {"mean": res["mean"], "std": res["std"], "episodes": res["episodes"]}


def run_ours(algo: str, cfg: TimeToScoreConfig, out: Path) -> dict[str, Any]:
    """Our PQN or DQN (its defaults) from scratch in ``out`` until a confirmed target or the budget."""
    base = {"game": cfg.game, "steps": 10**9, "max_wall_time": cfg.budget, "eval_every": cfg.eval_every,
            "eval_episodes": 5, "stop_at_score": cfg.target, "seed": cfg.seed, "threads": cfg.threads}
    tcfg = PQNConfig(**base) if algo == "pqn" else TeacherConfig(**base)
    confirmations = []
    while True:
        card = train_teacher(tcfg, out, resume=(out / CHECKPOINT).exists(), show_progress=False)
        tr = card["training"]
        if tr["stopped"] != "target":
            return _result(algo, tr["steps"], tr["wall_time_s"], None, confirmations, tr.get("stopped"))
        confirmations.append({"step": tr["steps"], **_confirm(load_agent(out).net, cfg)})
        if confirmations[-1]["mean"] >= cfg.target:
            return _result(algo, tr["steps"], tr["wall_time_s"], confirmations[-1], confirmations, "target")


def _result(trainer: str, steps: int, wall: float, reached: dict[str, Any] | None, confirmations: list[dict],
            ended: str | None) -> dict[str, Any]:
    """One trainer's row: steps and seconds to the confirmed target (None when not reached)."""
    return {"trainer": trainer, "reached": reached is not None, "env_steps": steps if reached else None,
            "seconds": round(wall, 1) if reached else None, "trained_steps": steps, "trained_seconds": round(wall, 1),
            "confirmations": confirmations, "ended": ended}


def run_sb3(cfg: TimeToScoreConfig, out: Path) -> dict[str, Any]:
    """stable-baselines3 DQN at RL Zoo's Atari settings (AtariWrapper, VecFrameStack 4, one env), its
    Q-network evaluated by our protocol through our SB3 importer, until a confirmed target or the budget."""
    require("stable_baselines3")  # an extra: one line when it is missing
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    quiet_ale()
    gym.register_envs(ale_py)
    env = VecFrameStack(make_atari_env(f"{_env_id_name(cfg.game)}NoFrameskip-v4", n_envs=1, seed=cfg.seed), 4)
    model = DQN("CnnPolicy", env, seed=cfg.seed, verbose=0, device="cpu", **ZOO_DQN)
    outcome: dict[str, Any] = {"confirmations": [], "evals": [], "eval_seconds": 0.0, "reached": None}
    t0 = time.perf_counter()

    class Judge(BaseCallback):
        def _on_step(self) -> bool:
            outcome["steps"] = self.num_timesteps
            outcome["seconds"] = time.perf_counter() - t0 - outcome["eval_seconds"]
            if self.num_timesteps % cfg.eval_every == 0:
                te = time.perf_counter()
                outcome["reached"] = _judge_sb3(self.model, cfg, out, self.num_timesteps, outcome)
                outcome["eval_seconds"] += time.perf_counter() - te
            return outcome["reached"] is None and outcome["seconds"] < cfg.budget

    model.learn(ZOO_STEPS, callback=Judge())
    env.close()
    row = _result("sb3", outcome["steps"], outcome["seconds"], outcome["reached"], outcome["confirmations"],
                  "target" if outcome["reached"] else "max_wall_time")
    return row | {"evals": outcome["evals"]}


def _judge_sb3(model: Any, cfg: TimeToScoreConfig, out: Path, step: int, outcome: dict[str, Any]) -> dict | None:
    """Evaluate SB3's model now (5 games; confirmed on more when it reaches the target): the
    confirmation that reached the target, else None. The model goes through a real SB3 zip."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as d:
        model.save(Path(d) / "model.zip", exclude=["replay_buffer"])
        net, _ = convert_sb3(Path(d) / "model.zip", cfg.game)
    res = evaluate(net, cfg.game, 5, seed=10_000, protocol=DEFAULT_PROTOCOL)
    outcome["evals"].append({"step": step, "mean": res["mean"]})
    if res["mean"] < cfg.target:
        return None
    outcome["confirmations"].append({"step": step, **_confirm(net, cfg)})
    return outcome["confirmations"][-1] if outcome["confirmations"][-1]["mean"] >= cfg.target else None


def time_to_score(cfg: TimeToScoreConfig, out: Path) -> dict[str, Any]:
    """Each trainer in turn (``out/<trainer>``); the rows, and each row's ratio to SB3's where both
    reached the target."""
    cfg = check_time_to_score(cfg)
    rows = {}
    for trainer in cfg.trainers:
        run_dir = Path(out) / trainer
        rows[trainer] = run_sb3(cfg, run_dir) if trainer == "sb3" else run_ours(trainer, cfg, run_dir)
    base = rows.get("sb3")
    for row in rows.values():
        if base and base["reached"] and row["reached"] and row is not base:
            row["speedup_vs_sb3"] = {"seconds": round(base["seconds"] / row["seconds"], 2),
                                     "env_steps": round(base["env_steps"] / row["env_steps"], 2)}
    return {"benchmark": "time-to-score", "config": asdict(cfg), "rows": rows,
            "machine": {"cpu": platform.processor() or platform.machine(), "model": cpu_model(),
                        "cores": os.cpu_count()}}


def format_time_to_score(res: dict[str, Any]) -> str:
    """A short human table of ``time_to_score``'s result."""
    c = res["config"]
    lines = [f"{c['game']} to {c['target']} ({c['confirm_episodes']} games), budget {c['budget']:.0f} s each, "
             f"{res['machine']['cores']} cores ({res['machine']['model']}):"]
    for row in res["rows"].values():
        best = max((e["mean"] for e in row["confirmations"]), default=None)
        if row["reached"]:
            what = f"{row['env_steps']:>10,} env steps  {row['seconds']:>8.0f} s"
        else:
            what = f"not reached in {row['trained_steps']:,} env steps / {row['trained_seconds']:.0f} s"
            what += f" (best confirmation {best})" if best is not None else ""
        lines.append(f"  {row['trainer']:<4} {what}")
    return "\n".join(lines)
