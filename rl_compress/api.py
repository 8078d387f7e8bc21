"""The Python API: load an agent, act with it, look inside it, play it in a gymnasium loop,
evaluate it, and train or distill new ones. The CLI calls these same functions.

    import rl_compress as rlc

    agent = rlc.load_agent("agents/pong/gmp32-w5-1pct-tuned")
    env = rlc.make_env("pong")
    obs, info = env.reset(seed=0)
    action, _ = agent.predict(obs)                   # uint8 [4,84,84] -> int (SB3's (actions, state))
    maps, peaks = agent.attention(obs[None])         # [1,210,160] map, [1,K,(x, y, weight)] peaks
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from rl_compress.atari.envs import EnvConfig, make_gym_env
from rl_compress.atari.evaluate import DEFAULT_PROTOCOL, Protocol
from rl_compress.atari.evaluate import evaluate as evaluate_net
from rl_compress.atari.games import action_names
from rl_compress.attention.localize import localize_to_npz
from rl_compress.attention.playback import play
from rl_compress.attention.publish import PushRequest, publish_agent
from rl_compress.attention.video import check_video_path, render_overlay, write_video
from rl_compress.attention.video import side_by_side as side_by_side_images
from rl_compress.core.config import MAX_FRAMES, MAX_SEED, check_int, check_number
from rl_compress.core.device import resolve_device
from rl_compress.core.errors import UserError, arg_name
from rl_compress.core.outputs import check_output_file
from rl_compress.core.progress import progress_bar
from rl_compress.models.agent import MAX_PEAKS, Agent
from rl_compress.models.export import FORMATS as EXPORT_FORMATS
from rl_compress.models.export import export as export_net
from rl_compress.models.export import write_model
from rl_compress.models.graph_attention import attention_method, check_attention_export
from rl_compress.models.maps import attention as map_attention
from rl_compress.models.networks import GMPStudent
from rl_compress.models.prune import prune_agent
from rl_compress.models.quantize import QUANTIZE_CHOICES, quantize_int8
from rl_compress.models.sources import load_source

MAX_NOOPS = 1000  # no-op starts at reset; the protocol uses 30
OVERLAYS = ("gmp", "gmp-cell", "gmp-occlusion", "gradcam")  # what record draws (perturbation: too slow for a video)


def load_agent(source: str | Path, game: str | None = None, device: str | torch.device = "auto") -> Agent:
    """An agent from an agent directory, or from any source ``rl-compress teacher import`` reads: a
    stable-baselines3 / RL Zoo DQN or QR-DQN zip, a CleanRL DQN ``.cleanrl_model``, or
    ``hf:ORG/NAME[@REVISION]`` on the Hugging Face Hub (``game``: read from the name when not given),
    with its network on ``device`` (auto: CUDA when torch sees one; ``predict``, ``attention`` and
    ``evaluate`` run there). Nothing is unpickled; anything that does not fit is refused with one
    clear error (UserError)."""
    if not isinstance(source, (str, Path)):
        raise UserError(f"source must be a path or 'hf:ORG/NAME', got {type(source).__name__} {source!r}")
    if game is not None and not isinstance(game, str):
        raise UserError(f"game must be a game name such as 'pong', got {game!r}")
    torch_device = resolve_device(device, announce=False)
    agent = load_source(source, game)
    agent.net.to(torch_device)
    return agent


def make_env(game: str, sticky: float = DEFAULT_PROTOCOL.sticky, noop_max: int = DEFAULT_PROTOCOL.noop_max,
             max_frames: int = DEFAULT_PROTOCOL.max_frames, render_mode: str | None = "rgb_array") -> gym.Env:
    """A gymnasium env with exactly our preprocessing (frame skip 4 with a max over the last two
    frames, 84x84 grey, a stack of 4 with zero frames at reset, up to ``noop_max`` no-ops), under
    the evaluation protocol by default: observations uint8 [4,84,84] for ``Agent.predict``, raw
    rewards, an episode is a whole game. Its vector twin is ``rl_compress.make_vector_env``."""
    if not isinstance(game, str):
        raise UserError(f"game must be a game name such as 'pong', got {game!r}")
    check_number("sticky", sticky, 0.0, 1.0)
    check_int("noop_max", noop_max, 0, MAX_NOOPS)
    check_int("max_frames", max_frames, 1, 10**9)
    config = EnvConfig(sticky=sticky, noop_max=noop_max, max_frames=max_frames, clip_rewards=False)
    return make_gym_env(game, config, render_mode=render_mode)


class AttentionWrapper(gym.Wrapper):
    """Adds the agent's attention for its own action to ``info`` (``attention``: map [210,160],
    ``peaks``: [K,3], ``action``) at every step, and draws the overlay in ``render()``. Use it
    with the actions of ``agent.predict``: the map explains the agent's choice on that stack."""

    def __init__(self, env: gym.Env, agent: Agent, method: str = "gmp", scale: int = 2) -> None:
        super().__init__(env)
        self.agent, self.method, self.scale = agent, method, scale
        self._last: tuple[np.ndarray, np.ndarray] | None = None

    def _explain(self, obs: np.ndarray, info: dict[str, Any]) -> dict[str, Any]:
        maps, peaks = self.agent.attention(obs, self.method)
        self._last = (maps[0], peaks[0])
        return {**info, "attention": maps[0], "peaks": peaks[0], "action": self.agent.predict(obs)[0]}

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the env; ``info`` carries the attention on the first observation."""
        obs, info = self.env.reset(**kwargs)
        return obs, self._explain(obs, info)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Step the env; ``info`` carries the attention on the new observation."""
        obs, reward, term, trunc, info = self.env.step(action)
        return obs, float(reward), term, trunc, self._explain(obs, info)

    def render(self) -> np.ndarray:
        """The RGB screen with the attention map and its peaks drawn over it."""
        frame = self.env.unwrapped.ale.getScreenRGB()
        maps, peaks = self._last if self._last is not None else (None, None)
        return render_overlay(frame, maps, peaks, f"{self.agent.game} | {self.method}", scale=self.scale)


def evaluate(agent: Agent | str | Path, episodes: int = 30, seed: int = 0, protocol: Protocol = DEFAULT_PROTOCOL,
             show_progress: bool = False) -> dict[str, Any]:
    """Play ``episodes`` whole games under ``protocol`` (the default evaluation protocol) with
    seeds ``seed``, ``seed + 1``...; returns mean, std, scores and the protocol, as
    ``rl-compress evaluate --json`` writes them. ``agent``: an Agent, or any source ``load_agent``
    reads."""
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise UserError(f"episodes must be a positive integer, got {episodes!r}")
    check_int("seed", seed, 0, MAX_SEED)
    if not isinstance(agent, Agent):
        agent = load_agent(agent)
    return evaluate_net(agent.net, agent.game, episodes, seed=seed, protocol=protocol, show_progress=show_progress)


def _directory_of(agent: Agent | str | Path, what: str) -> Path:
    """The agent directory ``agent`` names (an Agent: the directory it was loaded from)."""
    if isinstance(agent, Agent):
        agent = agent.path
    if not isinstance(agent, (str, Path)):
        raise UserError(f"{what} takes an agent directory (a path or an Agent), got {type(agent).__name__}")
    return Path(agent)


def _agent_of(agent: Agent | str | Path) -> Agent:
    """An Agent as given, or the one ``load_agent`` reads from a source."""
    return agent if isinstance(agent, Agent) else load_agent(agent)


def record_overlay(agent: Agent, overlay: str | None) -> str:
    """The overlay ``record`` draws for ``agent``: ``overlay``, or by default gmp for a global-max-pool
    student and gradcam otherwise; a gmp overlay of an agent without the pool is refused."""
    overlay = overlay or ("gmp" if isinstance(agent.net, GMPStudent) else "gradcam")
    if overlay not in (*OVERLAYS, "none"):
        raise UserError(f"{arg_name('overlay')} must be one of {', '.join(OVERLAYS)}, none; got {overlay!r}")
    if overlay.startswith("gmp") and not isinstance(agent.net, GMPStudent):
        raise UserError(f"{agent.path}: this agent has no global max pool; use {arg_name('overlay')} gradcam")
    return overlay


def record(agent: Agent | str | Path, out: str | Path, frames: int = 600, overlay: str | None = None,
           side_by_side: Agent | str | Path | None = None, episodes: int = 1, seed: int = 0, scale: int = 2,
           fps: int = 30, show_progress: bool = False) -> int:
    """Write a video (``.mp4`` H.264 or ``.gif``) of ``agent`` playing up to ``frames`` agent steps
    (at most ``episodes`` games), its attention drawn over the screen: ``overlay`` gmp, gmp-cell,
    gmp-occlusion, gradcam or none (default: gmp for a global-max-pool student, else gradcam); with
    ``side_by_side``, that agent's Grad-CAM on the same frames beside it. Returns the frames written."""
    out = check_video_path(check_output_file(out, name="out"))
    for name, value, high in (("frames", frames, MAX_FRAMES), ("episodes", episodes, MAX_FRAMES),
                              ("scale", scale, 16), ("fps", fps, 240)):
        check_int(name, value, 1, high)
    check_int("seed", seed, 0, MAX_SEED)
    agent = _agent_of(agent)
    overlay = record_overlay(agent, overlay)
    other = None if side_by_side is None else (
        side_by_side if isinstance(side_by_side, Agent) else load_source(side_by_side, game=agent.game))
    return write_video(out, overlay_frames(agent, overlay, other, frames, episodes, seed, scale, show_progress), fps=fps)


def overlay_frames(agent: Agent, overlay: str, other: Agent | None, frames: int, episodes: int, seed: int,
                   scale: int, show_progress: bool) -> Iterator[np.ndarray]:
    """The RGB images ``record`` writes: each played frame with its HUD and attention overlay."""
    names = action_names(agent.game)
    label = agent.path.name if agent.path.name not in ("", ".") else agent.kind
    method = None if overlay == "none" else overlay
    with progress_bar(show_progress) as bar:
        task = bar.add_task(f"record {label}", total=frames, info="")
        for st in play(agent.net, agent.game, method, frames, episodes, seed):
            hud = f"{agent.game} | {label} {overlay} | ep {st.episode} t {st.t} | score {st.score:.0f} | {names[st.action]}"
            img = render_overlay(st.frame, st.map, st.peaks, hud, scale=scale)
            if other is not None:
                att = map_attention("gradcam", other.net, st.obs[None])
                hud2 = f"{other.path.name} gradcam | acts {names[int(att.actions[0])]}"
                img = side_by_side_images(img, render_overlay(st.frame, att.maps[0], att.peaks[0], hud2, scale=scale))
            bar.advance(task)
            yield img


def localize(agent: Agent | str | Path, out: str | Path, frames: int = 1000, method: str = "gmp", seed: int = 0,
             score: bool = False, radius: float = 10.0) -> dict[str, Any]:
    """Play ``frames`` agent steps and write each frame's attention map and peaks (``method``: gmp,
    gmp-cell, gmp-occlusion, gradcam or perturbation) with the screen and RAM to the ``.npz`` ``out`` (format: docs,
    Formats); returns frames, episodes and method, and with ``score`` the localization score
    (the top peak within ``radius`` screen pixels of an OCAtari object, against a random point)."""
    out = check_output_file(out, suffixes=(".npz",), name="out")
    check_int("frames", frames, 1, MAX_FRAMES)
    check_int("seed", seed, 0, MAX_SEED)
    check_number("radius", radius, 0, 1000)
    # imported here: `python -m rl_compress.attention.score` (the score tables) must not find itself
    # imported already by the package (runpy warns on stderr)
    from rl_compress.attention.score import objects_from_ram, score_npz

    agent = _agent_of(agent)
    if score:
        objects_from_ram(agent.game, np.zeros((0, 128), dtype=np.uint8))  # fail early if OCAtari is missing
    res = localize_to_npz(agent.net, agent.game, frames, out, method, seed)
    if score:
        res["score"] = score_npz(out, agent.game, radius)
    return res


def export(agent: Agent | str | Path, out: str | Path, format: str = "onnx", quantize: str | None = None,
           calibration_frames: int = 2000, seed: int = 0, with_attention: bool | str = False,
           peaks: int = 5) -> Path:
    """Export ``agent``'s network to ONNX (``format="onnx"``) or TorchScript: input uint8
    [B,4,84,84], output float32 [B,A]; written in one piece (never half a file). Returns ``out``.

    ``quantize="int8"`` (ONNX only): static int8 with ONNX Runtime, calibrated on
    ``calibration_frames`` frames the agent plays from ``seed``; the model's metadata
    (``rl_compress.int8``) records the calibration and the share of held-out frames on which the
    int8 model takes the fp32 network's action.

    ``with_attention`` (gmp students whose pool feeds the head): the model also outputs
    ``attention`` float32 [B,210,160] and ``peaks`` float32 [B,peaks,3], as
    ``Agent.attention(obs, method, peaks)`` gives them for method gmp-cell (``True``, the default;
    small) or ``"gmp"`` (each max traced to its input pixel; a larger file); the Q-values / logits
    stay the first output."""
    if format not in EXPORT_FORMATS:
        raise UserError(f"format must be one of {', '.join(EXPORT_FORMATS)}, got {format!r}")
    if quantize is not None and quantize not in QUANTIZE_CHOICES:
        raise UserError(f"quantize must be one of {', '.join(QUANTIZE_CHOICES)} or None, got {quantize!r}")
    if quantize is not None and format != "onnx":
        raise UserError(f"quantize={quantize!r} exports ONNX only, not {format}")
    check_int("calibration_frames", calibration_frames, 64, MAX_FRAMES)
    check_int("seed", seed, 0, MAX_SEED)
    check_int("peaks", peaks, 1, MAX_PEAKS)
    out = check_output_file(out, name="out")
    loaded = _agent_of(agent)
    if with_attention:
        attention_method(with_attention)
        check_attention_export(loaded.net)
    if quantize is None:
        return export_net(loaded.net, format, out, with_attention, peaks)
    model, _ = quantize_int8(loaded.net, loaded.game, calibration_frames, seed, with_attention, peaks)
    return write_model(model, out)


def prune(agent: Agent | str | Path, out: str | Path, states: int = 4000, max_params: int | None = None, seed: int = 0,
          force: bool = False, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Prune the gmp student in the directory ``agent`` into the new directory ``out``: its dead conv
    channels, then (``max_params``) the least needed live ones, judged on ``states`` states it plays.
    Returns the new card (``training.pruned_from`` holds the agreement with the original)."""
    return prune_agent(_directory_of(agent, "prune"), Path(out), states=states, seed=seed, max_params=max_params, force=force,
                       device=device)


def push(agent: Agent | str | Path, repo_id: str, dry_run: str | Path | None = None, evaluate_episodes: int | None = None,
         unevaluated: bool = False, tensorboard: str | Path | None = None, private: bool = False,
         frames: int = 300) -> list[str]:
    """Publish the agent directory ``agent`` as the Hugging Face Hub model ``repo_id`` (ORG/NAME), or
    with ``dry_run`` write exactly that folder there (new or empty) and upload nothing. It publishes a
    score: the card's evaluation of these weights, or ``evaluate_episodes`` games played first; with
    neither it is refused unless ``unevaluated``. Returns the names of the files published."""
    return publish_agent(PushRequest(_directory_of(agent, "push"), repo_id, None if dry_run is None else Path(dry_run),
                                     evaluate_episodes, unevaluated,
                                     None if tensorboard is None else Path(tensorboard), private, frames))
