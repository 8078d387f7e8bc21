"""Policy-gradient teachers: SB3 PPO / A2C zips and CleanRL ppo_atari models import as teachers whose
outputs are policy logits (the card says so), give the source's policy, and distil at their own
temperature (softmax(logits / 1), the teacher's policy)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from rl_compress.atari.envs import sample_observations
from rl_compress.cli.main import main
from rl_compress.models.agent import load_agent
from rl_compress.models.networks import build_network, parse_spec
from rl_compress.train.distill import DistillConfig, distill


class Agent(nn.Module):
    """CleanRL's ppo_atari.py Agent, as it defines it (trunk, actor, critic on x / 255)."""

    def __init__(self, n_actions: int) -> None:
        super().__init__()
        self.network = nn.Sequential(
            nn.Conv2d(4, 32, 8, stride=4), nn.ReLU(), nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(), nn.Flatten(), nn.Linear(64 * 7 * 7, 512), nn.ReLU(),
        )
        self.actor = nn.Linear(512, n_actions)
        self.critic = nn.Linear(512, 1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.actor(self.network(x / 255.0))


@pytest.mark.parametrize("algo", ["PPO", "A2C"])
def test_sb3_actor_critic_zip(algo: str, tmp_path: Path) -> None:
    import ale_py
    import gymnasium as gym
    import stable_baselines3
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    gym.register_envs(ale_py)
    env = VecFrameStack(make_atari_env("PongNoFrameskip-v4", n_envs=1, seed=0), 4)
    model = getattr(stable_baselines3, algo)("CnnPolicy", env, seed=0, verbose=0, n_steps=16)
    model.save(tmp_path / f"{algo.lower()}-PongNoFrameskip-v4.zip")
    out = tmp_path / "teacher"
    assert main(["teacher", "import", str(tmp_path / f"{algo.lower()}-PongNoFrameskip-v4.zip"), "--out", str(out)]) == 0
    agent = load_agent(out)
    assert agent.card["outputs"] == "policy_logits" and agent.game == "pong"
    obs = sample_observations("pong", 24, seed=4)
    with torch.no_grad():
        ours = torch.softmax(agent.net(torch.from_numpy(obs)), 1).numpy()
        theirs = model.policy.get_distribution(model.policy.obs_to_tensor(obs)[0]).distribution.probs.numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6)


def test_cleanrl_ppo_teacher_distils_at_its_own_temperature(tmp_path: Path, capsys) -> None:
    torch.manual_seed(0)
    src = Agent(6).eval()
    with torch.no_grad():  # a decisive policy: its action depends on the frame
        src.actor.weight.mul_(40.0)
    torch.save(src.state_dict(), tmp_path / "ppo_atari.cleanrl_model")
    teacher = tmp_path / "teacher"
    assert main(["teacher", "import", str(tmp_path / "ppo_atari.cleanrl_model"), "--game", "pong", "--out",
                 str(teacher)]) == 0
    card = load_agent(teacher).card
    assert card["outputs"] == "policy_logits" and "critic is dropped" in card["training"]["source"]
    obs = torch.from_numpy(sample_observations("pong", 16, seed=5))
    with torch.no_grad():
        np.testing.assert_allclose(load_agent(teacher).net(obs).numpy(), src.logits(obs.float()).numpy(),
                                   rtol=1e-5, atol=1e-5)
    assert main(["info", str(teacher)]) == 0
    assert "teacher nature_dqn (policy logits) playing pong" in capsys.readouterr().out
    # the student learns the teacher's policy: agreement on held-out real frames rises
    held_out = torch.from_numpy(sample_observations("pong", 256, seed=7))
    with torch.no_grad():
        wanted = load_agent(teacher).net(held_out).argmax(1)
        torch.manual_seed(1)  # the student's initial weights, as distill draws them (seed 1)
        before = float((build_network(parse_spec("gmp4"), 6)(held_out).argmax(1) == wanted).float().mean())
    cfg = DistillConfig(student="gmp4", steps=3000, learning_starts=200, buffer_size=4000, envs=4, eval_every=0,
                        lr=1e-3, train_freq=2, batch_size=32)
    student = distill(teacher, cfg, tmp_path / "student", show_progress=False)
    assert student["training"]["temperature_used"] == 1.0 and student["training"]["updates"] > 1000
    with torch.no_grad():
        after = float((load_agent(tmp_path / "student").net(held_out).argmax(1) == wanted).float().mean())
    assert after > before + 0.1, (before, after)
    cfg = DistillConfig(student="gmp4", steps=400, learning_starts=100, buffer_size=2000, envs=2, eval_every=0,
                        temperature=0.5)
    assert distill(teacher, cfg, tmp_path / "student2", show_progress=False)["training"]["temperature_used"] == 0.5
