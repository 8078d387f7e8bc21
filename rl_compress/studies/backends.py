"""Where a study's runs execute: in this process, in local worker processes, or as Ray tasks; each
run resumes where it stopped and writes its result row when complete."""

from __future__ import annotations

import multiprocessing
import signal
import time
from concurrent.futures import CancelledError, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from rl_compress.atari.evaluate import DEFAULT_PROTOCOL, evaluate, retention
from rl_compress.core.device import resolve_device
from rl_compress.core.errors import StoppedRun, UserError, arg_name
from rl_compress.core.files import atomic_write_json, sha256_file
from rl_compress.core.optional import require
from rl_compress.core.provenance import git_commit
from rl_compress.core.rundir import CHECKPOINT, RESULT
from rl_compress.core.signals import StopToken, signals_to, watch_stop_event
from rl_compress.models.agent import WEIGHTS, load_agent, read_card
from rl_compress.models.networks import parse_spec
from rl_compress.studies.spec import Run, Study, read_result, run_config, wants_gpu
from rl_compress.train.distill import distill
from rl_compress.train.teacher import TeacherRunConfig, train_teacher


def execute(run: Run, out: Path, stop: StopToken | None = None) -> dict[str, Any]:
    """Run (or resume) one cell, evaluate it and its teacher, write and return its row; ``stop`` ends
    its training loop at the next step (checkpointed; the study says how to resume)."""

    out = Path(out)
    row = read_result(out)
    if row is not None:
        return row
    teacher = load_agent(Path(run.teacher), game=run.game)
    resume = (out / CHECKPOINT).exists()
    t0 = time.time()
    trained = _trained_card(out, run.steps) if resume else None
    if trained is not None:  # stopped in its final evaluation: the training is done, evaluate it
        card = trained
    elif isinstance(cfg := run_config(run), TeacherRunConfig):
        card = train_teacher(cfg, out, resume=resume, arch=parse_spec(run.spec), show_progress=False, stop=stop)
    else:
        card = distill(Path(run.teacher), cfg, out, resume=resume, show_progress=False, stop=stop)
    if not (card["training"].get("finished") or _ended_by_budget(card["training"])):  # SIGINT / SIGTERM: checkpointed
        raise StoppedRun(f"{out}: stopped at {card['training']['steps']} of {run.steps} env steps; "
                         "run the study again to resume it", (stop.signum if stop else 0) or signal.SIGINT)
    student = load_agent(out)
    student.net.to(resolve_device(run_config(run).device, announce=False))
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


def _ended_by_budget(training: dict[str, Any]) -> bool:
    """Whether the study's own wall-time budget or retention target ended a card's training: a
    complete run (resuming it would stop again at once)."""
    return training.get("stopped") in ("max_wall_time", "target")


def _trained_card(out: Path, steps: int) -> dict[str, Any] | None:
    """The card of a run directory whose training is complete (finished at ``steps`` env steps, or
    ended by its budget or target), else None."""
    try:
        card = read_card(out)
    except UserError:
        return None
    training = card.get("training") or {}
    finished_here = training.get("finished") and training.get("steps") == steps
    return card if finished_here or _ended_by_budget(training) else None


def teacher_evaluation(teacher: Any, episodes: int, seed: int = 0) -> dict[str, Any] | None:
    """The evaluation stored in the teacher's card when it is the one a run needs (the default
    protocol, ``episodes`` games, ``seed``, made of the weights now in its directory), else None:
    the same games are not played again for every run of a study."""


    ev = teacher.card.get("evaluation") or {}
    same = (ev.get("protocol") == asdict(DEFAULT_PROTOCOL) and ev.get("episodes") == episodes
            and ev.get("seed") == seed and ev.get("weights_sha256") == sha256_file(teacher.path / WEIGHTS))
    return ev if same else None


def _execute_remote(run: Run, out: str, stop: StopToken | None = None) -> dict[str, Any]:
    """Body of a Ray task or a local worker process (module-level, so that it can be shipped)."""

    torch.set_num_threads(1)
    return execute(run, Path(out), stop)


def run_study(study: Study, backend: str = "local", address: str | None = None, cpus_per_run: int = 1,
              jobs: int = 1) -> list[dict]:
    """Run every cell of the study with the chosen backend; returns the rows in grid order.
    ``jobs`` > 1 runs that many cells at once on the local backend, each in its own process
    with one torch thread."""
    if jobs < 1:
        raise UserError(f"{arg_name('jobs')} must be at least 1, got {jobs}")
    if backend == "local" and jobs == 1:
        return _run_here(study)
    if backend == "local":
        return _run_in_processes(study, jobs)
    if backend != "ray":
        raise UserError(f"unknown backend {backend!r}; choose local or ray")
    ray = require("ray")
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    task = ray.remote(num_cpus=cpus_per_run)(_execute_remote)
    cuda_here = torch.cuda.is_available()
    futures = [task.options(num_gpus=1 if wants_gpu(r, cuda_here) else 0).remote(r, str(study.run_dir(r).resolve()))
               for r in study.runs]
    return _wait_for_ray(ray, futures)


def _wait_for_ray(ray: Any, futures: list[Any]) -> list[dict]:
    """The rows of the Ray tasks, in order. A SIGINT / SIGTERM to this process (Ray's own handler
    would abort it) cancels the tasks still running, which keep their last checkpoint, and stops
    the study with 128 + the signal and how to resume."""
    stop = StopToken()
    with signals_to(stop):
        pending = list(futures)
        while pending and not stop.requested:
            _, pending = ray.wait(pending, num_returns=len(pending), timeout=1.0)
        if stop.requested:
            for future in pending:
                ray.cancel(future)
            raise study_stopped(stop.signum, "stopped ones keep their last checkpoint")
    return ray.get(futures)


def _run_here(study: Study) -> list[dict]:
    """The local backend in this process. A SIGINT / SIGTERM that lands between a run's training
    loops (its setup, its evaluations) is held until the loop checkpoints; the runs not yet begun
    are not begun."""
    stop = StopToken()
    rows = []
    with signals_to(stop):
        for r in study.runs:
            if stop.requested:
                raise study_stopped(stop.signum)
            try:
                rows.append(execute(r, study.run_dir(r), stop))
            except StoppedRun:
                raise study_stopped(stop.signum) from None
    return rows


def study_stopped(signum: int, stopped: str = "stopped ones checkpointed") -> StoppedRun:
    """What a study stopped by a signal says (how to resume) and exits with (128 + the signal)."""
    signum = signum or signal.SIGINT
    return StoppedRun(f"stopped by {signal.Signals(signum).name}: finished runs are kept, {stopped}; run the same "
                      "`rl-compress experiment run` command again to resume", signum)


_WORKER_STOP = StopToken()  # in a local worker process (one study): set by a signal or the pool's stop event


def _init_worker(stop: Any) -> None:
    """A local worker process: the parent's stop event (and a signal to this process, e.g. Ctrl-C in
    the terminal, even during a run's setup) stops its run at the loop's next step."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _WORKER_STOP.request)
    watch_stop_event(stop, _WORKER_STOP)


def _execute_worker(run: Run, out: str) -> dict[str, Any] | None:
    """A local worker's task: the run, unless the study was stopped before it began (None)."""
    if _WORKER_STOP.requested:
        return None
    return _execute_remote(run, out, _WORKER_STOP)


def _run_in_processes(study: Study, jobs: int) -> list[dict]:
    """The local backend with ``jobs`` worker processes. SIGINT / SIGTERM are passed on to the
    workers through a shared Event (``signals.watch_stop_event``): their runs checkpoint and stop;
    runs not yet begun are not begun."""
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    failures: list[str] = []
    got_signal: list[int] = []
    rows = []
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker, initargs=(stop,)) as pool:
        futures = [pool.submit(_execute_worker, r, str(study.run_dir(r).resolve())) for r in study.runs]

        def forward(signum: int, frame: Any) -> None:
            got_signal.append(signum)
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
    if stop.is_set():
        raise study_stopped(got_signal[0] if got_signal else signal.SIGINT)
    if failures:
        raise UserError(failures[0])
    return rows
