"""Start a gmp student from its teacher's convolutions instead of from random weights.

A gmp student has the teacher's conv geometry (8x8/4, 4x4/2, 3x3/1) with fewer channels, so each
of its first three convolutions can take a sub-block of the teacher's: the teacher's most useful
channels of each layer, and of their weights only the inputs that come from the channels kept in
the layer before. "Useful" is measured on states the teacher plays, layer by layer on the
already-cut network: a channel's mean ReLU output times the norm of the weights that carry it on
(to the next convolution, or to the teacher's hidden layer for the last one), the usual
activation-times-weight criterion of structured pruning. A fourth (``-w<K>``) convolution, the
pool and the head keep their random initialisation.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import nn

from rl_compress.core.device import model_device, to_device
from rl_compress.core.errors import UserError
from rl_compress.models.networks import FlatStudent, GMPStudent, NatureDQN, conv_layers
from rl_compress.models.prune import agent_states

STATES = 2_000  # states the teacher plays on which its channels are judged


def _outgoing_norm(teacher: NatureDQN, layer: int) -> torch.Tensor:
    """Per channel of the teacher's conv ``layer`` (0-2), the norm of the weights that read it."""
    convs = conv_layers(teacher)
    if layer + 1 < len(convs):
        w = convs[layer + 1].weight  # [Cout, Cin, k, k]
        return w.transpose(0, 1).flatten(1).norm(dim=1)
    fc = teacher.fc[1].weight  # [hidden, C * 7 * 7], flattened channel-major
    c = convs[layer].out_channels
    return fc.view(fc.shape[0], c, -1).transpose(0, 1).flatten(1).norm(dim=1)


def teacher_channels(teacher: NatureDQN, states: torch.Tensor, widths: list[int]) -> list[torch.Tensor]:
    """The teacher's channels to keep in each of its three convolutions (``widths`` of them,
    sorted), chosen layer by layer on ``states`` (uint8 [N,4,84,84]) as the module docstring says."""
    convs = conv_layers(teacher)
    if len(widths) != 3 or any(not 0 < w <= c.out_channels for w, c in zip(widths, convs)):
        raise UserError(f"widths {widths} do not fit the teacher's convolutions "
                        f"{[c.out_channels for c in convs]}")
    keep: list[torch.Tensor] = []
    with torch.no_grad():
        h = states.float() / 255.0
        inputs = torch.arange(convs[0].in_channels, device=states.device)
        for layer, (conv, width) in enumerate(zip(convs, widths)):
            act = torch.relu(nn.functional.conv2d(h, conv.weight[:, inputs], conv.bias, conv.stride))
            score = act.mean(dim=(0, 2, 3)) * _outgoing_norm(teacher, layer)
            chosen = score.topk(width).indices.sort().values
            keep.append(chosen)
            h, inputs = act[:, chosen], chosen
    return keep


def can_start_from(student: nn.Module, teacher: nn.Module) -> bool:
    """Whether ``student`` can take ``teacher``'s convolutions: a gmp or flat student (the
    teacher's conv geometry) and a Nature-DQN teacher with at least the student's widths."""
    if not isinstance(student, (GMPStudent, FlatStudent)) or not isinstance(teacher, NatureDQN):
        return False
    return all(s.out_channels <= t.out_channels for s, t in zip(conv_layers(student)[:3], conv_layers(teacher)))


def init_from_teacher(student: nn.Module, teacher: NatureDQN, states: torch.Tensor) -> list[torch.Tensor]:
    """Copy the teacher's chosen channels (``teacher_channels``) into the student's first three
    convolutions, in place; returns the chosen channel indices per layer."""
    if not can_start_from(student, teacher):
        raise UserError("a teacher start needs a gmp or flat student no wider than its Nature-DQN teacher")
    s_convs, t_convs = conv_layers(student)[:3], conv_layers(teacher)
    keep = teacher_channels(teacher, states, [c.out_channels for c in s_convs])
    with torch.no_grad():
        inputs = torch.arange(t_convs[0].in_channels, device=keep[0].device)
        for s_conv, t_conv, chosen in zip(s_convs, t_convs, keep):
            s_conv.weight.copy_(t_conv.weight[chosen][:, inputs])
            s_conv.bias.copy_(t_conv.bias[chosen])
            inputs = chosen
    return keep


def start_from_teacher(student: nn.Module, teacher: Any, seed: int) -> dict[str, Any]:
    """``init_from_teacher`` on ``STATES`` states the teacher (an agent) plays (epsilon 0.1, the
    evaluation protocol's sticky actions, seed ``seed``); returns what the card records."""
    t0 = time.perf_counter()
    states = to_device(agent_states(teacher, STATES, seed), model_device(student))
    keep = init_from_teacher(student, teacher.net, states)
    return {"from": "teacher", "states": STATES, "seed": seed, "channels": [k.tolist() for k in keep],
            "seconds": round(time.perf_counter() - t0, 2)}
