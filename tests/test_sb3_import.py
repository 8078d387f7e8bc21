"""`teacher import`: a real SB3 DQN (and sb3-contrib QR-DQN) zip gives the same Q-values in our network."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from rl_compress.atari.envs import sample_observations
from rl_compress.core.errors import UserError
from rl_compress.models.agent import load_agent
from rl_compress.models.sources import import_teacher


def _sb3_env():
    import ale_py
    import gymnasium as gym
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    gym.register_envs(ale_py)
    return VecFrameStack(make_atari_env("PongNoFrameskip-v4", n_envs=1, seed=0), 4)


def _check(model, zip_path: Path, out: Path, q_of) -> None:
    card = import_teacher(zip_path, out, game="Pong")
    agent = load_agent(out)
    assert card["training"]["num_timesteps"] == model.num_timesteps > 0
    obs = sample_observations("pong", 80, seed=1, warmup=0, num_envs=2)
    with torch.no_grad():
        ours = agent.net(torch.from_numpy(obs)).numpy()
        theirs = q_of(model, torch.from_numpy(obs)).numpy()
    assert ours.shape == theirs.shape == (len(obs), 6)
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=0)
    assert np.array_equal(ours.argmax(1), model.predict(obs, deterministic=True)[0])


def test_import_dqn(tmp_path: Path) -> None:
    from stable_baselines3 import DQN

    model = DQN("CnnPolicy", _sb3_env(), buffer_size=1000, learning_starts=100, train_freq=4, seed=0, verbose=0)
    model.learn(300)
    model.save(tmp_path / "dqn.zip")
    _check(model, tmp_path / "dqn.zip", tmp_path / "imported", lambda m, x: m.policy.q_net(x))


def test_import_qrdqn(tmp_path: Path) -> None:
    qrdqn = pytest.importorskip("sb3_contrib").QRDQN
    model = qrdqn("CnnPolicy", _sb3_env(), buffer_size=1000, learning_starts=100, seed=0, verbose=0,
                  policy_kwargs={"n_quantiles": 8})
    model.learn(200)
    model.save(tmp_path / "qrdqn.zip")
    _check(model, tmp_path / "qrdqn.zip", tmp_path / "imported", lambda m, x: m.policy.quantile_net(x).mean(1))
    assert load_agent(tmp_path / "imported").card["arch"]["quantiles"] == 8


def test_import_refusals(tmp_path: Path) -> None:
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a zip file"):
        import_teacher(bad, tmp_path / "o", game="pong")
    with zipfile.ZipFile(tmp_path / "empty.zip", "w") as z:
        z.writestr("data", json.dumps({"policy_class": {"__module__": "stable_baselines3.ppo.policies"}}))
        z.writestr("policy.pth", b"")
    with pytest.raises(UserError):
        import_teacher(tmp_path / "empty.zip", tmp_path / "o", game="pong")
    with pytest.raises(UserError, match="no such file"):
        import_teacher(tmp_path / "missing.zip", tmp_path / "o", game="pong")
    assert not (tmp_path / "o").exists()


def _rewrite(src: Path, dst: Path, data=None, policy=None, extra: dict[str, bytes] | None = None) -> Path:
    """A copy of an SB3 zip with its 'data' JSON and/or policy state dict replaced."""
    with zipfile.ZipFile(src) as z:
        entries = {n: z.read(n) for n in z.namelist()}
    if data is not None:
        entries["data"] = json.dumps(data).encode()
    if policy is not None:
        buf = io.BytesIO()
        torch.save(policy, buf)
        entries["policy.pth"] = buf.getvalue()
    entries.update(extra or {})
    with zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, raw in entries.items():
            z.writestr(name, raw)
    return dst


def test_damaged_sb3_zips_refused_in_one_line(tmp_path: Path) -> None:
    """A real SB3 DQN zip, damaged one way at a time: NaN weights, a scalar tensor, no Q head, metadata of
    the wrong JSON type, an entry that expands to a gigabyte. Each is refused before anything is written."""
    from stable_baselines3 import DQN

    model = DQN("CnnPolicy", _sb3_env(), buffer_size=1000, learning_starts=1000, seed=0, verbose=0)
    good = tmp_path / "dqn.zip"
    model.save(good)
    with zipfile.ZipFile(good) as z:
        data, policy = json.loads(z.read("data")), torch.load(io.BytesIO(z.read("policy.pth")), weights_only=True)
    nan = {**policy, "q_net.q_net.0.bias": torch.full_like(policy["q_net.q_net.0.bias"], float("nan"))}
    scalar = {**policy, "q_net.features_extractor.linear.0.weight": torch.tensor(1.0)}
    headless = {k: v for k, v in policy.items() if not k.startswith("q_net.q_net.")}
    cases = [({"policy": nan}, "'head.bias' holds 6 NaN or Inf values"),
             ({"policy": scalar}, "is a scalar, not a layer's weights"),
             ({"policy": headless}, "the policy has no DQN head"),
             ({"data": {**data, "policy_class": "DQNPolicy"}}, "'policy_class' is a str"),
             ({"data": {**data, "observation_space": [4, 84, 84]}}, "'observation_space' is a list"),
             ({"extra": {"data": b" " * 2**30}}, "'data' entry expands to 1,073,741,824 bytes")]
    for i, (change, message) in enumerate(cases):
        with pytest.raises(UserError, match=message):
            import_teacher(_rewrite(good, tmp_path / f"bad{i}.zip", **change), tmp_path / "o", game="pong")
    with zipfile.ZipFile(tmp_path / "bad5.zip") as z:
        assert z.getinfo("data").compress_size < 2**21  # the bomb itself is small
    assert not (tmp_path / "o").exists()
    import_teacher(good, tmp_path / "o", game="pong")  # the undamaged zip still imports
