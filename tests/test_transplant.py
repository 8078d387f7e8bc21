"""A student started from its teacher's convolutions (distill --init teacher, the default): the
channels chosen, the copy, and the run's record of it, on the shipped Pong teacher and real frames."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rl_compress.atari.envs import sample_observations
from rl_compress.core.errors import UserError
from rl_compress.models.agent import load_agent
from rl_compress.models.networks import build_network, conv_activations, conv_layers, parse_spec
from rl_compress.models.transplant import can_start_from, init_from_teacher, start_from_teacher, teacher_channels
from rl_compress.train.distill import DistillConfig, distill

ROOT = Path(__file__).resolve().parents[1]
TEACHER = ROOT / "agents" / "pong" / "teacher"
SMALL = {"steps": 1200, "learning_starts": 400, "buffer_size": 4000, "envs": 4, "batch_size": 32, "train_freq": 2,
         "checkpoint_every": 100_000, "eval_every": 0, "tb_clip_steps": 0}


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    return torch.from_numpy(sample_observations("pong", 256, num_envs=8, seed=5, warmup=60))


def test_the_student_computes_the_teachers_chosen_channels(frames: torch.Tensor) -> None:
    teacher = load_agent(TEACHER).net
    student = build_network(parse_spec("gmp15-w5"), 6)
    keep = init_from_teacher(student, teacher, frames)
    assert [len(k) for k in keep] == [15, 15, 15]
    assert all(bool((k[1:] > k[:-1]).all()) for k in keep)  # sorted, distinct
    t_convs, s_convs = conv_layers(teacher), conv_layers(student)
    assert torch.equal(s_convs[1].weight, t_convs[1].weight[keep[1]][:, keep[0]])
    with torch.no_grad():
        t_acts = conv_activations(teacher.conv, frames)
        s_acts = conv_activations(student.conv, frames)
    # the first layer is an exact copy of the chosen channels; each chosen channel is alive
    torch.testing.assert_close(s_acts[0], t_acts[0][:, keep[0]])
    assert all(bool((a.amax(dim=(0, 2, 3)) > 0).all()) for a in s_acts[:3])


def test_dead_channels_are_never_chosen(random_teacher: Path, frames: torch.Tensor) -> None:
    agent = load_agent(random_teacher)
    conv1 = conv_layers(agent.net)[0]
    dead = torch.arange(0, 32, 2)  # half of conv1: zero weights, negative bias -> ReLU output 0 everywhere
    with torch.no_grad():
        conv1.weight[dead] = 0.0
        conv1.bias[dead] = -1.0
    keep = teacher_channels(agent.net, frames, [8, 8, 8])
    assert len(keep[0]) == 8 and not set(keep[0].tolist()) & set(dead.tolist())
    with pytest.raises(UserError, match="do not fit"):
        teacher_channels(agent.net, frames, [33, 16, 16])
    assert not can_start_from(build_network(parse_spec("gmp64"), 6), agent.net)
    assert can_start_from(build_network(parse_spec("flat16-fc128"), 6), agent.net)
    assert not can_start_from(build_network(parse_spec("gmp8"), 6), build_network(parse_spec("gmp16"), 6))


def test_start_from_teacher_plays_the_teachers_states() -> None:
    teacher = load_agent(TEACHER)
    a, b = (build_network(parse_spec("gmp8"), 6) for _ in range(2))
    rec = start_from_teacher(a, teacher, seed=3)
    assert rec["from"] == "teacher" and rec["states"] == 2000 and rec["seconds"] > 0
    assert [len(c) for c in rec["channels"]] == [8, 8, 8]
    assert start_from_teacher(b, teacher, seed=3)["channels"] == rec["channels"]  # the same states, the same choice
    assert torch.equal(conv_layers(a)[2].weight, conv_layers(b)[2].weight)


def test_distill_starts_from_the_teacher_by_default(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s"
    card = distill(TEACHER, DistillConfig(student="gmp8", **SMALL), out, show_progress=False)
    start = card["training"]["start"]
    assert start["from"] == "teacher" and card["training"]["config"]["init"] == "teacher"
    assert card["training"]["wall_time_s"] >= start["seconds"]
    student = load_agent(out).net  # trained since: its first conv is no longer the copy, but started as it
    assert [len(c) for c in start["channels"]] == [8, 8, 8]
    assert conv_layers(student)[0].weight.shape == (8, 4, 8, 8)
    more = distill(TEACHER, DistillConfig(student="gmp8", steps=1600), out, resume=True, show_progress=False)
    assert more["training"]["start"] == start and more["training"]["steps"] == 1600  # a resume copies nothing

    card = distill(TEACHER, DistillConfig(student="gmp8", init="random", **SMALL), tmp_path / "r", show_progress=False)
    assert "start" not in card["training"]
    card = distill(TEACHER, DistillConfig(student="gmp64", **{**SMALL, "steps": 600}), tmp_path / "w",
                   show_progress=False)
    assert "start" not in card["training"]
    assert "cannot take this teacher's convolutions" in capsys.readouterr().err
    with pytest.raises(UserError, match="^init must be one of teacher, random"):
        distill(TEACHER, DistillConfig(init="pretrained"), tmp_path / "bad", show_progress=False)


def test_a_run_from_before_init_resumes_as_random(tmp_path: Path) -> None:
    out = tmp_path / "s"
    distill(TEACHER, DistillConfig(student="gmp8", init="random", **SMALL), out, show_progress=False)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    cfg = json.loads(ckpt["config"])
    del cfg["init"]  # as a checkpoint written before the option existed
    ckpt["config"] = json.dumps(cfg)
    torch.save(ckpt, out / "checkpoint.pt")
    card = distill(TEACHER, DistillConfig(student="gmp8", steps=1600), out, resume=True, show_progress=False)
    assert card["training"]["config"]["init"] == "random" and "start" not in card["training"]


def test_a_run_from_before_the_new_defaults_goes_on_as_it_was(tmp_path: Path) -> None:
    """A run started when actor-mimic's default tau was 0.1, before --lr-schedule, --ema,
    --precision and --recycle-every, resumes at tau 0.1 (its card's temperature_used), a constant
    lr, no moving average, fp32 and no recycling, not at today's defaults or at the resume's flags."""
    out = tmp_path / "s"
    distill(TEACHER, DistillConfig(student="gmp8", init="random", **SMALL), out, show_progress=False)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    cfg = json.loads(ckpt["config"])
    assert cfg["temperature"] == 0.0 and cfg["lr_schedule"] == "constant" and cfg["ema"] == 0.0
    for newer in ("lr_schedule", "ema", "precision", "recycle_every"):
        del cfg[newer]
    ckpt["config"] = json.dumps(cfg)
    torch.save(ckpt, out / "checkpoint.pt")
    card = json.loads((out / "agent.json").read_text())
    assert card["training"]["temperature_used"] == 0.01  # today's default
    card["training"]["temperature_used"] = 0.1
    (out / "agent.json").write_text(json.dumps(card))
    card = distill(TEACHER, DistillConfig(student="gmp8", steps=1600, lr_schedule="cosine", ema=0.9, precision="bf16"),
                   out, resume=True, show_progress=False)
    assert card["training"]["temperature_used"] == 0.1 and card["training"]["config"]["temperature"] == 0.1
    resumed = card["training"]["config"]
    assert (resumed["lr_schedule"], resumed["ema"], resumed["precision"]) == ("constant", 0.0, "fp32")
    assert card["training"]["precision_used"] == "fp32"
    assert resumed["recycle_every"] == 0 and card["training"]["recycle_every_used"] == 0
