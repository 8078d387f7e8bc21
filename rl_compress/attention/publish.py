"""What ``rl-compress push`` publishes: a folder with the agent's weights and card, an ONNX export, a
short replay with the agent's attention overlay and a still of it, and a README.md model card with
Hugging Face Hub metadata; then, unless it is a dry run, the folder uploaded with ``huggingface_hub``."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import cv2
import huggingface_hub

from rl_compress.attention.playback import play
from rl_compress.attention.video import render_overlay, write_video
from rl_compress.core.errors import UserError, first_line
from rl_compress.core.files import atomic_write_bytes
from rl_compress.core.rundir import CURVE, MODEL_CARD, STILL
from rl_compress.models.agent import CARD, WEIGHTS, Agent
from rl_compress.models.export import export
from rl_compress.models.model_card import model_card
from rl_compress.models.networks import GMPStudent

VIDEO, ONNX = "replay.mp4", "model.onnx"


def _overlay_frames(agent: Agent, frames: int, seed: int) -> list[Any]:
    """One game (at most ``frames`` agent steps) drawn with the agent's attention over the screen."""
    method = "gmp" if isinstance(agent.net, GMPStudent) else "gradcam"
    images = [render_overlay(st.frame, st.map, st.peaks, f"{agent.game} | {agent.path.name} | {method}", scale=2)
              for st in play(agent.net, agent.game, method, frames, episodes=1, seed=seed)]
    if not images:
        raise UserError(f"{agent.path}: the replay has no frames")
    return images


def write_still(image: Any, path: Path) -> None:
    """An RGB frame as a PNG, atomically."""
    ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise UserError(f"{path}: could not encode the still")
    atomic_write_bytes(path, png.tobytes())


def attention_still(agent: Agent, path: Path, frames: int = 120, seed: int = 0) -> None:
    """A still of the agent's attention: the last frame of ``frames`` agent steps of one game."""
    write_still(_overlay_frames(agent, frames, seed)[-1], path)


def record_replay(agent: Agent, out: Path, frames: int = 300, seed: int = 0) -> int:
    """A replay of one game (at most ``frames`` agent steps) with the agent's attention drawn over
    the screen, as mp4; a still of its middle frame beside it (attention.png). Returns the frames."""
    images = _overlay_frames(agent, frames, seed)
    write_still(images[len(images) // 2], out / STILL)
    return write_video(out / VIDEO, iter(images), fps=30)


def stage(agent: Agent, folder: Path, repo_id: str, frames: int = 300) -> list[str]:
    """Write the folder ``push`` uploads (``folder`` must be new or empty); returns its file names."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in (WEIGHTS, CARD, CURVE):
        if (agent.path / name).is_file():
            shutil.copy2(agent.path / name, folder / name)
    export(agent.net, "onnx", folder / ONNX)
    record_replay(agent, folder, frames)
    text = model_card(agent.card, agent.path, repo_id, assets=folder)
    text += (f"\n`{VIDEO}`: one game (at most {frames} agent "
             f"steps) with its attention overlay. `{ONNX}`: input uint8 [B,4,84,84], output float32 [B,A].\n")
    atomic_write_bytes(folder / MODEL_CARD, text.encode())
    return sorted(p.name for p in folder.iterdir())


def upload(folder: Path, repo_id: str, private: bool) -> Any:
    """Create the Hub model repository if needed and upload the folder as one commit."""
    try:
        api = huggingface_hub.HfApi()
        api.create_repo(repo_id, private=private, exist_ok=True)
        return api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message="Upload with rl-compress push")
    except Exception as e:  # noqa: BLE001 - no token, offline, no rights: one line
        raise UserError(f"hf:{repo_id}: upload failed ({first_line(e)}); `--dry-run DIR` writes the folder only") from None
