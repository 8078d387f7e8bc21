"""Localization you can trust: deletion / insertion, the randomisation sanity check and the pointing
game on constructed cases whose answer is known, then the benchmark on a real agent's own frames."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from rl_compress.atari.envs import sample_observations
from rl_compress.attention import faithfulness as F
from rl_compress.attention.benchmark import top_pixels
from rl_compress.attention.score import localization_score
from rl_compress.cli.main import main
from rl_compress.models.agent import load_agent
from rl_compress.models.maps import GRID, grid_to_screen

ROOT = Path(__file__).resolve().parents[1]
STUDENT = ROOT / "agents" / "pong" / "gmp15-w5-15min"
BOX = (slice(30, 42), slice(50, 62))  # the 12x12 region (rows, columns) that decides the action


class RegionNet(nn.Module):
    """Two actions: 0 while the region BOX of the newest frame holds a fine checkerboard (its
    contrast between neighbours), 1 once that contrast is gone (blurred away)."""

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        region = obs.float()[:, 3, BOX[0], BOX[1]]
        contrast = (region[:, :, 1:] - region[:, :, :-1]).abs().mean(dim=(1, 2)) / 255.0
        return torch.stack([contrast, torch.full_like(contrast, 0.25)], dim=1)


def region_frames(n: int = 12) -> np.ndarray:
    """Frames of smooth noise everywhere and a checkerboard in BOX: the net's action is 0 on all."""
    rng = np.random.default_rng(0)
    obs = np.repeat(rng.integers(60, 80, (n, 1, GRID, GRID)), 4, axis=1).astype(np.uint8)
    board = (np.indices((12, 12)).sum(0) % 2 * 255).astype(np.uint8)
    obs[:, :, BOX[0], BOX[1]] = board
    return obs


def test_a_map_on_the_deciding_pixels_beats_random_on_deletion_and_insertion() -> None:
    net, obs = RegionNet(), region_frames()
    actions = net(torch.from_numpy(obs)).argmax(1).numpy()
    assert (actions == 0).all()
    exact = np.zeros((len(obs), GRID, GRID), np.float32)
    exact[:, BOX[0], BOX[1]] = 1.0
    right = F.deletion_insertion(net, obs, F.normalised(exact), actions)
    chance = F.deletion_insertion(net, obs, F.grid_maps("random", net, obs, actions), actions)
    # deleting 2% (141 px) of the exact map blurs the whole 144-px board: the action goes at once
    assert right["deletion_kept"][right["fractions"].index(0.02)] == 0.0
    assert right["deletion_auc"] < 0.3 < 0.9 < chance["deletion_auc"]
    assert right["insertion_auc"] > 0.7 > 0.3 > chance["insertion_auc"]
    assert right["insertion_start"] == 0.0  # the blurred input alone does not take the action


def test_randomising_the_network_changes_its_map_and_not_a_map_that_ignores_it() -> None:
    agent = load_agent(STUDENT)
    obs = sample_observations("pong", 6, seed=2)
    with torch.no_grad():
        actions = agent.net(torch.from_numpy(obs)).argmax(1).numpy()
    gmp = F.sanity_check("gmp", agent.net, obs, actions)
    assert [s["randomised_down_to"] for s in gmp["stages"]] == F.randomisation_stages(agent.net)
    assert gmp["stages"][0]["randomised_down_to"] == "head" and len(gmp["stages"]) == 5
    assert gmp["passes"] and gmp["stages"][-1]["spearman"] < gmp["stages"][0]["spearman"]
    centre = F.sanity_check("centre", agent.net, obs, actions)
    assert not centre["passes"] and all(s["spearman"] == pytest.approx(1.0) for s in centre["stages"])
    trained = agent.net.state_dict()
    F.randomised(agent.net, ["head"], seed=1)
    assert all(torch.equal(trained[k], v) for k, v in agent.net.state_dict().items())  # the original untouched


def test_gmp_occlusion_is_more_faithful_than_gmp_on_real_frames(tmp_path: Path, capsys) -> None:
    """GMP proposes the pixels, deletion weighs them: on Breakout frames (not the frames the radius
    was chosen on) deleting its top pixels makes the student drop its action sooner than GMP's; it
    passes the sanity check; teachers (no pool) are refused in one line."""
    agent = load_agent(ROOT / "agents" / "breakout" / "gmp15-w5-15min")
    obs = sample_observations("breakout", 24, seed=3)
    with torch.no_grad():
        actions = agent.net(torch.from_numpy(obs)).argmax(1).numpy()
    auc = {m: F.deletion_insertion(agent.net, obs, F.grid_maps(m, agent.net, obs, actions), actions)["deletion_auc"]
           for m in ("gmp", "gmp-occlusion", "random")}
    assert auc["gmp-occlusion"] < auc["gmp"] - 0.1 < auc["random"] - 0.2  # measured 0.242, 0.421, 0.806
    maps, peaks = agent.attention(obs[:4], "gmp-occlusion")
    assert maps.shape == (4, 210, 160) and peaks.shape == (4, 5, 3) and (maps >= 0).all()
    assert np.allclose(peaks[:, 0, 2], 1.0)  # weights relative to the frame's largest drop
    assert F.sanity_check("gmp-occlusion", agent.net, obs[:6], actions[:6])["passes"]
    teacher = ROOT / "agents" / "breakout" / "teacher"
    assert main(["localize", str(teacher), "--frames", "2", "--method", "gmp-occlusion", "--out", str(tmp_path / "m.npz")]) == 2
    err = capsys.readouterr().err
    assert err.endswith("error: this agent has no global max pool: use --method perturbation\n") and "Traceback" not in err
    assert not (tmp_path / "m.npz").exists()


def test_pointing_on_a_known_object() -> None:
    """A map whose top pixel is at grid (u, v) points at the screen pixel grid_to_screen gives; an
    object box around that point is hit, one 30 px away is not."""
    maps = np.zeros((2, GRID, GRID), np.float32)
    maps[0, 40, 20] = 1.0  # row v = 40, column u = 20
    maps[1, 10, 70] = 1.0
    points = top_pixels(maps)
    x, y = grid_to_screen(20, "x"), grid_to_screen(40, "y")
    assert points[0] == pytest.approx([x, y])
    objects = [[("Ball", x - 1, y - 1, 2, 2)], [("Ball", grid_to_screen(70, "x") + 30, grid_to_screen(10, "y"), 2, 2)]]
    score = localization_score(points, objects, radius=10)
    assert score["any"] == 0.5 and score["per_class"]["Ball"] == {"frames": 2, "hit": 0.5}


def test_bench_localization_on_a_real_agent(tmp_path: Path, capsys) -> None:
    """Each method on the frames the agent plays: rows with pointing, both areas and the sanity check."""
    out = tmp_path / "loc.json"
    assert main(["bench", "localization", "--agents", str(STUDENT), "--frames", "6", "--sanity-frames", "2",
                 "--methods", "gmp,integrated-gradients,random", "--json", str(out), "--md", str(tmp_path / "t.md")]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["method"] for r in rows] == ["gmp", "integrated-gradients", "random"]
    for r in rows:
        assert r["frames"] == 6 and 0 <= r["deletion_auc"] <= 1 and 0 <= r["insertion_auc"] <= 1
        assert set(r["pointing"]["per_class"]) <= {"Ball", "Enemy", "Player"} and len(r["sanity"]["stages"]) == 5
    assert (tmp_path / "t.md").read_text().count("\n| ") == 3  # three rows under the header
    for args, message in ((["--methods", "gmp,lime"], "unknown map method 'lime'"), ([], "needs --agents")):
        agents = [] if "needs --agents" in message else ["--agents", str(STUDENT)]
        assert main(["bench", "localization", *agents, "--frames", "2", *args]) == 2
        assert message in capsys.readouterr().err
