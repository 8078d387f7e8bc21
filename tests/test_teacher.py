"""Teacher training: a real short run (Breakout: short random games, lives), SIGTERM checkpoint,
resume, TensorBoard, refusals."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rl_compress.core.errors import UserError
from rl_compress.core.provenance import machine
from rl_compress.models.agent import load_agent
from rl_compress.train.teacher import TeacherConfig, epsilon_at, td_update, train_teacher

FAST = ["--algo", "dqn", "--learning-starts", "600", "--buffer-size", "4000", "--envs", "2", "--no-compile", "--quiet",
        "--checkpoint-every", "400", "--eval-every", "0"]


def _cli() -> str:
    return str(Path(sys.executable).with_name("rl-compress"))


def _card(out: Path) -> dict:
    return json.loads((out / "agent.json").read_text())


def _scalars(tb: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_sigterm_then_resume(tmp_path: Path) -> None:
    out, tb = tmp_path / "teacher", tmp_path / "tb"
    proc = subprocess.Popen([_cli(), "teacher", "train", "--game", "breakout", "--steps", "100000", "--out", str(out),
                             "--tensorboard", str(tb), *FAST], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        if (out / "agent.json").exists() and _card(out)["training"]["steps"] >= 1600:
            break
        time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    # stopped by a signal: checkpointed, one line saying how to resume, exit code 128 + SIGTERM
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err and "--resume" in err and "Traceback" not in err
    first = _card(out)["training"]
    assert 1600 <= first["steps"] < 100000 and not first["finished"]
    assert first["updates"] == (first["steps"] - 600) // 4
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == first["steps"]
    adam_steps = int(next(iter(ckpt["optimizer"]["state"].values()))["step"])
    assert adam_steps == first["updates"]
    assert (out / "replay.npz").exists()

    target = first["steps"] + 800
    res = subprocess.run([_cli(), "teacher", "train", "--out", str(out), "--resume", "--steps", str(target),
                          "--tensorboard", str(tb), "--quiet"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    second = _card(out)["training"]
    assert second["steps"] == target and second["finished"]
    # the replay memory was restored, so learning went on at once: exactly one update per 4 env steps
    assert second["updates"] == first["updates"] + 200
    # both legs ran here: the machine is recorded once
    assert first["machines"] == second["machines"] == [machine()] and "cores" in machine()
    assert second["config"]["buffer_size"] == 4000 and second["config"]["learning_starts"] == 600
    agent = load_agent(out)
    assert agent.card["params"] == 1_686_180 and agent.game == "breakout"

    scalars = _scalars(tb / "teacher")  # one folder per run, named after it
    for tag in ("charts/episodic_return", "charts/episodic_length", "charts/epsilon", "charts/SPS",
                "losses/td_loss", "losses/q_mean", "rollout/ep_rew_mean", "rollout/ep_len_mean", "time/fps",
                "train/learning_rate", "train/loss"):
        assert tag in scalars, tag
    assert list(tb.iterdir()) == [tb / "teacher"]
    returns = [v for _, v in scalars["charts/episodic_return"]]
    assert all(0 <= r <= 100 for r in returns) and len(returns) >= 4
    steps = [s for s, _ in scalars["charts/episodic_return"]]
    assert min(steps) <= first["steps"] < max(steps), "TensorBoard went on after the resume"
    rows = (out / "returns.csv").read_text().splitlines()
    assert rows[0] == "step,return,length,wall_time" and len(rows) - 1 == len(returns)
    assert (out / "learning_curve.png").stat().st_size > 10_000


def test_refusals(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = TeacherConfig(game="pong", steps=700, learning_starts=600, buffer_size=4000, envs=2, compile=False,
                        eval_every=0, checkpoint_every=10_000, save_replay=False)
    train_teacher(cfg, out, show_progress=False)
    with pytest.raises(UserError, match="already holds a run"):
        train_teacher(TeacherConfig(game="pong", steps=800), out, show_progress=False)
    with pytest.raises(UserError, match="arch"):
        train_teacher(TeacherConfig(game="pong", steps=800), out, resume=True, show_progress=False,
                      arch={"name": "nature_dqn", "channels": [16, 32, 32], "hidden": 256})
    with pytest.raises(UserError, match="already at 700 steps"):
        train_teacher(TeacherConfig(game="pong", steps=700), out, resume=True, show_progress=False)
    for bad in ({"steps": 0}, {"batch_size": -1}, {"gamma": 1.5}, {"lr": 0.0}):
        with pytest.raises(UserError):
            train_teacher(TeacherConfig(game="pong", **bad), tmp_path / "x", show_progress=False)


def test_init_from(tmp_path: Path) -> None:
    """A new run that starts from another agent's weights: its card records the source; resume keeps it."""
    from rl_compress.core.files import sha256_file
    from rl_compress.models.agent import WEIGHTS

    src = tmp_path / "src"
    tiny = {"game": "pong", "buffer_size": 4000, "envs": 2, "compile": False, "eval_every": 0, "save_replay": False}
    train_teacher(TeacherConfig(steps=700, learning_starts=600, **tiny), src, show_progress=False)
    out = tmp_path / "ft"
    # no update before 800 steps: the new run's weights are the source's, byte for byte
    train_teacher(TeacherConfig(steps=800, learning_starts=800, lr=2e-5, eps_start=0.01, init_from=str(src),
                                **{**tiny, "save_replay": True}), out, show_progress=False)
    a, b = load_agent(src), load_agent(out)
    for (k, va), vb in zip(a.net.state_dict().items(), b.net.state_dict().values()):
        assert torch.equal(va, vb), k
    init = b.card["training"]["init_from"]
    assert init == {"agent": str(src), "weights_sha256": sha256_file(src / WEIGHTS), "env_steps": 700,
                    "wall_time_s": a.card["training"]["wall_time_s"]}
    assert b.card["training"]["steps"] == 800 and b.card["training"]["updates"] == 0
    assert b.card["training"]["config"]["lr"] == 2e-5
    # the source directory was renamed since: its new path is written in the card, and the
    # resumed run's config follows the card, not the checkpoint's older copy
    card = json.loads((out / "agent.json").read_text())
    card["training"]["init_from"]["agent"] = init["agent"] = str(tmp_path / "src-renamed")
    (out / "agent.json").write_text(json.dumps(card))
    train_teacher(TeacherConfig(steps=1000), out, resume=True, show_progress=False)
    c = load_agent(out)
    assert c.card["training"]["updates"] == 50 and c.card["training"]["init_from"] == init
    assert c.card["training"]["config"]["init_from"] == init["agent"]
    assert any(not torch.equal(va, vc) for va, vc in zip(a.net.state_dict().values(), c.net.state_dict().values()))
    # a run started from that run's agent counts both runs before it, and keeps the chain
    train_teacher(TeacherConfig(steps=650, learning_starts=800, init_from=str(out), **tiny), tmp_path / "ft2",
                  show_progress=False)
    chained = load_agent(tmp_path / "ft2").card["training"]["init_from"]
    assert chained["env_steps"] == 1000 + 700 and chained["init_from"] == init
    assert chained["wall_time_s"] == pytest.approx(c.card["training"]["wall_time_s"] + init["wall_time_s"])
    with pytest.raises(UserError, match="arch"):
        train_teacher(TeacherConfig(steps=800, init_from=str(src), **tiny), tmp_path / "x", show_progress=False,
                      arch={"name": "nature_dqn", "channels": [16, 32, 32], "hidden": 256})
    with pytest.raises(UserError, match="plays 'pong'"):
        train_teacher(TeacherConfig(**{**tiny, "game": "breakout"}, steps=800, init_from=str(src)), tmp_path / "y",
                      show_progress=False)
    with pytest.raises(UserError, match="not an agent directory"):
        train_teacher(TeacherConfig(steps=800, init_from=str(tmp_path / "nowhere"), **tiny), tmp_path / "z",
                      show_progress=False)


def test_epsilon_schedule() -> None:
    cfg = TeacherConfig(learning_starts=100, eps_decay=1000, eps_start=1.0, eps_end=0.1)
    assert epsilon_at(cfg, 0) == 1.0 and epsilon_at(cfg, 100) == 1.0
    assert np.isclose(epsilon_at(cfg, 600), 0.55) and epsilon_at(cfg, 10_000) == pytest.approx(0.1)


@pytest.mark.parametrize(("double", "bf16"), [(False, False), (True, False), (False, True)])
def test_td_update_fits_a_fixed_target(double: bool, bf16: bool) -> None:
    """Repeated updates on one batch drive Q(s,a) to r + discount * max/argmax target value
    (in fp32, and with the forward passes under bfloat16 autocast)."""
    from rl_compress.models.networks import build_network, teacher_arch
    from rl_compress.train.replay import Batch
    from rl_compress.train.teacher import make_optimizer

    torch.manual_seed(0)
    online, target = build_network(teacher_arch(), 6), build_network(teacher_arch(), 6)
    opt = make_optimizer(online.parameters(), TeacherConfig(lr=1e-3))
    rng = np.random.default_rng(0)
    batch = Batch(obs=rng.integers(0, 256, (8, 4, 84, 84), dtype=np.uint8), actions=rng.integers(0, 6, 8),
                  returns=np.full(8, 2.0, np.float32), next_obs=rng.integers(0, 256, (8, 4, 84, 84), dtype=np.uint8),
                  discounts=np.array([0.0] * 4 + [0.9] * 4, np.float32))
    with torch.no_grad():
        q_next = target(torch.from_numpy(batch.next_obs))
    losses = [td_update(online, target, opt, batch, double, 10.0, bf16)[0] for _ in range(150)]
    assert losses[-1] < 0.05 * losses[0]
    with torch.no_grad():
        q = online(torch.from_numpy(batch.obs)).gather(1, torch.from_numpy(batch.actions)[:, None]).squeeze(1)
        best = online(torch.from_numpy(batch.next_obs)).argmax(1) if double else q_next.argmax(1)
    y = 2.0 + torch.from_numpy(batch.discounts) * q_next.gather(1, best[:, None]).squeeze(1)
    assert torch.allclose(q[:4], torch.full((4,), 2.0), atol=0.1)
    assert torch.allclose(q, y, atol=0.15)
    assert all(p.dtype == torch.float32 for p in online.parameters())  # autocast never touches the weights
    with pytest.raises(UserError, match="precision"):
        train_teacher(TeacherConfig(precision="fp16"), Path("never-written"), show_progress=False)


def test_student_arch_from_scratch(tmp_path: Path) -> None:
    """The from-scratch baseline: a gmp student trained by the same DQN trainer."""
    res = subprocess.run([_cli(), "teacher", "train", "--game", "pong", "--arch", "gmp8", "--steps", "800",
                          "--out", str(tmp_path / "dqn_gmp8"), *FAST], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    agent = load_agent(tmp_path / "dqn_gmp8")
    assert agent.kind == "student" and agent.card["arch"]["spec"] == "gmp8" and agent.card["params"] == 3_726
    assert agent.card["training"]["updates"] == (800 - 600) // 4
    res = subprocess.run([_cli(), "teacher", "train", "--out", str(tmp_path / "dqn_gmp8"), "--resume", "--steps", "1000",
                          "--quiet"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert load_agent(tmp_path / "dqn_gmp8").card["training"]["steps"] == 1000
