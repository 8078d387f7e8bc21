"""Where does a student agree with its teacher? Merged-action agreement on 4,000 states the
teacher plays (epsilon 0.05, seed 99), overall and on the states where the gap between the
teacher's two best merged actions is large (the decisive ones).

    python experiments/pilots/agreement_probe.py agents/pong/gmp16 [--teacher agents/pong/teacher-base]
"""

from __future__ import annotations

import argparse

import torch
from offline_distill import PONG_MERGE, collect, in_chunks, merged_gap

from rl_compress.models.agent import load_agent


def main() -> None:
    """Collect the teacher's states, then print the student's agreement by gap quantile."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("student")
    p.add_argument("--teacher", default="agents/pong/teacher-base")
    args = p.parse_args()
    tn, sn = load_agent(args.teacher).net.eval(), load_agent(args.student).net.eval()
    x, q = (torch.as_tensor(a) for a in collect(tn, "pong", 4000, 99))
    z = in_chunks(sn, x)
    gap = merged_gap(q)
    agree = (PONG_MERGE[q.argmax(1)] == PONG_MERGE[z.argmax(1)]).float()
    print(f"merged agreement, all states: {agree.mean().item():.3f} (median gap {gap.median().item():.4f})")
    for qq in (0.5, 0.8, 0.9, 0.95):
        th = gap.quantile(qq)
        print(f"gap >= its q{qq} ({th.item():.4f}): {agree[gap >= th].mean().item():.3f}")


if __name__ == "__main__":
    main()
