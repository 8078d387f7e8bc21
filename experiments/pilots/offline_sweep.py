"""Offline distillation sweep on a wall-clock budget: how soon does a student leave the plateau?

The teacher plays (epsilon 0.05, 8 envs, sticky 0.25) 40,000 labelled training states (seed 1)
and 4,000 held-out states (seed 99). Each config then trains for BUDGET seconds on the training
states and reports, at each quarter of the budget, the updates done and the argmax agreement
with the teacher on the held-out states, merged over Pong's duplicate actions: on all states
and on the 10% with the largest gap between the teacher's two best (merged) actions ("top 10% gap").
A run stuck at the share of the teacher's most frequent action predicts a constant.

    python experiments/pilots/offline_sweep.py 120 gmp16:0.01:1e-3:64:0 gmp16:0.01:1e-3:64:0.01
Each config is spec:tau:lr:batch:feature_weight (cross-entropy to softmax(Q/tau), plus
feature_weight x the squared error of a learned linear map of the student's pooled features onto
the teacher's 512-d layer). Budgets are wall-clock: compare configs of one run only.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from offline_distill import HeldOut, in_chunks, train_for_budget

from rl_compress.models.agent import load_agent
from rl_compress.models.networks import build_network, parse_spec


def main() -> None:
    """Collect the states once, then train and report each config for the budget."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("budget", type=float, help="seconds of training per config")
    p.add_argument("configs", nargs="+", help="spec:tau:lr:batch:feature_weight")
    p.add_argument("--teacher", default="agents/pong/teacher-base")
    args = p.parse_args()
    tn = load_agent(args.teacher).net.eval()
    t0 = time.time()
    held = HeldOut(tn, 40000)
    f_tr = in_chunks(tn.features, held.x_tr)
    print("teacher feature mean squared norm", (f_tr ** 2).sum(1).mean().item(), flush=True)
    print(f"collected in {time.time() - t0:.0f}s", flush=True)
    for conf in args.configs:
        spec, tau, lr, bs, fw = conf.split(":")
        torch.manual_seed(0)
        s = build_network(parse_spec(spec), 6)
        proj = torch.nn.Linear(s.head.in_features, 512)

        def loss_of(x: torch.Tensor, i, s=s, proj=proj, tau=float(tau), fw=float(fw)) -> torch.Tensor:
            h, q = s.features(x), torch.as_tensor(held.q_tr[i])
            loss = -(F.softmax(q / tau, 1) * F.log_softmax(s.head(h), 1)).sum(1).mean()
            return loss + fw * ((proj(h) - f_tr[i]) ** 2).sum(1).mean() if fw > 0 else loss

        params = list(s.parameters()) + list(proj.parameters())
        print(conf, train_for_budget(s, loss_of, params, float(lr), int(bs), held, args.budget), flush=True)


if __name__ == "__main__":
    main()
