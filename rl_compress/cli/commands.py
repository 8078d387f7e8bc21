"""One function per subcommand: parsed arguments in, the package's functions called, one line of result on stderr."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import signal
import sys
from pathlib import Path
from typing import Any

import numpy as np

from rl_compress import bench
from rl_compress.api import export as api_export
from rl_compress.api import load_agent as api_load_agent
from rl_compress.api import localize as api_localize
from rl_compress.api import push as api_push
from rl_compress.api import record as api_record
from rl_compress.api import record_overlay
from rl_compress.atari.evaluate import evaluate
from rl_compress.atari.robustness import robustness
from rl_compress.attention.benchmark import LocalizationBenchConfig, localization_benchmark, localization_table
from rl_compress.attention.faithfulness import CAPTUM_METHODS
from rl_compress.attention.publish import STILL, attention_still
from rl_compress.attention.score import objects_from_ram
from rl_compress.attention.video import check_video_path
from rl_compress.bench import TeacherBenchConfig, bench_teacher, format_teacher
from rl_compress.bench_deploy import bench_deploy, deploy_table
from rl_compress.bench_score import TimeToScoreConfig, check_time_to_score, format_time_to_score, time_to_score
from rl_compress.core.config import apply_config_file, config_from_args
from rl_compress.core.device import announce_choice, model_device
from rl_compress.core.errors import UserError, arg_name
from rl_compress.core.files import atomic_write_bytes, atomic_write_json, sha256_file
from rl_compress.core.optional import require
from rl_compress.core.outputs import check_output_file
from rl_compress.core.rundir import CARD, RunLock
from rl_compress.core.signals import StopToken
from rl_compress.core.tables import rows_csv
from rl_compress.models.agent import WEIGHTS, agent_summary, read_card, update_card
from rl_compress.models.model_card import model_card
from rl_compress.models.networks import count_params, parse_spec
from rl_compress.models.prune import prune_agent
from rl_compress.models.quantize import onnx_net, read_calibration
from rl_compress.models.sources import import_teacher
from rl_compress.studies.backends import run_study
from rl_compress.studies.report import report, write_results
from rl_compress.studies.spec import load_study
from rl_compress.studies.table import TABLE_COLUMNS, agents_table, table_markdown
from rl_compress.train.distill import RESUME_KEEPS as DISTILL_RESUME_KEEPS
from rl_compress.train.distill import DistillConfig, distill
from rl_compress.train.teacher import RESUME_KEEPS as TEACHER_RESUME_KEEPS
from rl_compress.train.teacher import PQNConfig, TeacherConfig, train_teacher


def _positive(name: str, value: int) -> int:
    if value is None or value <= 0:
        raise UserError(f"{name} must be a positive integer, got {value}")
    return value


def _json_path(path: str | None) -> Path | None:
    """Check a ``--json FILE`` before the work that fills it starts."""
    return check_output_file(path, (), "json") if path else None


def _stopped_exit(out: str, steps: int, resume_command: str, signum: int) -> int:
    """After a training loop that a signal stopped (it has checkpointed): one line, 128 + signal."""
    name = signal.Signals(signum).name if signum else "a signal"
    print(f"stopped by {name} at {steps} env steps, checkpointed in {out}; resume with: {resume_command}",
          file=sys.stderr)
    return 128 + (signum or signal.SIGTERM)


def _emit_json(obj: Any, path: str | None) -> None:
    """Print JSON to stdout, or write it atomically to ``path``."""

    if path:
        atomic_write_json(Path(path), obj)
    else:
        print(json.dumps(obj, indent=2))


# ---------------------------------------------------------------- teacher
TEACHER_CONFIGS = {"dqn": TeacherConfig, "pqn": PQNConfig}


def _teacher_algo(args: argparse.Namespace, source_card: dict[str, Any] | None) -> str:
    """``teacher train``'s algorithm: --algo, else the source's (the run's own on --resume, the
    agent's with --init-from: "pqn" for a LayerNorm network, "dqn" for the others), else PQN."""
    if args.algo is not None:
        return args.algo
    if source_card is None:
        return "pqn"
    algo = (source_card.get("training") or {}).get("algo")
    if algo in TEACHER_CONFIGS:
        return algo
    return "pqn" if (source_card.get("arch") or {}).get("norm") == "layernorm" else "dqn"


def _teacher_config_class(args: argparse.Namespace, source_card: dict[str, Any] | None) -> type:
    """The config class of ``teacher train`` (``_teacher_algo``); a flag that only the other
    algorithm has is refused with one line."""
    algo = _teacher_algo(args, source_card)
    cls = TEACHER_CONFIGS[algo]
    own = {f.name for f in dataclasses.fields(cls)}
    for other in TEACHER_CONFIGS.values():
        for f in dataclasses.fields(other):
            if f.name not in own and getattr(args, f.name, None) is not None:
                raise UserError(f"{arg_name(f.name)} is not an option of --algo {algo}")
    return cls


def _run_settings(args: argparse.Namespace, card: dict[str, Any] | None, keeps: set[str]) -> dict[str, Any]:
    """On ``--resume``: the run's own values of the settings a resume may change (``keeps``: steps,
    budget, checkpoint and evaluation cadence...) that this command line does not give, so that
    ``--resume`` alone goes on exactly as the run was started."""
    if not args.resume or card is None:
        return {}
    saved = (card.get("training") or {}).get("config")
    if not isinstance(saved, dict):
        return {}
    return {name: saved[name] for name in keeps if name in saved and getattr(args, name, None) is None}


def cmd_teacher_train(args: argparse.Namespace) -> int:
    """Train (or resume) a DQN or PQN teacher."""

    apply_config_file(args, list(TEACHER_CONFIGS.values()), extra=["algo", "arch"])
    # on --resume the game, arch and algorithm are the run's; with --init-from game and arch default to the source's
    source = Path(args.out) if args.resume else Path(args.init_from) if args.init_from else None
    source_card = read_card(source) if source is not None and (source / CARD).exists() else None
    fixed = _run_settings(args, source_card, TEACHER_RESUME_KEEPS)
    if args.game is None and source_card is not None:
        fixed["game"] = source_card["game"]
    cfg = config_from_args(_teacher_config_class(args, source_card), args, **fixed)
    command = " ".join(["rl-compress", *sys.argv[1:]]) if sys.argv[0].endswith("rl-compress") else None

    arch = parse_spec(args.arch) if args.arch else None
    if arch is None and source_card is not None:
        arch = source_card["arch"]
    stop = StopToken()
    card = train_teacher(cfg, Path(args.out), resume=args.resume, tensorboard=args.tensorboard,
                         show_progress=not args.quiet, command=command, arch=arch, force=args.force, stop=stop)
    tr = card["training"]
    if tr.get("stopped") == "signal":
        return _stopped_exit(args.out, tr["steps"], f"rl-compress teacher train --out {args.out} --resume", stop.signum)
    print(f"{args.out}: {tr['steps']} steps, {tr['updates']} updates, {tr['wall_time_s']} s", file=sys.stderr)
    return 0


def cmd_teacher_import(args: argparse.Namespace) -> int:
    """Import a teacher: an SB3 / RL Zoo zip, a CleanRL model file, or hf:ORG/NAME from the Hub."""
    card = import_teacher(args.source, Path(args.out), game=args.game, force=args.force)
    hub = card["training"].get("hub")
    seen = f" from hf:{hub['repo']}@{hub['revision'][:12]} (it reports {hub['reported_score']})" if hub else ""
    print(f"{args.out}: imported {card['arch']['name']} with {card['params']} params for {card['game']}{seen}",
          file=sys.stderr)
    return 0


# ---------------------------------------------------------------- agent tools
def _agent(args: argparse.Namespace, directory_only: str = "") -> Any:
    """The agent that ``args.agent`` names (a directory, an SB3 zip, a CleanRL file, hf:ORG/NAME[@REV]),
    through the Python API's loader, on ``--device`` where the command has one; ``directory_only``
    names what needs an agent directory (then anything else is refused with one line)."""
    if directory_only and (str(args.agent).startswith("hf:") or Path(args.agent).is_file()):
        raise UserError(f"{args.agent}: {directory_only} needs an agent directory; import it first: "
                        f"rl-compress teacher import {args.agent} --out DIR")
    return api_load_agent(args.agent, game=getattr(args, "game", None), device=getattr(args, "device", "cpu"))


def _work_starts(args: argparse.Namespace, agent: Any) -> None:
    """The inputs are checked: say which device ``--device auto`` chose (unless --quiet)."""
    if not getattr(args, "quiet", False):
        announce_choice(args.device, model_device(agent.net))


def _teacher_here(agent: Any) -> Path | None:
    """The directory of the teacher a student learned from, where it is on this machine with the
    same weights (its card's path, as given then: from here or from a folder above the student)."""
    ref = agent.card.get("teacher") or {}
    if not ref.get("path"):
        return None
    for base in (Path.cwd(), *Path(agent.path).resolve().parents):
        found = base / ref["path"]
        if (found / WEIGHTS).is_file() and ref.get("sha256") in (None, sha256_file(found / WEIGHTS)):
            return found
    return None


def _evaluate_robustness(args: argparse.Namespace, agent: Any, episodes: int) -> dict[str, Any]:
    """``evaluate --robustness``: each pipeline variant, a student beside its teacher where the
    card's teacher directory is here; the rows go into the card with ``--write-card``."""
    teacher_dir = _teacher_here(agent)
    teacher = api_load_agent(teacher_dir, device=args.device) if teacher_dir else None
    rows = robustness(agent.net, agent.game, episodes, args.seed, None if teacher is None else teacher.net)
    for r in rows:
        kept = "" if r.get("retention") is None else f", teacher {r['teacher_mean']:.2f}, retention {r['retention']:.3f}"
        print(f"{r['variant']:>38}: mean {r['mean']:.2f} +- {r['std']:.2f}{kept}", file=sys.stderr)
    res = {"agent": str(args.agent), "game": agent.game, "teacher": str(teacher_dir) if teacher_dir else None,
           "robustness": rows}
    if args.write_card:
        res["weights_sha256"] = sha256_file(agent.path / WEIGHTS)
        update_card(Path(args.agent), robustness={k: v for k, v in res.items() if k != "agent"})
    return res


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate an agent under the default protocol (or, with --robustness, under each pipeline variant)."""

    episodes = _positive("--episodes", args.episodes)
    json_path = _json_path(args.json)
    if args.seed < 0:
        raise UserError(f"--seed must be >= 0, got {args.seed}")
    # --write-card owns the directory for the whole evaluation: no run may change the weights under it
    if args.onnx and args.write_card:
        raise UserError("--write-card stores the evaluation of the agent's own weights, not of --onnx FILE")
    with RunLock(Path(args.agent)) if args.write_card and Path(args.agent).is_dir() else contextlib.nullcontext():
        agent = _agent(args, "--write-card" if args.write_card else "")
        if args.onnx:
            agent = dataclasses.replace(agent, net=onnx_net(Path(args.onnx), agent.num_actions))
        _work_starts(args, agent)
        if args.robustness:
            res = _evaluate_robustness(args, agent, episodes)
            if json_path:
                _emit_json(res, str(json_path))
            return 0
        res = evaluate(agent.net, agent.game, episodes, seed=args.seed, show_progress=not args.quiet)
        res["agent"] = str(args.agent)
        res["game"] = agent.game
        if args.onnx:
            res["onnx"] = str(args.onnx)
        if args.write_card:

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
    """A person's summary of an agent; with ``--json`` the full card with params and compression ratio."""
    if args.json not in (None, "-"):
        _json_path(args.json)
    agent = _agent(args)
    if args.json is None:
        print("\n".join(agent_summary(agent.card, agent.path)))
        return 0
    card = dict(agent.card)
    card["params"] = count_params(agent.net)
    teacher_params = (card.get("teacher") or {}).get("params")
    card["compression"] = (
        {"teacher_params": teacher_params, "ratio": card["params"] / teacher_params} if teacher_params else None
    )
    card["path"] = str(agent.path)
    _emit_json(card, None if args.json == "-" else args.json)
    return 0


def cmd_card(args: argparse.Namespace) -> int:
    """Write the agent's README.md model card (Hub metadata, summary, how to use it)."""
    agent = _agent(args, "card")
    with RunLock(agent.path):
        attention_still(agent, agent.path / STILL)
        atomic_write_bytes(agent.path / "README.md", model_card(agent.card, agent.path).encode())
    print(f"{agent.path / 'README.md'}: model card", file=sys.stderr)
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    """Publish an agent to the Hugging Face Hub (or, with --dry-run DIR, write the folder only)."""
    names = api_push(args.agent, args.repo_id, dry_run=args.dry_run, evaluate_episodes=args.evaluate,
                     unevaluated=args.unevaluated, tensorboard=args.tensorboard, private=args.private,
                     frames=args.frames)
    where = f"{args.dry_run}: " if args.dry_run else f"hf:{args.repo_id}: uploaded "
    print(f"{where}{', '.join(names)}" + (" (dry run: nothing uploaded)" if args.dry_run else ""), file=sys.stderr)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Export to ONNX or TorchScript."""
    check_output_file(args.out)
    if args.quantize:
        if args.format != "onnx":
            raise UserError(f"--quantize {args.quantize} exports ONNX only: use --format onnx")
        require("onnxruntime.quantization")  # the [onnx] extra: say so before any game is played
    agent = _agent(args)
    out = api_export(agent, args.out, args.format, quantize=args.quantize, calibration_frames=args.calibration_frames,
                     seed=args.seed, with_attention=args.with_attention, peaks=args.peaks)
    extra = f", attention [B,210,160], peaks [B,{args.peaks},3]" if args.with_attention else ""
    print(f"{out}: {args.format} model, uint8 [B,4,84,84] -> float32 [B,{agent.num_actions}]{extra}", file=sys.stderr)
    cal = read_calibration(out.read_bytes()) if args.quantize else None
    if cal:
        print(f"int8: {_int8_size(out, cal)}; takes the fp32 network's action on {cal['agreement']:.3f} of "
              f"{cal['held_out_frames']:,} held-out frames (calibrated on {cal['frames']:,} frames, seed {cal['seed']})",
              file=sys.stderr)
    return 0


def _int8_size(out: Path, cal: dict[str, Any]) -> str:
    """'N bytes (P% of the fp32 model's M)' for an int8 export."""
    size = out.stat().st_size
    return f"{size:,} bytes ({100 * size / cal['fp32_bytes']:.1f}% of the fp32 model's {cal['fp32_bytes']:,})"


def _bench_localization(args: argparse.Namespace) -> int:
    """``bench localization``: the table on stderr, JSON and markdown where asked."""
    names, md = _bench_agents_and_md(args)
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    if set(methods) & set(CAPTUM_METHODS):
        require("captum.attr")  # the [explain] extra: say so before any game is played
    if args.sanity_frames:
        require("scipy.stats")
    cfg = LocalizationBenchConfig(frames=args.frames, methods=methods, sanity_frames=args.sanity_frames)
    res = localization_benchmark([api_load_agent(a, device=args.device) for a in names], cfg)
    return _emit_table(args, localization_table(res), res, md)


def _bench_agents_and_md(args: argparse.Namespace) -> tuple[list[str], Path | None]:
    """The sources in ``--agents`` (one line when there are none) and the checked ``--md`` file."""
    names = [a.strip() for a in (args.agents or "").split(",") if a.strip()]
    if not names:
        raise UserError(f"bench {args.what} needs --agents A[,B...]")
    return names, check_output_file(args.md, name="md") if args.md else None


def _emit_table(args: argparse.Namespace, table: str, res: dict[str, Any], md: Path | None) -> int:
    """A bench table on stderr, in ``md`` as markdown and the result in ``--json`` where asked."""
    print(table, file=sys.stderr)
    if md:
        atomic_write_bytes(md, (table + "\n").encode())
    if args.json:
        _emit_json(res, args.json)
    return 0


BENCH_NEEDS = {"teacher": "stable_baselines3", "inference": "onnxruntime", "deploy": "onnxruntime.quantization"}


def _bench_deploy(args: argparse.Namespace) -> int:
    """``bench deploy``: the table on stderr, JSON and markdown where asked."""
    names, md = _bench_agents_and_md(args)
    res = bench_deploy([api_load_agent(a) for a in names], episodes=args.episodes,
                       calibration_frames=args.calibration_frames)
    return _emit_table(args, deploy_table(res), res, md)


def cmd_bench(args: argparse.Namespace) -> int:
    """Speed benchmarks."""

    _json_path(args.json)
    if args.what in BENCH_NEEDS:
        require(BENCH_NEEDS[args.what])  # an optional extra: say which before any work
    if args.what == "time-to-score":
        cfg = TimeToScoreConfig(game=args.game, target=args.target, budget=args.budget, eval_every=args.eval_every,
                                trainers=tuple(t.strip() for t in args.trainers.split(",") if t.strip()))
        res = time_to_score(check_time_to_score(cfg), Path(args.out))
        print(format_time_to_score(res), file=sys.stderr)
        if args.json:
            _emit_json(res, args.json)
        return 0
    if args.what == "localization":
        return _bench_localization(args)
    if args.what == "deploy":
        return _bench_deploy(args)
    if args.what == "inference":
        res = bench.bench_inference(args.student, device=args.device)
        for name, row in res["frames_per_s"].items():
            print(f"{name:>14}: " + ", ".join(f"{k} {v}" for k, v in row.items()), file=sys.stderr)
        print("student / teacher: " + ", ".join(f"{k} {v}x" for k, v in res["student_over_teacher"].items()),
              file=sys.stderr)
        if args.json:
            _emit_json(res, args.json)
        return 0
    if args.what == "distill":
        res = bench.bench_distill(args.student, steps=args.steps or 6_000, warmup=args.warmup or 2_000,
                                  device=args.device)
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

    given = (("steps", args.steps), ("warmup", args.warmup), ("envs", args.envs))
    cfg = TeacherBenchConfig(**{k: _positive(f"--{k}", v) for k, v in given if v is not None}, device=args.device)
    if args.env_threads is not None:
        if args.env_threads < 0:
            raise UserError(f"--env-threads must be >= 0, got {args.env_threads}")
        cfg.env_threads = args.env_threads
    res = bench_teacher(cfg)
    print(format_teacher(res), file=sys.stderr)
    if args.json:
        _emit_json(res, args.json)
    return 0


def cmd_distill(args: argparse.Namespace) -> int:
    """Distill a student from a teacher."""
    apply_config_file(args, [DistillConfig])
    fixed = {}
    if args.resume and (Path(args.out) / CARD).exists():
        card = read_card(Path(args.out))
        fixed = _run_settings(args, card, DISTILL_RESUME_KEEPS)
        if args.student is None:
            fixed["student"] = card["arch"].get("spec", "")
    cfg = config_from_args(DistillConfig, args, **fixed)
    command = " ".join(["rl-compress", *sys.argv[1:]]) if sys.argv[0].endswith("rl-compress") else None
    stop = StopToken()
    card = distill(Path(args.teacher), cfg, Path(args.out), resume=args.resume, tensorboard=args.tensorboard,
                   show_progress=not args.quiet, command=command, force=args.force, stop=stop)
    tr = card["training"]
    if tr.get("stopped") == "signal":
        return _stopped_exit(args.out, tr["steps"],
                             f"rl-compress distill --teacher {args.teacher} --out {args.out} --resume", stop.signum)
    ev = tr.get("last_eval") or {}
    extra = f", last eval {ev.get('mean')} (teacher {ev.get('teacher_mean')})" if ev else ""
    if tr.get("stopped") == "target":
        extra += f": retention {ev['retention']:.3f} reached --stop-at-retention {cfg.stop_at_retention}"
    print(f"{args.out}: {card['arch']['spec']} ({card['params']} params), {tr['steps']} steps{extra}", file=sys.stderr)
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    """Prune a gmp student's dead (and, to a budget, least needed) conv channels."""

    command = " ".join(["rl-compress", *sys.argv[1:]]) if sys.argv[0].endswith("rl-compress") else None
    card = prune_agent(Path(args.agent), Path(args.out), states=args.states, seed=args.seed,
                       max_params=args.max_params, command=command, log=lambda m: print(m, file=sys.stderr),
                       force=args.force, device=args.device)
    pf = card["training"]["pruned_from"]
    print(f"{args.out}: {card['arch']['spec']} ({card['params']} params, from {pf['params']}), agreement with "
          f"{args.agent} on {pf['states']} of its states {pf['agreement']:.3f}", file=sys.stderr)
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    """Record a video of an agent with its attention overlay."""
    check_output_file(check_video_path(Path(args.out)))
    agent = _agent(args)
    overlay = record_overlay(agent, args.overlay)
    other = api_load_agent(args.side_by_side, game=agent.game, device=args.device) if args.side_by_side else None
    _work_starts(args, agent)
    n = api_record(agent, args.out, frames=args.max_frames, overlay=overlay, side_by_side=other,
                   episodes=args.episodes, seed=args.seed, scale=args.scale, fps=args.fps, show_progress=not args.quiet)
    print(f"{args.out}: {n} frames, overlay {overlay}", file=sys.stderr)
    return 0


def cmd_localize(args: argparse.Namespace) -> int:
    """Write attention maps and peaks of played frames to a .npz."""
    out = Path(args.out)
    if out.suffix != ".npz":
        raise UserError(f"{out}: output must end in .npz")
    check_output_file(out)
    _json_path(args.json)
    agent = _agent(args)
    if args.score:
        objects_from_ram(agent.game, np.zeros((0, 128), dtype=np.uint8))  # fail early if OCAtari is missing
    _work_starts(args, agent)
    res = api_localize(agent, out, _positive("--frames", args.frames), args.method, args.seed, args.score, args.radius)
    print(f"{out}: {res['frames']} frames from {res['episodes']} episode(s), method {res['method']}", file=sys.stderr)
    if args.score:
        sc = res["score"]
        sc.update({"agent": str(args.agent), "method": args.method, "game": agent.game, "frames": res["frames"]})
        _emit_json(sc, args.json)
        a, r = sc["attention"], sc["random"]
        print(f"top peak within {args.radius:g} px of an object: {a['any']:.3f} ({args.method}) vs "
              f"{r['any']:.3f} (uniform random point)", file=sys.stderr)
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    """Run a study grid or report on it."""

    study = load_study(Path(args.study), budget=args.budget, device=args.device)
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

    for path, name in ((args.md, "md"), (args.csv, "csv")):
        if path:
            check_output_file(path, (), name)
    rows = agents_table([Path(a) for a in args.agents], threshold=args.threshold)
    md = table_markdown(rows)
    if args.md:
        atomic_write_bytes(Path(args.md), md.encode())
    if args.csv:
        atomic_write_bytes(Path(args.csv), rows_csv(rows, TABLE_COLUMNS + ["episodes"]).encode())
    print(md, end="")
    return 0
