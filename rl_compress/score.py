"""Localization score: does the top attention peak fall on or near a real game object?

Object positions are read from the console RAM by OCAtari (RAM mode), the same bytes the
.npz of ``rl-compress localize`` stores for every frame. A frame counts as a hit for a
class when the top peak lies within ``radius`` screen pixels of that object's bounding
box (distance 0 inside the box). The default radius, 10 px, is about half a cell of the
7x7 map on the screen (a cell's stride is 8 of 84 grid pixels: 15 px across, 20 px down),
so a peak at the right cell's centre counts. HUD objects (scores) are left out.

OCAtari is optional: ``pip install --no-deps ocatari==2.2.1 termcolor scikit-image pygame``
(it declares numpy<2 but runs with numpy 2 in RAM mode).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rl_compress.errors import UserError
from rl_compress.tables import rows_markdown

DEFAULT_RADIUS = 10.0
INSTALL_HINT = "pip install --no-deps ocatari==2.2.1 termcolor scikit-image pygame"
Box = tuple[str, float, float, float, float]  # category, x, y, w, h


def objects_from_ram(game: str, rams: np.ndarray) -> list[list[Box]]:
    """OCAtari's RAM-mode objects (not HUD) for each 128-byte RAM snapshot, in order."""
    import importlib
    import os

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


def distance_to_box(x: float, y: float, box: Box) -> float:
    """Euclidean distance from a point to a bounding box (0 inside)."""
    _, bx, by, bw, bh = box
    dx = max(bx - x, 0.0, x - (bx + bw - 1))
    dy = max(by - y, 0.0, y - (by + bh - 1))
    return float(np.hypot(dx, dy))


def localization_score(points: np.ndarray, objects: list[list[Box]], radius: float = DEFAULT_RADIUS) -> dict[str, Any]:
    """Hit rates of one point per frame ([N,2] x, y; NaN or negative = no point).

    Returns {"frames", "radius", "any": rate over all frames, "per_class": {class: {"frames":
    frames where the class is present, "hit": rate over those frames}}}.
    """
    if len(points) != len(objects):
        raise ValueError("one point per frame of objects")
    classes = sorted({b[0] for frame in objects for b in frame})
    present = {c: 0 for c in classes}
    hits = {c: 0 for c in classes}
    any_hits = 0
    for (x, y), frame in zip(points, objects):
        valid = np.isfinite(x) and x >= 0 and y >= 0
        near_any = False
        for c in {b[0] for b in frame}:
            present[c] += 1
            if valid and min(distance_to_box(x, y, b) for b in frame if b[0] == c) <= radius:
                hits[c] += 1
                near_any = True
        any_hits += near_any
    n = len(points)
    return {
        "frames": n,
        "radius": radius,
        "any": any_hits / n if n else 0.0,
        "per_class": {c: {"frames": present[c], "hit": hits[c] / present[c] if present[c] else None} for c in classes},
    }


def top_points(peaks: np.ndarray) -> np.ndarray:
    """The top peak (x, y) of each frame from [N,K,3] peaks; NaN where there is none."""
    pts = peaks[:, 0, :2].astype(np.float64).copy()
    pts[peaks[:, 0, 2] <= 0] = np.nan
    return pts


def random_points(n: int, seed: int = 0) -> np.ndarray:
    """Uniform random points on the 210x160 screen (the chance baseline)."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(0, 160, n), rng.uniform(0, 210, n)], axis=1)


def score_npz(path: Any, game: str, radius: float = DEFAULT_RADIUS, seed: int = 0) -> dict[str, Any]:
    """Score the top peaks stored in a localize .npz, and the uniform random baseline."""
    with np.load(path) as data:
        rams, peaks = data["ram"], data["peaks"]
    objects = objects_from_ram(game, rams)
    return {
        "attention": localization_score(top_points(peaks), objects, radius),
        "random": localization_score(random_points(len(rams), seed), objects, radius),
    }


def score_table(results: list[dict[str, Any]]) -> str:
    """A markdown table of ``localize --score`` results (one JSON each): the hit rate of the top
    peak over all frames and per object class, beside the uniform random point on the same frames."""
    classes = sorted({c for r in results for c in r["attention"]["per_class"]})
    rows = []
    for r in results:
        per = r["attention"]["per_class"]
        row = {"agent": r["agent"], "method": r["method"], "frames": r["frames"],
               "any object": f"{r['attention']['any']:.3f}", "random point (any)": f"{r['random']['any']:.3f}"}
        row.update({c: f"{per[c]['hit']:.3f}" for c in classes if per.get(c) and per[c]["hit"] is not None})
        rows.append(row)
    return rows_markdown(rows, ["agent", "method", "frames", "any object"] + classes + ["random point (any)"])


if __name__ == "__main__":  # python -m rl_compress.score RESULT.json ... > table.md
    import json
    import sys

    print(score_table([json.loads(open(p).read()) for p in sys.argv[1:]]), end="")
