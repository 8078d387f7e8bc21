"""Study grids: a tiny grid on the local backend and on a local Ray gives the same rows."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from rl_compress.core.errors import UserError
from rl_compress.core.provenance import machine
from rl_compress.studies.backends import run_study, teacher_evaluation
from rl_compress.studies.report import by_method, mean_curve, report, summarize, write_results
from rl_compress.studies.spec import load_study
from rl_compress.studies.table import agents_table, table_markdown

DETERMINISTIC = ["game", "spec", "params", "ratio_to_teacher", "loss", "actor", "seed", "steps", "score_mean",
                 "score_std", "teacher_mean", "episodes"]


def _study(tmp_path: Path, teacher: Path, name: str) -> Path:
    doc = {
        "name": name, "games": ["Pong"], "teachers": {"pong": str(teacher)}, "students": ["gmp4"],
        "losses": ["kl", "dqn"], "actors": ["student"], "seeds": [1], "steps": 1200, "eval_episodes": 2,
        "distill": {"learning_starts": 400, "buffer_size": 4000, "envs": 2, "batch_size": 32, "threads": 1,
                    "eval_every": 600, "eval_episodes": 1, "tb_clip_steps": 0},
        "dqn": {"learning_starts": 400, "buffer_size": 4000, "envs": 2, "compile": False, "threads": 1},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_local_and_ray_give_the_same_rows(random_teacher: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    threads = torch.get_num_threads()
    try:
        local = load_study(_study(tmp_path, random_teacher, "tiny"))
        assert [r.name for r in local.runs] == ["gmp4_kl_student_s1", "gmp4_dqn_self_s1"]
        rows = run_study(local, "local")
        csv_path, md_path = write_results(local, rows)
        with open(csv_path) as f:
            table = list(csv.DictReader(f))
        assert [t["loss"] for t in table] == ["kl", "dqn"] and table[0]["params"] == "1466"
        assert all(-21 <= r["score_mean"] <= 21 and r["steps"] == 1200 for r in rows)
        assert all(r["machines"] == machine() for r in rows) and table[0]["machines"] == machine()
        assert md_path.read_text().startswith("| game | spec |")
        side = csv_path.with_name("tiny_by_method.md").read_text().splitlines()
        assert side[0].startswith("| game | spec | params | pct_of_teacher | kl (student) score |") and len(side) == 3
        with open(csv_path.with_name("tiny_summary.csv")) as f:  # one seed each: spread 0
            summary = list(csv.DictReader(f))
        assert [(s["loss"], s["seeds"], float(s["score_std"])) for s in summary] == [("kl", "1", 0.0), ("dqn", "1", 0.0)]
        assert float(summary[0]["score_mean"]) == rows[0]["score_mean"]
        # finished runs are skipped: a second pass returns the stored rows without training
        assert run_study(local, "local") == rows
        # a run stopped in its final evaluation (trained, no result yet) is evaluated, not trained again
        done = local.run_dir(local.runs[0])
        returns = (done / "returns.csv").read_text()
        (done / "result.json").unlink()
        again = run_study(local, "local")
        assert [{k: r[k] for k in DETERMINISTIC} for r in again] == [{k: r[k] for k in DETERMINISTIC} for r in rows]
        assert (done / "returns.csv").read_text() == returns and (done / "result.json").exists()
        # a damaged result.json is left out of the report with a note, then evaluated again by a run
        (done / "result.json").write_bytes(b'{"game": "pong", "spec": "gmp4"')
        assert len(report(local)) == 4  # the other run's row still makes the tables
        assert "result.json: damaged, left out" in capsys.readouterr().err
        assert run_study(local, "local")[0]["score_mean"] == rows[0]["score_mean"]
        assert json.loads((done / "result.json").read_text())["spec"] == "gmp4"
        md_path.unlink()
        *pngs, csv_again, md_again = report(local)  # the plots, and the tables of the finished runs
        assert len(pngs) == 2 and all(p.stat().st_size > 5_000 for p in pngs)
        assert (csv_again, md_again) == (csv_path, md_path) and md_path.read_text().count("\n| pong |") == 2
        _check_table(local.run_dir(local.runs[0]), random_teacher, rows[0], tmp_path)

        ray = pytest.importorskip("ray")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            remote = load_study(_study(tmp_path, random_teacher, "tiny_ray"))
            rows_ray = run_study(remote, "ray")
        finally:
            ray.shutdown()
        assert [{k: r[k] for k in DETERMINISTIC} for r in rows_ray] == [{k: r[k] for k in DETERMINISTIC} for r in rows]
        # two local worker processes at once give the same rows in grid order
        rows_jobs = run_study(load_study(_study(tmp_path, random_teacher, "tiny_jobs")), "local", jobs=2)
        assert [{k: r[k] for k in DETERMINISTIC} for r in rows_jobs] == [{k: r[k] for k in DETERMINISTIC} for r in rows]
    finally:
        torch.set_num_threads(threads)


def _check_table(student: Path, teacher: Path, row: dict, tmp_path: Path) -> None:
    """`rl-compress table` reads the cards: same seeds and episodes as the study's own evaluation
    give the same scores and retention; a mismatch in episodes or a teacher dir is refused."""
    from rl_compress.atari.evaluate import evaluate
    from rl_compress.models.agent import load_agent, update_card

    for d in (student, teacher):
        update_card(d, evaluation=evaluate(load_agent(d).net, "pong", 2, seed=0))
    (t,) = agents_table([student])
    assert t["params"] == 1466 and t["pct_of_teacher"] == round(100 * 1466 / 1687206, 3)
    assert t["score"] == f"{row['score_mean']:.2f} ± {row['score_std']:.2f}" and t["retention"] == row["retention"]
    assert t["env_steps"] == 1200 and t["command"].startswith("rl-compress distill --teacher")
    assert table_markdown([t]).splitlines()[0].startswith("| agent | spec | params | pct_of_teacher |")
    with pytest.raises(UserError, match="not a distilled student"):
        agents_table([teacher])
    update_card(student, evaluation=evaluate(load_agent(student).net, "pong", 1, seed=0))
    with pytest.raises(UserError, match="another protocol, seed or episode count"):
        agents_table([student])
    update_card(student, evaluation={**t, "weights_sha256": "0" * 64})
    with pytest.raises(UserError, match="made of other weights"):
        agents_table([student])


def test_study_refusals(tmp_path: Path, random_teacher: Path) -> None:
    good = _study(tmp_path, random_teacher, "s")
    doc = yaml.safe_load(good.read_text())
    for change, msg in (({"losses": ["hinge"]}, "unknown loss"), ({"students": ["cnn"]}, "invalid student spec"),
                        ({"distill": {"nope": 1}}, "unknown distill settings"), ({"games": ["Pongg"]}, "unknown game"),
                        ({"per_student": {"gmp4": {"distill": {"nope": 1}}}},
                         "unknown per_student.gmp4.distill settings"),
                        ({"per_student": {"gmp4": {"lr": 1e-3}}}, "maps distill and/or dqn"),
                        ({"per_student": {"cnn": {}}}, "invalid student spec"),
                        ({"step": 5000}, "unknown study entries step"),
                        ({"distill": {"seed": 3}}, "distill sets seed, which the study's grid sets"),
                        ({"per_student": {"gmp4": {"dqn": {"steps": 10}}}}, "per_student.gmp4.dqn sets steps"),
                        ({"students": [16]}, "students must be strings")):
        bad = tmp_path / "bad.yaml"
        bad.write_text(yaml.safe_dump({**doc, **change}))
        with pytest.raises(UserError, match=msg):
            load_study(bad)
    with pytest.raises(UserError, match="no such study"):
        load_study(tmp_path / "none.yaml")
    with pytest.raises(UserError, match="no finished runs"):
        report(load_study(good))
    shutil.rmtree(tmp_path / "runs", ignore_errors=True)


def test_vary_is_one_factor_at_a_time(tmp_path: Path, random_teacher: Path) -> None:
    doc = yaml.safe_load(_study(tmp_path, random_teacher, "abl").read_text())
    doc.update({"students": ["gmp8-w5", "gmp4"], "losses": ["actor-mimic"], "seeds": [1, 2],
                "vary": {"losses": ["kl", "dqn", "actor-mimic"], "actors": ["teacher"], "students": ["flat4-fc8"]}})
    path = tmp_path / "abl.yaml"
    path.write_text(yaml.safe_dump(doc))
    study = load_study(path)
    names = [r.name for r in study.runs]
    # the base, then each change of one factor (the repeated base is run once), for every seed
    # (safe_dump sorts the keys of vary: actors, losses, students)
    cells = ("gmp8-w5_actor-mimic_student", "gmp8-w5_actor-mimic_teacher", "gmp8-w5_kl_student", "gmp8-w5_dqn_self",
             "flat4-fc8_actor-mimic_student")
    assert names == [f"{cell}_s{seed}" for cell in cells for seed in (1, 2)]
    assert len(names) == 10 and len(set(names)) == 10
    # a spec's own settings override the study's, for that spec only
    doc_own = {**doc, "distill": {"lr": 1e-3, "temperature": 0.01}, "dqn": {"lr": 1e-4},
               "per_student": {"gmp8-w5": {"distill": {"lr": 3e-4}, "dqn": {"lr": 5e-5}}}}
    path.write_text(yaml.safe_dump(doc_own))
    own = {r.name: r for r in load_study(path).runs}
    assert own["gmp8-w5_actor-mimic_student_s1"].distill == {"lr": 3e-4, "temperature": 0.01}
    assert own["gmp8-w5_dqn_self_s1"].dqn == {"lr": 5e-5}
    assert own["flat4-fc8_actor-mimic_student_s1"].distill == {"lr": 1e-3, "temperature": 0.01}
    for vary, msg in (({"seeds": [3]}, "cannot vary seeds"), ({"losses": "kl"}, "must be a list"),
                      ({"losses": ["hinge"]}, "unknown loss"), ({"actors": ["nobody"]}, "unknown actor"),
                      ({"students": ["cnn"]}, "invalid student spec"), ([], "vary maps factors")):
        path.write_text(yaml.safe_dump({**doc, "vary": vary}))
        with pytest.raises(UserError, match=msg):
            load_study(path)
    with pytest.raises(UserError, match="^jobs must be at least 1"):
        run_study(study, "local", jobs=0)


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_stopped_run_is_not_a_result(random_teacher: Path, tmp_path: Path, jobs: int) -> None:
    """SIGTERM checkpoints the runs in progress (in worker processes too); the study then exits with
    128 + 15, says how to resume in one line and writes no result for them (a later `experiment run`
    resumes them)."""
    import signal
    import subprocess
    import sys
    import time

    path = _study(tmp_path, random_teacher, "stop")
    doc = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**doc, "losses": ["kl", "nll", "mse"], "steps": 200_000}))
    run_dirs = [tmp_path / "runs" / "stop" / "pong" / f"gmp4_{loss}_student_s1" for loss in ("kl", "nll")][:jobs]
    exe = str(Path(sys.executable).with_name("rl-compress"))
    proc = subprocess.Popen([exe, "experiment", "run", str(path), "--jobs", str(jobs)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not all((d / "returns.csv").exists() for d in run_dirs) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM and "Traceback" not in err  # like a single run
    last = err.strip().splitlines()[-1]
    assert last.startswith("stopped by SIGTERM: finished runs are kept") and "run the same `rl-compress experiment" in last
    # every run in progress got the signal: checkpointed long before its first periodic checkpoint
    for d in run_dirs:
        assert (d / "checkpoint.pt").exists() and not (d / "result.json").exists()
    # and the runs waiting for a worker were not begun
    for loss in ("kl", "nll", "mse")[jobs:]:
        assert not (tmp_path / "runs" / "stop" / "pong" / f"gmp4_{loss}_student_s1").exists()


def test_a_run_ended_by_the_studys_wall_time_budget_is_a_result(random_teacher: Path, tmp_path: Path) -> None:
    """A study whose distill settings hold --max-wall-time: the run stops at its budget, short of its
    env steps, and that is its result; a second pass evaluates it again without training it."""
    path = _study(tmp_path, random_teacher, "budget")
    doc = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**doc, "losses": ["kl"], "steps": 200_000,
                                    "distill": {**doc["distill"], "max_wall_time": 20}}))
    study = load_study(path)
    (row,) = run_study(study, "local")
    run_dir = study.run_dir(study.runs[0])
    training = json.loads((run_dir / "agent.json").read_text())["training"]
    assert training["stopped"] == "max_wall_time" and not training["finished"]
    assert 0 < row["steps"] == training["steps"] < 200_000 and -21 <= row["score_mean"] <= 21
    returns = (run_dir / "returns.csv").read_text()
    (run_dir / "result.json").unlink()
    (again,) = run_study(study, "local")
    assert (again["steps"], again["score_mean"]) == (row["steps"], row["score_mean"])
    assert (run_dir / "returns.csv").read_text() == returns


def test_summary_is_the_mean_and_spread_over_seeds() -> None:
    base = {"game": "pong", "spec": "gmp8-w5", "params": 5334, "ratio_to_teacher": 0.00316, "actor": "student",
            "steps": 500000, "teacher_mean": 17.0}
    rows = [{**base, "loss": "actor-mimic", "seed": 1, "score_mean": 10.0, "retention": 0.8},
            {**base, "loss": "dqn", "actor": "self", "seed": 1, "score_mean": -21.0, "retention": None},
            {**base, "loss": "actor-mimic", "seed": 2, "score_mean": 14.0, "retention": 0.9},
            {**base, "loss": "actor-mimic", "seed": 3, "score_mean": 12.0, "retention": 0.7}]
    am, dqn = summarize(rows)
    assert am["seeds"] == "1 2 3" and am["score_mean"] == pytest.approx(12.0)
    assert am["score_std"] == pytest.approx((8 / 3) ** 0.5) and am["retention_mean"] == pytest.approx(0.8)
    assert am["retention"] == "0.800 ± 0.082" and am["score"] == "12.00 ± 1.63"
    assert dqn["seeds"] == "1" and dqn["retention_mean"] is None and dqn["retention"] == ""
    # side by side: one row per game and spec, each method's score and retention over its seeds
    (side,), columns = by_method([am, dqn])
    assert columns == ["game", "spec", "params", "pct_of_teacher", "actor-mimic (student) score",
                       "actor-mimic (student) retention", "dqn (self) score", "dqn (self) retention"]
    assert side["pct_of_teacher"] == 0.32 and side["actor-mimic (student) retention"] == "0.800 ± 0.082 (3 seeds)"
    assert side["dqn (self) score"] == "-21.00 ± 0.00" and side["dqn (self) retention"] == ""
    # learning curves over seeds: a step that only one seed evaluated at (a resumed run) stands alone
    steps, mean, low, high = mean_curve([[(40_000, 0.1), (80_000, 0.5)], [(40_000, 0.3), (100_000, 0.6)]])
    assert steps == [40_000, 80_000, 100_000] and mean == pytest.approx([0.2, 0.5, 0.6])
    assert low == pytest.approx([0.1, 0.5, 0.6]) and high == pytest.approx([0.3, 0.5, 0.6])


def test_a_run_reuses_the_teachers_stored_evaluation_only_when_it_matches(random_teacher: Path) -> None:
    from dataclasses import asdict

    from rl_compress.atari.evaluate import DEFAULT_PROTOCOL, evaluate
    from rl_compress.core.files import sha256_file
    from rl_compress.models.agent import WEIGHTS, load_agent, update_card

    teacher = load_agent(random_teacher)
    assert teacher_evaluation(teacher, 2) is None  # no evaluation in its card
    res = evaluate(teacher.net, "pong", 2, seed=0)
    stored = {**res, "weights_sha256": sha256_file(random_teacher / WEIGHTS)}
    update_card(random_teacher, evaluation=stored)
    teacher = load_agent(random_teacher)
    assert teacher_evaluation(teacher, 2)["scores"] == res["scores"] and res["protocol"] == asdict(DEFAULT_PROTOCOL)
    assert teacher_evaluation(teacher, 3) is None and teacher_evaluation(teacher, 2, seed=1) is None
    update_card(random_teacher, evaluation={**stored, "weights_sha256": "0" * 64})  # made of other weights
    assert teacher_evaluation(load_agent(random_teacher), 2) is None


def test_a_smaller_budget_is_a_study_of_its_own(tmp_path: Path, random_teacher: Path) -> None:
    path = _study(tmp_path, random_teacher, "grid")
    full, small = load_study(path), load_study(path, budget=0.5)
    assert (full.name, small.name) == ("grid", "grid_budget0.5")
    assert [r.steps for r in small.runs] == [1000, 1000]  # 600 raised to the least a run gets
    assert [r.eval_episodes for r in small.runs] == [2, 2]
    # its runs live elsewhere, so the full study never takes a small run's result for its own
    assert small.run_dir(small.runs[0]) != full.run_dir(full.runs[0])
    with pytest.raises(UserError, match="budget"):
        load_study(path, budget=1.5)


def test_the_paper_study_covers_what_the_readme_claims() -> None:
    """experiments/paper.yaml: every game with a shipped teacher, students from ~0.3% to ~7% of
    that teacher, Actor-Mimic (the student acts) against DQN from scratch, 3 seeds; its quick pass
    (--budget) is the same grid under its own name."""
    from rl_compress.models.agent import load_agent
    from rl_compress.models.networks import build_network, count_params, parse_spec

    root = Path(__file__).resolve().parents[1]
    study = load_study(root / "experiments" / "paper.yaml")
    games = sorted({r.game for r in study.runs})
    assert games == ["breakout", "pong", "space_invaders"]
    for game in games:
        (teacher_dir,) = {r.teacher for r in study.runs if r.game == game}
        teacher = load_agent(root / teacher_dir, game=game)
        assert teacher.card["kind"] == "teacher"
        specs = sorted({r.spec for r in study.runs if r.game == game})
        shares = sorted(count_params(build_network(parse_spec(s), teacher.num_actions)) / teacher.card["params"]
                        for s in specs)
        assert len(shares) >= 4 and shares[0] < 0.005 and 0.05 < shares[-1] < 0.08
        cells = {(r.spec, r.loss, r.actor) for r in study.runs if r.game == game}
        assert {(s, loss, actor) for s in specs for loss, actor in (("actor-mimic", "student"), ("dqn", "self"))} == cells
    assert {r.seed for r in study.runs} == {1, 2, 3} and len(study.runs) == 72
    assert {(r.steps, r.eval_episodes) for r in study.runs} == {(200_000, 30)}
    quick = load_study(root / "experiments" / "paper.yaml", budget=0.02)
    assert quick.name == "paper_budget0.02" and [r.name for r in quick.runs] == [r.name for r in study.runs]
    assert {(r.steps, r.eval_episodes) for r in quick.runs} == {(4000, 2)}


def test_the_defaults_study_is_the_paper_studys_actor_mimic_half_at_the_defaults() -> None:
    """experiments/paper_defaults.yaml: the same Actor-Mimic runs as paper.yaml (games, teachers,
    students, seeds, steps, episodes), with no distill setting of its own: distill's defaults."""
    root = Path(__file__).resolve().parents[1]
    paper = load_study(root / "experiments" / "paper.yaml")
    again = load_study(root / "experiments" / "paper_defaults.yaml")
    key = ("game", "teacher", "spec", "loss", "actor", "seed", "steps", "eval_episodes")
    cells = {tuple(getattr(r, k) for k in key) for r in paper.runs if r.loss == "actor-mimic"}
    assert again.name == "paper_defaults" and len(again.runs) == 36
    assert {tuple(getattr(r, k) for k in key) for r in again.runs} == cells
    assert all(r.distill == {} for r in again.runs)
    assert {r.distill.get("lr") for r in paper.runs if r.loss == "actor-mimic"} == {1e-3, 3e-4}


def test_a_study_trains_students_from_scratch_with_pqn(random_teacher: Path, tmp_path: Path) -> None:
    doc = {"name": "scratch", "games": ["pong"], "teachers": {"pong": str(random_teacher)}, "students": ["gmp4"],
           "losses": ["pqn"], "seeds": [1], "steps": 1024, "eval_episodes": 2,
           "pqn": {"envs": 4, "rollout_steps": 8, "minibatch_size": 16, "epochs": 1, "compile": False,
                   "env_threads": 1, "threads": 1}}
    path = tmp_path / "scratch.yaml"
    path.write_text(yaml.safe_dump(doc))
    study = load_study(path)
    assert [r.name for r in study.runs] == ["gmp4_pqn_self_s1"] and study.runs[0].pqn["envs"] == 4
    (row,) = run_study(study, "local")
    assert row["loss"] == "pqn" and row["steps"] == 1024 and row["params"] == 1466 and -21 <= row["score_mean"] <= 21
    card = json.loads((study.run_dir(study.runs[0]) / "agent.json").read_text())
    assert card["training"]["algo"] == "pqn" and card["arch"]["spec"] == "gmp4"
    path.write_text(yaml.safe_dump({**doc, "pqn": {"buffer_size": 10}}))
    with pytest.raises(UserError, match=r"unknown pqn settings \['buffer_size'\]"):
        load_study(path)


@pytest.mark.slow
def test_a_ray_study_stopped_by_sigterm_exits_with_128_plus_15(random_teacher: Path, tmp_path: Path) -> None:
    """On the Ray backend a SIGTERM to the driver (whose own handler Ray would otherwise let abort it,
    exit 134) cancels the running tasks and ends the study like a local one: 143 and how to resume."""
    import signal
    import subprocess
    import sys
    import time

    path = _study(tmp_path, random_teacher, "raystop")
    doc = yaml.safe_load(path.read_text())
    doc.update({"losses": ["kl"], "steps": 200_000})
    path.write_text(yaml.safe_dump(doc))
    exe = str(Path(sys.executable).with_name("rl-compress"))
    child = subprocess.Popen([exe, "experiment", "run", str(path), "--backend", "ray"], cwd=tmp_path,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not list(tmp_path.rglob("gmp4_kl_student_s1")) and time.time() < deadline:
        time.sleep(1)
    time.sleep(5)
    child.send_signal(signal.SIGTERM)
    err = child.stderr.read()
    assert child.wait(timeout=300) == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err and "again to resume" in err and "Traceback" not in err
