"""The README's main job (`make demo`): the shortest meaningful pipeline on Pong.

1. show the shipped Pong teacher's card (agents/pong/teacher) and evaluate it,
2. distill a gmp16 student (0.6% of the teacher's parameters) from it on a short budget,
   with TensorBoard logs,
3. evaluate the student under the same protocol and seeds, show its card (compression
   ratio) and export it to ONNX,
4. record a short H.264 video: the student's GMP attention next to the teacher's Grad-CAM.

Outputs go to runs/demo/. Each step is an ``rl-compress`` command, printed before it runs.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from pathlib import Path

from rich.console import Console

from rl_compress.cli.main import main as cli

TEACHER = Path("agents/pong/teacher")
OUT = Path("runs/demo")


def run_demo(out: Path = OUT, teacher: Path = TEACHER, distill_steps: int = 20_000) -> int:
    """Run the demo steps; returns the first non-zero exit code, else 0."""
    console = Console(file=sys.stderr)
    if not (teacher / "agent.json").exists():
        console.print(f"[red]error: {teacher} not found: the demo distils from the shipped teacher")
        return 2
    out.mkdir(parents=True, exist_ok=True)
    student = out / "student_gmp16"
    shutil.rmtree(student, ignore_errors=True)  # a demo starts its run afresh
    steps: list[list[str]] = [
        ["info", str(teacher), "--json", str(out / "teacher_info.json")],
        ["evaluate", str(teacher), "--episodes", "3", "--seed", "0", "--json", str(out / "teacher_eval.json")],
        ["distill", "--teacher", str(teacher), "--student", "gmp16", "--steps", str(distill_steps),
         "--learning-starts", "5000", "--eval-every", "0", "--out", str(student),
         "--tensorboard", str(out / "tensorboard")],
        ["evaluate", str(student), "--episodes", "3", "--seed", "0", "--json", str(out / "student_eval.json"),
         "--write-card"],
        ["info", str(student), "--json", str(out / "student_info.json")],
        ["export", str(student), "--format", "onnx", "--out", str(out / "student_gmp16.onnx")],
        ["record", str(student), "--out", str(out / "student_gmp16.mp4"), "--max-frames", "400",
         "--side-by-side", str(teacher)],
    ]
    for argv in steps:
        console.rule(f"[bold]rl-compress {shlex.join(argv)}")
        code = cli(argv)
        if code:
            return code
    info = json.loads((out / "student_info.json").read_text())
    t_eval = json.loads((out / "teacher_eval.json").read_text())
    s_eval = json.loads((out / "student_eval.json").read_text())
    console.rule("[bold green]done")
    console.print(
        f"teacher: {info['compression']['teacher_params']:,} params, mean {t_eval['mean']:.1f} over 3 games\n"
        f"student gmp16: {info['params']:,} params ({100 * info['compression']['ratio']:.2f}% of the teacher), "
        f"mean {s_eval['mean']:.1f} over the same 3 games after {distill_steps:,} env steps of distillation\n"
        f"video: {out / 'student_gmp16.mp4'} ; outputs in {out}/ ; TensorBoard: .venv/bin/tensorboard --logdir {out / 'tensorboard'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_demo())
