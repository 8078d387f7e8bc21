"""Channel pruning of gmp students: drop the conv channels that are dead on the states the agent
plays (exact: a channel whose ReLU is zero everywhere adds nothing downstream), then, to reach a
parameter budget, the live channels whose removal changes the agent's actions least.

A pruned agent is an ordinary student of a smaller spec (``gmp<C1>-<C2>-<C3>[-<C4>]-w<K>``); its
card keeps the source's training and teacher, with a "pruned_from" entry. Distilling it further
(``rl-compress distill --init-from DIR``) recovers what the extra pruning cost.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rl_compress.atari.envs import played_observations
from rl_compress.core.device import announce_choice, model_device, resolve_device, to_device
from rl_compress.core.errors import UserError, arg_name
from rl_compress.core.files import sha256_file
from rl_compress.core.outputs import check_not_inputs, check_output_dir
from rl_compress.core.rundir import claim_output_dir, own_run_dir
from rl_compress.models.agent import WEIGHTS, Agent, load_agent, make_card, save_agent
from rl_compress.models.networks import (
    GMPStudent,
    build_network,
    conv_activations,
    conv_layers,
    count_params,
    parse_spec,
)


def spec_for(net: GMPStudent, widths: list[int] | None = None) -> str:
    """The spec of a gmp student's shape, with the conv widths replaced by ``widths`` if given."""
    convs = conv_layers(net)
    w = widths if widths is not None else [c.out_channels for c in convs]
    spec = f"gmp{w[0]}-{w[1]}-{w[2]}"
    if len(convs) == 4:
        spec += f"-{w[3]}-w{convs[3].kernel_size[0]}"
    hidden = net.hidden[0].out_features if isinstance(net.hidden, nn.Sequential) else 0
    return spec + (f"-h{hidden}" if hidden else "")


def keep_channels(net: GMPStudent, keep: list[torch.Tensor]) -> GMPStudent:
    """A copy of ``net`` with only the ``keep`` channel indices of each conv layer (input first):
    each layer's outputs and the next layer's (or the head's) inputs are sliced."""
    if not isinstance(net, GMPStudent):
        raise UserError("pruning works on gmp students")
    convs = conv_layers(net)
    if len(keep) != len(convs) or any(len(k) == 0 for k in keep):
        raise UserError("every conv layer must keep at least one channel")
    device = model_device(net)
    new = build_network(parse_spec(spec_for(net, [len(k) for k in keep])), net.num_actions).to(device)
    new_convs = conv_layers(new)
    with torch.no_grad():
        prev = torch.arange(4, device=device)
        for old, fresh, k in zip(convs, new_convs, keep):
            fresh.weight.copy_(old.weight[k][:, prev])
            fresh.bias.copy_(old.bias[k])
            prev = k
        first = new.hidden[0] if isinstance(new.hidden, nn.Sequential) else new.head
        src = net.hidden[0] if isinstance(net.hidden, nn.Sequential) else net.head
        first.weight.copy_(src.weight[:, prev])
        first.bias.copy_(src.bias)
        if isinstance(new.hidden, nn.Sequential):
            new.head.load_state_dict(net.head.state_dict())
    return new.eval()


def live_channels(net: GMPStudent, obs: torch.Tensor) -> list[torch.Tensor]:
    """Per conv layer, the channels whose ReLU is positive somewhere on ``obs``."""
    with torch.no_grad():
        acts = conv_activations(net.conv, obs)
    return [(a.amax(dim=(0, 2, 3)) > 0).nonzero().flatten() for a in acts]


def _logits(net: nn.Module, obs: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([net(obs[i:i + chunk]) for i in range(0, len(obs), chunk)])


def prune_to_budget(
    net: GMPStudent, obs: torch.Tensor, max_params: int, log: Any = None, target: torch.Tensor | None = None
) -> tuple[GMPStudent, list[dict[str, Any]]]:
    """Remove live channels one at a time, each time the one whose removal keeps the most of the
    original network's actions (argmax agreement on ``obs``; ties: the smallest mean change of the
    logits), until the network has at most ``max_params`` parameters. Returns the network and the
    steps taken. ``target``: ``net``'s logits on ``obs`` where the caller has them already."""
    target = _logits(net, obs) if target is None else target
    act = target.argmax(1)
    keep = [torch.arange(c.out_channels, device=target.device) for c in conv_layers(net)]
    steps: list[dict[str, Any]] = []
    current = net
    while count_params(current) > max_params:
        best: tuple[float, float, int, int] | None = None
        for layer, k in enumerate(keep):
            if len(k) <= 1:
                continue
            for j in range(len(k)):
                trial = [kk if i != layer else torch.cat([k[:j], k[j + 1:]]) for i, kk in enumerate(keep)]
                out = _logits(keep_channels(net, trial), obs)
                agree = float((out.argmax(1) == act).float().mean())
                change = float((out - target).abs().mean())
                if best is None or (agree, -change) > (best[0], -best[1]):
                    best = (agree, change, layer, j)
        if best is None:
            raise UserError(f"cannot reach {max_params} parameters: every layer is down to one channel")
        agree, change, layer, j = best
        removed = int(keep[layer][j])
        keep[layer] = torch.cat([keep[layer][:j], keep[layer][j + 1:]])
        current = keep_channels(net, keep)
        steps.append({"layer": layer, "channel": removed, "agreement": round(agree, 4),
                      "params": count_params(current)})
        if log is not None:
            log(f"removed channel {removed} of conv {layer + 1}: {count_params(current)} params, "
                f"agreement with the unpruned agent {agree:.3f}")
    return current, steps


def agent_states(agent: Agent, n: int, seed: int, epsilon: float = 0.1, every: int = 4) -> np.ndarray:
    """``n`` observations [n,4,84,84] uint8 that ``agent`` meets playing epsilon-greedy (the
    evaluation protocol's sticky actions, 8 environments), one every ``every`` steps."""
    return played_observations(agent.game, n, lambda obs: agent.predict(obs)[0], seed, epsilon, every)


def _check_prune_args(src: Path, out: Path | str, states: int, max_params: int | None, force: bool) -> Path:
    """Refuse an output that is or holds the source (or cannot be claimed) and impossible numbers,
    with one line each; returns the checked output directory."""
    out = check_output_dir(out)
    if out.resolve() == src.resolve():
        raise UserError(f"{out}: {arg_name('out')} is the source agent; choose another directory")
    check_not_inputs(out, [src])
    if out.exists() and any(not p.name.startswith(".") for p in out.iterdir()) and not force:
        claim_output_dir(out, can_resume=False)  # refuses with the reason
    if states < 64:
        raise UserError(f"{arg_name('states')} must be at least 64, got {states}")
    if max_params is not None and max_params < 1:
        raise UserError(f"{arg_name('max_params')} must be positive, got {max_params}")
    return out


def prune_agent(
    src: Path, out: Path, states: int = 4000, seed: int = 0, max_params: int | None = None,
    command: str | None = None, log: Any = None, force: bool = False, device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Prune the gmp student in ``src`` into ``out`` on ``device``: dead channels first, then
    (``max_params``) the least needed live ones. Returns the new card. ``out`` must be new or
    empty; ``force`` replaces the agent it holds."""
    src, out = Path(src), _check_prune_args(Path(src), out, states, max_params, force)
    torch_device = resolve_device(device, announce=False)
    agent = load_agent(src)
    agent.net.to(torch_device)
    if agent.card.get("kind") != "student" or not isinstance(agent.net, GMPStudent):
        raise UserError(f"{src}: pruning works on gmp students, not {agent.card['arch'].get('spec', agent.card['arch'].get('name'))!r}")
    if log is not None:
        announce_choice(device, torch_device)
    t0 = time.time()
    torch.manual_seed(seed)
    obs = to_device(agent_states(agent, states, seed), torch_device)
    net = agent.net.eval()
    before = count_params(net)
    live = live_channels(net, obs)
    if any(len(k) == 0 for k in live):
        raise UserError(f"{src}: a conv layer has no live channel on {states} states; the agent gives every "
                        "state the same outputs")
    pruned = keep_channels(net, live)
    dead = [c.out_channels - len(k) for c, k in zip(conv_layers(net), live)]
    original, pruned_logits = _logits(net, obs), _logits(pruned, obs)
    exact = float((pruned_logits - original).abs().max())
    if log is not None:
        log(f"{src}: dead channels per conv layer {dead}; {before} -> {count_params(pruned)} params "
            f"(largest logit change on the {states} states: {exact:.2e})")
    steps: list[dict[str, Any]] = []
    if max_params is not None and count_params(pruned) > max_params:
        pruned, steps = prune_to_budget(pruned, obs, max_params, log, target=pruned_logits)
        pruned_logits = _logits(pruned, obs)
    agree = float((pruned_logits.argmax(1) == original.argmax(1)).float().mean())
    training = dict(agent.card.get("training") or {})
    training["wall_time_s"] = round(float(training.get("wall_time_s") or 0.0) + time.time() - t0, 1)
    training["command"] = command or f"rl-compress prune {src} --out {out} --states {states}" + (
        f" --max-params {max_params}" if max_params is not None else "")
    training["pruned_from"] = {
        "agent": str(src), "spec": agent.card["arch"].get("spec"), "params": before,
        "weights_sha256": sha256_file(src / WEIGHTS), "states": states, "seed": seed,
        "dead_channels": dead, "removed_live": steps, "agreement": round(agree, 4),
    }
    # the source's evaluations belong to other weights: not carried over
    training.pop("last_eval", None)
    training["eval_history"] = []
    card = make_card("student", agent.game, parse_spec(spec_for(pruned)), pruned, training=training,
                     teacher=agent.card.get("teacher"))
    with own_run_dir(out, force=force, can_resume=False):
        save_agent(out, pruned, card)
    return card
