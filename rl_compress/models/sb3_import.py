"""Convert a stable-baselines3 / RL Zoo DQN (or sb3-contrib QR-DQN) zip as an agent directory.

Nothing is unpickled: the weights are read with ``torch.load(weights_only=True)`` and the
metadata from the zip's JSON ``data`` entry (its readable fields, never ":serialized:").
SB3's Atari observations (AtariWrapper + VecFrameStack(4) + VecTransposeImage) are the same
uint8 [4,84,84] stacks, oldest frame first, scaled by 1/255 inside the network.
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from rl_compress.atari.games import num_actions as game_actions
from rl_compress.atari.games import resolve_game
from rl_compress.core.errors import UserError, first_line
from rl_compress.core.files import sha256_file
from rl_compress.models.agent import check_imported_tensors, make_card
from rl_compress.models.networks import build_network

# SB3 NatureCNN + head -> our NatureDQN
_LAYERS = {
    "features_extractor.cnn.0": "conv.0",
    "features_extractor.cnn.2": "conv.2",
    "features_extractor.cnn.4": "conv.4",
    "features_extractor.linear.0": "fc.1",
}


MAX_ENTRY_BYTES = {"data": 16 * 2**20, "policy.pth": 1024 * 2**20}  # far above any Atari DQN's


def _read_entry(z: zipfile.ZipFile, name: str, path: Path) -> bytes:
    """One entry of the zip, refused once it expands past ``MAX_ENTRY_BYTES`` (a zip bomb costs
    nothing: the stated size is checked first, then at most one byte past the limit is read)."""
    limit = MAX_ENTRY_BYTES[name]
    if z.getinfo(name).file_size > limit:
        raise UserError(f"{path}: its {name!r} entry expands to {z.getinfo(name).file_size:,} bytes, more than "
                        f"an SB3 model holds ({limit:,} at most)")
    with z.open(name) as f:
        raw = f.read(limit + 1)
    if len(raw) > limit:
        raise UserError(f"{path}: its {name!r} entry expands past {limit:,} bytes")
    return raw


def _read_zip(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        with zipfile.ZipFile(path) as z:
            raw_data, raw_policy = _read_entry(z, "data", path), _read_entry(z, "policy.pth", path)
    except zipfile.BadZipFile:
        raise UserError(f"{path}: not a zip file") from None
    except KeyError as e:
        raise UserError(f"{path}: not an SB3 model zip (no {e.args[0]!r} entry)") from None
    except (OSError, zipfile.LargeZipFile, RuntimeError, NotImplementedError) as e:
        raise UserError(f"{path}: unreadable zip ({first_line(e)})") from None
    try:
        data = json.loads(raw_data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{path}: its 'data' entry is not JSON (SB3 writes JSON there; nothing else is read)") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: its 'data' entry is not a JSON object")
    try:
        with warnings.catch_warnings():  # torch's notes on odd pickles would break the one-line error
            warnings.simplefilter("ignore")
            state = torch.load(io.BytesIO(raw_policy), weights_only=True, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - weights_only refusals and corrupt pickles: one line
        raise UserError(f"{path}: cannot read policy.pth safely ({first_line(e)})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path}: policy.pth is not a state dict of tensors")
    return data, state


def _policy_keys(path: Path, data: dict[str, Any], state: dict[str, Any], game: str) -> tuple[str, str, str, int]:
    """Which SB3 policy the zip holds, checked against ``game``: (state prefix, head key, algorithm,
    actions); anything but a NatureCNN DQN / QR-DQN / PPO / A2C policy on uint8 [4,84,84] is refused."""
    for key in ("policy_class", "observation_space", "action_space", "policy_kwargs"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise UserError(f"{path}: its data's {key!r} is a {type(data[key]).__name__}, not the object SB3 writes")
    module = str((data.get("policy_class") or {}).get("__module__", ""))
    if module.startswith("stable_baselines3.dqn"):
        prefix, head_key, algo = "q_net.", "q_net.q_net", "DQN"
    elif module.startswith("sb3_contrib.qrdqn"):
        prefix, head_key, algo = "quantile_net.", "quantile_net.quantile_net", "QR-DQN"
    elif module.startswith("stable_baselines3.common.policies") and "action_net.weight" in state:
        prefix, head_key, algo = "", "action_net", "actor-critic (PPO / A2C)"
    else:
        raise UserError(f"{path}: policy {module or 'unknown'!r} is not an SB3 DQN, QR-DQN, PPO or A2C policy")
    obs_space = data.get("observation_space") or {}
    if obs_space.get("_shape") != [4, 84, 84] or obs_space.get("dtype") != "uint8":
        raise UserError(f"{path}: observation space {obs_space.get('_shape')} {obs_space.get('dtype')} is not uint8 [4,84,84]")
    if (data.get("policy_kwargs") or {}).get("normalize_images") is False:
        raise UserError(f"{path}: policy does not scale images by 1/255")
    try:
        n_act = int((data.get("action_space") or {}).get("n"))
    except (TypeError, ValueError):
        raise UserError(f"{path}: action space is not Discrete") from None
    if n_act != game_actions(game):
        raise UserError(f"{path}: model has {n_act} actions, {game} has {game_actions(game)} (minimal action set)")
    extra_head = [k for k in state if k.startswith(head_key + ".") and not k.startswith(head_key + ".0.")]
    if algo.startswith("actor-critic"):
        extra_head = [k for k in state if k.startswith("mlp_extractor.policy_net.")]
    if extra_head:
        raise UserError(f"{path}: a net_arch with hidden layers after the CNN is not the Nature-DQN arch")
    return prefix, head_key, algo, n_act


def _mapped_state(path: Path, state: dict[str, Any], prefix: str, head_key: str, algo: str) -> dict[str, torch.Tensor]:
    """SB3's tensors under our Nature-DQN names (a missing one refused with its key)."""
    mapped: dict[str, torch.Tensor] = {}
    for src, dst in _LAYERS.items():
        for p in ("weight", "bias"):
            key = f"{prefix}{src}.{p}"
            if key not in state:
                raise UserError(f"{path}: no {key!r}: not a NatureCNN policy")
            mapped[f"{dst}.{p}"] = state[key]
    for p in ("weight", "bias"):
        key = f"{head_key}.{p}" if algo.startswith("actor-critic") else f"{head_key}.0.{p}"
        if key not in state:
            raise UserError(f"{path}: no {key!r}: the policy has no {algo} head")
        mapped[f"head.{p}"] = state[key]
    check_imported_tensors(mapped, path)
    return mapped


def convert_sb3(path: Path, game: str) -> tuple[Any, dict[str, Any]]:
    """The network and card of the SB3 zip at ``path`` for ``game``, in memory."""
    path = Path(path)
    game = resolve_game(game)
    data, state = _read_zip(path)
    prefix, head_key, algo, n_act = _policy_keys(path, data, state, game)
    mapped = _mapped_state(path, state, prefix, head_key, algo)
    channels = [int(mapped[f"conv.{i}.weight"].shape[0]) for i in (0, 2, 4)]
    arch: dict[str, Any] = {"name": "nature_dqn", "channels": channels, "hidden": int(mapped["fc.1.weight"].shape[0])}
    if algo == "QR-DQN":
        arch["quantiles"] = int(mapped["head.weight"].shape[0]) // n_act
    net = build_network(arch, n_act)
    try:
        net.load_state_dict(mapped)
    except RuntimeError as e:
        raise UserError(f"{path}: weights do not fit {arch} ({first_line(e)})") from None
    training = {"source": f"stable-baselines3 {algo} zip", "path": str(path), "sha256": sha256_file(path),
                "num_timesteps": data.get("num_timesteps")}
    outputs = "policy_logits" if algo.startswith("actor-critic") else "q_values"
    return net, make_card("teacher", game, arch, net, training=training, outputs=outputs)
