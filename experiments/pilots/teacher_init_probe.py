"""Offline probe: does a gmp student started from its teacher's convolutions leave the one-action
plateau sooner than one started from random weights?

The teacher plays (epsilon 0.05, 8 envs, sticky 0.25) 40,000 labelled training states (seed 1) and
4,000 held-out states (seed 99), as in offline_sweep.py. Each config trains for BUDGET seconds
(cross-entropy to softmax(Q/tau)) and reports at each quarter of the budget the updates done and
the merged-action agreement with the teacher on the held-out states (all / the 10% with the largest
Q-gap). ``teacher`` starts copy the teacher's most useful channels (rl_compress.models.transplant,
chosen on 2,000 training states); ``scratch`` starts are the default random init.

    python experiments/pilots/teacher_init_probe.py 150 gmp16:scratch:1e-3:64 gmp16:teacher:1e-3:64
Each config is spec:init:lr:batch[:tau] (tau default 0.01). Budgets are wall-clock: compare the
configs of one run only.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from offline_distill import HeldOut, train_for_budget

from rl_compress.models.agent import load_agent
from rl_compress.models.networks import build_network, parse_spec
from rl_compress.models.transplant import init_from_teacher


def main() -> None:
    """Collect the states once, then train and report each config for the budget."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("budget", type=float, help="seconds of training per config")
    p.add_argument("configs", nargs="+", help="spec:init:lr:batch[:tau]")
    p.add_argument("--teacher", default="agents/pong/teacher")
    p.add_argument("--seed", type=int, default=0, help="seed of the student's init and batches")
    args = p.parse_args()
    tn = load_agent(args.teacher).net.eval()
    t0 = time.time()
    held = HeldOut(tn, 40000)
    print(f"collected in {time.time() - t0:.0f}s", flush=True)
    for conf in args.configs:
        spec, init, lr, bs, *rest = conf.split(":")
        tau = float(rest[0]) if rest else 0.01
        torch.manual_seed(args.seed)
        s = build_network(parse_spec(spec), 6)
        if init == "teacher":
            init_from_teacher(s, tn, torch.as_tensor(held.x_tr[:2000]))

        def loss_of(x: torch.Tensor, i, s=s, tau=tau) -> torch.Tensor:
            q = torch.as_tensor(held.q_tr[i])
            return -(F.softmax(q / tau, 1) * F.log_softmax(s(x), 1)).sum(1).mean()

        report = train_for_budget(s, loss_of, list(s.parameters()), float(lr), int(bs), held, args.budget, args.seed)
        print(conf, report, flush=True)


if __name__ == "__main__":
    main()
