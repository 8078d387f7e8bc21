"""Is a student's plateau a matter of step size? Fine-tune a trained student for a fixed number
of updates at several learning rates (fresh Adam, batch 64, cross-entropy to softmax(Q/0.01))
on 20,000 states the teacher plays (epsilon 0.05, seed 1), and report the merged-action
agreement on 4,000 held-out states (seed 99), overall and on the 10% with the largest Q-gap.

    python experiments/pilots/lr_probe.py agents/pong/gmp16 1e-3 3e-4 1e-4 [--updates 2000]
"""

from __future__ import annotations

import argparse
import copy

import torch
from offline_distill import HeldOut

from rl_compress.models.agent import load_agent


def main() -> None:
    """Collect the states once, then fine-tune a copy of the student at each learning rate."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("student")
    p.add_argument("lrs", nargs="+", type=float)
    p.add_argument("--updates", type=int, default=2000)
    p.add_argument("--teacher", default="agents/pong/teacher-base")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="bf16: the student's forward pass under bfloat16 autocast, as distill --precision bf16")
    args = p.parse_args()
    tn, base = load_agent(args.teacher).net.eval(), load_agent(args.student).net
    data = HeldOut(tn, 20000)
    agreement = data.agreement

    print(f"{args.student} before fine-tuning: {agreement(base)}", flush=True)
    for lr in args.lrs:
        torch.manual_seed(0)
        net = copy.deepcopy(base)
        data.fine_tune(net, lr, args.updates, bf16=args.precision == "bf16")
        print(f"lr {lr:g}, {args.updates} updates, {args.precision}: {agreement(net)}", flush=True)


if __name__ == "__main__":
    main()
