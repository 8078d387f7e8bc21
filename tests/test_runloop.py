"""The shared run loop: episode accounting, triggers, run state to and from the checkpoint, and a
whole loop on a real vector env with a minimal method plugged in (random actor, no learning)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rl_compress.atari.envs import EnvConfig, make_vector_env
from rl_compress.core import progress
from rl_compress.core.rundir import load_checkpoint
from rl_compress.models.agent import load_agent, make_card
from rl_compress.models.networks import build_network, parse_spec
from rl_compress.train.run import (
    Episodes,
    RunState,
    Schedule,
    _Triggers,
    open_run_dir,
    restore_rngs,
    rng_to_checkpoint,
    run_loop,
)


def test_episodes_skip_the_reset_step() -> None:
    ep = Episodes(2)
    f, t = np.array([False, False]), np.array([True, False])
    assert ep.step(np.array([1.0, 2.0]), f, f) == []
    assert ep.step(np.array([3.0, 0.0]), t, f) == [(4.0, 2)]  # env 0 ends: return 1 + 3 over 2 steps
    # the next step of env 0 is its reset frame: it belongs to no episode
    assert ep.step(np.array([100.0, 1.0]), f, np.array([False, True])) == [(3.0, 3)]
    assert ep.step(np.array([5.0, 7.0]), t, f) == [(5.0, 1)]
    assert list(ep.recent) == [4.0, 3.0, 5.0] and ep.mean_recent() == "4.0"


def test_triggers_fire_once_per_period() -> None:
    tr = _Triggers(Schedule(steps=100, checkpoint_every=10, eval_every=0), step=25)
    assert tr.next_ckpt == 30 and tr.next_eval is None
    fired = [s for s in range(26, 60, 4) if tr.checkpoint_now(s)]
    assert fired == [30, 42, 50]  # one per period, at the first step that reaches it
    assert not any(tr.evaluate_now(s) for s in range(100))
    assert Schedule(10, 5, 7).next_after(14, 7) == 21


def test_run_state_round_trip() -> None:
    state = RunState.restore(None)
    state.step, state.updates, state.last_eval = 1200, 300, {"mean": -20.0}
    ckpt = json.loads(json.dumps({**state.to_checkpoint(), "machines": state.machines}))
    back = RunState.restore(ckpt)
    assert (back.step, back.updates, back.last_eval) == (1200, 300, {"mean": -20.0})
    assert back.wall_before >= 0 and back.machines == state.machines
    rng = np.random.default_rng(3)
    saved = rng_to_checkpoint(rng)
    a, ta = rng.random(), torch.rand(1)
    restore_rngs(saved, rng)
    assert rng.random() == a and torch.equal(torch.rand(1), ta)


class RandomActor:
    """The smallest method: uniform random actions, no learning; its net is a real gmp student."""

    overlap_env = True
    label = "random"
    return_tag = "charts/episodic_return"
    length_tag = "charts/episodic_length"

    def __init__(self, n_act: int) -> None:
        self.net = build_network(parse_spec("gmp4"), n_act)
        self.rng = np.random.default_rng(0)
        self.observed = 0
        self.evals: list[int] = []

    def act(self, obs: np.ndarray, state: RunState) -> np.ndarray:
        return self.rng.integers(0, self.net.num_actions, len(obs))

    def learn(self, state: RunState) -> None:
        state.updates += 1

    def observe(self, state: RunState, obs: np.ndarray, *rest: Any) -> None:
        self.observed += len(obs)

    def evaluate(self, state: RunState, writer: Any) -> dict[str, Any]:
        self.evals.append(state.step)
        return {"step": state.step}

    def report(self, writer: Any, state: RunState) -> None:
        pass

    def progress_info(self) -> str:
        return ""

    def checkpoint_state(self, state: RunState) -> dict[str, Any]:
        return {"net": self.net.state_dict()}

    def build_card(self, state: RunState, final: bool) -> dict[str, Any]:
        return make_card("student", "breakout", parse_spec("gmp4"), self.net,
                         training={"steps": state.step, "finished": final, "last_eval": state.last_eval})

    def extra_files(self, state: RunState) -> list[tuple[str, Any]]:
        return []


def test_run_loop_on_a_real_env(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    env = make_vector_env("breakout", 4, EnvConfig(sticky=0.25), num_threads=1)
    obs, _ = env.reset(seed=0)
    method = RandomActor(4)
    state = RunState.restore(None)
    run = open_run_dir(out, tmp_path / "tb", state, False, {"note": "test"})
    card = run_loop(method, env, obs, state, run, Schedule(steps=2000, checkpoint_every=600, eval_every=1000),
                    show_progress=False)
    assert state.step == 2000 and state.updates == 500 and method.observed == 2000
    assert method.evals == [1000, 2000] and card["training"]["last_eval"] == {"step": 2000}
    assert card["training"]["finished"] and load_agent(out).card["training"]["steps"] == 2000
    ckpt = load_checkpoint(out)
    assert ckpt["step"] == 2000 and ckpt["updates"] == 500 and "net" in ckpt
    rows = (out / "returns.csv").read_text().splitlines()[1:]
    assert rows, "random Breakout games end within 2,000 steps"
    steps = [int(r.split(",")[0]) for r in rows]
    assert steps == sorted(steps) and all(0 < s <= 2000 and s % 4 == 0 for s in steps)
    # the random agent scores what random Breakout scores: a few points a game
    assert all(0 <= float(r.split(",")[1]) <= 15 for r in rows)
    names = {p.name for p in out.iterdir()}
    assert {"agent.json", "checkpoint.pt", "model.safetensors", "returns.csv"} <= names
    assert not [n for n in names if n.startswith(".")]  # no temp file left


def test_progress_outside_a_terminal_is_plain_lines(tmp_path: Path, capsys, monkeypatch) -> None:
    """stderr is not a terminal here (captured): the loop logs plain lines (count, rate, ETA, info), and
    a run that its wall-time budget ends closes at the steps it reached, not at its --steps."""
    monkeypatch.setattr(progress.LogLines.__init__, "__defaults__", (0.0, None))  # a line at every update
    out = tmp_path / "run"
    out.mkdir()
    env = make_vector_env("breakout", 4, EnvConfig(sticky=0.25), num_threads=1)
    obs, _ = env.reset(seed=0)
    state = RunState.restore(None)
    run = open_run_dir(out, None, state, False, {"note": "test"})
    capsys.readouterr()
    card = run_loop(RandomActor(4), env, obs, state, run, Schedule(steps=10**7, checkpoint_every=10**6, eval_every=0,
                                                                     max_wall_time=8.0), show_progress=True)
    lines = capsys.readouterr().err.strip().splitlines()
    assert state.stopped == "max_wall_time" and not card["training"]["finished"] and 0 < state.step < 10**7
    assert len(lines) >= 2 and all(line.startswith("random: ") for line in lines)
    during = [line for line in lines if "ETA" in line]  # the periodic lines, every 1,000 steps
    assert during and all(" | " in line and "sps" in line for line in during)  # with the method's info
    assert lines[-1].startswith(f"random: {state.step:,}/{state.step:,} (100.0%)")


def test_log_lines_count_rate_and_eta() -> None:
    buf = io.StringIO()
    with progress.LogLines(every=3600.0, file=buf) as bar:
        task = bar.add_task("evaluate pong", total=30, info="")
        for _ in range(10):
            bar.advance(task)  # within the hour: no line yet
        assert buf.getvalue() == ""
        bar.update(task, info="mean -21.0")
    (line,) = buf.getvalue().splitlines()  # the last line, at the end
    assert line.startswith("evaluate pong: 10/30 (33.3%) ") and " ETA 0:00:" in line and line.endswith("| mean -21.0")
