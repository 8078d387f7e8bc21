"""Teachers from the Hugging Face Hub and CleanRL, offline: the tests lay out a Hub cache as
huggingface_hub lays it out ($HF_HOME/hub/models--ORG--NAME/{refs/main, snapshots/<commit>/...}),
with a CleanRL dqn_atari model saved from CleanRL's own QNetwork and an SB3 zip saved by SB3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub import ModelCard
from torch import nn

from rl_compress.atari.envs import sample_observations
from rl_compress.models.agent import load_agent

COMMIT = "0123456789abcdef0123456789abcdef01234567"
HUB_README = """---
library_name: cleanrl
model-index:
- name: DQN
  results:
  - task: {type: reinforcement-learning, name: reinforcement-learning}
    dataset: {name: Pong-v5, type: Pong-v5}
    metrics:
    - {type: mean_reward, value: 20.25 +/- 0.83, name: mean_reward, verified: false}
---
# DQN on Pong-v5
"""


class QNetwork(nn.Module):
    """CleanRL's dqn_atari.py QNetwork, as it defines it."""

    def __init__(self, n_actions: int) -> None:
        super().__init__()
        self.network = nn.Sequential(
            nn.Conv2d(4, 32, 8, stride=4), nn.ReLU(), nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(), nn.Flatten(), nn.Linear(3136, 512), nn.ReLU(),
            nn.Linear(512, n_actions),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x / 255.0)


ROOT = Path(__file__).resolve().parents[1]


def lay_out(hf_home: Path, repo: str, files: dict[str, bytes]) -> Path:
    """A model repository in the Hub cache, as huggingface_hub writes it (plain files, one commit)."""
    root = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(COMMIT)
    snap = root / "snapshots" / COMMIT
    snap.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (snap / name).write_bytes(data)
    return snap


def rlc(hf_home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([str(Path(sys.executable).with_name("rl-compress")), *args], capture_output=True,
                          text=True, timeout=300, env=env)


@pytest.fixture()
def cleanrl_model(tmp_path: Path) -> tuple[QNetwork, bytes]:
    torch.manual_seed(0)
    q = QNetwork(6).eval()
    torch.save(q.state_dict(), tmp_path / "dqn_atari.cleanrl_model")  # as dqn_atari.py saves it
    return q, (tmp_path / "dqn_atari.cleanrl_model").read_bytes()


def test_cleanrl_dqn_from_the_hub_cache(tmp_path: Path, cleanrl_model: tuple[QNetwork, bytes]) -> None:
    q, data = cleanrl_model
    hf = tmp_path / "hf"
    lay_out(hf, "cleanrl/Pong-v5-dqn_atari-seed1", {"dqn_atari.cleanrl_model": data, "README.md": HUB_README.encode()})
    out = tmp_path / "teacher"
    res = rlc(hf, "teacher", "import", "hf:cleanrl/Pong-v5-dqn_atari-seed1", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "it reports 20.25 +/- 0.83" in res.stderr
    agent = load_agent(out)
    assert agent.game == "pong" and agent.card["params"] == 1_687_206  # the game read from the repository name
    hub = agent.card["training"]["hub"]
    assert hub == {"repo": "cleanrl/Pong-v5-dqn_atari-seed1", "revision": COMMIT, "file": "dqn_atari.cleanrl_model",
                   "reported_score": "20.25 +/- 0.83"}
    obs = torch.from_numpy(sample_observations("pong", 32, seed=2))
    with torch.no_grad():
        np.testing.assert_allclose(agent.net(obs).numpy(), q(obs.float()).numpy(), rtol=1e-5, atol=1e-5)
    # a pinned revision reads the same snapshot; the card names what was read
    res = rlc(hf, "teacher", "import", f"hf:cleanrl/Pong-v5-dqn_atari-seed1@{COMMIT}", "--out", str(tmp_path / "pinned"))
    assert res.returncode == 0, res.stderr


def test_sb3_zip_from_the_hub_cache(tmp_path: Path) -> None:
    import ale_py
    import gymnasium as gym
    from stable_baselines3 import DQN
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    gym.register_envs(ale_py)
    model = DQN("CnnPolicy", VecFrameStack(make_atari_env("BreakoutNoFrameskip-v4", n_envs=1, seed=0), 4),
                buffer_size=500, learning_starts=1000, seed=0, verbose=0)
    model.save(tmp_path / "dqn-BreakoutNoFrameskip-v4.zip")
    hf = tmp_path / "hf"
    lay_out(hf, "sb3/dqn-BreakoutNoFrameskip-v4",
            {"dqn-BreakoutNoFrameskip-v4.zip": (tmp_path / "dqn-BreakoutNoFrameskip-v4.zip").read_bytes()})
    out = tmp_path / "teacher"
    res = rlc(hf, "teacher", "import", "hf:sb3/dqn-BreakoutNoFrameskip-v4", "--out", str(out))
    assert res.returncode == 0, res.stderr
    agent = load_agent(out)
    assert agent.game == "breakout" and agent.num_actions == 4
    obs = sample_observations("breakout", 16, seed=1)
    with torch.no_grad():
        ours = agent.net(torch.from_numpy(obs)).argmax(1).numpy()
    assert np.array_equal(ours, model.predict(obs, deterministic=True)[0])
    assert json.loads((out / "agent.json").read_text())["training"]["hub"]["file"] == "dqn-BreakoutNoFrameskip-v4.zip"


def test_hub_refusals(tmp_path: Path, cleanrl_model: tuple[QNetwork, bytes]) -> None:
    hf = tmp_path / "hf"
    hf.mkdir()
    res = rlc(hf, "teacher", "import", "hf:cleanrl/Breakout-v5-dqn_atari-seed1", "--out", str(tmp_path / "a"))
    assert res.returncode == 2 and res.stderr.startswith("error: hf:cleanrl/Breakout-v5-dqn_atari-seed1: cannot fetch")
    assert len(res.stderr.strip().splitlines()) == 1
    _, data = cleanrl_model
    lay_out(hf, "cleanrl/Breakout-v5-dqn_atari-seed1", {"dqn_atari.cleanrl_model": data})
    res = rlc(hf, "teacher", "import", "hf:cleanrl/Breakout-v5-dqn_atari-seed1", "--out", str(tmp_path / "a"))
    assert res.returncode == 2 and "model has 6 actions, breakout has 4" in res.stderr  # conventions checked
    ppo = {"network.0.weight": torch.zeros(32, 4, 8, 8), "actor.weight": torch.zeros(6, 512),
           "critic.weight": torch.zeros(1, 512)}
    torch.save(ppo, tmp_path / "ppo_atari.cleanrl_model")
    res = rlc(hf, "teacher", "import", str(tmp_path / "ppo_atari.cleanrl_model"), "--game", "pong", "--out",
              str(tmp_path / "b"))
    assert res.returncode == 2 and "not CleanRL's ppo_atari Agent (missing" in res.stderr  # an incomplete Agent
    res = rlc(hf, "teacher", "import", "hf:not a repo", "--out", str(tmp_path / "c"))
    assert res.returncode == 2 and "hf:ORG/NAME" in res.stderr
    assert not any((tmp_path / d).exists() for d in ("a", "b", "c"))


def test_push_dry_run_then_load_it_from_the_hub(tmp_path: Path) -> None:
    """`push --dry-run DIR` writes exactly the folder a push uploads; laid out as a Hub repository it
    loads back as the same agent (rl-compress's own format on the Hub)."""
    student = Path(__file__).resolve().parents[1] / "agents" / "pong" / "gmp32-w5-1pct-tuned"
    folder = tmp_path / "dry"
    hf = tmp_path / "hf"
    res = rlc(hf, "push", str(student), "--repo-id", "me/pong-student", "--dry-run", str(folder), "--frames", "40")
    assert res.returncode == 0, res.stderr
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["LICENSE", "README.md", "agent.json", "attention.png", "config.yml", "learning_curve.png",
                     "model.onnx", "model.safetensors", "replay.mp4", "results.json"]
    readme = (folder / "README.md").read_text()
    import yaml

    meta = yaml.safe_load(readme.split("---\n")[1])
    assert meta["model-index"][0]["results"][0]["metrics"][0]["value"] == "17.13 +/- 2.25"
    assert meta["license"] == "mit" and (folder / "LICENSE").read_text() == (ROOT / "LICENSE").read_text()
    results = json.loads((folder / "results.json").read_text())  # huggingface_sb3's keys: the card's own evaluation
    assert (results["mean_reward"], results["n_eval_episodes"], results["env_id"]) == (
        pytest.approx(17.1333, abs=1e-3), 30, "ALE/Pong-v5")
    config = yaml.safe_load((folder / "config.yml").read_text())
    assert config == json.loads((student / "agent.json").read_text())["training"]["config"]
    assert 'rlc.load_agent("hf:me/pong-student")' in readme and "](attention.png)" in readme and "](learning_curve.png)" in readme
    res = rlc(hf, "push", str(student), "--repo-id", "me/pong-student", "--dry-run", str(folder))
    assert res.returncode == 2 and "not empty" in res.stderr  # never written over
    lay_out(hf, "me/pong-student", {p.name: p.read_bytes() for p in folder.iterdir()})
    out = tmp_path / "fetched"
    res = rlc(hf, "teacher", "import", "hf:me/pong-student", "--out", str(out))
    assert res.returncode == 0, res.stderr
    back = load_agent(out)
    assert (out / "model.safetensors").read_bytes() == (student / "model.safetensors").read_bytes()
    assert back.card["training"]["command"] == load_agent(student).card["training"]["command"]
    assert back.card["training"]["import_command"].startswith("rl-compress teacher import hf:me/pong-student")


def test_ppo_zip_from_the_hub_and_refusals(tmp_path: Path) -> None:
    import ale_py
    import gymnasium as gym
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    gym.register_envs(ale_py)
    model = PPO("CnnPolicy", VecFrameStack(make_atari_env("PongNoFrameskip-v4", n_envs=1, seed=0), 4), seed=0,
                verbose=0, n_steps=16, batch_size=16)
    model.save(tmp_path / "ppo-PongNoFrameskip-v4.zip")
    hf = tmp_path / "hf"
    lay_out(hf, "sb3/ppo-PongNoFrameskip-v4", {"ppo-PongNoFrameskip-v4.zip": (tmp_path / "ppo-PongNoFrameskip-v4.zip").read_bytes()})
    res = rlc(hf, "teacher", "import", "hf:sb3/ppo-PongNoFrameskip-v4", "--out", str(tmp_path / "ppo"))
    assert res.returncode == 0, res.stderr
    agent = load_agent(tmp_path / "ppo")
    obs = sample_observations("pong", 16, seed=3)
    with torch.no_grad():
        ours = agent.net(torch.from_numpy(obs))
        theirs = model.policy.get_distribution(model.policy.obs_to_tensor(obs)[0]).distribution.logits
    # Categorical normalizes its logits; the policy is the same: compare log-probabilities
    np.testing.assert_allclose(torch.log_softmax(ours, 1).numpy(), theirs.numpy(), rtol=1e-5, atol=1e-5)
    assert agent.card["outputs"] == "policy_logits"
    # a repository without a model file, a pickle posing as a CleanRL model: one line, nothing runs
    lay_out(hf, "sb3/empty-PongNoFrameskip-v4", {"README.md": b"# nothing here\n"})
    res = rlc(hf, "teacher", "import", "hf:sb3/empty-PongNoFrameskip-v4", "--out", str(tmp_path / "e"))
    assert res.returncode == 2 and "no .cleanrl_model or SB3 .zip model file" in res.stderr
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    lay_out(hf, "cleanrl/Pong-v5-evil", {"dqn_atari.cleanrl_model": pickle.dumps({"network.0.weight": Evil()})})
    res = rlc(hf, "teacher", "import", "hf:cleanrl/Pong-v5-evil", "--out", str(tmp_path / "x"))
    assert res.returncode == 2 and "cannot read it safely" in res.stderr and not (tmp_path / "pwned").exists()
    assert not (tmp_path / "e").exists() and not (tmp_path / "x").exists()


def test_push_card_reads_as_a_hub_model_card_and_upload_calls(tmp_path: Path, monkeypatch) -> None:
    from rl_compress.attention import publish

    student = Path(__file__).resolve().parents[1] / "agents" / "pong" / "gmp32-w5-1pct-tuned"
    agent = load_agent(student)
    names = publish.stage(agent, tmp_path / "repo", "me/pong-student", publish.evaluation_to_publish(agent, None, False),
                          frames=20)
    assert "README.md" in names and "replay.mp4" in names
    card = ModelCard.load(tmp_path / "repo" / "README.md")
    (result,) = card.data.eval_results
    assert result.metric_type == "mean_reward" and result.metric_value == "17.13 +/- 2.25"
    assert result.dataset_name == "ALE/Pong-v5" and card.data.library_name == "rl-compress"
    calls = []

    class StubApi:
        def create_repo(self, repo_id, private, exist_ok):
            calls.append(("create_repo", repo_id, private, exist_ok))

        def upload_folder(self, folder_path, repo_id, commit_message):
            calls.append(("upload_folder", sorted(p.name for p in Path(folder_path).iterdir()), repo_id))

    monkeypatch.setattr(publish.huggingface_hub, "HfApi", StubApi)
    publish.upload(tmp_path / "repo", "me/pong-student", private=True)
    assert calls == [("create_repo", "me/pong-student", True, True), ("upload_folder", names, "me/pong-student")]


def test_unsupported_sb3_algorithm_is_named(tmp_path: Path) -> None:
    import io
    import zipfile

    buf = io.BytesIO()
    torch.save({"actor.mu.weight": torch.zeros(2, 2)}, buf)
    with zipfile.ZipFile(tmp_path / "sac-PongNoFrameskip-v4.zip", "w") as z:
        z.writestr("data", json.dumps({"policy_class": {"__module__": "stable_baselines3.sac.policies"}}))
        z.writestr("policy.pth", buf.getvalue())
    res = rlc(tmp_path / "hf", "teacher", "import", str(tmp_path / "sac-PongNoFrameskip-v4.zip"), "--out",
              str(tmp_path / "o"))
    assert res.returncode == 2 and "'stable_baselines3.sac.policies' is not an SB3 DQN, QR-DQN, PPO or A2C" in res.stderr
    assert not (tmp_path / "o").exists()


def test_every_agent_command_takes_every_source(tmp_path: Path) -> None:
    """info of an SB3 zip, evaluate of hf:ORG/NAME (offline cache), record and localize of a zip, export
    of a Hub source; the commands that write into an agent directory refuse the others in one line;
    a student distilled from a Hub teacher keeps the teacher's origin, and its pushed model card names
    the teacher as its base_model; rlc.evaluate takes a path."""
    import ale_py
    import gymnasium as gym
    from stable_baselines3 import DQN
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    import rl_compress as rlc_api

    gym.register_envs(ale_py)
    model = DQN("CnnPolicy", VecFrameStack(make_atari_env("PongNoFrameskip-v4", n_envs=1, seed=0), 4),
                buffer_size=500, learning_starts=1000, seed=0, verbose=0)
    zip_path = tmp_path / "dqn-PongNoFrameskip-v4.zip"
    model.save(zip_path)
    hf = tmp_path / "hf"
    lay_out(hf, "sb3/dqn-PongNoFrameskip-v4", {zip_path.name: zip_path.read_bytes()})

    res = rlc(hf, "info", str(zip_path), "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["params"] == 1_687_206 and json.loads(res.stdout)["game"] == "pong"
    res = rlc(hf, "evaluate", "hf:sb3/dqn-PongNoFrameskip-v4", "--episodes", "1", "--json", str(tmp_path / "e.json"),
              "--quiet")
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "e.json").read_text())["game"] == "pong"
    res = rlc(hf, "record", str(zip_path), "--out", str(tmp_path / "v.mp4"), "--max-frames", "20", "--quiet")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "v.mp4").stat().st_size > 1000
    res = rlc(hf, "localize", str(zip_path), "--frames", "5", "--method", "gradcam", "--out", str(tmp_path / "m.npz"))
    assert res.returncode == 0, res.stderr
    assert np.load(tmp_path / "m.npz")["maps"].shape == (5, 210, 160)
    res = rlc(hf, "export", "hf:sb3/dqn-PongNoFrameskip-v4", "--format", "onnx", "--out", str(tmp_path / "m.onnx"))
    assert res.returncode == 0 and (tmp_path / "m.onnx").stat().st_size > 1_000_000, res.stderr
    for args in (["evaluate", str(zip_path), "--write-card"], ["card", str(zip_path)],
                 ["push", "hf:sb3/dqn-PongNoFrameskip-v4", "--repo-id", "me/x", "--dry-run", str(tmp_path / "p")]):
        res = rlc(hf, *args)
        assert res.returncode == 2 and "needs an agent directory; import it first" in res.stderr, args
        assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr

    teacher = tmp_path / "teacher"
    assert rlc(hf, "teacher", "import", "hf:sb3/dqn-PongNoFrameskip-v4", "--out", str(teacher)).returncode == 0
    card = rlc_api.distill(rlc_api.load_agent(teacher), rlc_api.DistillConfig(steps=400, envs=2, eval_every=0,
                           learning_starts=100, buffer_size=2000), tmp_path / "student", show_progress=False)
    assert card["teacher"]["hub"]["repo"] == "sb3/dqn-PongNoFrameskip-v4" and card["teacher"]["hub"]["revision"] == COMMIT
    assert card["teacher"]["sha256"] and card["teacher"]["path"] == str(teacher)
    with pytest.raises(rlc_api.UserError, match="import it first"):
        rlc_api.distill(str(zip_path), rlc_api.DistillConfig(steps=400), tmp_path / "s2", show_progress=False)
    assert rlc_api.evaluate(str(teacher), episodes=1)["episodes"] == 1

    res = rlc(hf, "push", str(tmp_path / "student"), "--repo-id", "me/student", "--unevaluated", "--frames", "5",
              "--dry-run", str(tmp_path / "pushed"))
    assert res.returncode == 0, res.stderr
    meta = ModelCard.load(tmp_path / "pushed" / "README.md").data
    assert meta.base_model == "sb3/dqn-PongNoFrameskip-v4" and meta.eval_results is None  # unevaluated: no score
    assert not (tmp_path / "pushed" / "results.json").exists()


def test_push_evaluates_first(random_teacher: Path, tmp_path: Path) -> None:
    """An agent without an evaluation of its current weights is not published unless told; --evaluate
    plays the games first and publishes that score (the user's directory is left as it was);
    --tensorboard sends the run's event files along."""
    from safetensors.torch import save_file
    from torch.utils.tensorboard import SummaryWriter

    hf = tmp_path / "hf"
    dry = tmp_path / "dry"
    res = rlc(hf, "push", str(random_teacher), "--repo-id", "me/t", "--dry-run", str(dry))
    assert res.returncode == 2 and "no evaluation of these weights to publish; add --evaluate 30" in res.stderr
    assert not dry.exists()
    for extra, message in ((["--evaluate", "1", "--unevaluated"], "contradict"),
                           (["--tensorboard", str(tmp_path / "none")], "no such folder"),
                           (["--evaluate", "0"], "--evaluate")):
        res = rlc(hf, "push", str(random_teacher), "--repo-id", "me/t", "--dry-run", str(dry), *extra)
        assert res.returncode == 2 and message in res.stderr and not dry.exists(), extra
    with SummaryWriter(str(tmp_path / "tb" / "teacher")) as writer:
        writer.add_scalar("rollout/ep_rew_mean", -21.0, 100)
    card_before = (random_teacher / "agent.json").read_bytes()
    res = rlc(hf, "push", str(random_teacher), "--repo-id", "me/t", "--dry-run", str(dry), "--evaluate", "2",
              "--tensorboard", str(tmp_path / "tb"), "--frames", "5")
    assert res.returncode == 0, res.stderr
    results = json.loads((dry / "results.json").read_text())
    assert results["n_eval_episodes"] == 2 and len(results["scores"]) == 2 and results["env_id"] == "ALE/Pong-v5"
    (metric,) = ModelCard.load(dry / "README.md").data.eval_results
    assert metric.metric_value == f"{results['mean_reward']:.2f} +/- {results['std_reward']:.2f}"
    assert json.loads((dry / "agent.json").read_text())["evaluation"]["episodes"] == 2
    events = list((dry / "runs" / "tb" / "teacher").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0
    assert (random_teacher / "agent.json").read_bytes() == card_before
    # an evaluation of other weights does not count
    assert rlc(hf, "evaluate", str(random_teacher), "--episodes", "1", "--write-card", "--quiet").returncode == 0
    weights = load_agent(random_teacher).net.state_dict()
    save_file({k: v + 1 if v.is_floating_point() else v for k, v in weights.items()}, random_teacher / "model.safetensors",
              metadata={"format": "1"})
    res = rlc(hf, "push", str(random_teacher), "--repo-id", "me/t", "--dry-run", str(tmp_path / "dry2"))
    assert res.returncode == 2 and "no evaluation of these weights" in res.stderr
    res = rlc(hf, "push", str(random_teacher), "--repo-id", "me/t", "--dry-run", str(tmp_path / "dry2"), "--unevaluated",
              "--frames", "5")
    assert res.returncode == 0, res.stderr  # published without a score: the stale one is not carried along
    assert ModelCard.load(tmp_path / "dry2" / "README.md").data.eval_results is None
    assert "evaluation" not in json.loads((tmp_path / "dry2" / "agent.json").read_text())
