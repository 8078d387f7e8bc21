"""The ``rl-compress`` command line (design.md fixes the names).

User mistakes raise UserError anywhere below; ``main`` prints them as one line
``error: ...`` on stderr and exits with code 2 (1 for a write the disk refused), never with a
traceback. Output paths are checked before any work starts. A training run stopped by SIGTERM /
SIGINT checkpoints, says how to resume and exits with 128 + the signal number; any other command
stopped by a signal removes its temp files and exits the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rl_compress.config import add_config_flags, config_from_args
from rl_compress.errors import Stopped, UserError
from rl_compress.outputs import check_output_file
from rl_compress.rundir import RunLock
from rl_compress.signals import raise_stopped, stop_signal


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one line (and exit code 2), like our errors."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {self.prog}: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def _positive(name: str, value: int) -> int:
    if value is None or value <= 0:
        raise UserError(f"{name} must be a positive integer, got {value}")
    return value


def _json_path(path: str | None) -> Path | None:
    """Check a ``--json FILE`` before the work that fills it starts."""
    return check_output_file(path, (), "--json") if path else None


def _stopped_exit(out: str, steps: int, resume_command: str) -> int:
    """After a training loop that a signal stopped (it has checkpointed): one line, 128 + signal."""
    signum = stop_signal()
    name = signal.Signals(signum).name if signum else "a signal"
    print(f"stopped by {name} at {steps} env steps, checkpointed in {out}; resume with: {resume_command}",
          file=sys.stderr)
    return 128 + (signum or signal.SIGTERM)


def _emit_json(obj: Any, path: str | None) -> None:
    """Print JSON to stdout, or write it atomically to ``path``."""
    from rl_compress.agent import atomic_write_json

    if path:
        atomic_write_json(Path(path), obj)
    else:
        print(json.dumps(obj, indent=2))


# ---------------------------------------------------------------- teacher
def cmd_teacher_train(args: argparse.Namespace) -> int:
    """Train (or resume) a DQN teacher."""
    from rl_compress.agent import read_card
    from rl_compress.teacher import TeacherConfig, train_teacher

    # on --resume the game and arch are the run's; with --init-from they default to the source's
    source = Path(args.out) if args.resume else Path(args.init_from) if args.init_from else None
    source_card = read_card(source) if source is not None and (source / "agent.json").exists() else None
    fixed = {}
    if args.game is None and source_card is not None:
        fixed["game"] = source_card["game"]
    cfg = config_from_args(TeacherConfig, args, **fixed)
    command = " ".join(["rl-compress", *sys.argv[1:]]) if sys.argv[0].endswith("rl-compress") else None
    from rl_compress.networks import parse_spec

    arch = parse_spec(args.arch) if args.arch else None
    if arch is None and source_card is not None:
        arch = source_card["arch"]
    card = train_teacher(cfg, Path(args.out), resume=args.resume, tensorboard=args.tensorboard,
                         show_progress=not args.quiet, command=command, arch=arch, force=args.force)
    tr = card["training"]
    if not tr["finished"] and stop_signal():
        return _stopped_exit(args.out, tr["steps"], f"rl-compress teacher train --out {args.out} --resume")
    print(f"{args.out}: {tr['steps']} steps, {tr['updates']} updates, {tr['wall_time_s']} s", file=sys.stderr)
    return 0


def cmd_teacher_import(args: argparse.Namespace) -> int:
    """Import an SB3 / RL Zoo DQN zip."""
    from rl_compress.sb3_import import import_sb3

    card = import_sb3(Path(args.zip), args.game, Path(args.out), force=args.force)
    print(f"{args.out}: imported {card['arch']['name']} with {card['params']} params", file=sys.stderr)
    return 0


# ---------------------------------------------------------------- agent tools
def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate an agent under the default protocol."""
    from rl_compress.agent import load_agent, update_card
    from rl_compress.evaluate import evaluate

    episodes = _positive("--episodes", args.episodes)
    json_path = _json_path(args.json)
    if args.seed < 0:
        raise UserError(f"--seed must be >= 0, got {args.seed}")
    # --write-card owns the directory for the whole evaluation: no run may change the weights under it
    with RunLock(Path(args.agent)) if args.write_card and Path(args.agent).is_dir() else contextlib.nullcontext():
        agent = load_agent(Path(args.agent))
        res = evaluate(agent.net, agent.game, episodes, seed=args.seed, show_progress=not args.quiet)
        res["agent"] = str(args.agent)
        res["game"] = agent.game
        if args.write_card:
            from rl_compress.agent import WEIGHTS, sha256_file

            # tie the result to these weights: training that writes new weights drops it
            res["weights_sha256"] = sha256_file(agent.path / WEIGHTS)
            res["steps"] = (agent.card.get("training") or {}).get("steps")
            update_card(Path(args.agent), evaluation={k: v for k, v in res.items() if k not in ("agent",)})
    if json_path:
        _emit_json(res, str(json_path))
    hns = "" if res.get("human_normalized") is None else f" (human-normalized {res['human_normalized']:.3f})"
    print(f"{agent.game}: mean {res['mean']:.2f} +- {res['std']:.2f} over {res['episodes']} episodes{hns}",
          file=sys.stderr)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Print the card with params and compression ratio."""
    from rl_compress.agent import load_agent

    _json_path(args.json)
    agent = load_agent(Path(args.agent))
    card = dict(agent.card)
    from rl_compress.networks import count_params

    card["params"] = count_params(agent.net)
    teacher_params = (card.get("teacher") or {}).get("params")
    card["compression"] = (
        {"teacher_params": teacher_params, "ratio": card["params"] / teacher_params} if teacher_params else None
    )
    card["path"] = str(agent.path)
    _emit_json(card, args.json)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export to ONNX or TorchScript."""
    from rl_compress.agent import load_agent
    from rl_compress.export import export

    out = check_output_file(args.out)
    agent = load_agent(Path(args.agent))
    export(agent.net, args.format, out)
    print(f"{args.out}: {args.format} model, uint8 [B,4,84,84] -> float32 [B,{agent.num_actions}]", file=sys.stderr)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Speed benchmarks."""
    from rl_compress import bench

    _json_path(args.json)
    if args.what == "inference":
        res = bench.bench_inference(args.student)
        for name, row in res["frames_per_s"].items():
            print(f"{name:>14}: " + ", ".join(f"{k} {v}" for k, v in row.items()), file=sys.stderr)
        print("student / teacher: " + ", ".join(f"{k} {v}x" for k, v in res["student_over_teacher"].items()),
              file=sys.stderr)
        if args.json:
            _emit_json(res, args.json)
        return 0
    if args.what == "distill":
        res = bench.bench_distill(args.student, steps=args.steps or 6_000, warmup=args.warmup or 2_000)
        print(f"distill {args.student}: {res['env_steps_per_s']} env steps/s, "
              f"{res['labelled_samples_per_s']} labelled samples/s", file=sys.stderr)
        if res["bf16"]:
            print(f"distill {args.student} --precision bf16: {res['bf16']['env_steps_per_s']} env steps/s "
                  f"({res['bf16']['ratio_vs_fp32']:.2f}x fp32)", file=sys.stderr)
        if args.json:
            _emit_json(res, args.json)
        return 0
    if args.what == "localize":
        res = bench.bench_localize(args.student)
        for row in res["rows"]:
            print(f"batch {row['batch']:>3} {row['agent']:>8} {row['method']:>12}: {row['ms_per_frame']:9.2f} ms/frame  "
                  f"{row['x_gmp']:8.1f}x GMP   beyond the acting forward: {row['extra_ms']:9.2f} ms, "
                  f"{row['extra_x_gmp']}x GMP's   {row['macs_per_frame'] / 1e6:9.2f} M MACs "
                  f"({row['x_gmp_macs']}x GMP)", file=sys.stderr)
        if args.json:
            _emit_json(res, args.json)
        return 0
    from rl_compress.bench import TeacherBenchConfig, bench_teacher, format_teacher

    cfg = TeacherBenchConfig()
    if args.steps is not None:
        cfg.steps = _positive("--steps", args.steps)
    if args.warmup is not None:
        cfg.warmup = _positive("--warmup", args.warmup)
    res = bench_teacher(cfg)
    print(format_teacher(res), file=sys.stderr)
    if args.json:
        _emit_json(res, args.json)
    return 0


def cmd_distill(args: argparse.Namespace) -> int:
    """Distill a student from a teacher."""
    from rl_compress.distill import DistillConfig, distill

    fixed = {}
    if args.resume and args.student is None and (Path(args.out) / "agent.json").exists():
        from rl_compress.agent import read_card

        fixed["student"] = read_card(Path(args.out))["arch"].get("spec", "")
    cfg = config_from_args(DistillConfig, args, **fixed)
    command = " ".join(["rl-compress", *sys.argv[1:]]) if sys.argv[0].endswith("rl-compress") else None
    card = distill(Path(args.teacher), cfg, Path(args.out), resume=args.resume, tensorboard=args.tensorboard,
                   show_progress=not args.quiet, command=command, force=args.force)
    tr = card["training"]
    if not tr["finished"] and stop_signal():
        return _stopped_exit(args.out, tr["steps"],
                             f"rl-compress distill --teacher {args.teacher} --out {args.out} --resume")
    ev = tr.get("last_eval") or {}
    extra = f", last eval {ev.get('mean')} (teacher {ev.get('teacher_mean')})" if ev else ""
    print(f"{args.out}: {card['arch']['spec']} ({card['params']} params), {tr['steps']} steps{extra}", file=sys.stderr)
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    """Prune a gmp student's dead (and, to a budget, least needed) conv channels."""
    from rl_compress.prune import prune_agent

    command = " ".join(["rl-compress", *sys.argv[1:]]) if sys.argv[0].endswith("rl-compress") else None
    card = prune_agent(Path(args.agent), Path(args.out), states=args.states, seed=args.seed,
                       max_params=args.max_params, command=command, log=lambda m: print(m, file=sys.stderr),
                       force=args.force)
    pf = card["training"]["pruned_from"]
    print(f"{args.out}: {card['arch']['spec']} ({card['params']} params, from {pf['params']}), agreement with "
          f"{args.agent} on {pf['states']} of its states {pf['agreement']:.3f}", file=sys.stderr)
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    """Record a video of an agent with its attention overlay."""
    from rl_compress.agent import load_agent
    from rl_compress.envs import action_names
    from rl_compress.localize import attention, play
    from rl_compress.networks import GMPStudent
    from rl_compress.progress import progress_bar
    from rl_compress.video import check_video_path, render_overlay, side_by_side, write_video

    out = check_video_path(Path(args.out))
    check_output_file(out)
    if not 1 <= args.scale <= 16:
        raise UserError(f"--scale must be from 1 to 16, got {args.scale}")
    if not 1 <= args.fps <= 240:
        raise UserError(f"--fps must be from 1 to 240, got {args.fps}")
    agent = load_agent(Path(args.agent))
    overlay = args.overlay or ("gmp" if isinstance(agent.net, GMPStudent) else "gradcam")
    if overlay.startswith("gmp") and not isinstance(agent.net, GMPStudent):
        raise UserError(f"{args.agent}: this agent has no global max pool; use --overlay gradcam")
    other = load_agent(Path(args.side_by_side), game=agent.game) if args.side_by_side else None
    names = action_names(agent.game)
    label = agent.path.name if agent.path.name not in ("", ".") else agent.kind
    max_steps = _positive("--max-frames", args.max_frames)
    method = None if overlay == "none" else overlay

    def frames():
        with progress_bar(not args.quiet) as bar:
            task = bar.add_task(f"record {label}", total=max_steps, info="")
            for st in play(agent.net, agent.game, method, max_steps, _positive("--episodes", args.episodes), args.seed):
                hud = f"{agent.game} | {label} {overlay} | ep {st.episode} t {st.t} | score {st.score:.0f} | {names[st.action]}"
                img = render_overlay(st.frame, st.map, st.peaks, hud, scale=args.scale)
                if other is not None:
                    att = attention("gradcam", other.net, st.obs[None])
                    hud2 = f"{other.path.name} gradcam | acts {names[int(att.actions[0])]}"
                    img = side_by_side(img, render_overlay(st.frame, att.maps[0], att.peaks[0], hud2, scale=args.scale))
                bar.advance(task)
                yield img

    n = write_video(out, frames(), fps=args.fps)
    print(f"{out}: {n} frames, overlay {overlay}", file=sys.stderr)
    return 0


def cmd_localize(args: argparse.Namespace) -> int:
    """Write attention maps and peaks of played frames to a .npz."""
    from rl_compress.agent import load_agent
    from rl_compress.localize import localize_to_npz

    out = Path(args.out)
    if out.suffix != ".npz":
        raise UserError(f"{out}: output must end in .npz")
    check_output_file(out)
    _json_path(args.json)
    agent = load_agent(Path(args.agent))
    if args.score:
        from rl_compress.score import objects_from_ram

        if args.radius <= 0:
            raise UserError(f"--radius must be positive, got {args.radius}")
        objects_from_ram(agent.game, np.zeros((0, 128), dtype=np.uint8))  # fail early if OCAtari is missing
    res = localize_to_npz(agent.net, agent.game, _positive("--frames", args.frames), out, args.method, args.seed)
    print(f"{out}: {res['frames']} frames from {res['episodes']} episode(s), method {res['method']}", file=sys.stderr)
    if args.score:
        from rl_compress.score import score_npz

        sc = score_npz(out, agent.game, args.radius)
        sc.update({"agent": str(args.agent), "method": args.method, "game": agent.game, "frames": res["frames"]})
        _emit_json(sc, args.json)
        a, r = sc["attention"], sc["random"]
        print(f"top peak within {args.radius:g} px of an object: {a['any']:.3f} ({args.method}) vs "
              f"{r['any']:.3f} (uniform random point)", file=sys.stderr)
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    """Run a study grid or report on it."""
    from rl_compress.experiment import load_study, report, run_study, write_results

    study = load_study(Path(args.study), budget=args.budget)
    if args.action == "run":
        print(f"{study.name}: {len(study.runs)} runs, backend {args.backend}", file=sys.stderr)
        if args.jobs > 1 and args.backend != "local":
            raise UserError("--jobs applies to the local backend; Ray schedules runs by their CPUs")
        rows = run_study(study, args.backend, args.address, jobs=args.jobs)
        csv_path, md_path = write_results(study, rows)
        print(f"results: {csv_path}, {md_path}", file=sys.stderr)
        print(md_path.read_text())
    else:
        for p in report(study):
            print(p)
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    """Print (and optionally write) the results table of distilled students."""
    from rl_compress.agent import atomic_write_bytes
    from rl_compress.experiment import TABLE_COLUMNS, agents_table, table_markdown
    from rl_compress.tables import rows_csv

    for path, flag in ((args.md, "--md"), (args.csv, "--csv")):
        if path:
            check_output_file(path, (), flag)
    rows = agents_table([Path(a) for a in args.agents], threshold=args.threshold)
    md = table_markdown(rows)
    if args.md:
        atomic_write_bytes(Path(args.md), md.encode())
    if args.csv:
        atomic_write_bytes(Path(args.csv), rows_csv(rows, TABLE_COLUMNS + ["episodes"]).encode())
    print(md, end="")
    return 0


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    from rl_compress.distill import DistillConfig
    from rl_compress.teacher import TeacherConfig

    p = OneLineParser(
        prog="rl-compress",
        description="Train DQN teachers on Atari, compress them into tiny global-max-pool students, see where they look.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    teacher = sub.add_parser("teacher", help="train or import DQN teachers")
    tsub = teacher.add_subparsers(dest="teacher_command", metavar="ACTION", required=True)
    tr = tsub.add_parser("train", help="train a Nature-DQN teacher (resumable)")
    tr.add_argument("--out", required=True, help="agent directory to write (checkpoints go there too)")
    tr.add_argument("--resume", action="store_true", help="continue the run in --out")
    tr.add_argument("--force", action="store_true", help="replace the run that --out holds (its files are deleted)")
    tr.add_argument("--tensorboard", type=Path, default=None, help="TensorBoard log directory")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.add_argument("--arch", default=None, help="train a student spec (e.g. gmp16) from scratch with DQN instead of "
                    "the Nature-DQN teacher: the baseline that shows what distillation buys")
    add_config_flags(tr, TeacherConfig)
    tr.set_defaults(func=cmd_teacher_train)
    ti = tsub.add_parser("import", help="import a stable-baselines3 / RL Zoo DQN zip")
    ti.add_argument("zip", help="SB3 .zip file")
    ti.add_argument("--game", required=True, help="game the model plays")
    ti.add_argument("--out", required=True, help="agent directory to write (new or empty)")
    ti.add_argument("--force", action="store_true", help="replace the agent that --out holds")
    ti.set_defaults(func=cmd_teacher_import)

    d = sub.add_parser("distill", help="distill a student from a teacher (Actor-Mimic)")
    d.add_argument("--teacher", required=True, help="teacher agent directory")
    d.add_argument("--out", required=True, help="student agent directory to write")
    d.add_argument("--resume", action="store_true", help="continue the run in --out")
    d.add_argument("--force", action="store_true", help="replace the run that --out holds (its files are deleted)")
    d.add_argument("--tensorboard", type=Path, default=None, help="TensorBoard log directory")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_flags(d, DistillConfig)
    d.set_defaults(func=cmd_distill)

    pr = sub.add_parser("prune", help="drop a gmp student's dead conv channels (and more, to a parameter budget)")
    pr.add_argument("agent", help="gmp student agent directory")
    pr.add_argument("--out", required=True, help="agent directory to write (new or empty)")
    pr.add_argument("--force", action="store_true", help="replace the agent that --out holds")
    pr.add_argument("--states", type=int, default=4000,
                    help="states the agent plays (epsilon 0.1) on which channels are judged (default: 4000)")
    pr.add_argument("--max-params", type=int, default=None,
                    help="then remove the live channels whose loss changes the agent's actions least until "
                         "it has at most this many parameters (default: dead channels only)")
    pr.add_argument("--seed", type=int, default=0, help="seed of the states' games (default: 0)")
    pr.set_defaults(func=cmd_prune)

    ev = sub.add_parser("evaluate", help="evaluate an agent under the default protocol")
    ev.add_argument("agent", help="agent directory")
    ev.add_argument("--episodes", type=int, default=30, help="whole games to play (default: 30)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the envs and of epsilon (default: 0)")
    ev.add_argument("--json", default=None, help="write the result (per-episode scores) to this JSON file")
    ev.add_argument("--write-card", action="store_true", help="store the result as the card's evaluation")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.set_defaults(func=cmd_evaluate)

    rec = sub.add_parser("record", help="record a video (.mp4 H.264 or .gif) with the attention overlay")
    rec.add_argument("agent", help="agent directory")
    rec.add_argument("--out", required=True, help="video file, .mp4 or .gif")
    rec.add_argument("--episodes", type=int, default=1, help="episodes to play at most (default: 1)")
    rec.add_argument("--max-frames", type=int, default=2000, help="agent steps to record at most (default: 2000)")
    rec.add_argument("--overlay", choices=["gmp", "gmp-cell", "gradcam", "none"], default=None,
                     help="attention shown (default: gmp for a gmp student, else gradcam; gmp-cell: "
                          "GMP at the 7x7 cell centres, without the trace to the pixel)")
    rec.add_argument("--side-by-side", default=None, metavar="TEACHER_DIR",
                     help="also show this agent's Grad-CAM on the same frames, on the right")
    rec.add_argument("--seed", type=int, default=0, help="seed of the episode (default: 0)")
    rec.add_argument("--scale", type=int, default=3, help="screen upscaling (default: 3)")
    rec.add_argument("--fps", type=int, default=30, help="frames per second of the video (default: 30)")
    rec.add_argument("--quiet", action="store_true", help="no progress bar")
    rec.set_defaults(func=cmd_record)
    loc = sub.add_parser("localize", help="attention maps and peaks of played frames to a .npz")
    loc.add_argument("agent", help="agent directory")
    loc.add_argument("--frames", type=int, required=True, help="agent steps to play and explain")
    loc.add_argument("--out", required=True, help=".npz file (keys: frames, ram, maps, peaks, actions)")
    loc.add_argument("--method", choices=["gmp", "gmp-cell", "gradcam", "perturbation"], default="gmp",
                     help="attention method (default: gmp)")
    loc.add_argument("--seed", type=int, default=0, help="seed of the first episode (default: 0)")
    loc.add_argument("--score", action="store_true",
                     help="score the top peaks against OCAtari's RAM objects (needs ocatari) and print JSON")
    loc.add_argument("--radius", type=float, default=10.0, help="hit radius in screen pixels for --score (default: 10)")
    loc.add_argument("--json", default=None, help="with --score: write the score JSON to this file")
    loc.set_defaults(func=cmd_localize)

    ex = sub.add_parser("export", help="export an agent to ONNX or TorchScript")
    ex.add_argument("agent", help="agent directory")
    ex.add_argument("--format", required=True, choices=["onnx", "torchscript"], help="output format")
    ex.add_argument("--out", required=True, help="file to write")
    ex.set_defaults(func=cmd_export)

    info = sub.add_parser("info", help="print an agent's card with params and compression ratio (JSON)")
    info.add_argument("agent", help="agent directory")
    info.add_argument("--json", default=None, help="write to this file instead of stdout")
    info.set_defaults(func=cmd_info)

    bench = sub.add_parser("bench", help="speed benchmarks (ratios against a baseline, same run)")
    bench.add_argument("what", choices=["teacher", "distill", "inference", "localize"])
    bench.add_argument("--json", default=None, help="write results to this JSON file")
    bench.add_argument("--steps", type=int, default=None, help="timed env steps (teacher: default 4000)")
    bench.add_argument("--warmup", type=int, default=None, help="untimed warm-up env steps (teacher: default 2000)")
    bench.add_argument("--student", default="gmp16", help="student spec for inference / distill (default: gmp16)")
    bench.set_defaults(func=cmd_bench)

    exp = sub.add_parser("experiment", help="run or report a study grid (experiments/<study>.yaml)")
    exp.add_argument("action", choices=["run", "report"],
                     help="run the grid, or write the tables and plots of the runs finished so far")
    exp.add_argument("study", help="study YAML file")
    exp.add_argument("--backend", choices=["local", "ray"], default="local", help="where runs execute (default: local)")
    exp.add_argument("--address", default=None, help="Ray cluster address (default: a local Ray)")
    exp.add_argument("--jobs", type=int, default=1,
                     help="local backend: runs at once, each in its own process on one thread (default: 1)")
    exp.add_argument("--budget", type=float, default=1.0,
                     help="scale every run's steps and episodes by this factor, e.g. 0.01 for a quick pass")
    exp.set_defaults(func=cmd_experiment)

    tab = sub.add_parser("table", help="results table of distilled students, read from their cards")
    tab.add_argument("agents", nargs="+", help="student agent directories (each evaluated with --write-card)")
    tab.add_argument("--threshold", type=float, default=0.9,
                     help="retention whose first periodic evaluation gives the steps/time-to columns (default 0.9)")
    tab.add_argument("--md", default=None, help="also write the markdown table here")
    tab.add_argument("--csv", default=None, help="also write the rows as CSV here")
    tab.set_defaults(func=cmd_table)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rl-compress`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    old = signal.signal(signal.SIGTERM, raise_stopped)
    try:
        return int(args.func(args) or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except Stopped as e:
        print(f"error: stopped by {signal.Signals(e.signum).name}; nothing was left half-written", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:
        print("error: interrupted (SIGINT); nothing was left half-written", file=sys.stderr)
        return 128 + signal.SIGINT
    finally:
        signal.signal(signal.SIGTERM, old)



if __name__ == "__main__":
    sys.exit(main())
