"""`evaluate --robustness`: the agent under the pipelines users have (plain gymnasium wrappers, one
change from the protocol at a time), a student beside its teacher."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from rl_compress.atari.robustness import VARIANTS, Variant, variant_env

ROOT = Path(__file__).resolve().parents[1]


def _first_obs(game: str, variant: Variant) -> np.ndarray:
    env = variant_env(game, variant)
    obs, _ = env.reset(seed=3)
    env.close()
    return np.asarray(obs)


def test_variants_change_what_they_say_and_nothing_else() -> None:
    protocol = Variant("protocol", sticky=0.0, noop_max=0)
    zero = _first_obs("pong", protocol)
    assert zero.shape == (4, 84, 84) and zero.dtype == np.uint8
    assert not zero[:3].any() and zero[3].any()  # zero frames before the first
    repeated = _first_obs("pong", Variant("r", sticky=0.0, noop_max=0, padding="reset"))
    assert all(np.array_equal(repeated[i], zero[3]) for i in range(4))
    bilinear = _first_obs("pong", Variant("b", sticky=0.0, noop_max=0, resize="bilinear"))
    assert not np.array_equal(bilinear[3], zero[3]) and np.abs(bilinear[3].astype(int) - zero[3]).mean() < 20
    assert [v.name for v in VARIANTS][0] == "protocol" and len({v.name for v in VARIANTS}) == len(VARIANTS) == 6


def test_fire_serves_the_ball() -> None:
    """Breakout waits for FIRE: with NOOP only the screen stands still, after the variant's FIRE it moves."""
    for fire, moves in ((False, False), (True, True)):
        env = variant_env("breakout", Variant("f", sticky=0.0, noop_max=0, fire=fire))
        obs, _ = env.reset(seed=0)
        frames = [np.asarray(env.step(0)[0])[3] for _ in range(12)]
        env.close()
        assert any(not np.array_equal(frames[0], f) for f in frames[1:]) == moves, fire


def test_evaluate_robustness_of_a_student_beside_its_teacher(tmp_path: Path) -> None:
    student = ROOT / "agents" / "breakout" / "gmp15-w5-15min"
    res = subprocess.run([sys.executable, "-m", "rl_compress.cli", "evaluate", str(student), "--robustness",
                          "--episodes", "1", "--json", str(tmp_path / "r.json"), "--quiet"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert res.returncode == 0, res.stderr
    out = json.loads((tmp_path / "r.json").read_text())
    assert out["teacher"] == str(ROOT / "agents" / "breakout" / "teacher")  # found from the student's folder
    rows = out["robustness"]
    assert [r["variant"] for r in rows] == [v.name for v in VARIANTS]
    for r in rows:
        assert len(r["scores"]) == 1 and r["mean"] >= 0 and r["teacher_mean"] >= 0
        assert r["retention"] is None or isinstance(r["retention"], float)
    assert rows[3]["sticky"] == 0.0 and rows[5]["resize"] == "bilinear"
