"""Compression studies: a YAML grid of games x students x losses x actors x seeds, run
locally (one after another, skipping finished runs, resuming interrupted ones) or as Ray
tasks, into experiments/results/<study>.csv and .md, with plots.

Study file (experiments/<study>.yaml):

    name: paper
    games: [pong]
    teachers: {pong: agents/pong/teacher}   # default: agents/<game>/teacher
    students: [gmp8, gmp16, gmp32, flat16-fc128]
    losses: [actor-mimic, kl, mse, nll]     # "dqn" = the student trained from scratch by DQN
    actors: [student, teacher]
    seeds: [1, 2, 3]
    steps: 500000
    eval_episodes: 30
    distill: {lr: 0.00025}                  # any other DistillConfig field
    dqn: {buffer_size: 100000}              # TeacherConfig fields of the from-scratch runs
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
import multiprocessing
import re
import signal
import threading
import time
from concurrent.futures import CancelledError, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rl_compress.agent import atomic_write_bytes, atomic_write_json, load_agent, read_card
from rl_compress.errors import UserError, first_line
from rl_compress.signals import request_stop, stop_requested, watch_stop_event
from rl_compress.tables import rows_csv, rows_markdown

RESULT = "result.json"
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


def load_study(path: Path, budget: float = 1.0) -> Study:
    """Parse a study YAML; ``budget`` < 1 scales steps (and evaluation episodes, at least 2) and
    names the study <name>_budget<F>, so its runs and tables are not the full study's."""
    import yaml

    from rl_compress.distill import ACTORS, LOSSES, DistillConfig
    from rl_compress.envs import resolve_game
    from rl_compress.networks import parse_spec
    from rl_compress.teacher import TeacherConfig

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such study file")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{path}: not UTF-8 text") from None
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({first_line(e)})") from None
    if not isinstance(doc, dict):
        raise UserError(f"{path}: a study is a YAML mapping")
    if not 0 < budget <= 1:
        raise UserError(f"--budget must be in (0, 1], got {budget}")
    need = ["games", "students", "losses", "seeds", "steps"]
    missing = [k for k in need if k not in doc]
    if missing:
        raise UserError(f"{path}: missing {', '.join(missing)}")
    check_study_types(path, doc)
    games = [resolve_game(g) for g in doc["games"]]
    for spec in doc["students"]:
        parse_spec(spec)
    for loss in doc["losses"]:
        if loss not in LOSSES + ("dqn",):
            raise UserError(f"{path}: unknown loss {loss!r} (one of {', '.join(LOSSES + ('dqn',))})")
    actors = doc.get("actors", ["student"])
    for actor in actors:
        if actor not in ACTORS:
            raise UserError(f"{path}: unknown actor {actor!r}")
    extra = doc.get("distill", {}) or {}
    dqn = doc.get("dqn", {}) or {}
    per_student = doc.get("per_student", {}) or {}
    if not isinstance(per_student, dict):
        raise UserError(f"{path}: per_student maps student specs to {{distill: ..., dqn: ...}}")
    sections = [("distill", extra, DistillConfig), ("dqn", dqn, TeacherConfig)]
    for spec, own in per_student.items():
        parse_spec(spec)
        bad_own = not isinstance(own, dict) or any(k not in ("distill", "dqn") or not isinstance(v, dict)
                                                   for k, v in own.items())
        if bad_own:
            raise UserError(f"{path}: per_student.{spec} maps distill and/or dqn to settings")
        sections += [(f"per_student.{spec}.distill", own.get("distill", {}), DistillConfig),
                     (f"per_student.{spec}.dqn", own.get("dqn", {}), TeacherConfig)]
    for section, settings, cls in sections:
        bad = [k for k in settings if k not in cls.__dataclass_fields__]
        if bad:
            raise UserError(f"{path}: unknown {section} settings {bad}")
    teachers = {resolve_game(k): v for k, v in (doc.get("teachers") or {}).items()}
    steps = max(int(int(doc["steps"]) * budget), 1000)
    episodes = max(int(int(doc.get("eval_episodes", 30)) * budget), 2)
    cells = _cells(path, doc, actors)
    runs = []
    seen = set()
    for game, (spec, loss, actor), seed in itertools.product(games, cells, doc["seeds"]):
        if loss == "dqn" and actor != actors[0]:
            continue  # from-scratch DQN has no teacher actor: one run per spec and seed
        own = per_student.get(spec, {})
        run = Run(game, teachers.get(game, f"agents/{game}/teacher"), spec, loss,
                  "self" if loss == "dqn" else actor, int(seed), steps, episodes,
                  {**extra, **own.get("distill", {})}, {**dqn, **own.get("dqn", {})})
        if (game, run.name) not in seen:
            seen.add((game, run.name))
            runs.append(run)
    name = str(doc.get("name", path.stem))
    if not STUDY_NAME.fullmatch(name):
        raise UserError(f"{path}: name {name!r} must be letters, digits, '_', '-' or '.' (no path): its runs "
                        "go to experiments/runs/<name>/")
    for run in runs:
        check_run_config(path, run)
    if budget < 1:  # a smaller pass keeps its own runs and tables: the full study must not skip its runs
        name += f"_budget{budget:g}"
    return Study(name, path, runs, path.parent)


VARY_KEYS = ("students", "losses", "actors")
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_study_types(path: Path, doc: dict[str, Any]) -> None:
    """Refuse study entries of the wrong type with one line (``steps: abc``, ``seeds: 1``,
    ``games: pong`` as a bare string, a negative step count...)."""
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
    for key in ("teachers", "distill", "dqn", "per_student"):
        if doc.get(key) is not None and not isinstance(doc[key], dict):
            raise UserError(f"{path}: {key} must be a mapping")
    for game, teacher in (doc.get("teachers") or {}).items():
        if not isinstance(game, str) or not isinstance(teacher, str):
            raise UserError(f"{path}: teachers maps game names to agent directories, got {game!r}: {teacher!r}")


def check_run_config(path: Path, run: Run) -> None:
    """Check one run's full settings as its training will (types, ranges), before any run starts."""
    from rl_compress.distill import DistillConfig
    from rl_compress.distill import check_config as check_distill
    from rl_compress.teacher import TeacherConfig
    from rl_compress.teacher import check_config as check_teacher

    try:
        if run.loss == "dqn":
            check_teacher(TeacherConfig(game=run.game, steps=run.steps, seed=run.seed, **run.dqn))
        else:
            check_distill(DistillConfig(student=run.spec, steps=run.steps, loss=run.loss, actor=run.actor,
                                        seed=run.seed, **run.distill))
    except UserError as e:
        raise UserError(f"{path}: run {run.game}/{run.name}: {e}") from None


def _cells(path: Path, doc: dict[str, Any], actors: list[str]) -> list[tuple[str, str, str]]:
    """The (spec, loss, actor) cells of a study: the full grid, or with ``vary`` the base (first
    of each list) and, for each varied factor, the base with that one factor changed."""
    from rl_compress.distill import ACTORS, LOSSES
    from rl_compress.networks import parse_spec

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
            elif key == "losses" and v not in LOSSES + ("dqn",):
                raise UserError(f"{path}: unknown loss {v!r} (one of {', '.join(LOSSES + ('dqn',))})")
            elif key == "actors" and v not in ACTORS:
                raise UserError(f"{path}: unknown actor {v!r}")
            cell = {**base, key: v}
            cells.append((cell["students"], cell["losses"], cell["actors"]))
    return cells


def execute(run: Run, out: Path) -> dict[str, Any]:
    """Run (or resume) one cell, evaluate it and its teacher, write and return its row."""
    from rl_compress.distill import DistillConfig, distill
    from rl_compress.evaluate import evaluate, retention
    from rl_compress.networks import parse_spec
    from rl_compress.rundir import CHECKPOINT, git_commit
    from rl_compress.teacher import TeacherConfig, train_teacher

    out = Path(out)
    if (out / RESULT).exists():
        return json.loads((out / RESULT).read_text())
    teacher = load_agent(Path(run.teacher), game=run.game)
    resume = (out / CHECKPOINT).exists()
    t0 = time.time()
    trained = _trained_card(out, run.steps) if resume else None
    if trained is not None:  # stopped in its final evaluation: the training is done, evaluate it
        card = trained
    elif run.loss == "dqn":
        settings = {"eval_every": 0, "learning_starts": min(20_000, run.steps // 4), "save_replay": False, **run.dqn}
        cfg = TeacherConfig(game=run.game, steps=run.steps, seed=run.seed, **settings)
        card = train_teacher(cfg, out, resume=resume, arch=parse_spec(run.spec), show_progress=False)
    else:
        # five evaluations along the way give the learning curve of the report
        settings = {"eval_every": max(run.steps // 5, 1000), "eval_episodes": 5, **run.distill}
        cfg = DistillConfig(student=run.spec, steps=run.steps, loss=run.loss, actor=run.actor, seed=run.seed,
                            **settings)
        card = distill(Path(run.teacher), cfg, out, resume=resume, show_progress=False)
    if not card["training"].get("finished"):  # stopped by SIGINT / SIGTERM: checkpointed, not complete
        raise UserError(f"{out}: stopped at {card['training']['steps']} of {run.steps} env steps; "
                        "run the study again to resume it")
    student = load_agent(out)
    res = evaluate(student.net, run.game, run.eval_episodes, seed=0)
    t_res = teacher_evaluation(teacher, run.eval_episodes) or evaluate(teacher.net, run.game, run.eval_episodes, seed=0)
    row = {
        "game": run.game, "spec": run.spec, "params": student.card["params"],
        "ratio_to_teacher": round(student.card["params"] / teacher.card["params"], 5), "loss": run.loss,
        "actor": run.actor, "seed": run.seed, "steps": card["training"]["steps"],
        "wall_time_s": card["training"]["wall_time_s"], "score_mean": res["mean"], "score_std": res["std"],
        "teacher_mean": t_res["mean"], "retention": retention(run.game, res["mean"], t_res["mean"]),
        "episodes": run.eval_episodes, "machines": "; ".join(card["training"].get("machines", [])),
        "commit": git_commit(), "run_seconds": round(time.time() - t0, 1),
    }
    atomic_write_json(out / RESULT, row)
    return row


def _trained_card(out: Path, steps: int) -> dict[str, Any] | None:
    """The card of a run directory whose training finished at ``steps`` env steps, else None."""
    try:
        card = read_card(out)
    except UserError:
        return None
    training = card.get("training") or {}
    return card if training.get("finished") and training.get("steps") == steps else None


def teacher_evaluation(teacher: Any, episodes: int, seed: int = 0) -> dict[str, Any] | None:
    """The evaluation stored in the teacher's card when it is the one a run needs (the default
    protocol, ``episodes`` games, ``seed``, made of the weights now in its directory), else None:
    the same games are not played again for every run of a study."""
    from dataclasses import asdict

    from rl_compress.agent import WEIGHTS, sha256_file
    from rl_compress.evaluate import DEFAULT_PROTOCOL

    ev = teacher.card.get("evaluation") or {}
    same = (ev.get("protocol") == asdict(DEFAULT_PROTOCOL) and ev.get("episodes") == episodes
            and ev.get("seed") == seed and ev.get("weights_sha256") == sha256_file(teacher.path / WEIGHTS))
    return ev if same else None


def _execute_remote(run: Run, out: str) -> dict[str, Any]:
    """Body of a Ray task or a local worker process (module-level, so that it can be shipped)."""
    import torch

    torch.set_num_threads(1)
    return execute(run, Path(out))


def run_study(study: Study, backend: str = "local", address: str | None = None, cpus_per_run: int = 1,
              jobs: int = 1) -> list[dict]:
    """Run every cell of the study with the chosen backend; returns the rows in grid order.
    ``jobs`` > 1 runs that many cells at once on the local backend, each in its own process
    with one torch thread."""
    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    if backend == "local" and jobs == 1:
        return _run_here(study)
    if backend == "local":
        return _run_in_processes(study, jobs)
    if backend != "ray":
        raise UserError(f"unknown backend {backend!r}; choose local or ray")
    try:
        import ray
    except ImportError:
        raise UserError("the ray backend needs Ray: pip install 'rl-compress[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    task = ray.remote(num_cpus=cpus_per_run)(_execute_remote)
    futures = [task.remote(r, str(study.run_dir(r).resolve())) for r in study.runs]
    return ray.get(futures)


def _run_here(study: Study) -> list[dict]:
    """The local backend in this process. A SIGINT / SIGTERM that lands between a run's training
    loops (its setup, its evaluations) is held until the loop checkpoints; the runs not yet begun
    are not begun."""
    main = threading.current_thread() is threading.main_thread()  # handlers can only be set there
    old = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)} if main else {}
    rows = []
    try:
        for r in study.runs:
            if stop_requested():
                raise UserError("stopped; run the study again to resume it")
            rows.append(execute(r, study.run_dir(r)))
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    return rows


_STOP: Any = None  # in a local worker process: the pool's stop event (set on SIGINT / SIGTERM)


def _init_worker(stop: Any) -> None:
    """A local worker process: the parent's stop event (and a signal to this process, e.g. Ctrl-C in
    the terminal, even during a run's setup) stops its run at the loop's next step."""
    global _STOP
    _STOP = stop
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, request_stop)
    watch_stop_event(stop)


def _execute_worker(run: Run, out: str) -> dict[str, Any] | None:
    """A local worker's task: the run, unless the study was stopped before it began (None)."""
    if stop_requested() or (_STOP is not None and _STOP.is_set()):
        return None
    return _execute_remote(run, out)


def _run_in_processes(study: Study, jobs: int) -> list[dict]:
    """The local backend with ``jobs`` worker processes. SIGINT / SIGTERM are passed on to the
    workers through a shared Event (``signals.watch_stop_event``): their runs checkpoint and stop;
    runs not yet begun are not begun."""
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    failures: list[str] = []
    rows = []
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker, initargs=(stop,)) as pool:
        futures = [pool.submit(_execute_worker, r, str(study.run_dir(r).resolve())) for r in study.runs]

        def forward(signum: int, frame: Any) -> None:
            stop.set()
            for f in futures:
                f.cancel()

        old = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            for f in futures:
                try:
                    row = f.result()
                except CancelledError:
                    continue
                except UserError as e:
                    failures.append(str(e))
                    continue
                except BrokenProcessPool:
                    failures.append("a worker process died; run the study again to resume its runs")
                    break
                if row is not None:
                    rows.append(row)
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
    if failures:
        raise UserError(failures[0])
    if stop.is_set():
        raise UserError("stopped; run the study again to resume it")
    return rows


SUMMARY_COLUMNS = ["game", "spec", "params", "ratio_to_teacher", "loss", "actor", "steps", "seeds", "score",
                   "teacher_mean", "retention"]  # the markdown summary; its csv has the numbers
SUMMARY_CSV_COLUMNS = ["game", "spec", "params", "ratio_to_teacher", "loss", "actor", "steps", "seeds", "score_mean",
                       "score_std", "teacher_mean", "retention_mean", "retention_std"]


def summarize(rows: list[dict]) -> list[dict[str, Any]]:
    """One row per (game, spec, loss, actor, steps) over its seeds, in the order first seen: the
    seeds, the mean and spread (population std) of the runs' mean scores and retentions, and
    both as text ("m ± s") for the markdown table."""
    import numpy as np

    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["game"], r["spec"], r["loss"], r["actor"], r["steps"]), []).append(r)
    out = []
    for (game, spec, loss, actor, steps), rs in groups.items():
        scores = np.array([r["score_mean"] for r in rs], dtype=np.float64)
        rets = np.array([r["retention"] for r in rs if r.get("retention") is not None], dtype=np.float64)
        row: dict[str, Any] = {
            "game": game, "spec": spec, "params": rs[0]["params"], "ratio_to_teacher": rs[0]["ratio_to_teacher"],
            "loss": loss, "actor": actor, "steps": steps, "seeds": " ".join(str(r["seed"]) for r in rs),
            "score_mean": float(scores.mean()), "score_std": float(scores.std()),
            "teacher_mean": float(np.mean([r["teacher_mean"] for r in rs])),
            "retention_mean": float(rets.mean()) if rets.size else None,
            "retention_std": float(rets.std()) if rets.size else None,
        }
        row["score"] = f"{row['score_mean']:.2f} ± {row['score_std']:.2f}"
        row["retention"] = (f"{row['retention_mean']:.3f} ± {row['retention_std']:.3f}" if rets.size else "")
        out.append(row)
    return out


def by_method(summary: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """The summary side by side: one row per game and spec (params, % of the teacher), and for
    each method (loss and actor, in the order first seen) its score and retention over its seeds
    ("m ± s (n seeds)"). Returns the rows and their columns, for the README's results table."""
    methods = list(dict.fromkeys(f"{r['loss']} ({r['actor']})" for r in summary))
    columns = ["game", "spec", "params", "pct_of_teacher"]
    for m in methods:
        columns += [f"{m} score", f"{m} retention"]
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for r in summary:
        row = rows.setdefault((r["game"], r["spec"]), {
            "game": r["game"], "spec": r["spec"], "params": r["params"],
            "pct_of_teacher": round(100 * r["ratio_to_teacher"], 2)})
        m, n = f"{r['loss']} ({r['actor']})", len(r["seeds"].split())
        row[f"{m} score"] = r["score"]
        row[f"{m} retention"] = f"{r['retention']} ({n} seed{'s' if n > 1 else ''})" if r["retention"] else ""
    return list(rows.values()), columns


def write_results(study: Study, rows: list[dict]) -> tuple[Path, Path]:
    """experiments/results/<study>.csv and .md (atomic): one row a run, then the same over seeds
    in <study>_summary.csv and .md (see ``summarize``), and side by side per game and spec in
    <study>_by_method.md (see ``by_method``). Returns the per-run tables' paths."""
    results = study.root / "results"
    results.mkdir(parents=True, exist_ok=True)
    csv_path = results / f"{study.name}.csv"
    atomic_write_bytes(csv_path, rows_csv(rows, COLUMNS).encode())
    md_path = results / f"{study.name}.md"
    atomic_write_bytes(md_path, rows_markdown(rows, COLUMNS[:-1]).encode())
    summary = summarize(rows)
    atomic_write_bytes(results / f"{study.name}_summary.csv", rows_csv(summary, SUMMARY_CSV_COLUMNS).encode())
    atomic_write_bytes(results / f"{study.name}_summary.md", rows_markdown(summary, SUMMARY_COLUMNS).encode())
    side, side_columns = by_method(summary)
    atomic_write_bytes(results / f"{study.name}_by_method.md", rows_markdown(side, side_columns).encode())
    return csv_path, md_path


def mean_curve(runs: list[list[tuple[int, float]]]) -> tuple[list[int], list[float], list[float], list[float]]:
    """The learning curve of several seeds of one cell: at every env step that any seed evaluated
    at, the mean, min and max retention of the seeds that did."""
    at: dict[int, list[float]] = {}
    for pts in runs:
        for step, ret in pts:
            at.setdefault(step, []).append(ret)
    steps = sorted(at)
    return (steps, [sum(at[s]) / len(at[s]) for s in steps], [min(at[s]) for s in steps],
            [max(at[s]) for s in steps])


def report(study: Study) -> list[Path]:
    """The results tables (csv, md) of the runs finished so far, in the study's order, and PNG
    plots of them: retention vs params (log x) per game, and the learning curves (retention vs
    env steps, from each card's evaluation history; one panel per game, one line per spec, loss and
    actor: the mean over its seeds, with a min-max band). Returns the plots' paths, then the
    tables'."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads((study.run_dir(r) / RESULT).read_text()) for r in study.runs
            if (study.run_dir(r) / RESULT).exists()]
    if not rows:
        raise UserError(f"{study.path}: no finished runs yet; run `rl-compress experiment run {study.path}` first")
    out_dir = study.root / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    summary = summarize(rows)
    for game in sorted({r["game"] for r in rows}):
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        for (loss, actor) in sorted({(r["loss"], r["actor"]) for r in summary if r["game"] == game}):
            sel = sorted((r for r in summary if r["game"] == game and r["loss"] == loss and r["actor"] == actor
                          and r["retention_mean"] is not None), key=lambda r: r["params"])
            if sel:
                ax.errorbar([r["params"] for r in sel], [r["retention_mean"] for r in sel],
                            yerr=[r["retention_std"] for r in sel], marker="o", capsize=3, label=f"{loss} ({actor})")
        ax.set_xscale("log")
        ax.set_xlabel("student parameters")
        ax.set_ylabel("retention (student - random) / (teacher - random)")
        ax.set_title(f"{study.name}: {game}")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        fig.tight_layout()
        p = out_dir / f"{study.name}_{game}_retention_vs_params.png"
        fig.savefig(p)
        plt.close(fig)
        paths.append(p)
    curves: dict[tuple[str, str, str, str], list[list[tuple[int, float]]]] = {}
    for r in study.runs:
        d = study.run_dir(r)
        if not (d / RESULT).exists():
            continue
        hist = (load_agent(d).card.get("training") or {}).get("eval_history") or []
        pts = [(h["step"], h["retention"]) for h in hist if h.get("retention") is not None]
        if pts:
            curves.setdefault((r.game, r.spec, r.loss, r.actor), []).append(pts)
    curve_games = sorted({key[0] for key in curves}) or ["(none)"]
    fig, axes = plt.subplots(1, len(curve_games), figsize=(6 * len(curve_games), 4), dpi=100, squeeze=False)
    for ax, game in zip(axes[0], curve_games):
        for (g, spec, loss, actor), runs in curves.items():
            if g != game:
                continue
            steps, mean, low, high = mean_curve(runs)
            line, = ax.plot(steps, mean, marker=".", label=f"{spec} {loss} ({actor}), {len(runs)} seed(s)")
            if len(runs) > 1:
                ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.15)
        ax.set_xlabel("env steps")
        ax.set_ylabel("retention (5-game evaluations)")
        ax.set_title(f"{study.name}: {game}, mean over seeds (band: min-max)")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=6)
    fig.tight_layout()
    p = out_dir / f"{study.name}_learning_curves.png"
    fig.savefig(p)
    plt.close(fig)
    paths.append(p)
    return paths + list(write_results(study, rows))


TABLE_COLUMNS = ["agent", "spec", "params", "pct_of_teacher", "score", "teacher_score", "retention", "env_steps",
                 "wall_time_s", "steps_to_90", "wall_to_90_s", "command"]


def agents_table(paths: list[Path], threshold: float = 0.9) -> list[dict[str, Any]]:
    """One row per student agent directory, every number read from the cards: params and share of
    the teacher's, the card's evaluation and the teacher card's on the same protocol, seed and
    episode count, retention, the run's env steps and wall time, and the first periodic evaluation
    at or above ``threshold`` retention (env steps and wall time to reach it)."""
    from rl_compress.agent import WEIGHTS, sha256_file
    from rl_compress.evaluate import retention

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
