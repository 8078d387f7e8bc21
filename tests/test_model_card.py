"""`rl-compress card`: a README.md model card with Hub metadata the Hub can read (YAML front matter,
a model-index entry with the evaluation) and the agent's summary."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from rl_compress.cli.main import main


def test_model_card_of_an_evaluated_agent(random_teacher: Path, capsys) -> None:
    assert main(["card", str(random_teacher)]) == 0
    text = (random_teacher / "README.md").read_text()
    meta = yaml.safe_load(text.split("---\n")[1])
    assert meta["library_name"] == "rl-compress" and "ALE/Pong-v5" in meta["tags"]
    assert "model-index" not in meta  # not evaluated yet: no result to claim
    assert main(["evaluate", str(random_teacher), "--episodes", "2", "--write-card", "--quiet"]) == 0
    assert main(["card", str(random_teacher)]) == 0
    text = (random_teacher / "README.md").read_text()
    meta = yaml.safe_load(text.split("---\n")[1])
    ev = json.loads((random_teacher / "agent.json").read_text())["evaluation"]
    (result,) = meta["model-index"][0]["results"]
    assert result["task"]["type"] == "reinforcement-learning" and result["dataset"]["name"] == "ALE/Pong-v5"
    assert result["metrics"][0]["value"] == f"{ev['mean']:.2f} +/- {ev['std']:.2f}"
    assert f"{random_teacher}: teacher nature_dqn playing pong (6 actions)" in text
    assert "size       1,687,206 parameters" in text and "rlc.load_agent" in text
    assert "![where it looks: its attention on a frame of its own game](attention.png)" in text
    assert sorted(p.name for p in random_teacher.iterdir()) == ["README.md", "agent.json", "attention.png",
                                                                 "model.safetensors"]
