"""The argument parser of ``rl-compress``; training flags come from the config dataclasses."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

from rl_compress.api import OVERLAYS
from rl_compress.attention.faithfulness import ALL_METHODS as MAP_METHODS
from rl_compress.cli.commands import (
    cmd_bench,
    cmd_card,
    cmd_distill,
    cmd_evaluate,
    cmd_experiment,
    cmd_export,
    cmd_info,
    cmd_localize,
    cmd_prune,
    cmd_push,
    cmd_record,
    cmd_table,
    cmd_teacher_import,
    cmd_teacher_train,
)
from rl_compress.core.config import MAX_ENVS, MAX_FRAMES, MAX_SEED, MAX_STEPS, add_config_flags, int_in, number_in
from rl_compress.core.device import DEVICE_HELP
from rl_compress.models.graph_attention import GRAPH_METHODS
from rl_compress.models.maps import METHODS
from rl_compress.train.distill import DistillConfig
from rl_compress.train.teacher import PQNConfig, TeacherConfig

MAX_EPISODES = 10**6
MAX_STATES = 10**6
SEED = int_in(0, MAX_SEED)
CONFIG_HELP = ("settings from a YAML file, names as in --help without the dashes (lr: 2.5e-4, buffer_size: 100000); "
               "flags given here override it; the run writes what it used to OUT/config.yml")


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad command line as one line (and exit code 2), like our errors."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {self.prog}: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def _add_device(p: argparse.ArgumentParser, default: str | None = "auto", help_extra: str = "") -> None:
    """The ``--device`` flag of a command that runs networks."""
    p.add_argument("--device", default=default, help=f"where the networks run: {DEVICE_HELP}{help_extra}")


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    p = OneLineParser(
        prog="rl-compress",
        description="Train DQN teachers on Atari, compress them into tiny global-max-pool students, see where they look.",
    )
    p.add_argument("--version", action="version", version=f"rl-compress {version('rl-compress')}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    _add_teacher(sub)
    _add_distill_and_prune(sub)
    _add_evaluate_and_record(sub)
    _add_localize_export_info(sub)
    _add_bench_and_studies(sub)
    return p


def _own_defaults(cls: type, other: type) -> str:
    """``cls``'s defaults of the flags it shares with ``other`` where they differ, as flags."""
    theirs = {f.name: f.default for f in dataclasses.fields(other)}
    return " ".join(f"--{f.name.replace('_', '-')} {f.default}" for f in dataclasses.fields(cls)
                    if f.name in theirs and theirs[f.name] != f.default)


def _add_teacher(sub: Any) -> None:
    """The subparsers of ``teacher train`` and ``teacher import``."""
    teacher = sub.add_parser("teacher", help="train or import DQN teachers")
    tsub = teacher.add_subparsers(dest="teacher_command", metavar="ACTION", required=True)
    tr = tsub.add_parser("train", help="train a Nature-DQN teacher (resumable)")
    tr.add_argument("--out", required=True, help="agent directory to write (checkpoints go there too)")
    tr.add_argument("--resume", action="store_true", help="continue the run in --out")
    tr.add_argument("--force", action="store_true", help="replace the run that --out holds (its files are deleted)")
    tr.add_argument("--tensorboard", type=Path, default=None, help="TensorBoard log directory")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.add_argument("--arch", default=None, help="train a student spec (e.g. gmp16) from scratch instead of "
                    "the Nature-DQN teacher: the baseline that shows what distillation buys")
    tr.add_argument("--algo", choices=["dqn", "pqn"], default=None,
                    help="pqn (default; on --resume the run's own, with --init-from the agent's): Q(lambda) on many "
                    "envs without replay or target network (LayerNorm Nature DQN), ~an order of magnitude less "
                    "compute per env step; dqn: Nature DQN with a replay memory. The defaults below are PQN's; "
                    f"DQN's own: {_own_defaults(TeacherConfig, PQNConfig)}")
    tr.add_argument("--config", type=Path, default=None, metavar="FILE.yaml", help=CONFIG_HELP)
    add_config_flags(tr, PQNConfig)
    add_config_flags(tr, TeacherConfig, skip=[f.name for f in dataclasses.fields(PQNConfig)])
    tr.set_defaults(func=cmd_teacher_train)
    ti = tsub.add_parser("import", help="import a teacher: SB3 / RL Zoo DQN or QR-DQN zip, CleanRL DQN model, or hf:ORG/NAME")
    ti.add_argument("source", help="an SB3 .zip, a CleanRL .cleanrl_model, or hf:ORG/NAME[@REVISION] (Hugging Face Hub; "
                    "HF_HUB_OFFLINE=1 reads the local cache only)")
    ti.add_argument("--game", default=None, help="game the model plays (default: read from the file or repository name)")
    ti.add_argument("--out", required=True, help="agent directory to write (new or empty)")
    ti.add_argument("--force", action="store_true", help="replace the agent that --out holds")
    ti.set_defaults(func=cmd_teacher_import)


def _add_distill_and_prune(sub: Any) -> None:
    """The subparsers of ``distill`` and ``prune``."""
    d = sub.add_parser("distill", help="distill a student from a teacher (Actor-Mimic)")
    d.add_argument("--teacher", required=True, help="teacher agent directory")
    d.add_argument("--out", required=True, help="student agent directory to write")
    d.add_argument("--resume", action="store_true", help="continue the run in --out")
    d.add_argument("--force", action="store_true", help="replace the run that --out holds (its files are deleted)")
    d.add_argument("--tensorboard", type=Path, default=None, help="TensorBoard log directory")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.add_argument("--config", type=Path, default=None, metavar="FILE.yaml", help=CONFIG_HELP)
    add_config_flags(d, DistillConfig)
    d.set_defaults(func=cmd_distill)

    pr = sub.add_parser("prune", help="drop a gmp student's dead conv channels (and more, to a parameter budget)")
    pr.add_argument("agent", help="gmp student agent directory")
    pr.add_argument("--out", required=True, help="agent directory to write (new or empty)")
    pr.add_argument("--force", action="store_true", help="replace the agent that --out holds")
    pr.add_argument("--states", type=int_in(1, MAX_STATES), default=4000,
                    help="states the agent plays (epsilon 0.1) on which channels are judged (default: 4000)")
    pr.add_argument("--max-params", type=int_in(1, 10**9), default=None,
                    help="then remove the live channels whose loss changes the agent's actions least until "
                         "it has at most this many parameters (default: dead channels only)")
    pr.add_argument("--seed", type=SEED, default=0, help="seed of the states' games (default: 0)")
    _add_device(pr)
    pr.set_defaults(func=cmd_prune)


def _add_evaluate_and_record(sub: Any) -> None:
    """The subparsers of ``evaluate`` and ``record``."""
    ev = sub.add_parser("evaluate", help="evaluate an agent under the default protocol")
    ev.add_argument("agent", help="agent directory, SB3 / RL Zoo zip, CleanRL .cleanrl_model or hf:ORG/NAME[@REVISION]")
    ev.add_argument("--game", default=None, help="the game of a zip or Hub source whose name does not say it")
    ev.add_argument("--episodes", type=int_in(1, MAX_EPISODES), default=30, help="whole games to play (default: 30)")
    ev.add_argument("--robustness", action="store_true",
                    help="play --episodes games under each pipeline variant a user may have (gymnasium wrappers: "
                         "stack padded with the first frame, FIRE at start and after a life loss, no sticky actions, "
                         "no no-op starts, bilinear resize), a student beside its teacher (retention per variant)")
    ev.add_argument("--seed", type=SEED, default=0, help="seed of the envs and of epsilon (default: 0)")
    ev.add_argument("--json", default=None, help="write the result (per-episode scores) to this JSON file")
    ev.add_argument("--write-card", action="store_true", help="store the result as the card's evaluation")
    ev.add_argument("--onnx", default=None, metavar="FILE",
                    help="play this exported ONNX model (e.g. `export --quantize int8`) with ONNX Runtime in place of "
                         "the agent's network; the agent gives the game (needs the [onnx] extra)")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_device(ev)
    ev.set_defaults(func=cmd_evaluate)

    rec = sub.add_parser("record", help="record a video (.mp4 H.264 or .gif) with the attention overlay")
    rec.add_argument("agent", help="agent directory, SB3 / RL Zoo zip, CleanRL .cleanrl_model or hf:ORG/NAME[@REVISION]")
    rec.add_argument("--game", default=None, help="the game of a zip or Hub source whose name does not say it")
    rec.add_argument("--out", required=True, help="video file, .mp4 or .gif")
    rec.add_argument("--episodes", type=int_in(1, MAX_EPISODES), default=1, help="episodes to play at most (default: 1)")
    rec.add_argument("--max-frames", type=int_in(1, MAX_FRAMES), default=2000, help="agent steps to record at most (default: 2000)")
    rec.add_argument("--overlay", choices=[*OVERLAYS, "none"], default=None,
                     help="attention shown (default: gmp for a gmp student, else gradcam; gmp-cell: "
                          "GMP at the 7x7 cell centres, without the trace to the pixel; gmp-occlusion: the traced "
                          "pixels weighted by what deleting each changes)")
    rec.add_argument("--side-by-side", default=None, metavar="TEACHER_DIR",
                     help="also show this agent's Grad-CAM on the same frames, on the right (any source, like AGENT)")
    rec.add_argument("--seed", type=SEED, default=0, help="seed of the episode (default: 0)")
    rec.add_argument("--scale", type=int_in(1, 16), default=3, help="screen upscaling (default: 3)")
    rec.add_argument("--fps", type=int_in(1, 240), default=30, help="frames per second of the video (default: 30)")
    rec.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_device(rec)
    rec.set_defaults(func=cmd_record)


def _add_localize_export_info(sub: Any) -> None:
    """The subparsers of ``localize``, ``export`` and ``info``."""
    loc = sub.add_parser("localize", help="attention maps and peaks of played frames to a .npz")
    loc.add_argument("agent", help="agent directory, SB3 / RL Zoo zip, CleanRL .cleanrl_model or hf:ORG/NAME[@REVISION]")
    loc.add_argument("--game", default=None, help="the game of a zip or Hub source whose name does not say it")
    loc.add_argument("--frames", type=int_in(1, MAX_FRAMES), required=True, help="agent steps to play and explain")
    loc.add_argument("--out", required=True, help=".npz file (keys: frames, ram, maps, peaks, actions)")
    loc.add_argument("--method", choices=METHODS, default="gmp",
                     help="attention method (default: gmp; gmp-occlusion: GMP's traced pixels weighted by how much "
                          "blurring each lowers the action's probability, one forward pass per channel)")
    loc.add_argument("--seed", type=SEED, default=0, help="seed of the first episode (default: 0)")
    loc.add_argument("--score", action="store_true",
                     help="score the top peaks against OCAtari's RAM objects (needs ocatari) and print JSON")
    loc.add_argument("--radius", type=number_in(0, 210, low_open=True), default=10.0,
                     help="hit radius in screen pixels for --score (default: 10)")
    loc.add_argument("--json", default=None, help="with --score: write the score JSON to this file")
    _add_device(loc)
    loc.set_defaults(func=cmd_localize)

    ex = sub.add_parser("export", help="export an agent to ONNX or TorchScript")
    ex.add_argument("agent", help="agent directory, SB3 / RL Zoo zip, CleanRL .cleanrl_model or hf:ORG/NAME[@REVISION]")
    ex.add_argument("--game", default=None, help="the game of a zip or Hub source whose name does not say it")
    ex.add_argument("--format", required=True, choices=["onnx", "torchscript"], help="output format")
    ex.add_argument("--out", required=True, help="file to write")
    ex.add_argument("--quantize", choices=["int8"], default=None,
                    help="ONNX only: static int8 (ONNX Runtime), calibrated on frames the agent plays; needs the "
                         "[onnx] extra")
    ex.add_argument("--calibration-frames", type=int_in(64, MAX_FRAMES), default=2000,
                    help="with --quantize: frames to calibrate on (default: 2000; half as many held out to "
                         "measure the agreement with fp32)")
    ex.add_argument("--seed", type=SEED, default=0, help="with --quantize: seed of the calibration games (default: 0)")
    ex.add_argument("--with-attention", nargs="?", const="gmp-cell", choices=GRAPH_METHODS, metavar="METHOD",
                    help="gmp students: also output the GMP attention map [B,210,160] and --peaks peaks [B,K,3] "
                         "(x, y, weight in screen pixels) of METHOD: gmp-cell (the default; small) or gmp (each "
                         "max traced to its input pixel; a larger file); the Q-values / logits stay first")
    ex.add_argument("--peaks", type=int_in(1, 64), default=5, help="with --with-attention: peaks per frame (default: 5)")
    ex.set_defaults(func=cmd_export)

    push = sub.add_parser("push", help="publish an agent to the Hugging Face Hub: weights, card, ONNX, replay "
                          "with attention, model card")
    push.add_argument("agent", help="agent directory")
    push.add_argument("--repo-id", required=True, help="Hub model repository, ORG/NAME")
    push.add_argument("--private", action="store_true", help="create the repository private")
    push.add_argument("--dry-run", default=None, metavar="DIR", help="write exactly that folder here, upload nothing")
    push.add_argument("--frames", type=int_in(1, MAX_FRAMES), default=300, help="agent steps of the replay video (default: 300)")
    push.add_argument("--evaluate", type=int_in(1, MAX_EPISODES), default=None, metavar="EPISODES",
                      help="play EPISODES games (seed 0) now and publish that score (default: the card's own "
                           "evaluation of these weights; without one the push is refused)")
    push.add_argument("--unevaluated", action="store_true", help="publish an agent that has no evaluation")
    push.add_argument("--tensorboard", default=None, metavar="DIR",
                      help="the run's TensorBoard folder: its event files go up under runs/")
    push.set_defaults(func=cmd_push)

    card = sub.add_parser("card", help="write the agent's README.md model card (Hub metadata, score, size, usage)")
    card.add_argument("agent", help="agent directory")
    card.set_defaults(func=cmd_card)

    info = sub.add_parser("info", help="an agent's summary: size, share of its teacher, score, retention, how it was made")
    info.add_argument("agent", help="agent directory, SB3 / RL Zoo zip, CleanRL .cleanrl_model or hf:ORG/NAME[@REVISION]")
    info.add_argument("--game", default=None, help="the game of a zip or Hub source whose name does not say it")
    info.add_argument("--json", nargs="?", const="-", default=None, metavar="FILE",
                      help="print the full card as JSON (to FILE when given) instead of the summary")
    info.set_defaults(func=cmd_info)


def _add_bench_and_studies(sub: Any) -> None:
    """The subparsers of ``bench``, ``experiment`` and ``table``."""
    bench = sub.add_parser("bench", help="speed benchmarks (ratios against a baseline, same run)")
    bench.add_argument("what", choices=["teacher", "distill", "inference", "localize", "time-to-score", "localization",
                                                "deploy"],
                       help="time-to-score: env steps and wall-clock from scratch to --target for our PQN, our DQN "
                       "and SB3's DQN at RL Zoo's settings, one after another (hours; runs kept in --out); "
                       "localization: pointing game, deletion / insertion and sanity check of every map method "
                       "on the frames each of --agents plays; deploy: bytes, ONNX Runtime latency (1 thread) and "
                       "retention of --agents in fp32 and (students) int8")
    bench.add_argument("--json", default=None, help="write results to this JSON file")
    bench.add_argument("--steps", type=int_in(1, MAX_STEPS), default=None, help="timed env steps (teacher: default 4000)")
    bench.add_argument("--warmup", type=int_in(0, MAX_STEPS), default=None, help="untimed warm-up env steps (teacher: default 2000)")
    bench.add_argument("--student", default="gmp16", help="student spec for inference / distill (default: gmp16)")
    bench.add_argument("--envs", type=int_in(1, MAX_ENVS), default=None, help="teacher: environments stepped together (default: 8)")
    bench.add_argument("--env-threads", type=int_in(0, MAX_ENVS), default=None,
                       help="teacher: emulator threads (0 = one per env; default: 1)")
    bench.add_argument("--game", default="pong", help="time-to-score: the game (default: pong)")
    bench.add_argument("--target", type=number_in(-1e9, 1e9), default=18.0, help="time-to-score: the score to reach (default: 18)")
    bench.add_argument("--budget", type=number_in(0, 1e7, low_open=True), default=2700.0,
                       help="time-to-score: seconds of training each trainer may take (default: 2700)")
    bench.add_argument("--eval-every", type=int_in(1, MAX_STEPS), default=100_000,
                       help="time-to-score: env steps between 5-game evaluations (default: 100000)")
    bench.add_argument("--trainers", default="pqn,dqn,sb3", help="time-to-score: which trainers (default: pqn,dqn,sb3)")
    bench.add_argument("--out", default="runs/time_to_score", help="time-to-score: where the runs go")
    bench.add_argument("--agents", default=None,
                       help="localization, deploy: agents, comma-separated (any source load_agent reads)")
    bench.add_argument("--methods", default=",".join(MAP_METHODS),
                       help=f"localization: map methods, comma-separated (default: all of {','.join(MAP_METHODS)})")
    bench.add_argument("--frames", type=int_in(1, MAX_FRAMES), default=200,
                       help="localization: agent steps each agent plays (default: 200)")
    bench.add_argument("--sanity-frames", type=int_in(0, MAX_FRAMES), default=16,
                       help="localization: frames of the randomisation sanity check (0 = off; default: 16)")
    bench.add_argument("--md", default=None, help="localization, deploy: also write the table as markdown to this file")
    bench.add_argument("--episodes", type=int_in(0, MAX_EPISODES), default=30,
                       help="deploy: games each model plays for its score (0: none; default: 30)")
    bench.add_argument("--calibration-frames", type=int_in(64, MAX_FRAMES), default=2000,
                       help="deploy: frames the int8 models are calibrated on (default: 2000)")
    _add_device(bench, default="cpu", help_extra="; default cpu, the machine the recorded ratios are for")
    bench.set_defaults(func=cmd_bench)

    exp = sub.add_parser("experiment", help="run or report a study grid (experiments/<study>.yaml)")
    exp.add_argument("action", choices=["run", "report"],
                     help="run the grid, or write the tables and plots of the runs finished so far")
    exp.add_argument("study", help="study YAML file")
    exp.add_argument("--backend", choices=["local", "ray"], default="local", help="where runs execute (default: local)")
    exp.add_argument("--address", default=None, help="Ray cluster address (default: a local Ray)")
    exp.add_argument("--jobs", type=int_in(1, 256), default=1,
                     help="local backend: runs at once, each in its own process on one thread (default: 1)")
    exp.add_argument("--budget", type=number_in(0, 1000, low_open=True), default=1.0,
                     help="scale every run's steps and episodes by this factor, e.g. 0.01 for a quick pass")
    _add_device(exp, default=None, help_extra="; the device of every run whose YAML sets none (default: each "
                "run's own, else auto); a Ray task on cuda asks for one GPU")
    exp.set_defaults(func=cmd_experiment)

    tab = sub.add_parser("table", help="results table of distilled students, read from their cards")
    tab.add_argument("agents", nargs="+", help="student agent directories (each evaluated with --write-card)")
    tab.add_argument("--threshold", type=number_in(0, 10, low_open=True), default=0.9,
                     help="retention whose first periodic evaluation gives the steps/time-to columns (default 0.9)")
    tab.add_argument("--md", default=None, help="also write the markdown table here")
    tab.add_argument("--csv", default=None, help="also write the rows as CSV here")
    tab.set_defaults(func=cmd_table)
