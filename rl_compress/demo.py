"""The README's main job (`make demo`): the compression working, in a few minutes on Pong.

1. the shipped 0.98% student (agents/pong/gmp32-w5-1pct-tuned) and its teacher
   (agents/pong/teacher-base) play the same 3 games: score, retention, size;
2. the student's GMP attention recorded next to the teacher's Grad-CAM (H.264 mp4);
3. the student exported to ONNX, and the export checked against PyTorch on real frames;
4. a short live distillation: a 0.59% student pruned from a larger one (it lost every point)
   is distilled from the teacher for 24,000 env steps, evaluated every 8,000 (TensorBoard logs).

Outputs go to runs/demo/. Each step is an ``rl-compress`` command, printed before it runs.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from rl_compress.atari.envs import sample_observations
from rl_compress.atari.games import game_info
from rl_compress.cli.main import main as cli
from rl_compress.core.optional import require
from rl_compress.core.rundir import CARD
from rl_compress.models.agent import load_agent

TEACHER = Path("agents/pong/teacher-base")
STUDENT = Path("agents/pong/gmp32-w5-1pct-tuned")
PRUNED = Path("agents/pong/gmp32-w5-0.6pct")  # gmp32-w5 pruned to 0.59%, not distilled further
OUT = Path("runs/demo")
GAMES = 3
DISTILL = {"steps": 24_000, "every": 8_000}


def _commands(out: Path, live: Path) -> list[list[str]]:
    pruned_spec = json.loads((PRUNED / CARD).read_text())["arch"]["spec"]
    games = ["--episodes", str(GAMES), "--seed", "0", "--quiet"]
    return [
        ["evaluate", str(TEACHER), *games, "--json", str(out / "teacher_eval.json")],
        ["evaluate", str(STUDENT), *games, "--json", str(out / "student_eval.json")],
        ["record", str(STUDENT), "--out", str(out / "student_vs_teacher.mp4"), "--max-frames", "300",
         "--side-by-side", str(TEACHER), "--quiet"],
        ["export", str(STUDENT), "--format", "onnx", "--out", str(out / "student.onnx")],
        ["evaluate", str(PRUNED), *games, "--json", str(out / "pruned_eval.json")],
        ["distill", "--teacher", str(TEACHER), "--student", pruned_spec, "--init-from", str(PRUNED),
         "--steps", str(DISTILL["steps"]), "--eval-every", str(DISTILL["every"]), "--eval-episodes", str(GAMES),
         "--temperature", "0.01", "--lr", "1e-4", "--learning-starts", "2000", "--out", str(live),
         "--tensorboard", str(out / "tensorboard"), "--quiet"],
    ]


def onnx_matches(onnx_path: Path, agent_dir: Path) -> float:
    """Share of real Pong observations on which the ONNX export picks PyTorch's action."""
    agent = load_agent(agent_dir)
    obs = sample_observations("pong", 64, seed=1)
    sess = require("onnxruntime").InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ours = sess.run(None, {sess.get_inputs()[0].name: obs})[0].argmax(1)
    with torch.no_grad():
        theirs = agent.net(torch.from_numpy(obs)).argmax(1).numpy()
    return float(np.mean(ours == theirs))


def _summary(out: Path, live: Path) -> Table:
    pong = game_info("pong")
    t_eval, s_eval, p_eval = (json.loads((out / f"{n}_eval.json").read_text()) for n in ("teacher", "student", "pruned"))
    t_params = load_agent(TEACHER).card["params"]
    table = Table(title=f"Pong, the same {GAMES} games (evaluation protocol, seed 0)")
    for col in ("agent", "params", "of the teacher", "score", "retention"):
        table.add_column(col)
    table.add_row(str(TEACHER), f"{t_params:,}", "100%", f"{t_eval['mean']:.1f}", "")
    for path, ev in ((STUDENT, s_eval), (PRUNED, p_eval)):
        params = load_agent(path).card["params"]
        ret = pong.retention(ev["mean"], t_eval["mean"])
        table.add_row(str(path), f"{params:,}", f"{100 * params / t_params:.2f}%", f"{ev['mean']:.1f}",
                      "" if ret is None else f"{ret:.2f}")
    history = json.loads((live / CARD).read_text())["training"]["eval_history"]
    for h in history:  # the live run, evaluated on its own seeds every DISTILL["every"] steps
        ret = "" if h["retention"] is None else f"{h['retention']:.2f}"
        table.add_row(f"  live distillation, {h['step']:,} steps (its own {GAMES} games)", "", "", f"{h['mean']:.1f}", ret)
    return table


def run_demo(out: Path = OUT) -> int:
    """Run the demo steps; returns the first non-zero exit code, else 0."""
    console = Console(file=sys.stderr, width=110)
    for need in (TEACHER, STUDENT, PRUNED):
        if not (need / CARD).exists():
            console.print(f"[red]error: {need} not found: the demo uses the shipped agents")
            return 2
    out.mkdir(parents=True, exist_ok=True)
    live = out / "live_distillation"
    shutil.rmtree(live, ignore_errors=True)  # a demo starts its run afresh
    for argv in _commands(out, live):
        console.rule(f"[bold]rl-compress {shlex.join(argv)}")
        code = cli(argv)
        if code:
            return code
    agreement = onnx_matches(out / "student.onnx", STUDENT)
    console.rule("[bold green]done")
    console.print(_summary(out, live))
    console.print(f"ONNX export {out / 'student.onnx'}: same action as PyTorch on {100 * agreement:.0f}% of 64 real frames\n"
                  f"attention video: {out / 'student_vs_teacher.mp4'} (left: the student's GMP; right: the teacher's "
                  f"Grad-CAM)\nTensorBoard of the live run: .venv/bin/tensorboard --logdir {out / 'tensorboard'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_demo())
