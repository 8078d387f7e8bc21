"""Evaluation under the default protocol: whole games, per-episode scores, reproducible."""

from __future__ import annotations

from pathlib import Path

import pytest

from rl_compress.atari.evaluate import DEFAULT_PROTOCOL, evaluate, human_normalized
from rl_compress.core.errors import UserError
from rl_compress.models.agent import load_agent


def test_evaluate_random_teacher(random_teacher: Path) -> None:
    agent = load_agent(random_teacher)
    res = evaluate(agent.net, "pong", episodes=3, seed=5, max_envs=2)
    assert res["episodes"] == 3 and len(res["scores"]) == 3 and len(res["lengths"]) == 3
    # a random Pong agent loses whole games: -21 is a full game, far from a life or a point
    assert all(-21 <= s <= -15 for s in res["scores"])
    assert all(500 < n < 27_000 for n in res["lengths"])
    assert res["protocol"]["sticky"] == 0.25 and res["protocol"]["epsilon"] == 0.001
    assert res["protocol"]["max_frames"] == 108_000 and res["protocol"]["noop_max"] == 30
    assert res["truncated"] == 0
    assert res["human_normalized"] == pytest.approx((res["mean"] + 20.7) / (14.6 + 20.7))
    again = evaluate(agent.net, "pong", episodes=3, seed=5, max_envs=2)
    assert again["scores"] == res["scores"] and again["lengths"] == res["lengths"]


def test_protocol_defaults() -> None:
    assert DEFAULT_PROTOCOL.env_config().clip_rewards is False


def test_zero_episodes_refused(random_teacher: Path) -> None:
    with pytest.raises(UserError):
        evaluate(load_agent(random_teacher).net, "pong", episodes=0)


def test_human_normalized() -> None:
    """0 at the random score, 1 at the human score (DQN Zoo table); None for a game not in it."""
    assert human_normalized("breakout", 1.7) == 0.0 and human_normalized("Breakout", 30.5) == pytest.approx(1.0)
    assert human_normalized("pong", 14.6) == pytest.approx(1.0)
    assert human_normalized("boxing", 50.0) is None
