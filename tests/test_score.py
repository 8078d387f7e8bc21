"""Localization score against OCAtari's RAM objects, on real Pong RAM."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rl_compress.attention.score import (
    distance_to_box,
    localization_score,
    objects_from_ram,
    random_points,
    stacked_objects,
    top_points,
)

pytest.importorskip("ocatari", reason="the localization score needs the optional ocatari package")


def _pong_rams(n: int = 120) -> np.ndarray:
    from rl_compress.atari.envs import ScreenEnv

    env = ScreenEnv("pong")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    rams = []
    for _ in range(n):
        env.step(int(rng.integers(0, 6)))
        rams.append(env.ram().copy())
    env.close()
    return np.stack(rams)


def test_distance_to_box() -> None:
    box = ("Ball", 10.0, 20.0, 2.0, 4.0)  # covers x 10..11, y 20..23
    assert distance_to_box(11, 22, box) == 0
    assert distance_to_box(14, 22, box) == 3
    assert distance_to_box(14, 27, box) == 5


def test_oracle_and_random_points_on_real_ram() -> None:
    rams = _pong_rams()
    objects = objects_from_ram("pong", rams)
    classes = {b[0] for frame in objects for b in frame}
    assert {"Player", "Enemy", "Ball"} <= classes
    # points exactly on the ball when there is one: a perfect ball score
    pts = np.full((len(objects), 2), np.nan)
    for i, frame in enumerate(objects):
        balls = [b for b in frame if b[0] == "Ball"]
        if balls:
            pts[i] = (balls[0][1], balls[0][2])
    sc = localization_score(pts, objects, radius=10)
    assert sc["per_class"]["Ball"]["hit"] == 1.0 and sc["per_class"]["Ball"]["frames"] > 50
    rnd = localization_score(random_points(len(objects)), objects, radius=10)
    assert rnd["any"] < 0.35 and rnd["per_class"]["Ball"]["hit"] < 0.2
    none = localization_score(np.full((len(objects), 2), np.nan), objects, radius=10)
    assert none["any"] == 0.0
    peaks = np.zeros((2, 3, 3), dtype=np.float32)
    peaks[0, 0] = (5, 6, 1.0)
    assert np.array_equal(top_points(peaks)[0], [5, 6]) and np.isnan(top_points(peaks)[1]).all()
    # top 3: a frame is a hit for a class when any of its points is near it
    far = np.full((len(objects), 3, 2), -1.0)
    far[:, 0] = (0, 0)  # the top-left corner, far from every object
    far[:, 2] = pts  # the third point on the ball, where there is one
    sc3 = localization_score(far, objects, radius=10)
    assert sc3["points"] == 3 and sc3["per_class"]["Ball"]["hit"] == 1.0
    assert localization_score(far[:, :2], objects, radius=10)["any"] == 0.0
    assert top_points(peaks, 3).shape == (2, 3, 2) and np.isnan(top_points(peaks, 3)[0, 1:]).all()
    rnd3 = localization_score(random_points(len(objects), k=3), objects, radius=10)
    assert rnd["any"] < rnd3["any"] < 0.7
    # the stack score: a point where the ball was 2 frames ago hits it against the 4 stacked frames'
    # objects, though the ball has moved on in the current frame
    stacked = stacked_objects(objects)
    assert stacked[0] == objects[0] and len(stacked[5]) == sum(len(f) for f in objects[2:6])
    lag = np.full_like(pts, np.nan)
    lag[2:] = pts[:-2]
    now = localization_score(lag, objects, radius=1)["per_class"]["Ball"]
    then = localization_score(lag, stacked, radius=1)["per_class"]["Ball"]
    with_lag = sum(1 for i in range(2, len(objects)) if np.isfinite(lag[i]).all() and any(b[0] == "Ball" for b in objects[i]))
    assert then["hit"] * then["frames"] >= with_lag > now["hit"] * now["frames"]


def test_localize_score_cli(random_teacher: Path, tmp_path: Path) -> None:
    exe = str(Path(sys.executable).with_name("rl-compress"))
    res = subprocess.run([exe, "localize", str(random_teacher), "--method", "gradcam", "--frames", "30", "--out",
                          str(tmp_path / "m.npz"), "--score", "--json", str(tmp_path / "s.json")],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    sc = json.loads((tmp_path / "s.json").read_text())
    assert sc["method"] == "gradcam" and sc["attention"]["frames"] == 30 and sc["attention"]["radius"] == 10
    assert 0 <= sc["attention"]["any"] <= 1 and 0 <= sc["random"]["any"] <= 1
    # the table of experiments/localization_pong.sh: one row per result, rates as written
    table = subprocess.run([sys.executable, "-m", "rl_compress.attention.score", str(tmp_path / "s.json")],
                           capture_output=True, text=True, timeout=120)
    assert table.returncode == 0, table.stderr
    head, _, row = table.stdout.splitlines()
    assert head.startswith("| agent | method | frames | any object |") and "Player" in head
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:4] == ["gradcam", "30", f"{sc['attention']['any']:.3f}"] and cells[-1] == f"{sc['random']['any']:.3f}"
    table3 = subprocess.run([sys.executable, "-m", "rl_compress.attention.score", "--top3", str(tmp_path / "s.json")],
                            capture_output=True, text=True, timeout=120)
    assert table3.returncode == 0, table3.stderr
    head3, _, row3 = table3.stdout.splitlines()
    assert head3.endswith("| 3 random points (any) |") and sc["attention_top3"]["points"] == 3
    assert row3.split("|")[4].strip() == f"{sc['attention_top3']['any']:.3f}"
    table_stack = subprocess.run([sys.executable, "-m", "rl_compress.attention.score", "--stack", str(tmp_path / "s.json")],
                                 capture_output=True, text=True, timeout=120)
    assert table_stack.returncode == 0, table_stack.stderr
    assert table_stack.stdout.splitlines()[2].split("|")[4].strip() == f"{sc['attention_stack']['any']:.3f}"
    assert sc["attention_stack"]["any"] >= sc["attention"]["any"]
    old = tmp_path / "old.json"  # a result scored before the top 3 existed: one clear line
    old.write_text(json.dumps({k: v for k, v in sc.items() if k != "attention_top3"}))
    bad = subprocess.run([sys.executable, "-m", "rl_compress.attention.score", "--top3", str(old)],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and bad.stderr.startswith("error: no top3 score") and "Traceback" not in bad.stderr
