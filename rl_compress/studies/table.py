"""The ``table`` command's rows: distilled students read from their cards (size, score, retention, steps and time to a retention)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rl_compress.atari.evaluate import retention
from rl_compress.core.errors import UserError
from rl_compress.core.files import sha256_file
from rl_compress.core.tables import rows_markdown
from rl_compress.models.agent import WEIGHTS, load_agent

TABLE_COLUMNS = ["agent", "spec", "params", "pct_of_teacher", "score", "teacher_score", "retention", "env_steps",
                 "wall_time_s", "steps_to_90", "wall_to_90_s", "command"]


def agents_table(paths: list[Path], threshold: float = 0.9) -> list[dict[str, Any]]:
    """One row per student agent directory, every number read from the cards: params and share of
    the teacher's, the card's evaluation and the teacher card's on the same protocol, seed and
    episode count, retention, the run's env steps and wall time, and the first periodic evaluation
    at or above ``threshold`` retention (env steps and wall time to reach it)."""

    digests: dict[Path, str] = {}

    def digest(d: Path) -> str:
        key = d.resolve()
        if key not in digests:
            digests[key] = sha256_file(d / WEIGHTS)
        return digests[key]

    rows = []
    for path in paths:
        student = load_agent(Path(path))
        card = student.card
        ref = card.get("teacher") or {}
        if not ref.get("path"):
            raise UserError(f"{path}: not a distilled student (its card names no teacher)")
        teacher = load_agent(Path(ref["path"]), game=student.game)
        if ref.get("sha256") not in (None, digest(Path(ref["path"]))):
            raise UserError(f"{path}: distilled from other weights than those now in {ref['path']}; distil it again")
        ev, t_ev = card.get("evaluation"), teacher.card.get("evaluation")
        if not ev or not t_ev:
            missing = path if not ev else ref["path"]
            raise UserError(f"{missing}: no evaluation in its card; run `rl-compress evaluate {missing} "
                            "--episodes 30 --seed 0 --write-card`")
        for d, e in ((Path(path), ev), (Path(ref["path"]), t_ev)):
            if e.get("weights_sha256") not in (None, digest(d)):
                raise UserError(f"{d}: its card's evaluation was made of other weights; evaluate it again "
                                "with --write-card")
        same = all(ev.get(k) == t_ev.get(k) for k in ("protocol", "seed", "episodes"))
        if not same:
            raise UserError(f"{path}: evaluated under another protocol, seed or episode count than its teacher "
                            f"{ref['path']}; evaluate both with the same --episodes and --seed")
        training = card.get("training") or {}
        # a run started from another student's weights (--init-from) counts that student's cost too
        init = training.get("init_from") or {}
        steps0, wall0 = int(init.get("env_steps") or 0), float(init.get("wall_time_s") or 0.0)
        reached = next((h for h in training.get("eval_history") or []
                        if h.get("retention") is not None and h["retention"] >= threshold), None)
        rows.append({
            "agent": str(path), "spec": card["arch"].get("spec", card["arch"].get("name")),
            "params": card["params"], "pct_of_teacher": round(100 * card["params"] / teacher.card["params"], 3),
            "score": f"{ev['mean']:.2f} ± {ev['std']:.2f}", "teacher_score": f"{t_ev['mean']:.2f} ± {t_ev['std']:.2f}",
            "retention": retention(student.game, ev["mean"], t_ev["mean"]),
            "env_steps": steps0 + int(training.get("steps") or 0),
            "wall_time_s": round(wall0 + float(training.get("wall_time_s") or 0.0), 1),
            "steps_to_90": steps0 + reached["step"] if reached else None,
            "wall_to_90_s": round(wall0 + reached["wall_time_s"], 1) if reached and reached.get("wall_time_s") else None,
            "command": training.get("command"), "episodes": ev.get("episodes"),
        })
    return rows


def table_markdown(rows: list[dict[str, Any]]) -> str:
    """A markdown table of ``agents_table`` rows (the command in code quotes)."""
    return rows_markdown(rows, TABLE_COLUMNS, code=("command",))
