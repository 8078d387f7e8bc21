"""Is a student's plateau a matter of step size? Fine-tune a trained student for a fixed number
of updates at several learning rates (fresh Adam, batch 64, cross-entropy to softmax(Q/0.01))
on 20,000 states the teacher plays (epsilon 0.05, seed 1), and report the merged-action
agreement on 4,000 held-out states (seed 99), overall and on the 10% with the largest Q-gap.

    python experiments/pilots/lr_probe.py agents/pong/gmp16 1e-3 3e-4 1e-4 [--updates 2000]
"""

from __future__ import annotations

import argparse
import copy

import numpy as np
import torch
import torch.nn.functional as F
from offline_distill import HeldOut

from rl_compress.agent import load_agent


def main() -> None:
    """Collect the states once, then fine-tune a copy of the student at each learning rate."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("student")
    p.add_argument("lrs", nargs="+", type=float)
    p.add_argument("--updates", type=int, default=2000)
    p.add_argument("--teacher", default="agents/pong/teacher")
    args = p.parse_args()
    tn, base = load_agent(args.teacher).net.eval(), load_agent(args.student).net
    data = HeldOut(tn, 20000)
    x_tr, q_tr, agreement = data.x_tr, data.q_tr, data.agreement

    print(f"{args.student} before fine-tuning: {agreement(base)}", flush=True)
    for lr in args.lrs:
        torch.manual_seed(0)
        net = copy.deepcopy(base)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        rng = np.random.default_rng(0)
        for _ in range(args.updates):
            i = rng.integers(0, len(x_tr), 64)
            x, q = torch.as_tensor(x_tr[i]), torch.as_tensor(q_tr[i])
            loss = -(F.softmax(q / 0.01, 1) * F.log_softmax(net(x), 1)).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        print(f"lr {lr:g}, {args.updates} updates: {agreement(net)}", flush=True)


if __name__ == "__main__":
    main()
