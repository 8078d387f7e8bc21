"""Agent directory: round trip, atomic writes, and every refusal docs/formats.md names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rl_compress.core.errors import UserError
from rl_compress.models.agent import CARD, WEIGHTS, load_agent, update_card
from rl_compress.models.networks import build_network, count_params, teacher_arch


def test_round_trip(random_teacher: Path) -> None:
    agent = load_agent(random_teacher)
    assert agent.game == "pong" and agent.kind == "teacher" and agent.num_actions == 6
    assert agent.card["params"] == count_params(agent.net) == 1_687_206
    assert agent.card["observation"]["shape"] == [4, 84, 84]
    torch.manual_seed(0)
    ref = build_network(teacher_arch(), 6)
    x = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    assert torch.equal(agent.net(x), ref(x))
    assert not list(random_teacher.glob("*.tmp")) and not list(random_teacher.glob(".*"))


def test_teacher_params_18_actions() -> None:
    assert count_params(build_network(teacher_arch(), 18)) == 1_693_362


def _refused(path: Path, *fragments: str, game: str | None = None) -> None:
    with pytest.raises(UserError) as e:
        load_agent(path, game=game)
    msg = str(e.value)
    assert "\n" not in msg
    for f in fragments:
        assert f in msg, msg


def test_missing_dir(tmp_path: Path) -> None:
    _refused(tmp_path / "nope", "no such folder")


def test_missing_card(random_teacher: Path) -> None:
    (random_teacher / CARD).unlink()
    _refused(random_teacher, CARD, "missing")


def test_missing_weights(random_teacher: Path) -> None:
    (random_teacher / WEIGHTS).unlink()
    _refused(random_teacher, WEIGHTS, "missing")


def test_truncated_weights(random_teacher: Path) -> None:
    w = random_teacher / WEIGHTS
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    _refused(random_teacher, WEIGHTS, "truncated or corrupt")


def test_garbage_weights(random_teacher: Path) -> None:
    (random_teacher / WEIGHTS).write_bytes(b"\x80\x04pickle?" * 10)
    _refused(random_teacher, WEIGHTS, "truncated or corrupt")


def test_weights_do_not_fit_arch(random_teacher: Path) -> None:
    card = json.loads((random_teacher / CARD).read_text())
    card["arch"]["hidden"] = 256
    (random_teacher / CARD).write_text(json.dumps(card))
    _refused(random_teacher, WEIGHTS, "do not fit", "fc.1.weight")


def test_action_count_must_match_the_game(random_teacher: Path) -> None:
    # 18 actions fit a Nature-DQN head, but Pong has 6: the card is refused before any play
    card = json.loads((random_teacher / CARD).read_text())
    card["num_actions"] = 18
    (random_teacher / CARD).write_text(json.dumps(card))
    _refused(random_teacher, CARD, "num_actions 18 does not match pong, which has 6 actions")


def test_unknown_format(random_teacher: Path) -> None:
    card = json.loads((random_teacher / CARD).read_text())
    card["format"] = 99
    (random_teacher / CARD).write_text(json.dumps(card))
    _refused(random_teacher, CARD, "unknown card format 99")


def test_corrupt_card(random_teacher: Path) -> None:
    (random_teacher / CARD).write_text('{"format": 1, "kind": ')
    _refused(random_teacher, CARD, "not valid JSON")


def test_unknown_arch(random_teacher: Path) -> None:
    card = json.loads((random_teacher / CARD).read_text())
    card["arch"] = {"name": "resnet9000"}
    (random_teacher / CARD).write_text(json.dumps(card))
    _refused(random_teacher, CARD, "unknown network arch 'resnet9000'")


def test_wrong_game(random_teacher: Path) -> None:
    _refused(random_teacher, "plays 'pong', not 'breakout'", game="Breakout")


def test_update_card_is_atomic(random_teacher: Path) -> None:
    card = update_card(random_teacher, evaluation={"mean": 1.5})
    assert json.loads((random_teacher / CARD).read_text())["evaluation"] == {"mean": 1.5} == card["evaluation"]
    assert sorted(p.name for p in random_teacher.iterdir()) == [CARD, WEIGHTS]
