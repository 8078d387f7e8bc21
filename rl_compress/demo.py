"""The README's main job (`make demo`): the shortest meaningful pipeline on Pong.

1. show the shipped Pong teacher's card (agents/pong/teacher),
2. evaluate it under the default protocol (3 episodes),
3. export it to ONNX and TorchScript,
4. train a fresh teacher for a short budget, with TensorBoard logs, to show the trainer.

Outputs go to runs/demo/. Each step is an ``rl-compress`` command, printed before it runs.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

from rich.console import Console

from rl_compress.cli import main as cli

TEACHER = Path("agents/pong/teacher")
OUT = Path("runs/demo")


def run_demo(out: Path = OUT, teacher: Path = TEACHER, train_steps: int = 30_000) -> int:
    """Run the demo steps; returns the first non-zero exit code, else 0."""
    console = Console(file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    steps: list[list[str]] = []
    if (teacher / "agent.json").exists():
        steps += [
            ["info", str(teacher), "--json", str(out / "teacher_info.json")],
            ["evaluate", str(teacher), "--episodes", "3", "--json", str(out / "teacher_eval.json")],
            ["export", str(teacher), "--format", "onnx", "--out", str(out / "teacher.onnx")],
            ["export", str(teacher), "--format", "torchscript", "--out", str(out / "teacher.pt")],
        ]
    else:
        console.print(f"[yellow]{teacher} not found: skipping the shipped-teacher steps")
    run_dir = out / "teacher_short"
    shutil.rmtree(run_dir, ignore_errors=True)  # a demo starts its short run afresh
    steps.append(
        ["teacher", "train", "--game", "pong", "--steps", str(train_steps), "--out", str(run_dir),
         "--learning-starts", "10000", "--eval-every", "0", "--tensorboard", str(out / "tensorboard")]
    )
    for argv in steps:
        console.rule(f"[bold]rl-compress {shlex.join(argv)}")
        code = cli(argv)
        if code:
            return code
    console.rule("[bold green]done")
    console.print(f"outputs in {out}/ ; TensorBoard: tensorboard --logdir {out / 'tensorboard'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_demo())
