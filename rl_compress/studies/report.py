"""A study's results: the rows of its finished runs as CSV and markdown, the summary over seeds, the
method-by-method table and the learning-curve plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rl_compress.core.errors import UserError
from rl_compress.core.files import atomic_write_bytes
from rl_compress.core.tables import rows_csv, rows_markdown
from rl_compress.models.agent import load_agent
from rl_compress.studies.spec import COLUMNS, Study, read_result

SUMMARY_COLUMNS = ["game", "spec", "params", "ratio_to_teacher", "loss", "actor", "steps", "seeds", "score",
                   "teacher_mean", "retention"]  # the markdown summary; its csv has the numbers


SUMMARY_CSV_COLUMNS = ["game", "spec", "params", "ratio_to_teacher", "loss", "actor", "steps", "seeds", "score_mean",
                       "score_std", "teacher_mean", "retention_mean", "retention_std"]


def summarize(rows: list[dict]) -> list[dict[str, Any]]:
    """One row per (game, spec, loss, actor, steps) over its seeds, in the order first seen: the
    seeds, the mean and spread (population std) of the runs' mean scores and retentions, and
    both as text ("m ± s") for the markdown table."""

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
    rows = [row for r in study.runs if (row := read_result(study.run_dir(r))) is not None]
    if not rows:
        raise UserError(f"{study.path}: no finished runs yet; run `rl-compress experiment run {study.path}` first")
    out_dir = study.root / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(rows)
    paths = [_retention_plot(study, game, summary, out_dir) for game in sorted({r["game"] for r in rows})]
    paths.append(_learning_curves_plot(study, out_dir))
    return paths + list(write_results(study, rows))


def _pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend (imported here: it is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _finish_axes(ax: Any, xlabel: str, ylabel: str, title: str, legend_size: int) -> None:
    """Labels, title, grid, and a legend when anything is labelled."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=legend_size)


def _save_figure(fig: Any, path: Path) -> Path:
    """Write ``fig`` to ``path`` as PNG and free it."""
    fig.tight_layout()
    fig.savefig(path)
    _pyplot().close(fig)
    return path


def _retention_plot(study: Study, game: str, summary: list[dict[str, Any]], out_dir: Path) -> Path:
    """Retention (mean over seeds, std bars) against student parameters, one line per loss and actor."""
    fig, ax = _pyplot().subplots(figsize=(6, 4), dpi=100)
    for (loss, actor) in sorted({(r["loss"], r["actor"]) for r in summary if r["game"] == game}):
        sel = sorted((r for r in summary if r["game"] == game and r["loss"] == loss and r["actor"] == actor
                      and r["retention_mean"] is not None), key=lambda r: r["params"])
        if sel:
            ax.errorbar([r["params"] for r in sel], [r["retention_mean"] for r in sel],
                        yerr=[r["retention_std"] for r in sel], marker="o", capsize=3, label=f"{loss} ({actor})")
    ax.set_xscale("log")
    ax.axhline(1.0, color="grey", lw=0.8)
    _finish_axes(ax, "student parameters", "retention (student - random) / (teacher - random)",
                 f"{study.name}: {game}", 7)
    return _save_figure(fig, out_dir / f"{study.name}_{game}_retention_vs_params.png")


def _eval_curves(study: Study) -> dict[tuple[str, str, str, str], list[list[tuple[int, float]]]]:
    """The finished runs' periodic evaluations, (step, retention), grouped by (game, spec, loss, actor)."""
    curves: dict[tuple[str, str, str, str], list[list[tuple[int, float]]]] = {}
    for r in study.runs:
        d = study.run_dir(r)
        if read_result(d) is None:
            continue
        hist = (load_agent(d).card.get("training") or {}).get("eval_history") or []
        pts = [(h["step"], h["retention"]) for h in hist if h.get("retention") is not None]
        if pts:
            curves.setdefault((r.game, r.spec, r.loss, r.actor), []).append(pts)
    return curves


def _learning_curves_plot(study: Study, out_dir: Path) -> Path:
    """One panel per game: each (spec, loss, actor)'s mean retention over its seeds against env
    steps, with a min-max band."""
    curves = _eval_curves(study)
    curve_games = sorted({key[0] for key in curves}) or ["(none)"]
    fig, axes = _pyplot().subplots(1, len(curve_games), figsize=(6 * len(curve_games), 4), dpi=100, squeeze=False)
    for ax, game in zip(axes[0], curve_games):
        for (g, spec, loss, actor), runs in curves.items():
            if g != game:
                continue
            steps, mean, low, high = mean_curve(runs)
            line, = ax.plot(steps, mean, marker=".", label=f"{spec} {loss} ({actor}), {len(runs)} seed(s)")
            if len(runs) > 1:
                ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.15)
        _finish_axes(ax, "env steps", "retention (5-game evaluations)",
                     f"{study.name}: {game}, mean over seeds (band: min-max)", 6)
    return _save_figure(fig, out_dir / f"{study.name}_learning_curves.png")
