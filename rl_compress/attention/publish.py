"""What ``rl-compress push`` publishes: a folder with the agent's weights and card, an ONNX export, a
short replay with the agent's attention overlay and a still of it, its evaluation (``results.json``,
as huggingface_sb3 writes it), its training settings (``config.yml``), its TensorBoard events where
given, a licence, and a README.md model card built with huggingface_hub's model-card classes; then,
unless it is a dry run, the folder uploaded with ``huggingface_hub``. An agent is evaluated before it
is published: its card's evaluation of these very weights, one run now, or an explicit opt-out."""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import huggingface_hub
import yaml

from rl_compress.atari.evaluate import evaluate
from rl_compress.attention.playback import play
from rl_compress.attention.video import render_overlay, write_video
from rl_compress.core.config import MAX_FRAMES, check_int
from rl_compress.core.errors import UserError, arg_name, first_line
from rl_compress.core.files import atomic_write_bytes, sha256_file
from rl_compress.core.outputs import check_output_dir
from rl_compress.core.rundir import CONFIG, CURVE, MODEL_CARD, STILL, RunLock, claim_output_dir
from rl_compress.models.agent import CARD, WEIGHTS, Agent, card_bytes, load_agent
from rl_compress.models.export import export
from rl_compress.models.model_card import hub_env_id, model_card
from rl_compress.models.networks import GMPStudent

VIDEO, ONNX, RESULTS, LICENSE_FILE, EVENTS = "replay.mp4", "model.onnx", "results.json", "LICENSE", "runs"
MIT_LICENSE = """MIT License

Copyright (c) 2026 the rl-compress authors

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


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


def evaluation_to_publish(agent: Agent, episodes: int | None, unevaluated: bool) -> dict[str, Any] | None:
    """The evaluation a push publishes: ``episodes`` games played now (seed 0), else the card's own
    evaluation of these very weights; an agent with neither is refused unless ``unevaluated``."""
    if episodes:
        res = evaluate(agent.net, agent.game, episodes, seed=0)
        return {**res, "game": agent.game}
    ev = agent.card.get("evaluation") or {}
    weights = agent.path / WEIGHTS
    current = ev.get("mean") is not None and (
        ev.get("weights_sha256") is None or (weights.is_file() and ev["weights_sha256"] == sha256_file(weights)))
    if current:
        return ev
    if unevaluated:
        return None
    raise UserError(f"{agent.path}: no evaluation of these weights to publish; add {arg_name('evaluate')} 30 (plays 30 "
                    f"games first), or {arg_name('unevaluated')} to publish it without a score")


def results_json(evaluation: dict[str, Any], game_id: str) -> bytes:
    """``results.json`` as huggingface_sb3 writes it, plus the games' scores and the protocol."""
    return json.dumps({
        "env_id": game_id, "mean_reward": evaluation["mean"], "std_reward": evaluation["std"],
        "is_deterministic": False, "n_eval_episodes": evaluation["episodes"],
        "eval_datetime": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "scores": evaluation.get("scores"), "seed": evaluation.get("seed"), "protocol": evaluation.get("protocol"),
    }, indent=2).encode()


def copy_events(tensorboard: Path, folder: Path) -> list[str]:
    """The TensorBoard event files under ``tensorboard`` copied into ``folder/runs/`` (subfolders kept)."""
    events = sorted(p for p in tensorboard.rglob("events.out.tfevents.*") if p.is_file())
    if not events:
        raise UserError(f"{tensorboard}: no TensorBoard event files (events.out.tfevents.*) in it")
    for path in events:
        target = folder / EVENTS / tensorboard.name / path.relative_to(tensorboard)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return [str(p.relative_to(folder)) for p in sorted((folder / EVENTS).rglob("*")) if p.is_file()]


def stage(agent: Agent, folder: Path, repo_id: str, evaluation: dict[str, Any] | None, frames: int = 300,
          tensorboard: Path | None = None) -> list[str]:
    """Write the folder ``push`` uploads (``folder`` must be new or empty), with ``evaluation`` (see
    ``evaluation_to_publish``) in its cards; returns its file names."""
    folder.mkdir(parents=True, exist_ok=True)
    card = {k: v for k, v in agent.card.items() if k != "evaluation"} | ({"evaluation": evaluation} if evaluation else {})
    for name in (WEIGHTS, CURVE):
        if (agent.path / name).is_file():
            shutil.copy2(agent.path / name, folder / name)
    atomic_write_bytes(folder / CARD, card_bytes(card))
    config = (card.get("training") or {}).get("config")
    if config:
        atomic_write_bytes(folder / CONFIG, yaml.safe_dump(config, sort_keys=False).encode())
    if evaluation:
        atomic_write_bytes(folder / RESULTS, results_json(evaluation, hub_env_id(agent.game)))
    atomic_write_bytes(folder / LICENSE_FILE, MIT_LICENSE.encode())
    events = copy_events(tensorboard, folder) if tensorboard else []
    export(agent.net, "onnx", folder / ONNX)
    record_replay(agent, folder, frames)
    text = model_card(card, agent.path, repo_id, assets=folder)
    text += (f"\n`{VIDEO}`: one game (at most {frames} agent steps) with its attention overlay. `{ONNX}`: input "
             f"uint8 [B,4,84,84], output float32 [B,A]. `{CONFIG}`: its training settings (`--config` reads them)."
             + (f" `{RESULTS}`: its evaluation." if evaluation else " It was published without an evaluation.")
             + (f" `{EVENTS}/`: its TensorBoard events ({len(events)} files)." if events else "") + "\n")
    atomic_write_bytes(folder / MODEL_CARD, text.encode())
    return sorted(p.name for p in folder.iterdir())


@dataclass(frozen=True)
class PushRequest:
    """What to publish and how: the agent directory, the Hub repository (ORG/NAME), a dry-run folder
    (None: upload), the evaluation to publish (games to play now, or none on purpose), the run's
    TensorBoard folder, a private repository, and the replay's agent steps."""

    agent: Path
    repo_id: str
    dry_run: Path | None = None
    evaluate_episodes: int | None = None
    unevaluated: bool = False
    tensorboard: Path | None = None
    private: bool = False
    frames: int = 300


def check_push(req: PushRequest) -> Path | None:
    """Refuse a push that cannot be done with one line, before any work; returns the dry-run folder."""
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", str(req.repo_id)):
        raise UserError(f"{arg_name('repo_id')} must be ORG/NAME, got {req.repo_id!r}")
    if req.evaluate_episodes and req.unevaluated:
        raise UserError(f"{arg_name('evaluate')} and {arg_name('unevaluated')} contradict each other; give one")
    if req.evaluate_episodes is not None:
        check_int("evaluate_episodes", req.evaluate_episodes, 1, MAX_FRAMES)
    check_int("frames", req.frames, 1, MAX_FRAMES)
    if req.tensorboard is not None and not req.tensorboard.is_dir():
        raise UserError(f"{arg_name('tensorboard')} {req.tensorboard}: no such folder")
    if str(req.agent).startswith("hf:") or req.agent.is_file():
        raise UserError(f"{req.agent}: push needs an agent directory; import it first: "
                        f"rl-compress teacher import {req.agent} --out DIR")
    folder = check_output_dir(req.dry_run, name="dry_run") if req.dry_run else None
    if folder is not None and folder.exists() and any(folder.iterdir()):
        raise UserError(f"{folder}: not empty; {arg_name('dry_run')} writes a new folder")
    return folder


def publish_agent(req: PushRequest) -> list[str]:
    """Stage the folder of ``req.agent`` (see ``stage``) and upload it as ``req.repo_id``, or move it
    into the dry-run folder; returns the names published."""
    folder = check_push(req)
    agent = load_agent(req.agent)
    evaluation = evaluation_to_publish(agent, req.evaluate_episodes, req.unevaluated)
    if folder is not None:
        folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".push.", dir=folder.parent if folder else None) as tmp:
        staged = Path(tmp) / "repo"
        names = stage(agent, staged, req.repo_id, evaluation, req.frames, req.tensorboard)
        if folder is None:
            upload(staged, req.repo_id, req.private)
            return names
        with RunLock(folder):
            claim_output_dir(folder)
            for name in names:
                os.replace(staged / name, folder / name)
    return names


def upload(folder: Path, repo_id: str, private: bool) -> Any:
    """Create the Hub model repository if needed and upload the folder as one commit."""
    try:
        api = huggingface_hub.HfApi()
        api.create_repo(repo_id, private=private, exist_ok=True)
        return api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message="Upload with rl-compress push")
    except Exception as e:  # noqa: BLE001 - no token, offline, no rights: one line
        raise UserError(f"hf:{repo_id}: upload failed ({first_line(e)}); `--dry-run DIR` writes the folder only") from None
