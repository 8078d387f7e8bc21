"""Import a CleanRL Atari agent as an agent directory's network: ``dqn_atari.py``'s
``.cleanrl_model`` (the state dict of its ``QNetwork``: Q-values) or ``ppo_atari.py``'s (its ``Agent``:
the same trunk, an ``actor`` head of policy logits, which becomes the head, and a ``critic``, dropped).

CleanRL's QNetwork is ``nn.Sequential(Conv2d(4, 32, 8, 4), ReLU, Conv2d(32, 64, 4, 2), ReLU,
Conv2d(64, 64, 3, 1), ReLU, Flatten, Linear(3136, 512), ReLU, Linear(512, A))`` applied to
``x / 255.0``: the Nature DQN, on the same uint8 [4,84,84] stacks (frame skip 4 with a max over the
last two frames, 84x84 grey, 4 frames oldest first, the minimal action set). The file is read with
``torch.load(weights_only=True)``: nothing is unpickled.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch

from rl_compress.atari.games import num_actions as game_actions
from rl_compress.atari.games import resolve_game
from rl_compress.core.errors import UserError, first_line
from rl_compress.core.files import sha256_file
from rl_compress.models.agent import check_imported_tensors, make_card
from rl_compress.models.networks import build_network

# CleanRL QNetwork.network index -> our NatureDQN
_LAYERS = {"network.0": "conv.0", "network.2": "conv.2", "network.4": "conv.4", "network.7": "fc.1", "network.9": "head"}


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A ``.cleanrl_model`` file's tensors (``weights_only``); one clear line for anything else."""
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():  # torch's notes on odd pickles would break the one-line error
            warnings.simplefilter("ignore")
            state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - weights_only refusals and corrupt files: one line
        raise UserError(f"{path}: cannot read it safely as a state dict ({first_line(e)})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path}: not a state dict of tensors")
    return state


def convert_cleanrl(path: Path, game: str) -> tuple[Any, dict[str, Any]]:
    """The network and card of the CleanRL DQN model at ``path`` for ``game``, in memory."""
    path, game = Path(path), resolve_game(game)
    state = read_state_dict(path)
    ppo = any(k.startswith(("actor.", "critic.")) for k in state)
    layers = {**{k: v for k, v in _LAYERS.items() if k != "network.9"}, "actor": "head"} if ppo else _LAYERS
    expected = {f"{src}.{p}" for src in layers for p in ("weight", "bias")} | (
        {"critic.weight", "critic.bias"} if ppo else set())
    if set(state) != expected:
        missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
        what = "ppo_atari Agent" if ppo else "dqn_atari QNetwork"
        raise UserError(f"{path}: not CleanRL's {what} (missing {missing[:3]}, unexpected {extra[:3]})")
    check_imported_tensors(state, path)
    n_act = int(state["actor.weight" if ppo else "network.9.weight"].shape[0])
    if n_act != game_actions(game):
        raise UserError(f"{path}: model has {n_act} actions, {game} has {game_actions(game)} (minimal action set)")
    if tuple(state["network.0.weight"].shape[1:]) != (4, 8, 8):
        raise UserError(f"{path}: first convolution takes {list(state['network.0.weight'].shape[1:])}, "
                        "not 4 stacked frames with 8x8 kernels")
    mapped = {f"{dst}.{p}": state[f"{src}.{p}"] for src, dst in layers.items() for p in ("weight", "bias")}
    arch: dict[str, Any] = {"name": "nature_dqn", "channels": [int(mapped[f"conv.{i}.weight"].shape[0]) for i in (0, 2, 4)],
                            "hidden": int(mapped["fc.1.weight"].shape[0])}
    net = build_network(arch, n_act)
    try:
        net.load_state_dict(mapped)
    except RuntimeError as e:
        raise UserError(f"{path}: weights do not fit {arch} ({first_line(e)})") from None
    source = "CleanRL ppo_atari Agent (its critic is dropped)" if ppo else "CleanRL dqn_atari QNetwork"
    training = {"source": source, "path": str(path), "sha256": sha256_file(path)}
    return net, make_card("teacher", game, arch, net, training=training,
                          outputs="policy_logits" if ppo else "q_values")
