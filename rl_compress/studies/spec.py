"""Compression studies: a YAML grid of games x students x losses x actors x seeds, run
locally (one after another, skipping finished runs, resuming interrupted ones) or as Ray
tasks, into experiments/results/<study>.csv and .md, with plots.

Study file (experiments/<study>.yaml):

    name: paper
    games: [pong]
    teachers: {pong: agents/pong/teacher}   # default: agents/<game>/teacher
    students: [gmp8, gmp16, gmp32, flat16-fc128]
    losses: [actor-mimic, kl, mse, nll]     # "dqn" / "pqn" = the student trained from scratch by DQN / PQN
    actors: [student, teacher]
    seeds: [1, 2, 3]
    steps: 500000
    eval_episodes: 30
    distill: {lr: 0.00025}                  # any other DistillConfig field
    dqn: {buffer_size: 100000}              # TeacherConfig fields of the from-scratch DQN runs
    pqn: {envs: 64}                         # PQNConfig fields of the from-scratch PQN runs
    per_student: {gmp32: {distill: {lr: 0.0003}}}   # a spec's own settings, over the two above

With ``vary``, the study is an ablation instead of a grid: the base run takes the first entry of
students, losses and actors, and each value under ``vary`` changes that one factor of the base
(one factor at a time), for every game and seed:

    students: [gmp32-w5]
    losses: [actor-mimic]
    actors: [student]
    vary: {losses: [kl, mse, nll, dqn], actors: [teacher], students: [flat32-fc128]}

Each run lives in experiments/runs/<study>/<game>/<spec>_<loss>_<actor>_s<seed>/ (an agent
directory); its result row is written to result.json there when it is complete.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rl_compress.atari.games import resolve_game
from rl_compress.core.config import read_yaml_mapping
from rl_compress.core.errors import UserError, arg_name
from rl_compress.core.rundir import RESULT, note
from rl_compress.models.networks import parse_spec
from rl_compress.train.distill import ACTORS, LOSSES, DistillConfig
from rl_compress.train.distill import check_config as check_distill
from rl_compress.train.teacher import PQNConfig, TeacherConfig, TeacherRunConfig
from rl_compress.train.teacher import check_config as check_teacher

COLUMNS = ["game", "spec", "params", "ratio_to_teacher", "loss", "actor", "seed", "steps", "wall_time_s",
           "score_mean", "score_std", "teacher_mean", "retention", "episodes", "machines", "commit"]


@dataclass
class Run:
    """One cell of the grid."""

    game: str
    teacher: str
    spec: str
    loss: str
    actor: str
    seed: int
    steps: int
    eval_episodes: int
    distill: dict[str, Any] = field(default_factory=dict)
    dqn: dict[str, Any] = field(default_factory=dict)
    pqn: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """Directory name of the run."""
        return f"{self.spec}_{self.loss}_{self.actor}_s{self.seed}"


@dataclass
class Study:
    """A parsed study file."""

    name: str
    path: Path
    runs: list[Run]
    root: Path  # experiments/

    def run_dir(self, run: Run) -> Path:
        """Where ``run`` writes its agent directory."""
        return self.root / "runs" / self.name / run.game / run.name


def _read_study_yaml(path: Path) -> dict[str, Any]:
    """The study file's YAML mapping (safe_load: no tags run), or one line saying what is wrong."""
    if not path.is_file():
        raise UserError(f"{path}: no such study file")
    return read_yaml_mapping(path, "a study")


def load_study(path: Path, budget: float = 1.0, device: str | None = None) -> Study:
    """Parse a study YAML; ``budget`` < 1 scales steps (and evaluation episodes, at least 2) and
    names the study <name>_budget<F>, so its runs and tables are not the full study's. ``device``
    is the device of every run whose settings name none (``distill: {device: cuda}`` in the YAML
    sets a run's own)."""
    path = Path(path)
    doc = _read_study_yaml(path)
    if not 0 < budget <= 1:
        raise UserError(f"{arg_name('budget')} must be in (0, 1], got {budget}")
    need = ["games", "students", "losses", "seeds", "steps"]
    missing = [k for k in need if k not in doc]
    if missing:
        raise UserError(f"{path}: missing {', '.join(missing)}")
    check_study_types(path, doc)
    games = [resolve_game(g) for g in doc["games"]]
    for spec in doc["students"]:
        parse_spec(spec)
    for loss in doc["losses"]:
        if loss not in LOSSES + tuple(FROM_SCRATCH):
            raise UserError(f"{path}: unknown loss {loss!r} (one of {', '.join(LOSSES + tuple(FROM_SCRATCH))})")
    actors = doc.get("actors", ["student"])
    for actor in actors:
        if actor not in ACTORS:
            raise UserError(f"{path}: unknown actor {actor!r}")
    extra = doc.get("distill", {}) or {}
    scratch = {algo: doc.get(algo, {}) or {} for algo in FROM_SCRATCH}
    per_student = doc.get("per_student", {}) or {}
    if not isinstance(per_student, dict):
        raise UserError(f"{path}: per_student maps student specs to {{distill: ..., dqn: ..., pqn: ...}}")
    _check_settings(path, extra, scratch, per_student)
    teachers = {resolve_game(k): v for k, v in (doc.get("teachers") or {}).items()}
    steps = max(int(int(doc["steps"]) * budget), 1000)
    episodes = max(int(int(doc.get("eval_episodes", 30)) * budget), 2)
    cells = _cells(path, doc, actors)
    runs = []
    seen = set()
    for game, (spec, loss, actor), seed in itertools.product(games, cells, doc["seeds"]):
        if loss in FROM_SCRATCH and actor != actors[0]:
            continue  # from scratch there is no teacher actor: one run per spec and seed
        own = per_student.get(spec, {})
        run = Run(game, teachers.get(game, f"agents/{game}/teacher"), spec, loss,
                  "self" if loss in FROM_SCRATCH else actor, int(seed), steps, episodes,
                  {**extra, **own.get("distill", {})}, {**scratch["dqn"], **own.get("dqn", {})},
                  {**scratch["pqn"], **own.get("pqn", {})})
        if (game, run.name) not in seen:
            seen.add((game, run.name))
            runs.append(run)
    name = str(doc.get("name", path.stem))
    if not STUDY_NAME.fullmatch(name):
        raise UserError(f"{path}: name {name!r} must be letters, digits, '_', '-' or '.' (no path): its runs "
                        "go to experiments/runs/<name>/")
    for run in runs:
        if device is not None:  # the device of the runs whose settings name none
            run.distill.setdefault("device", device)
            run.dqn.setdefault("device", device)
            run.pqn.setdefault("device", device)
        check_run_config(path, run)
    if budget < 1:  # a smaller pass keeps its own runs and tables: the full study must not skip its runs
        name += f"_budget{budget:g}"
    return Study(name, path, runs, path.parent)


def _check_settings(path: Path, extra: dict[str, Any], scratch: dict[str, dict[str, Any]],
                    per_student: dict[str, Any]) -> None:
    """Refuse settings that no config has (``distill``, ``dqn``, ``pqn`` and each spec's own under
    ``per_student``)."""
    sections = [("distill", extra, DistillConfig), *((algo, scratch[algo], cls) for algo, cls in FROM_SCRATCH.items())]
    for spec, own in per_student.items():
        parse_spec(spec)
        bad_own = not isinstance(own, dict) or any(k not in ("distill", *FROM_SCRATCH) or not isinstance(v, dict)
                                                   for k, v in own.items())
        if bad_own:
            raise UserError(f"{path}: per_student.{spec} maps distill and/or dqn (or pqn) to settings")
        sections += [(f"per_student.{spec}.distill", own.get("distill", {}), DistillConfig),
                     *((f"per_student.{spec}.{algo}", own.get(algo, {}), cls) for algo, cls in FROM_SCRATCH.items())]
    for section, settings, cls in sections:
        bad = [k for k in settings if k not in cls.__dataclass_fields__]
        if bad:
            raise UserError(f"{path}: unknown {section} settings {bad}")
        from_grid = [k for k in settings if k in GRID_SET]
        if from_grid:
            raise UserError(f"{path}: {section} sets {', '.join(from_grid)}, which the study's grid sets for each run "
                            "(games, students, losses, actors, seeds, steps)")


VARY_KEYS = ("students", "losses", "actors")
STUDY_KEYS = ("name", "games", "teachers", "students", "losses", "actors", "seeds", "steps", "eval_episodes",
              "distill", "dqn", "pqn", "per_student", "vary")
GRID_SET = ("game", "student", "loss", "actor", "seed", "steps")  # config fields each run gets from the grid
FROM_SCRATCH = {"dqn": TeacherConfig, "pqn": PQNConfig}  # a "loss" that trains the student itself


STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_study_types(path: Path, doc: dict[str, Any]) -> None:
    """Refuse unknown study entries and entries of the wrong type with one line (``steps: abc``,
    ``seeds: 1``, ``games: pong`` as a bare string, a negative step count...)."""
    unknown = [str(k) for k in doc if k not in STUDY_KEYS]
    if unknown:
        raise UserError(f"{path}: unknown study entries {', '.join(unknown)} (known: {', '.join(STUDY_KEYS)})")
    for key in ("games", "students", "losses", "actors", "seeds"):
        if key not in doc:
            continue
        values = doc[key]
        if not isinstance(values, list) or not values:
            raise UserError(f"{path}: {key} must be a non-empty list, e.g. {key}: [{values!r}]")
        kind_ok = _is_int if key == "seeds" else (lambda v: isinstance(v, str))
        bad = [v for v in values if not kind_ok(v) or (key == "seeds" and v < 0)]
        if bad:
            what = "integers >= 0" if key == "seeds" else "strings"
            raise UserError(f"{path}: {key} must be {what}, got {bad[0]!r}")
    for key in ("steps", "eval_episodes"):
        if key in doc and (not _is_int(doc[key]) or doc[key] <= 0):
            raise UserError(f"{path}: {key} must be a positive integer, got {doc[key]!r}")
    if "name" in doc and not isinstance(doc["name"], str):
        raise UserError(f"{path}: name must be a string, got {doc['name']!r}")
    for key in ("teachers", "distill", "dqn", "pqn", "per_student"):
        if doc.get(key) is not None and not isinstance(doc[key], dict):
            raise UserError(f"{path}: {key} must be a mapping")
    for game, teacher in (doc.get("teachers") or {}).items():
        if not isinstance(game, str) or not isinstance(teacher, str):
            raise UserError(f"{path}: teachers maps game names to agent directories, got {game!r}: {teacher!r}")


def run_config(run: Run) -> TeacherRunConfig | DistillConfig:
    """The exact config a run trains with: DQN from scratch for loss "dqn" (no periodic evaluation,
    no saved replay memory), PQN from scratch for loss "pqn" (no periodic evaluation), else
    distillation with five evaluations along the way (the report's learning curves); the study's own
    settings override these."""
    if run.loss == "dqn":
        settings = {"eval_every": 0, "learning_starts": min(20_000, run.steps // 4), "save_replay": False, **run.dqn}
        return TeacherConfig(game=run.game, steps=run.steps, seed=run.seed, **settings)
    if run.loss == "pqn":
        return PQNConfig(game=run.game, steps=run.steps, seed=run.seed, **{"eval_every": 0, **run.pqn})
    settings = {"eval_every": max(run.steps // 5, 1000), "eval_episodes": 5, **run.distill}
    return DistillConfig(student=run.spec, steps=run.steps, loss=run.loss, actor=run.actor, seed=run.seed, **settings)


def wants_gpu(run: Run, cuda_here: bool) -> bool:
    """Whether ``run`` trains on a CUDA device (``auto`` counts where this machine has one), so that
    a Ray task for it asks for a GPU."""
    device = run_config(run).device
    return device.startswith("cuda") or (device == "auto" and cuda_here)


def check_run_config(path: Path, run: Run) -> None:
    """Check the config each run will train with (types, ranges), before any run starts."""
    try:
        cfg = run_config(run)
        check_teacher(cfg) if isinstance(cfg, TeacherRunConfig) else check_distill(cfg)
    except UserError as e:
        raise UserError(f"{path}: run {run.game}/{run.name}: {e}") from None


def _cells(path: Path, doc: dict[str, Any], actors: list[str]) -> list[tuple[str, str, str]]:
    """The (spec, loss, actor) cells of a study: the full grid, or with ``vary`` the base (first
    of each list) and, for each varied factor, the base with that one factor changed."""

    if "vary" not in doc:
        return list(itertools.product(doc["students"], doc["losses"], actors))
    vary = doc["vary"]
    if not isinstance(vary, dict) or not vary:
        raise UserError(f"{path}: vary maps factors ({', '.join(VARY_KEYS)}) to lists of values")
    bad = [k for k in vary if k not in VARY_KEYS]
    if bad:
        raise UserError(f"{path}: cannot vary {', '.join(map(str, bad))} (only {', '.join(VARY_KEYS)})")
    base = {"students": doc["students"][0], "losses": doc["losses"][0], "actors": actors[0]}
    cells = [(base["students"], base["losses"], base["actors"])]
    for key, values in vary.items():
        if not isinstance(values, list):
            raise UserError(f"{path}: vary.{key} must be a list")
        for v in values:
            if key == "students":
                parse_spec(v)
            elif key == "losses" and v not in LOSSES + tuple(FROM_SCRATCH):
                raise UserError(f"{path}: unknown loss {v!r} (one of {', '.join(LOSSES + tuple(FROM_SCRATCH))})")
            elif key == "actors" and v not in ACTORS:
                raise UserError(f"{path}: unknown actor {v!r}")
            cell = {**base, key: v}
            cells.append((cell["students"], cell["losses"], cell["actors"]))
    return cells


# what a finished run's result.json must hold for the tables (numbers checked by type)
RESULT_NUMBERS = ("params", "ratio_to_teacher", "seed", "steps", "score_mean", "teacher_mean")
RESULT_TEXTS = ("game", "spec", "loss", "actor")


def read_result(out: Path) -> dict[str, Any] | None:
    """A finished run's row (its result.json), None when it has none. A damaged one (not JSON, or
    lacking what the tables need) is noted in one line and counts as none: ``experiment run``
    evaluates that run again and rewrites it, ``report`` leaves it out."""
    path = Path(out) / RESULT
    if not path.exists():
        return None
    try:
        row = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        row = None
    ok = isinstance(row, dict) and all(isinstance(row.get(k), str) for k in RESULT_TEXTS) and all(
        isinstance(row.get(k), (int, float)) and not isinstance(row.get(k), bool) for k in RESULT_NUMBERS)
    if not ok:
        note(f"{path}: damaged, left out (`rl-compress experiment run` evaluates the run again and rewrites it)")
        return None
    return row
