"""Offline distillation probe: how fast does a student learn the teacher's policy?

The teacher plays (epsilon 0.05, 8 envs, sticky 0.25) to fill a fixed set of labelled states
(seed 1) and a held-out set (seed 99); each student config then trains on the fixed set with
batch 64 and reports, every quarter of its updates, its argmax agreement with the teacher on
the held-out states: exact, and merged over Pong's duplicate actions (NOOP=FIRE,
RIGHT=RIGHTFIRE, LEFT=LEFTFIRE). No env interaction while training: this isolates the
learning of the student from the actor.

    python experiments/pilots/offline_distill.py --teacher agents/pong/teacher-base \
        --states 30000 --updates 8000 gmp16:ce:0.1:2.5e-4 gmp16:ce:0.01:2.5e-4 gmp32:ce:0.01:1e-3
Each config is spec:loss:tau:lr[:bf16] with loss ce (softmax(Q/tau) cross-entropy) or nll (argmax);
a fifth field bf16 runs the student's forward pass under bfloat16 autocast, as `distill
--precision bf16` does.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rl_compress.atari.envs import EnvConfig, make_vector_env
from rl_compress.models.agent import load_agent
from rl_compress.models.networks import bf16_autocast, build_network, parse_spec

PONG_MERGE = torch.tensor([0, 0, 1, 2, 1, 2])


def in_chunks(fn: Callable[[torch.Tensor], torch.Tensor], x: Any, size: int = 500) -> torch.Tensor:
    """fn over ``x`` (array or tensor of states) in chunks of ``size``, without gradients, concatenated."""
    with torch.no_grad():
        return torch.cat([fn(torch.as_tensor(x[i:i + size])) for i in range(0, len(x), size)])


def merged_gap(q: torch.Tensor) -> torch.Tensor:
    """Per state, the gap between the teacher's two best actions, Pong's duplicates merged (max)."""
    g = torch.stack([q[:, k == PONG_MERGE].max(1).values for k in range(int(PONG_MERGE.max()) + 1)], 1)
    top = g.topk(2, dim=1).values
    return top[:, 0] - top[:, 1]


def collect(net: torch.nn.Module, game: str, n: int, seed: int, eps: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """n states played by the teacher (epsilon-greedy) and its Q-values on them."""
    env = make_vector_env(game, 8, EnvConfig(sticky=0.25), num_threads=1)
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    xs, qs = [], []
    with torch.no_grad():
        while len(xs) * 8 < n:
            q = net(torch.as_tensor(obs))
            xs.append(obs.copy())
            qs.append(q.numpy())
            act = q.argmax(1).numpy()
            explore = rng.random(8) < eps
            act[explore] = rng.integers(0, q.shape[1], int(explore.sum()))
            obs, *_ = env.step(act)
    env.close()
    return np.concatenate(xs), np.concatenate(qs)


class HeldOut:
    """Training states (seed 1) and held-out states (seed 99) the teacher plays, and the merged-action
    agreement of a network with the teacher on the held-out ones: overall and on the 10% with the
    largest Q-gap."""

    def __init__(self, teacher: torch.nn.Module, n_train: int, n_test: int = 4000) -> None:
        self.x_tr, self.q_tr = collect(teacher, "pong", n_train, 1)
        self.x_te, self.q_te = (torch.as_tensor(a) for a in collect(teacher, "pong", n_test, 99))
        gap = merged_gap(self.q_te)
        self.crit = gap >= gap.quantile(0.9)

    def fine_tune(
        self, net: torch.nn.Module, lr: float, updates: int, report: int = 0, eps: float = 1e-8,
        after_step: Callable[[int, torch.Tensor, torch.optim.Optimizer], None] | None = None, bf16: bool = False,
    ) -> None:
        """``updates`` Adam steps (batch 64, seed 0) of cross-entropy to softmax(Q/0.01) on the training
        states; every ``report`` updates (0: never) print the held-out agreement; ``after_step(u, x,
        opt)`` runs after update ``u`` on batch ``x``; ``bf16``: the forward pass under bfloat16 autocast."""
        opt = torch.optim.Adam(net.parameters(), lr=lr, eps=eps)
        rng = np.random.default_rng(0)
        for u in range(1, updates + 1):
            i = rng.integers(0, len(self.x_tr), 64)
            x, q = torch.as_tensor(self.x_tr[i]), torch.as_tensor(self.q_tr[i])
            with bf16_autocast(bf16):
                z = net(x)
            loss = -(F.softmax(q / 0.01, 1) * F.log_softmax(z.float(), 1)).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if after_step is not None:
                after_step(u, x, opt)
            if report and u % report == 0:
                print(f"  {u} updates: {self.agreement(net)}", flush=True)

    def agreement(self, net: torch.nn.Module) -> str:
        """'all A, top 10% gap B' for ``net`` on the held-out states."""
        hit = (PONG_MERGE[self.q_te.argmax(1)] == PONG_MERGE[in_chunks(net, self.x_te).argmax(1)]).float()
        return f"all {hit.mean().item():.3f}, top 10% gap {hit[self.crit].mean().item():.3f}"


def train_for_budget(
    net: torch.nn.Module, loss_of: Callable[[torch.Tensor, np.ndarray], torch.Tensor],
    params: list[torch.nn.Parameter], lr: float, batch: int, held: HeldOut, budget: float, seed: int = 0,
) -> str:
    """Adam on ``loss_of(x, i)`` (a batch of ``held``'s training states and their indices) for
    ``budget`` wall-clock seconds; at each quarter of the budget, the updates done and
    ``held.agreement(net)``, joined with ' | '."""
    opt = torch.optim.Adam(params, lr=lr)
    rng = np.random.default_rng(seed)
    start, updates, out, next_report = time.time(), 0, [], budget / 4
    while True:
        i = rng.integers(0, len(held.x_tr), batch)
        loss = loss_of(torch.as_tensor(held.x_tr[i]), i)
        opt.zero_grad()
        loss.backward()
        opt.step()
        updates += 1
        elapsed = time.time() - start
        if elapsed >= next_report:
            out.append(f"{elapsed:.0f}s/{updates}u: {held.agreement(net)}")
            next_report += budget / 4
            if elapsed >= budget:
                return " | ".join(out)


def main() -> None:
    """Parse the configs, collect the states once, train and report each config."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", default="agents/pong/teacher-base")
    p.add_argument("--states", type=int, default=30000)
    p.add_argument("--updates", type=int, default=8000)
    p.add_argument("configs", nargs="+", help="spec:loss:tau:lr")
    args = p.parse_args()
    teacher = load_agent(args.teacher)
    net = teacher.net.eval()
    t0 = time.time()
    x_tr, q_tr = collect(net, teacher.game, args.states, 1)
    x_te, q_te = torch.as_tensor(collect(net, teacher.game, 4000, 99)[0]), None
    q_te = in_chunks(net, x_te)
    print(f"collected {len(x_tr)} + {len(x_te)} states in {time.time() - t0:.1f} s", flush=True)
    for conf in args.configs:
        spec, loss, tau, lr, *prec = conf.split(":")
        bf16 = prec == ["bf16"]
        torch.manual_seed(0)
        s = build_network(parse_spec(spec), teacher.num_actions)
        opt = torch.optim.Adam(s.parameters(), lr=float(lr))
        rng = np.random.default_rng(0)
        t, out = time.time(), []
        for u in range(1, args.updates + 1):
            i = rng.integers(0, len(x_tr), 64)
            x, q = torch.as_tensor(x_tr[i]), torch.as_tensor(q_tr[i])
            with bf16_autocast(bf16):
                z = s(x)
            z = z.float()
            if loss == "nll":
                lo = F.cross_entropy(z, q.argmax(1))
            else:
                lo = -(F.softmax(q / float(tau), 1) * F.log_softmax(z, 1)).sum(1).mean()
            opt.zero_grad()
            lo.backward()
            opt.step()
            if u % max(args.updates // 4, 1) == 0:
                pred = in_chunks(s, x_te).argmax(1)
                exact = (pred == q_te.argmax(1)).float().mean().item()
                merged = (PONG_MERGE[pred] == PONG_MERGE[q_te.argmax(1)]).float().mean().item() \
                    if teacher.game == "pong" else float("nan")
                out.append(f"{u}: {exact:.3f}/{merged:.3f}")
        print(f"{conf}  agreement exact/merged  " + "  ".join(out) + f"  ({time.time() - t:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
