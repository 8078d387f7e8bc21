"""Localization score: does the top attention peak fall on or near a real game object?

Object positions are read from the console RAM by OCAtari (RAM mode), the same bytes the
.npz of ``rl-compress localize`` stores for every frame. A frame counts as a hit for a
class when the top peak lies within ``radius`` screen pixels of that object's bounding
box (distance 0 inside the box). The default radius, 10 px, is about half a cell of the
7x7 map on the screen (a cell's stride is 8 of 84 grid pixels: 15 px across, 20 px down),
so a peak at the right cell's centre counts. HUD objects (scores) are left out.

Beside the top peak, the score counts the top 3 peaks (``attention_top3``): a class is hit when
any of them is near it, against 3 uniform random points. One peak per frame says what the map
ranks first; three say whether the agent attends to an object at all (a GMP map has one peak per
live channel, and a small student may rank a proxy first, e.g. Pong's enemy paddle, which follows
the ball).

A third score (``attention_stack``) counts the top peak as a hit when it is near the object in any
of the 4 frames the agent saw (the stored frame and the 3 before it): a network that acts on a
stack of frames may rest its evidence where the ball was a few frames ago, which the current
frame's boxes miss. The .npz does not mark episode boundaries, so the first 3 frames of a new
episode are also matched against the last objects of the previous one (at most 3 frames per
episode).

OCAtari is optional: ``pip install --no-deps ocatari==2.2.1 termcolor scikit-image pygame``
(it declares numpy<2 but runs with numpy 2 in RAM mode).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from rl_compress.core.errors import UserError
from rl_compress.core.tables import rows_markdown

DEFAULT_RADIUS = 10.0
INSTALL_HINT = "pip install 'rl-compress[score]' && pip install --no-deps ocatari==2.2.1 (OCAtari pins numpy<2 but runs with numpy 2)"
Box = tuple[str, float, float, float, float]  # category, x, y, w, h


def objects_from_ram(game: str, rams: np.ndarray) -> list[list[Box]]:
    """OCAtari's RAM-mode objects (not HUD) for each 128-byte RAM snapshot, in order."""

    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    try:
        from ocatari.ram.extract_ram_info import detect_objects_ram, init_objects
    except ImportError:
        raise UserError(f"the localization score needs OCAtari, which is not installed: {INSTALL_HINT}") from None
    name = game.replace("_", "")
    try:
        importlib.import_module(f"ocatari.ram.{name}")
        objects = init_objects(name, hud=False)
    except (ImportError, KeyError, AttributeError):
        raise UserError(f"OCAtari has no RAM object extraction for {game!r}") from None
    out: list[list[Box]] = []
    for ram in rams:
        detect_objects_ram(objects, ram, name, False)
        out.append([(o.category, *map(float, o.xywh)) for o in objects if o and not getattr(o, "hud", False)])
    return out


def stacked_objects(objects: list[list[Box]], stack: int = 4) -> list[list[Box]]:
    """For each frame, the objects of that frame and of the ``stack - 1`` frames before it: what a
    network acting on ``stack`` stacked frames could see."""
    return [[b for j in range(max(0, i - stack + 1), i + 1) for b in objects[j]] for i in range(len(objects))]


def distance_to_box(x: float, y: float, box: Box) -> float:
    """Euclidean distance from a point to a bounding box (0 inside)."""
    _, bx, by, bw, bh = box
    dx = max(bx - x, 0.0, x - (bx + bw - 1))
    dy = max(by - y, 0.0, y - (by + bh - 1))
    return float(np.hypot(dx, dy))


def localization_score(points: np.ndarray, objects: list[list[Box]], radius: float = DEFAULT_RADIUS) -> dict[str, Any]:
    """Hit rates of the points of each frame: [N,2] (one point) or [N,K,2] (a class is hit when
    any of the frame's K points is near it); x, y in screen pixels, NaN or negative = no point.

    Returns {"frames", "radius", "points", "any": rate over all frames, "per_class": {class:
    {"frames": frames where the class is present, "hit": rate over those frames}}}.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim == 2:
        points = points[:, None, :]
    if points.ndim != 3 or points.shape[2] != 2:
        raise ValueError("points must be [N,2] or [N,K,2]")
    if len(points) != len(objects):
        raise ValueError("one point per frame of objects")
    classes = sorted({b[0] for frame in objects for b in frame})
    present = dict.fromkeys(classes, 0)
    hits = dict.fromkeys(classes, 0)
    any_hits = 0
    for pts, frame in zip(points, objects):
        pts = [(x, y) for x, y in pts if np.isfinite(x) and x >= 0 and y >= 0]
        near_any = False
        for c in {b[0] for b in frame}:
            present[c] += 1
            if any(min(distance_to_box(x, y, b) for b in frame if b[0] == c) <= radius for x, y in pts):
                hits[c] += 1
                near_any = True
        any_hits += near_any
    n = len(points)
    return {
        "frames": n,
        "radius": radius,
        "points": int(points.shape[1]),
        "any": any_hits / n if n else 0.0,
        "per_class": {c: {"frames": present[c], "hit": hits[c] / present[c] if present[c] else None} for c in classes},
    }


def top_points(peaks: np.ndarray, k: int = 1) -> np.ndarray:
    """The top peak (x, y) of each frame from [N,K,3] peaks, [N,2]; with ``k`` > 1 the top ``k``
    peaks, [N,k,2]. NaN where a frame has no such peak (weight 0)."""
    pts = peaks[:, :k, :2].astype(np.float64).copy()
    pts[peaks[:, :k, 2] <= 0] = np.nan
    return pts[:, 0] if k == 1 else pts


def random_points(n: int, seed: int = 0, k: int = 1) -> np.ndarray:
    """Uniform random points on the 210x160 screen (the chance baseline): [N,2], or [N,k,2]."""
    rng = np.random.default_rng(seed)
    pts = np.stack([rng.uniform(0, 160, (n, k)), rng.uniform(0, 210, (n, k))], axis=2)
    return pts[:, 0] if k == 1 else pts


def score_npz(path: Any, game: str, radius: float = DEFAULT_RADIUS, seed: int = 0) -> dict[str, Any]:
    """Score the top peak and the top 3 peaks stored in a localize .npz against the current frame's
    objects, the top peak against the objects of the 4 stacked frames, and the uniform random
    baseline of each (1 and 3 points)."""
    with np.load(path) as data:
        rams, peaks = data["ram"], data["peaks"]
    objects = objects_from_ram(game, rams)
    k = min(3, peaks.shape[1])
    stacked = stacked_objects(objects)
    top, rnd = top_points(peaks), random_points(len(rams), seed)
    return {
        "attention": localization_score(top, objects, radius),
        "random": localization_score(rnd, objects, radius),
        "attention_top3": localization_score(top_points(peaks, k), objects, radius),
        "random_top3": localization_score(random_points(len(rams), seed, 3), objects, radius),
        "attention_stack": localization_score(top, stacked, radius),
        "random_stack": localization_score(rnd, stacked, radius),
    }


SCORES = {  # table mode -> (attention key, random key, label of the random column)
    "top1": ("attention", "random", "random point (any)"),
    "top3": ("attention_top3", "random_top3", "3 random points (any)"),
    "stack": ("attention_stack", "random_stack", "random point (any)"),
}


def score_table(results: list[dict[str, Any]], mode: str = "top1") -> str:
    """A markdown table of ``localize --score`` results (one JSON each): the hit rate over all
    frames and per object class of the top peak (``mode`` "top1"), of any of the top 3 peaks
    ("top3") or of the top peak against the objects of the 4 stacked frames ("stack"), beside as
    many uniform random points on the same frames."""
    if mode not in SCORES:
        raise UserError(f"unknown score table {mode!r}; one of: {', '.join(SCORES)}")
    key, rnd, label = SCORES[mode]
    missing = [r.get("agent") for r in results if key not in r]
    if missing:
        raise UserError(f"no {mode} score in the results of {missing[0]}; score its .npz again")
    classes = sorted({c for r in results for c in r[key]["per_class"]})
    rows = []
    for r in results:
        per = r[key]["per_class"]
        row = {"agent": r["agent"], "method": r["method"], "frames": r["frames"],
               "any object": f"{r[key]['any']:.3f}", label: f"{r[rnd]['any']:.3f}"}
        row.update({c: f"{per[c]['hit']:.3f}" for c in classes if per.get(c) and per[c]["hit"] is not None})
        rows.append(row)
    return rows_markdown(rows, ["agent", "method", "frames", "any object"] + classes + [label])


if __name__ == "__main__":  # python -m rl_compress.attention.score [--top3|--stack] RESULT.json ... > table.md
    import json
    import sys

    args = sys.argv[1:]
    mode = "top3" if "--top3" in args else "stack" if "--stack" in args else "top1"
    try:
        print(score_table([json.loads(Path(p).read_text()) for p in args if not p.startswith("--")], mode), end="")
    except UserError as e:
        sys.exit(f"error: {e}")
