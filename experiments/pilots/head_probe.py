"""Does a gmp student's plateau come from the pool throwing away *where* things are?

Starts from a trained gmp student's convolutions and fine-tunes, for the same number of updates
(Adam, batch 64, cross-entropy to softmax(Q/0.01), 20,000 teacher-played states, seed 1):
  plain - the student as it is;
  coord - the last convolution also sees two coordinate channels (CoordConv, Liu et al. 2018;
          zero-initialised, so it starts as the plain student), so a pooled max can carry a
          position;
  flat<H> - the pool replaced by flatten + FC H (Policy Distillation's head; fresh; H 64 when
          omitted);
  wide<K> - a fresh fourth convolution K x K (stride 1) before the pool and a fresh head: each
          pooled cell then sees 36 + 8(K-1) input pixels;
  dil<K>  - the same with a K x K convolution of dilation 2 (36 + 16(K-1) pixels, fewer weights).
Reports the merged-action agreement on 4,000 held-out states (seed 99), overall and on the 10%
with the largest Q-gap. If coord or flat rise far above plain, position is what the pool loses.

    python experiments/pilots/head_probe.py agents/pong/gmp16 [--updates 4000] [--lr 1e-3]
"""

from __future__ import annotations

import argparse
import copy

import torch
import torch.nn.functional as F
from offline_distill import HeldOut
from torch import nn

from rl_compress.models.agent import load_agent


class Variant(nn.Module):
    """The student's first two convolutions, then a plain, coordinate or flat ending."""

    def __init__(self, base: nn.Module, kind: str) -> None:
        super().__init__()
        self.kind = kind
        convs = [copy.deepcopy(m) for m in base.conv if isinstance(m, nn.Conv2d)]
        self.c1, self.c2, last = convs
        self.c3 = last
        if kind == "coord":
            self.c3 = nn.Conv2d(last.in_channels + 2, last.out_channels, 3)
            with torch.no_grad():
                self.c3.weight.zero_()
                self.c3.weight[:, : last.in_channels] = last.weight
                self.c3.bias.copy_(last.bias)
            g = torch.linspace(-1, 1, 9)
            self.register_buffer("xy", torch.stack(torch.meshgrid(g, g, indexing="ij"))[None])
        c = last.out_channels
        if kind.startswith("wide"):
            self.c4 = nn.Conv2d(c, c, int(kind[4:]))
        elif kind.startswith("dil"):
            self.c4 = nn.Conv2d(c, c, int(kind[3:]), dilation=2)
        if kind.startswith("flat"):
            hidden = int(kind[4:] or 64)
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * 49, hidden), nn.ReLU(), nn.Linear(hidden, 6))
        elif kind.startswith(("wide", "dil")):
            self.head = nn.Linear(c, 6)
        else:
            self.head = copy.deepcopy(base.head)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Logits for a uint8 [B,4,84,84] batch."""
        h = F.relu(self.c2(F.relu(self.c1(obs.float() / 255.0))))
        if self.kind == "coord":
            h = torch.cat([h, self.xy.expand(len(h), -1, -1, -1)], 1)
        h = F.relu(self.c3(h))
        if self.kind.startswith(("wide", "dil")):
            h = F.relu(self.c4(h))
        return self.head(h if self.kind.startswith("flat") else h.amax(dim=(2, 3)))


def main() -> None:
    """Collect the states once, then fine-tune each variant for the same updates."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("student")
    p.add_argument("--kinds", nargs="+", default=["plain", "coord", "wide3", "dil3", "wide5", "wide7", "flat16", "flat"])
    p.add_argument("--updates", type=int, default=4000)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--teacher", default="agents/pong/teacher-base")
    args = p.parse_args()
    tn, base = load_agent(args.teacher).net.eval(), load_agent(args.student).net
    data = HeldOut(tn, 20000)
    agreement = data.agreement

    for kind in args.kinds:
        torch.manual_seed(0)
        net = Variant(base, kind)
        before = agreement(net)
        print(f"{kind}: before {before}", flush=True)
        data.fine_tune(net, args.lr, args.updates, report=max(1, args.updates // 4))


if __name__ == "__main__":
    main()
