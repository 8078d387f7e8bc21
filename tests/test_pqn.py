"""PQN teachers: the Q(lambda) returns against a hand-computed rollout, a real short run on Pong
(LayerNorm Nature DQN, the card, TensorBoard), exact resume of weights and optimizer, the CLI's
--algo, and a stop that belongs to its run (a second run in the same process trains all its steps)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from rl_compress.core.errors import UserError
from rl_compress.models.agent import load_agent
from rl_compress.models.networks import count_params, teacher_arch
from rl_compress.train.pqn import PQNConfig, q_lambda_returns
from rl_compress.train.teacher import TeacherConfig, train_teacher

# one rollout = 4 envs x 8 steps = 32 env steps, 2 minibatches of 16 per epoch
TINY = {"game": "pong", "envs": 4, "rollout_steps": 8, "minibatch_size": 16, "epochs": 1, "eval_every": 0,
        "env_threads": 1, "compile": False}


def _hand_returns(r, v, term, ended, gamma, lam):
    """The same recursion written out for one env, in plain Python."""
    out = [0.0] * len(r)
    g = v[-1]
    for t in reversed(range(len(r))):
        lam_t = 0.0 if t == len(r) - 1 or ended[t] else lam
        g = r[t] + gamma * (1 - term[t]) * (lam_t * g + (1 - lam_t) * v[t])
        out[t] = g
    return out


def test_q_lambda_returns_by_hand() -> None:
    gamma, lam = 0.9, 0.5
    # env 0: a game over at t=1; env 1: truncated at t=2 (bootstraps, but no lambda through the reset)
    rewards = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    next_v = torch.tensor([[2.0, 1.0], [3.0, 2.0], [4.0, 3.0], [5.0, 4.0]])
    terminal = torch.tensor([[False, False], [True, False], [False, False], [False, False]])
    ended = torch.tensor([[False, False], [True, False], [False, True], [False, False]])
    got = q_lambda_returns(rewards, next_v, terminal, ended, gamma, lam)
    # env 0 by hand: G3 = 0 + .9*5 = 4.5; G2 = 1 + .9*(.5*4.5 + .5*4) = 4.825; G1 = 0 (terminal);
    # G0 = 1 + .9*(.5*0 + .5*2) = 1.9
    assert got[:, 0].tolist() == pytest.approx([1.9, 0.0, 4.825, 4.5])
    # env 1: G3 = .9*4 = 3.6; G2 = 0 + .9*3 = 2.7 (ended: V only); G1 = 1 + .9*(.5*2.7 + .5*2) = 3.115;
    # G0 = 0 + .9*(.5*3.115 + .5*1) = 1.85175
    assert got[:, 1].tolist() == pytest.approx([1.85175, 3.115, 2.7, 3.6])
    for k in range(2):
        hand = _hand_returns(rewards[:, k].tolist(), next_v[:, k].tolist(), terminal[:, k].int().tolist(),
                             ended[:, k].tolist(), gamma, lam)
        assert got[:, k].tolist() == pytest.approx(hand)
    # lambda 0 is one-step Q-learning
    one_step = q_lambda_returns(rewards, next_v, terminal, ended, gamma, 0.0)
    assert torch.allclose(one_step, rewards + gamma * (~terminal) * next_v)


def test_pqn_run_resume_and_card(tmp_path: Path) -> None:
    out, tb = tmp_path / "pqn", tmp_path / "tb"
    card = train_teacher(PQNConfig(steps=1056, checkpoint_every=512, **{**TINY, "compile": True}), out,
                         tensorboard=tb, show_progress=False)
    tr = card["training"]
    assert tr["algo"] == "pqn" and tr["finished"] and tr["steps"] == 1056
    # 1,056 env steps = 33 rollouts of 32 transitions, each learned as 2 minibatches of <= 16 once the
    # next observation is acted on (the last one not yet)
    assert tr["updates"] == 2 * 32
    assert card["arch"] == teacher_arch(layer_norm=True) and card["params"] == 1_730_470
    agent = load_agent(out)
    assert count_params(agent.net) == 1_730_470 and agent.game == "pong"
    assert any(isinstance(m, torch.nn.LayerNorm) for m in agent.net.modules())
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["algo"] == "pqn" and ckpt["step"] == 1056
    assert int(next(iter(ckpt["optimizer"]["state"].values()))["step"]) == tr["updates"]

    # resume for one env step of each env: no rollout completes, so weights and RAdam come back unchanged
    more = train_teacher(PQNConfig(steps=1060), out, resume=True, show_progress=False)["training"]
    assert more["steps"] == 1060 and more["updates"] == tr["updates"] and more["config"]["rollout_steps"] == 8
    after = torch.load(out / "checkpoint.pt", weights_only=True)
    for k, v in ckpt["online"].items():
        assert torch.equal(v, after["online"][k]), k
    assert torch.equal(ckpt["shuffle_rng"], after["shuffle_rng"])
    with pytest.raises(UserError, match="trained with algo pqn, not dqn"):
        train_teacher(TeacherConfig(steps=2000), out, resume=True, show_progress=False,
                      arch=teacher_arch(layer_norm=True))

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb / "pqn"))  # one folder per run, named after it
    acc.Reload()
    assert {"charts/SPS", "charts/epsilon", "losses/td_loss", "time/fps", "train/loss",
            "train/learning_rate"} <= set(acc.Tags()["scalars"])


def test_pqn_refusals(tmp_path: Path) -> None:
    for bad in ({"q_lambda": 1.5}, {"rollout_steps": 0}, {"minibatch_size": -1}, {"epochs": 0}, {"minibatch_size": 33}):
        with pytest.raises(UserError):
            train_teacher(PQNConfig(**{**TINY, **bad}), tmp_path / "x", show_progress=False)
    assert not (tmp_path / "x").exists()
    cli = str(Path(sys.executable).with_name("rl-compress"))
    res = subprocess.run([cli, "teacher", "train", "--algo", "pqn", "--buffer-size", "1000", "--out",
                          str(tmp_path / "y")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stderr.strip() == "error: --buffer-size is not an option of --algo pqn"


def test_a_stop_belongs_to_its_run(tmp_path: Path) -> None:
    """SIGINT mid-loop stops the first run (checkpointed); the next run in this process trains all
    its steps; an interrupt during a new run's setup leaves nothing behind."""
    first = tmp_path / "first"

    def interrupt_once_checkpointed() -> None:
        deadline = time.time() + 120
        while time.time() < deadline and not (first / "checkpoint.pt").exists():
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=interrupt_once_checkpointed)
    thread.start()
    tr = train_teacher(PQNConfig(steps=200_000, checkpoint_every=64, **TINY), first, show_progress=False)["training"]
    thread.join()
    assert tr["stopped"] == "signal" and not tr["finished"] and 64 <= tr["steps"] < 200_000
    second = train_teacher(PQNConfig(steps=96, **TINY), tmp_path / "second", show_progress=False)["training"]
    assert second["finished"] and second["steps"] == 96 and second["stopped"] is None

    assert json.loads((first / "agent.json").read_text())["training"]["steps"] == tr["steps"]


def test_an_interrupt_during_setup_leaves_nothing(tmp_path: Path, random_teacher: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C just before the loop starts (returns.csv already open): a new run's directory is gone;
    a resumed run's files stay."""
    import rl_compress.train.distill as distill_mod
    import rl_compress.train.teacher as teacher_mod
    from rl_compress.train.distill import DistillConfig, distill

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(teacher_mod, "run_loop", interrupted)
    monkeypatch.setattr(distill_mod, "run_loop", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_teacher(PQNConfig(steps=96, **TINY), tmp_path / "t", show_progress=False)
    with pytest.raises(KeyboardInterrupt):
        distill(random_teacher, DistillConfig(steps=600, envs=2, eval_every=0, learning_starts=100,
                                              buffer_size=2000), tmp_path / "d", show_progress=False)
    assert not (tmp_path / "t").exists() and not (tmp_path / "d").exists()
    monkeypatch.undo()
    train_teacher(PQNConfig(steps=64, **TINY), tmp_path / "r", show_progress=False)
    monkeypatch.setattr(teacher_mod, "run_loop", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_teacher(PQNConfig(steps=96), tmp_path / "r", resume=True, show_progress=False)
    assert load_agent(tmp_path / "r").card["training"]["steps"] == 64
