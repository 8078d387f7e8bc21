"""bench time-to-score on real Pong with tiny budgets: the rows, the confirmation, the ratio to SB3
and a budget that ends a trainer before its target (no timing is asserted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rl_compress.bench_score import TimeToScoreConfig, check_time_to_score, format_time_to_score, time_to_score
from rl_compress.core.errors import UserError


def test_time_to_score_rows(tmp_path: Path) -> None:
    # a random Pong player scores -21: every trainer "reaches" -21 at its first evaluation
    cfg = TimeToScoreConfig(target=-21.0, budget=600, eval_every=1024, confirm_episodes=2, trainers=("pqn", "sb3"),
                            threads=2)
    res = time_to_score(cfg, tmp_path / "tts")
    pqn, sb3 = res["rows"]["pqn"], res["rows"]["sb3"]
    assert pqn["reached"] and pqn["ended"] == "target" and 1024 <= pqn["env_steps"] < 1024 + 64
    assert pqn["confirmations"][-1]["episodes"] == 2 and pqn["confirmations"][-1]["mean"] == -21.0
    assert sb3["reached"] and sb3["env_steps"] == 1024 and sb3["evals"][0]["mean"] == -21.0
    assert pqn["speedup_vs_sb3"]["env_steps"] == pytest.approx(1024 / pqn["env_steps"], abs=0.01)
    assert (tmp_path / "tts" / "pqn" / "agent.json").exists()
    assert "pqn" in format_time_to_score(res) and "env steps" in format_time_to_score(res)

    never = time_to_score(TimeToScoreConfig(target=21.0, budget=3, eval_every=512, confirm_episodes=1,
                                            trainers=("sb3",)), tmp_path / "never")
    row = never["rows"]["sb3"]
    assert not row["reached"] and row["seconds"] is None and row["ended"] == "max_wall_time"
    assert row["trained_seconds"] >= 3 and row["trained_steps"] > 0


def test_time_to_score_refusals() -> None:
    with pytest.raises(UserError, match="^trainers must name"):
        check_time_to_score(TimeToScoreConfig(trainers=("ppo",)))
    with pytest.raises(UserError, match="^bench time-to-score needs budget, eval_every and confirm_episodes > 0"):
        check_time_to_score(TimeToScoreConfig(budget=0))
