"""Channel pruning of gmp students and distillation that starts from a pruned student."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rl_compress.atari.envs import sample_observations
from rl_compress.core.errors import UserError
from rl_compress.models.agent import load_agent, save_agent, update_card
from rl_compress.models.networks import conv_layers, count_params, parse_spec
from rl_compress.models.prune import keep_channels, prune_agent, spec_for
from rl_compress.studies.table import agents_table
from rl_compress.train.distill import DistillConfig, distill

TINY = {"learning_starts": 400, "buffer_size": 4000, "envs": 4, "batch_size": 32, "train_freq": 2,
        "checkpoint_every": 100_000, "eval_every": 0, "tb_clip_steps": 0}


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised Pong teacher, shared by this module's tests."""
    from rl_compress.models.agent import make_card
    from rl_compress.models.networks import build_network, teacher_arch

    torch.manual_seed(0)
    net = build_network(teacher_arch(), 6)
    out = tmp_path_factory.mktemp("prune") / "teacher"
    save_agent(out, net, make_card("teacher", "pong", teacher_arch(), net, training={"note": "random init"}))
    return out


@pytest.fixture(scope="module")
def student(teacher: Path) -> Path:
    """A gmp8-w5 student distilled for a few hundred steps, with conv1 channels 0 and 3 and conv3
    channel 5 killed (a bias of -1000 keeps their ReLU at zero on any frame). Tests only read it."""
    out = teacher.parent / "student"
    distill(teacher, DistillConfig(student="gmp8-w5", steps=600, **TINY), out, show_progress=False)
    agent = load_agent(out)
    convs = conv_layers(agent.net)
    with torch.no_grad():
        convs[0].bias[[0, 3]] = -1000.0
        convs[2].bias[5] = -1000.0
    save_agent(out, agent.net, agent.card)
    return out


def test_specs_with_a_fourth_width() -> None:
    arch = parse_spec("gmp6-7-5-4-w5")
    assert arch["channels"] == [6, 7, 5] and arch["wide"] == 5 and arch["wide_channels"] == 4
    assert "wide_channels" not in parse_spec("gmp8-w5")
    for bad in ("gmp6-7-5-4", "gmp6-7-5-0-w5", "flat6-7-5-4-fc8"):
        with pytest.raises(UserError, match="invalid student spec"):
            parse_spec(bad)


def test_dead_channels_go_and_nothing_changes(student: Path, tmp_path: Path) -> None:
    src = load_agent(student)
    card = prune_agent(student, tmp_path / "pruned", states=64)
    pf = card["training"]["pruned_from"]
    assert pf["dead_channels"][0] >= 2 and pf["dead_channels"][2] >= 1 and pf["agreement"] == 1.0
    pruned = load_agent(tmp_path / "pruned")
    widths = [c.out_channels for c in conv_layers(pruned.net)]
    assert widths == [8 - d for d in pf["dead_channels"]] and card["arch"]["spec"] == spec_for(pruned.net)
    assert card["params"] == count_params(pruned.net) < count_params(src.net)
    assert card["teacher"] == src.card["teacher"] and card["training"]["eval_history"] == []
    # frames it never saw: a dead channel is dead on any frame, so the outputs are the same
    obs = torch.from_numpy(sample_observations("pong", 24, seed=7, num_envs=4))
    with torch.no_grad():
        assert torch.allclose(pruned.net(obs), src.net(obs), atol=1e-5)


def test_prune_to_a_budget_then_distill_from_it(student: Path, teacher: Path, tmp_path: Path) -> None:
    dead_only = prune_agent(student, tmp_path / "dead_only", states=64)
    budget = dead_only["params"] - 150  # one or more live channels must go
    card = prune_agent(student, tmp_path / "small", states=64, max_params=budget)
    steps = card["training"]["pruned_from"]["removed_live"]
    assert card["params"] <= budget and steps and steps[-1]["params"] == card["params"]
    assert all(0.0 <= s["agreement"] <= 1.0 for s in steps)
    # a run that starts from it: no update before learning_starts, so the weights are the pruned ones
    spec = card["arch"]["spec"]
    out = tmp_path / "tuned"
    cfg = DistillConfig(student=spec, steps=200, init_from=str(tmp_path / "small"), **TINY)
    tuned = distill(teacher, cfg, out, show_progress=False)
    assert tuned["training"]["updates"] == 0 and tuned["arch"] == card["arch"]
    init = tuned["training"]["init_from"]
    assert init["env_steps"] == 600 and init["agent"] == str(tmp_path / "small")
    small = load_agent(tmp_path / "small").net.state_dict()
    assert all(torch.equal(v, small[k]) for k, v in load_agent(out).net.state_dict().items())
    # the table counts the source's env steps and wall time as well
    ev = {"mean": -21.0, "std": 0.0, "protocol": {"p": 1}, "seed": 0, "episodes": 1}
    update_card(out, evaluation=ev)
    update_card(teacher, evaluation=ev)
    (row,) = agents_table([out])
    assert row["env_steps"] == 800 and row["wall_time_s"] >= init["wall_time_s"]
    with pytest.raises(UserError, match="not the student 'gmp8-w5'"):
        distill(teacher, DistillConfig(student="gmp8-w5", steps=200, init_from=str(tmp_path / "small"), **TINY),
                tmp_path / "mismatch", show_progress=False)


def test_prune_refusals(student: Path, teacher: Path, tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    for kwargs, msg in (({"out": tmp_path / "full"}, "not empty"), ({"states": 10}, "at least 64"),
                        ({"max_params": 0}, "must be positive")):
        args = {"src": student, "out": tmp_path / "p", **kwargs}
        with pytest.raises(UserError, match=msg):
            prune_agent(**args)
    with pytest.raises(UserError, match="pruning works on gmp students"):
        prune_agent(teacher, tmp_path / "t")
    with pytest.raises(UserError, match="at least one channel"):
        keep_channels(load_agent(student).net, [torch.arange(2), torch.arange(0), torch.arange(2), torch.arange(2)])
    exe = str(Path(sys.executable).with_name("rl-compress"))
    res = subprocess.run([exe, "prune", str(teacher), "--out", str(tmp_path / "q")], capture_output=True,
                         text=True, timeout=120, check=False)
    assert res.returncode == 2 and res.stderr.startswith("error: ") and "Traceback" not in res.stderr
    assert not (tmp_path / "q").exists()
