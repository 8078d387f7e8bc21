"""The Python API on shipped agents and real games: a plain gymnasium loop plays a whole game with
a shipped student and scores what `evaluate` scores; attention from the API is what `localize`
writes; bad observations are refused, not rescaled."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import rl_compress as rlc
from rl_compress.attention.localize import localize_to_npz
from rl_compress.attention.playback import play

ROOT = Path(__file__).resolve().parents[1]
STUDENT = ROOT / "agents" / "pong" / "gmp32-w5-1pct-tuned"


@pytest.fixture(scope="module")
def student() -> rlc.Agent:
    return rlc.load_agent(STUDENT)


def test_a_gymnasium_loop_scores_what_evaluate_scores(student: rlc.Agent) -> None:
    """No sticky actions and no no-op starts: the emulator is then deterministic, so the whole game
    played through make_env + predict must be the game evaluate plays through the vector env."""
    env = rlc.make_env("pong", sticky=0.0, noop_max=0)
    obs, _ = env.reset(seed=3)
    score, steps, done = 0.0, 0, False
    while not done:
        action, state = student.predict(obs)
        assert state is None  # feed-forward: no recurrent state, as SB3 gives it for such policies
        obs, reward, term, trunc, _ = env.step(action)
        score, steps, done = score + reward, steps + 1, term or trunc
    env.close()
    assert steps > 700 and -21 <= score <= 21
    res = rlc.evaluate(student, episodes=1, seed=3, protocol=rlc.Protocol(sticky=0.0, noop_max=0, epsilon=0.0))
    assert res["scores"] == [score]
    assert score > 0  # the shipped 0.98% student wins its game


def test_predict_single_batch_and_refusals(student: rlc.Agent) -> None:
    obs = np.stack([rlc.make_env("pong").reset(seed=s)[0] for s in range(3)])
    assert obs.shape == (3, 4, 84, 84) and obs.dtype == np.uint8
    batch, _ = student.predict(obs)
    assert batch.dtype == np.int64 and batch.shape == (3,)
    single, _ = student.predict(obs[1])
    assert single == int(batch[1]) and isinstance(single, int)
    rng = np.random.default_rng(0)
    random, _ = student.predict(np.repeat(obs[:1], 600, 0), deterministic=False, epsilon=1.0, rng=rng)
    assert set(random.tolist()) == set(range(6))  # epsilon 1: uniform over Pong's 6 actions
    for bad, msg in ((obs.astype(np.float32) / 255, "already scaled"), (np.zeros((210, 160, 3), np.uint8), "raw screen"),
                     (np.zeros((4, 80, 80), np.uint8), "must be uint8 [4,84,84]")):
        with pytest.raises(rlc.UserError, match=re.escape(msg)):
            student.predict(bad)
    with pytest.raises(rlc.UserError, match="unknown attention method"):
        student.attention(obs, method="saliency")


@pytest.mark.parametrize("method", ["gmp", "gradcam"])
def test_attention_is_what_localize_writes(student: rlc.Agent, method: str, tmp_path: Path) -> None:
    observations = [st.obs for st in play(student.net, "pong", method, 12, episodes=1, seed=5)]
    localize_to_npz(student.net, "pong", 12, tmp_path / "m.npz", method, seed=5)
    maps, peaks = student.attention(np.stack(observations), method=method)
    with np.load(tmp_path / "m.npz") as npz:
        assert maps.shape == npz["maps"].shape == (12, 210, 160)
        np.testing.assert_allclose(maps, npz["maps"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(peaks, npz["peaks"], rtol=1e-5, atol=1e-4)
    assert (maps >= 0).all() and maps.max() > 0


def test_attention_wrapper_info_and_render(student: rlc.Agent) -> None:
    env = rlc.AttentionWrapper(rlc.make_env("pong"), student, method="gmp", scale=2)
    obs, info = env.reset(seed=0)
    for _ in range(5):
        obs, _, _, _, info = env.step(info["action"])
    assert info["attention"].shape == (210, 160) and info["peaks"].shape[1] == 3
    assert info["action"] == student.predict(obs)[0]
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.shape == ((210 + 14) * 2, 160 * 2, 3)
    env.close()


def test_load_agent_refusals(tmp_path: Path) -> None:
    with pytest.raises(rlc.UserError, match="no such folder"):
        rlc.load_agent(tmp_path / "nope")
    (tmp_path / "m.zip").write_bytes(b"PK")
    with pytest.raises(rlc.UserError, match="cannot tell the game from its name"):
        rlc.load_agent(tmp_path / "m.zip")
    with pytest.raises(rlc.UserError, match="not a zip file"):
        rlc.load_agent(tmp_path / "m.zip", game="pong")


def test_load_agent_reads_an_sb3_zip(tmp_path: Path) -> None:
    """A stable-baselines3 DQN zip loads straight into an Agent that acts as SB3's policy does."""
    import ale_py
    import gymnasium as gym
    from stable_baselines3 import DQN
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    gym.register_envs(ale_py)
    model = DQN("CnnPolicy", VecFrameStack(make_atari_env("PongNoFrameskip-v4", n_envs=1, seed=0), 4),
                buffer_size=500, learning_starts=1000, seed=0, verbose=0)
    model.save(tmp_path / "dqn.zip")
    agent = rlc.load_agent(tmp_path / "dqn.zip", game="PongNoFrameskip-v4")
    assert agent.kind == "teacher" and agent.game == "pong" and agent.num_actions == 6
    obs = np.stack([rlc.make_env("pong").reset(seed=s)[0] for s in range(4)])
    assert np.array_equal(agent.predict(obs)[0], model.predict(obs, deterministic=True)[0])
    assert not (tmp_path / "dqn").exists()  # nothing written: loaded in memory


def test_sb3_evaluate_policy_takes_our_agent(student: rlc.Agent) -> None:
    """stable-baselines3's own evaluate_policy plays a shipped student through a DummyVecEnv of our
    gymnasium env (predict has SB3's signature) and scores the game our evaluate plays."""
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import DummyVecEnv

    env = DummyVecEnv([lambda: rlc.make_env("pong", sticky=0.0, noop_max=0)])
    env.seed(3)
    with pytest.warns(UserWarning, match="Monitor"):  # SB3 notes the env has no Monitor; the scores are whole games
        mean, std = evaluate_policy(student, env, n_eval_episodes=1, deterministic=True)
    env.close()
    ours = rlc.evaluate(student, episodes=1, seed=3, protocol=rlc.Protocol(sticky=0.0, noop_max=0, epsilon=0.0))
    assert (mean, std) == (ours["scores"][0], 0.0) and mean > 0


@pytest.mark.parametrize(("cls", "kwargs", "message"), [
    (rlc.DistillConfig, {"steps": -5}, "steps must be positive, got -5"),
    (rlc.DistillConfig, {"lr": "1e-3"}, "lr must be a finite number, got '1e-3'"),
    (rlc.DistillConfig, {"loss": "l2"}, "loss must be one of"),
    (rlc.TeacherConfig, {"gamma": 1.5}, "gamma must be in (0, 1]"),
    (rlc.TeacherConfig, {"n_step": 0}, "n_step must be positive"),
    (rlc.PQNConfig, {"q_lambda": 2.0}, "q_lambda must be in [0, 1]"),
    (rlc.PQNConfig, {"eps_end": float("nan")}, "eps_end must be a finite number"),
])
def test_configs_refuse_bad_values_when_built(cls: type, kwargs: dict, message: str) -> None:
    """A config is checked where it is made, not when a run starts: one UserError line naming the
    field (the CLI names its flag: --steps)."""
    with pytest.raises(rlc.UserError, match="^" + re.escape(message)):
        cls(**kwargs)
    assert cls(device=torch.device("cpu")).device == torch.device("cpu")  # a torch.device is a device too


def test_record_localize_export_push_in_python(student: rlc.Agent, tmp_path: Path) -> None:
    """The commands as functions: real files written, arguments checked by their Python names."""
    assert rlc.record(student, tmp_path / "s.gif", frames=8, side_by_side=ROOT / "agents/pong/teacher-base") == 8
    assert (tmp_path / "s.gif").read_bytes()[:6] == b"GIF89a"
    res = rlc.localize(student, tmp_path / "m.npz", frames=3, method="gmp")
    assert res["frames"] == 3 and np.load(tmp_path / "m.npz")["maps"].shape == (3, 210, 160)
    out = rlc.export(student, tmp_path / "s.onnx")
    assert out.read_bytes()[:2] and out.stat().st_size > 10_000
    names = rlc.push(student, "me/student", dry_run=tmp_path / "hub", frames=5)
    assert {"README.md", "results.json", "LICENSE", "model.onnx"} <= set(names)
    for call, message in ((lambda: rlc.record(student, tmp_path / "s.avi"), "video must end in"),
                          (lambda: rlc.record(student, tmp_path / "t.gif", frames=0), "frames"),
                          (lambda: rlc.localize(student, tmp_path / "m.txt"), "must end in .npz"),
                          (lambda: rlc.export(student, tmp_path / "x.onnx", format="tflite"), "format must be one of"),
                          (lambda: rlc.push(student.path, "not a repo", dry_run=tmp_path / "h2"), "ORG/NAME")):
        with pytest.raises(rlc.UserError, match=message):
            call()
    assert not (tmp_path / "s.avi").exists() and not (tmp_path / "h2").exists()
