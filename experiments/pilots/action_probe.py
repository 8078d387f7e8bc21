"""Which actions does a student take on its own states, and what would its teacher take there?
The student plays 8 envs greedily (default protocol's env, seed 5) for 3,000 steps; for each
action the teacher would take, the student's choices, and the student's overall action shares.

    python experiments/pilots/action_probe.py agents/breakout/gmp32-w5
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from rl_compress.atari.envs import make_vector_env
from rl_compress.atari.games import action_names
from rl_compress.models.agent import load_agent


def main() -> None:
    """Play the student, label its states with the teacher, print the action table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("student")
    p.add_argument("--teacher", help="default: the teacher named in the student's card")
    p.add_argument("--steps", type=int, default=3000)
    args = p.parse_args()
    torch.set_num_threads(1)
    student = load_agent(Path(args.student))
    teacher = load_agent(Path(args.teacher or student.card["teacher"]["path"]), game=student.game)
    names = action_names(student.game)
    env = make_vector_env(student.game, 8, num_threads=1)
    obs, _ = env.reset(seed=5)
    picks = []
    with torch.inference_mode():
        for _ in range(args.steps):
            x = torch.from_numpy(obs)
            a_s, a_t = student.net(x).argmax(1).numpy(), teacher.net(x).argmax(1).numpy()
            picks.append(np.stack([a_s, a_t], 1))
            obs, *_ = env.step(a_s.astype(np.int64))
    env.close()
    pairs = np.concatenate(picks)
    n = len(names)
    print(f"{len(pairs)} states; the student takes the teacher's action on {(pairs[:, 0] == pairs[:, 1]).mean():.3f}")
    print("teacher's action (share): the student's picks " + " / ".join(names))
    for a in range(n):
        sel = pairs[:, 1] == a
        print(f"  {names[a]} ({sel.mean():.3f}): {np.bincount(pairs[sel, 0], minlength=n).tolist()}")
    shares = np.bincount(pairs[:, 0], minlength=n) / len(pairs)
    print("student's action shares: " + ", ".join(f"{names[a]} {shares[a]:.3f}" for a in range(n)))


if __name__ == "__main__":
    main()
