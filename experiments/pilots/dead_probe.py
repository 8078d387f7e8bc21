"""Dead ReLU channels in gmp students: how many, when they die, and whether recycling helps.

The teacher plays 20,000 training states (seed 1) and 4,000 held-out states (seed 99), as in
offline_distill.py. First the dead channels of each shipped student on 256 of the training states
(a channel is dead when its ReLU is zero at every position of every state). Then, offline, with
cross-entropy to softmax(Q/0.01), Adam lr 1e-3, batch 64:

    python experiments/pilots/dead_probe.py scratch gmp16 8000 1e-8:0 1e-5:0 1e-8:250
        trains a fresh student (seed 1) per config adam_eps:recycle_every (0 = no recycling), with
        ":center" at the end: biases centred on the data first (center_biases below), or ":leaky":
        LeakyReLU(0.01) in place of the conv ReLUs;
    python experiments/pilots/dead_probe.py finetune agents/pong/gmp16 4000 0 250
        fine-tunes a shipped student per recycle_every.

Each quarter of the updates prints the held-out merged agreement (all / top 10% Q-gap), the dead
channels per conv layer and how many were recycled so far.
"""

from __future__ import annotations

import argparse
import copy

import torch
import torch.nn.functional as F
from offline_distill import HeldOut

from rl_compress.models.agent import load_agent
from rl_compress.models.networks import build_network, conv_activations, conv_layers, parse_spec
from rl_compress.train.distill import dead_channels, recycle_dead_channels

SHIPPED = ["agents/pong/gmp16", "agents/pong/gmp15-w5", "agents/pong/gmp8-w5"]


@torch.no_grad()
def center_biases(net: torch.nn.Module, obs: torch.Tensor) -> list[int]:
    """Data-dependent init: shift each conv layer's bias, input first, so that every channel's
    pre-activation has mean zero over ``obs`` (all states and positions). On nearly constant
    frames (Pong's background) default init leaves many channels negative everywhere, dead from
    the first update; centred, each one is active where its input is above its mean. Returns the
    channels per layer that were dead on ``obs`` before the shift."""
    convs = conv_layers(net)
    dead = []
    for i, conv in enumerate(convs):
        if i == 0:
            x = obs.float() * (1.0 / 255.0)
        else:
            x = conv_activations(net.conv, obs)[i - 1]
        pre = F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding)
        dead.append(int((pre.amax(dim=(0, 2, 3)) <= 0).sum()))
        conv.bias -= pre.mean(dim=(0, 2, 3))
    return dead


def train(net: torch.nn.Module, ho: HeldOut, updates: int, eps: float, recycle: int, label: str) -> None:
    """``updates`` Adam steps on the training states, recycling dead channels every ``recycle``."""
    probe = torch.as_tensor(ho.x_tr[:256])
    total = [0]

    def after_step(u: int, x: torch.Tensor, opt: torch.optim.Optimizer) -> None:
        if recycle and u % recycle == 0:
            total[0] += sum(recycle_dead_channels(net, x, opt))
        if u % max(1, updates // 4) == 0:
            dead = [len(d) for d in dead_channels(net, probe)]
            print(f"{label} {u}: {ho.agreement(net)}, dead {dead}, recycled {total[0]}", flush=True)

    ho.fine_tune(net, 1e-3, updates, eps=eps, after_step=after_step)


def main() -> None:
    """Count the shipped students' dead channels, then run the configs."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["scratch", "finetune"])
    p.add_argument("student", help="spec (scratch) or agent directory (finetune)")
    p.add_argument("updates", type=int)
    p.add_argument("configs", nargs="+", help="scratch: adam_eps:recycle_every; finetune: recycle_every")
    args = p.parse_args()
    torch.set_num_threads(1)
    ho = HeldOut(load_agent("agents/pong/teacher-base").net.eval(), 20000)
    probe = torch.as_tensor(ho.x_tr[:256])
    for d in SHIPPED:
        print(d, "dead channels per conv layer:", [len(x) for x in dead_channels(load_agent(d).net, probe)])
    base = load_agent(args.student).net if args.mode == "finetune" else None
    if base is not None:
        print("start", ho.agreement(base))
    for c in args.configs:
        label = f"{args.student} {c}"
        if base is None:
            eps, recycle = float(c.split(":")[0]), int(c.split(":")[1])
            torch.manual_seed(1)
            net = build_network(parse_spec(args.student), 6)
            if c.endswith(":leaky"):  # LeakyReLU(0.01) in place of every conv ReLU
                for i, m in enumerate(net.conv):
                    if isinstance(m, torch.nn.ReLU):
                        net.conv[i] = torch.nn.LeakyReLU(0.01)
            if c.endswith(":center"):  # data-dependent init on 256 training states
                print("dead before centring", center_biases(net, torch.as_tensor(ho.x_tr[:256])))
        else:
            eps, recycle = 1e-8, int(c)
            net = copy.deepcopy(base)
        train(net, ho, args.updates, eps, recycle, label)


if __name__ == "__main__":
    main()
