"""The agent directory: ``model.safetensors`` (weights only) and ``agent.json`` (the card).

Loading never unpickles. Every way a directory can be wrong (missing file, truncated or
corrupt weights, weights that do not fit the arch, unknown card format, another game) is
refused with a UserError that names the file and what is wrong. Writes are atomic.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from rl_compress.atari.acting import epsilon_greedy
from rl_compress.atari.envs import OBS_SHAPE, SCREEN_SHAPE
from rl_compress.atari.evaluate import DEFAULT_PROTOCOL
from rl_compress.atari.games import game_info, num_actions, resolve_game
from rl_compress.core.config import check_int
from rl_compress.core.device import model_device, to_device
from rl_compress.core.errors import UserError, first_line
from rl_compress.core.files import atomic_write_json, bytes_writer, sha256_file, write_generation
from rl_compress.core.rundir import CARD, WEIGHTS, weights_steps
from rl_compress.models.maps import METHODS, attention
from rl_compress.models.networks import build_network, count_params

FORMAT = 1




KINDS = ("teacher", "student")


MAX_ACTIONS = 18  # the full Atari action set
MAX_PEAKS = 64  # attention peaks returned per frame
OUTPUTS = ("q_values", "policy_logits")  # what a teacher's outputs are (a student's are always logits)


def check_observations(obs: Any) -> tuple[np.ndarray, bool]:
    """``obs`` as a uint8 [B,4,84,84] batch and whether it was one observation; refuses what is not
    our observation with a clear error (floats already scaled, raw RGB screens, wrong shapes)."""
    arr = obs.detach().cpu().numpy() if isinstance(obs, torch.Tensor) else np.asarray(obs)
    if arr.shape[-3:] == SCREEN_SHAPE or arr.shape[-2:] == SCREEN_SHAPE[:2]:
        raise UserError(f"got a raw screen of shape {list(arr.shape)}: agents take the preprocessed uint8 "
                        "[4,84,84] stack; play with rl_compress.make_env(game) to get it")
    if arr.dtype != np.uint8:
        raise UserError(f"observations must be uint8 stacks of 0..255 (got {arr.dtype}; already scaled by 1/255? "
                        "the networks scale them themselves)")
    if arr.shape == OBS_SHAPE:
        return arr[None], True
    if arr.ndim == 4 and arr.shape[1:] == OBS_SHAPE:
        return arr, False
    raise UserError(f"observations must be uint8 [4,84,84] or [B,4,84,84], got {list(arr.shape)}")


@dataclass
class Agent:
    """A loaded agent (teacher or student): where it came from (its directory, or the file it was
    read from), its card and its network (eval mode), with a policy and attention maps."""

    path: Path
    card: dict[str, Any]
    net: nn.Module

    def predict(self, obs: Any, state: Any = None, episode_start: Any = None, deterministic: bool = True,
                epsilon: float = DEFAULT_PROTOCOL.epsilon, rng: np.random.Generator | None = None) -> tuple[Any, Any]:
        """``(actions, state)`` as stable-baselines3's ``predict`` gives them, so SB3's
        ``evaluate_policy`` and RL Zoo-style loops take our agents: actions for one observation
        (uint8 [4,84,84], an int) or a batch ([B,4,84,84], int64 [B]), the argmax of the network's
        outputs; with ``deterministic=False`` a uniformly random action with probability ``epsilon``
        (the evaluation protocol's 0.001). The agents are feed-forward: ``state`` and
        ``episode_start`` are accepted for SB3's recurrent interface, and ``state`` comes back as given."""
        batch, single = check_observations(obs)

        def greedy() -> np.ndarray:
            with torch.no_grad():
                return self.net(to_device(batch, model_device(self.net))).argmax(1).cpu().numpy().astype(np.int64)

        if deterministic:
            actions = greedy()
        else:
            rng = rng if rng is not None else np.random.default_rng()
            actions = epsilon_greedy(len(batch), epsilon, rng, self.num_actions, greedy)
        return (int(actions[0]) if single else actions), state

    def attention(self, obs: Any, method: str = "gmp", k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """Where the agent looks, for the action it takes: ``maps`` float32 [B,210,160] (>= 0) over
        the screen and ``peaks`` float32 [B,K,3] (x right, y down, weight) in screen pixels, as
        ``rl-compress localize`` writes them. ``method``: gmp | gmp-cell | gmp-occlusion (students
        with a global max pool), gradcam, perturbation. One observation gives a batch of one."""
        if method not in METHODS:
            raise UserError(f"unknown attention method {method!r}; choose one of {', '.join(METHODS)}")
        check_int("k", k, 1, MAX_PEAKS)
        batch, _ = check_observations(obs)
        att = attention(method, self.net, batch, k=k)
        return att.maps, att.peaks

    @property
    def game(self) -> str:
        """ALE ROM id of the game the agent plays."""
        return str(self.card["game"])

    @property
    def kind(self) -> str:
        """``teacher`` or ``student``."""
        return str(self.card["kind"])

    @property
    def num_actions(self) -> int:
        """Size of the action set."""
        return int(self.card["num_actions"])


def make_card(kind: str, game: str, arch: dict[str, Any], net: nn.Module, **extra: Any) -> dict[str, Any]:
    """A fresh card for ``net``; ``extra`` adds "training", "teacher", "evaluation"..."""
    if kind not in KINDS:
        raise UserError(f"agent kind must be one of {KINDS}, got {kind!r}")
    card: dict[str, Any] = {
        "format": FORMAT,
        "kind": kind,
        "game": resolve_game(game),
        "arch": arch,
        "num_actions": int(net.num_actions),
        "params": count_params(net),
        "observation": {
            "shape": list(OBS_SHAPE),
            "dtype": "uint8",
            "frame_skip": 4,
            "max_pool_last_two": True,
            "resize": "84x84 grey, area",
            "stack": "channel 0 oldest, 3 newest; zero frames at reset",
        },
    }
    card.update(extra)
    return card


def agent_files(net: nn.Module, card: dict[str, Any]) -> list[tuple[str, Any]]:
    """The weights and the card as (file name, writer) pairs for ``rundir.write_generation``,
    weights first (a reader that finds the card finds the weights it describes)."""

    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    metadata = {"format": str(FORMAT)}
    step = card_steps(card)
    if step is not None:  # the weights say which generation they belong to (see ``check_generation``)
        metadata["steps"] = str(step)
    weights = save(tensors, metadata=metadata)
    return [(WEIGHTS, bytes_writer(weights)), (CARD, card_writer(card))]


def card_bytes(card: dict[str, Any]) -> bytes:
    """``agent.json``'s bytes: the card as indented JSON (its one serialization)."""
    return (json.dumps(card, indent=2, sort_keys=False) + "\n").encode()


def card_writer(card: dict[str, Any]) -> Any:
    """A writer of ``agent.json`` for ``write_generation``."""
    return bytes_writer(card_bytes(card))


def card_steps(card: dict[str, Any]) -> int | None:
    """The env step a card's training reached (None when it does not say)."""
    steps = (card.get("training") or {}).get("steps") if isinstance(card.get("training"), dict) else None
    return steps if isinstance(steps, int) and not isinstance(steps, bool) else None


def check_generation(directory: Path, card: dict[str, Any]) -> None:
    """Refuse weights and a card of different generations (a write killed between their renames)."""
    held, said = weights_steps(Path(directory) / WEIGHTS), card_steps(card)
    if held is not None and said is not None and held != said:
        raise UserError(f"{Path(directory) / WEIGHTS}: holds the weights of step {held}, {CARD} says step {said} "
                        "(a checkpoint write was interrupted); --resume the run to repair it from its checkpoint")


def save_agent(directory: Path, net: nn.Module, card: dict[str, Any]) -> Path:
    """Write weights and card into ``directory`` as one generation (both staged, then renamed;
    a failed write leaves the previous pair intact); returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_generation(directory, agent_files(net, card), what="agent")
    return directory


def read_card(directory: Path) -> dict[str, Any]:
    """Read and check ``agent.json``; UserError naming the file on any problem."""
    path = Path(directory) / CARD
    if not Path(directory).is_dir():
        raise UserError(f"{directory}: not an agent directory (no such folder)")
    if not path.is_file():
        raise UserError(f"{path}: missing (an agent directory holds {CARD} and {WEIGHTS})")
    try:
        card = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: not valid JSON ({e.msg if hasattr(e, 'msg') else e})") from None
    if not isinstance(card, dict):
        raise UserError(f"{path}: expected a JSON object")
    if card.get("format") != FORMAT:
        raise UserError(f"{path}: unknown card format {card.get('format')!r} (this version reads format {FORMAT})")
    for key in ("kind", "game", "arch", "num_actions"):
        if key not in card:
            raise UserError(f"{path}: missing key {key!r}")
    check_card(card, path)
    return card


def check_card(card: dict[str, Any], path: Path) -> None:
    """Check a card as a whole (types, ranges, game against action count); UserError naming ``path``."""
    if card["kind"] not in KINDS:
        raise UserError(f"{path}: kind must be one of {KINDS}, got {card['kind']!r}")
    n = card["num_actions"]
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_ACTIONS:
        raise UserError(f"{path}: num_actions must be an integer from 1 to {MAX_ACTIONS}, got {n!r}")
    if not isinstance(card["game"], str):
        raise UserError(f"{path}: game must be a string, got {card['game']!r}")
    if not isinstance(card["arch"], dict):
        raise UserError(f"{path}: arch must be a JSON object, got {card['arch']!r}")
    try:
        game = resolve_game(card["game"])
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
    if num_actions(game) != n:
        raise UserError(f"{path}: num_actions {n} does not match {game}, which has {num_actions(game)} actions")
    if card.get("outputs", "q_values") not in OUTPUTS:
        raise UserError(f"{path}: outputs must be one of {OUTPUTS}, got {card['outputs']!r}")
    for key in ("training", "teacher", "evaluation"):
        if card.get(key) is not None and not isinstance(card[key], dict):
            raise UserError(f"{path}: {key} must be a JSON object")
    obs = card.get("observation")
    if obs is not None and (not isinstance(obs, dict) or obs.get("shape") != list(OBS_SHAPE)
                            or obs.get("dtype") != "uint8"):
        raise UserError(f"{path}: observation must be uint8 {list(OBS_SHAPE)} (the only input rl-compress agents "
                        f"take), got {obs!r}")
    _check_card_numbers(card, path)


# numbers a card's readers do arithmetic on: (path in the card, integer?); each absent or null is fine
CARD_NUMBERS = [(("params",), True), (("teacher", "params"), True), (("teacher", "evaluation"), False),
                (("evaluation", "mean"), False), (("evaluation", "std"), False), (("evaluation", "episodes"), True),
                (("training", "steps"), True), (("training", "wall_time_s"), False),
                (("training", "init_from", "env_steps"), True), (("training", "init_from", "wall_time_s"), False),
                (("training", "pruned_from", "params"), True)]


def _check_card_numbers(card: dict[str, Any], path: Path) -> None:
    """Refuse a card whose numbers are of the wrong type, negative counts or not finite."""
    for keys, integer in CARD_NUMBERS:
        value: Any = card
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if value is None:
            continue
        ok = (isinstance(value, int) and value >= 0) if integer else (isinstance(value, (int, float))
                                                                          and math.isfinite(value))
        if isinstance(value, bool) or not ok:
            what = "a non-negative integer" if integer else "a finite number"
            raise UserError(f"{path}: {'.'.join(keys)} must be {what}, got {value!r}")


def source_ref(path: Path, card: dict[str, Any]) -> dict[str, Any]:
    """What a run started from another agent's weights (``--init-from``) records of that agent: its
    env steps and training wall time, counting those of its own source (a chain of runs, each
    started from the last one's agent), and that source's record under ``init_from``."""
    tr = card.get("training") or {}
    before = tr.get("init_from") or {}
    ref = {"agent": str(path), "weights_sha256": sha256_file(Path(path) / WEIGHTS),
           "env_steps": int(tr.get("steps") or 0) + int(before.get("env_steps") or 0),
           "wall_time_s": float(tr.get("wall_time_s") or 0.0) + float(before.get("wall_time_s") or 0.0)}
    if before:
        ref["init_from"] = before
    return ref


def load_agent(directory: Path, game: str | None = None) -> Agent:
    """Load an agent directory, refusing anything that does not fit (see module doc).

    ``game``: when given, refuse an agent trained for another game.
    """

    directory = Path(directory)
    card = read_card(directory)
    card_path = directory / CARD
    if game is not None and resolve_game(game) != card["game"]:
        raise UserError(f"{card_path}: agent plays {card['game']!r}, not {resolve_game(game)!r}")
    try:
        net = build_network(card["arch"], card["num_actions"])
    except UserError as e:
        raise UserError(f"{card_path}: {e}") from None
    wpath = directory / WEIGHTS
    if not wpath.is_file():
        raise UserError(f"{wpath}: missing")
    try:
        state = load_file(str(wpath))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise UserError(f"{wpath}: truncated or corrupt safetensors file ({first_line(e)})") from None
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise UserError(
            f"{wpath}: weights do not fit arch {card['arch'].get('name')!r}"
            f" (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise UserError(
                f"{wpath}: weights do not fit arch {card['arch'].get('name')!r}"
                f" ({k} has shape {list(state[k].shape)}, arch needs {list(v.shape)})"
            )
    check_finite(state, wpath)
    check_generation(directory, card)
    net.load_state_dict(state)
    net.eval()
    return Agent(directory, card, net)


def check_imported_tensors(state: dict[str, torch.Tensor], path: Path) -> None:
    """Layer tensors read from another library's file: each at least 1-D and without NaN or Inf."""
    for name, tensor in state.items():
        if tensor.dim() == 0:
            raise UserError(f"{path}: tensor {name!r} is a scalar, not a layer's weights")
    check_finite(state, path)


def check_finite(state: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse weights that hold NaN or Inf, naming the first such tensor."""
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise UserError(f"{path}: tensor {name!r} holds {bad} NaN or Inf values")


def update_card(directory: Path, **entries: Any) -> dict[str, Any]:
    """Set top-level card entries (e.g. ``evaluation``) and rewrite the card atomically."""
    card = read_card(directory)
    card.update(entries)
    atomic_write_json(Path(directory) / CARD, card)
    return card


def _made_by(training: dict[str, Any]) -> str:
    """How the weights were made, in one line: env steps (with those of the run they started from)
    and wall time."""
    src = training.get("init_from") or {}
    steps = int(training.get("steps") or 0)
    wall = float(training.get("wall_time_s") or 0.0) + float(src.get("wall_time_s") or 0.0)
    total = f"{int(src['env_steps']):,} + {steps:,}" if src.get("env_steps") else f"{steps:,}"
    pruned = training.get("pruned_from")
    what = f"pruned from {pruned['agent']} ({pruned['params']:,} params), " if pruned else ""
    source = training.get("source")
    if source:
        return f"{source} ({training.get('num_timesteps') or '?'} timesteps there)"
    return f"{what}{total} env steps, {wall:,.0f} s of training" + (f" from {src['agent']}" if src else "")


def agent_summary(card: dict[str, Any], path: Path) -> list[str]:
    """A person's summary of a card: what the agent is, its size and share of its teacher, its score
    under the evaluation protocol, its retention of the teacher's score and how it was made."""
    game = game_info(card["game"])
    arch = card["arch"].get("spec") or card["arch"].get("name")
    outputs = " (policy logits)" if card.get("outputs") == "policy_logits" else ""
    lines = [f"{path}: {card['kind']} {arch}{outputs} playing {game.id} ({game.num_actions} actions)"]
    teacher = card.get("teacher") or {}
    share = f", {100 * card['params'] / teacher['params']:.2f}% of its teacher's {teacher['params']:,}" \
        if teacher.get("params") else ""
    lines.append(f"  size       {card['params']:,} parameters{share}")
    ev = card.get("evaluation") or {}
    if ev.get("mean") is not None:
        hn = game.human_normalized(ev["mean"])
        hn_text = f", human-normalized {hn:.2f}" if hn is not None else ""
        lines.append(f"  score      {ev['mean']:.2f} +- {ev['std']:.2f} over {ev['episodes']} games "
                     f"(default protocol, seed {ev.get('seed')}){hn_text}")
    else:
        lines.append("  score      not evaluated (rl-compress evaluate DIR --write-card)")
    t_mean = teacher.get("evaluation")
    if teacher:
        ret = game.retention(ev["mean"], t_mean) if ev.get("mean") is not None and t_mean is not None else None
        ret_text = f"; retention {ret:.3f} of its score {t_mean:.2f}" if ret is not None else ""
        lines.append(f"  teacher    {teacher.get('path')}{ret_text}")
    training = card.get("training") or {}
    if training:
        lines.append(f"  made by    {_made_by(training)}")
        if training.get("command"):
            lines.append(f"  command    {training['command']}")
    return lines
