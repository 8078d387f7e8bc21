"""Where a teacher comes from: a local SB3 / RL Zoo zip, a CleanRL ``.cleanrl_model``, or a Hugging
Face Hub repository ``hf:ORG/NAME[@REVISION]`` (RL Zoo's ``sb3/dqn-PongNoFrameskip-v4``, CleanRL's
``cleanrl/Pong-v5-dqn_atari-seed1``), fetched with ``huggingface_hub`` into its cache; with
``HF_HUB_OFFLINE=1`` only the cache is read. The game comes from the file or repository name when
not given. The card keeps the source: repository, revision (commit), file, sha256, and the score
the source reports beside ours."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import huggingface_hub
import yaml

from rl_compress.atari.games import resolve_game
from rl_compress.core.errors import UserError, first_line
from rl_compress.core.files import bytes_writer, write_generation
from rl_compress.core.outputs import check_not_inputs, check_output_dir
from rl_compress.core.rundir import own_run_dir
from rl_compress.models.agent import CARD, WEIGHTS, Agent, card_writer, load_agent, save_agent
from rl_compress.models.cleanrl_import import convert_cleanrl
from rl_compress.models.sb3_import import convert_sb3

HUB = re.compile(r"^hf:(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<rev>[\w./-]+))?$")
MODEL_FILES = ("*.cleanrl_model", "*.zip")
AGENT_FILES = (CARD, WEIGHTS)  # a repository that rl-compress push wrote


def check_revision(repo_id: str, revision: str | None) -> None:
    """Refuse a revision that is not a branch, tag or commit id: no empty, ``.`` or ``..`` segment,
    no leading ``/`` (a revision names a folder in the cache: it must not point out of it)."""
    if revision is None:
        return
    parts = revision.split("/")
    if revision.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise UserError(f"hf:{repo_id}@{revision}: a revision is a branch, tag or commit id")


def fetch_hub_repo(repo_id: str, revision: str | None = None) -> Path:
    """The local snapshot folder of a Hub model repository (downloaded into the cache, or read from
    it alone when ``HF_HUB_OFFLINE=1``), which must lie inside the cache."""
    check_revision(repo_id, revision)
    try:
        folder = Path(huggingface_hub.snapshot_download(repo_id, revision=revision,
                                                        allow_patterns=[*MODEL_FILES, *AGENT_FILES, "README.md"]))
    except Exception as e:  # noqa: BLE001 - not cached offline, unknown repo, network down: one line
        raise UserError(f"hf:{repo_id}: cannot fetch it ({first_line(e)})") from None
    cache = Path(huggingface_hub.constants.HF_HUB_CACHE).resolve()
    if not folder.resolve().is_relative_to(cache):
        raise UserError(f"hf:{repo_id}@{revision}: resolves to {folder}, outside the Hub cache {cache}")
    return folder


def model_file(folder: Path, name: str) -> Path:
    """The one model file of a downloaded repository (a CleanRL model first, else an SB3 zip)."""
    for pattern in MODEL_FILES:
        found = sorted(folder.glob(pattern))
        if found:
            return found[0]
    raise UserError(f"{name}: no .cleanrl_model or SB3 .zip model file in it")


def game_from_names(*names: str) -> str | None:
    """The game a file or repository name speaks of (``dqn-PongNoFrameskip-v4``, ``Pong-v5-dqn_atari``)."""
    for name in names:
        for token in re.findall(r"[A-Z][A-Za-z0-9]*-v\d+", name):
            try:
                return resolve_game(token)
            except UserError:
                continue
    return None


def reported_score(folder: Path) -> str | None:
    """The mean reward a Hub model card reports in its ``model-index`` (e.g. ``21.00 +/- 0.00``)."""
    readme = folder / "README.md"
    if not readme.is_file():
        return None
    parts = readme.read_text(errors="replace").split("---")
    try:
        meta = yaml.safe_load(parts[1]) if len(parts) > 2 else None
        return str(meta["model-index"][0]["results"][0]["metrics"][0]["value"])
    except (yaml.YAMLError, KeyError, IndexError, TypeError):
        return None


def load_source(source: str | Path, game: str | None = None) -> Agent:
    """The agent that ``source`` names, in memory: an agent directory, a stable-baselines3 / RL Zoo
    zip, a CleanRL ``.cleanrl_model`` or ``hf:ORG/NAME[@REVISION]`` (its ``path`` is the directory or
    the model file read); the one loader of the CLI and the Python API."""
    text = str(source)
    if not text.startswith("hf:") and not Path(text).is_file():  # a directory (or nothing: said as one)
        return load_agent(Path(text), game=game)
    net, card, path = convert_source(text, game)
    return Agent(path, card, net.eval())


def convert_source(source: str | Path, game: str | None = None) -> tuple[Any, dict[str, Any], Path]:
    """The network, card and local path (the directory or model file read) of a teacher from any
    source this module reads, in memory."""
    text = str(source)
    hub = HUB.match(text)
    origin: dict[str, Any] = {}
    if hub:
        folder = fetch_hub_repo(hub["repo"], hub["rev"])
        if (folder / CARD).is_file():  # an agent directory, as rl-compress push publishes it
            agent = load_agent(folder, game=game)
            return agent.net, agent.card, folder
        path = model_file(folder, text)
        origin = {"repo": hub["repo"], "revision": folder.name, "file": path.name,
                  "reported_score": reported_score(folder)}
    elif text.startswith("hf:"):
        raise UserError(f"{text}: a Hub source is hf:ORG/NAME or hf:ORG/NAME@REVISION")
    else:
        path = Path(text)
        if not path.exists():
            raise UserError(f"{path}: no such file")
        if path.is_dir():  # an agent directory: read as one (its card says the game)
            agent = load_agent(path, game=game)
            return agent.net, agent.card, path
    game = game or game_from_names(path.name, hub["repo"] if hub else "")
    if game is None:
        raise UserError(f"{text}: cannot tell the game from its name; name it (--game, or game= in Python)")
    net, card = (convert_cleanrl if path.suffix == ".cleanrl_model" else convert_sb3)(path, game)
    if origin:
        card["training"]["hub"] = origin
    return net, card, path


def import_teacher(source: str | Path, out: Path, game: str | None = None, force: bool = False) -> dict[str, Any]:
    """Convert a teacher from ``source`` into the agent directory ``out`` (new or empty; ``force``
    replaces the agent it holds); returns its card."""
    out = check_output_dir(out)
    net, card, path = convert_source(source, game)
    check_not_inputs(out, [path])
    key = "import_command" if card["training"].get("command") else "command"  # an rl-compress agent keeps its own
    card["training"][key] = f"rl-compress teacher import {source} --game {card['game']} --out {out}"
    with own_run_dir(out, force=force, can_resume=False):
        if path.is_dir():  # an rl-compress agent (as push publishes it): its weights file, byte for byte
            write_generation(out, [(WEIGHTS, bytes_writer((path / WEIGHTS).read_bytes())), (CARD, card_writer(card))],
                             what="agent")
        else:
            save_agent(out, net, card)
    return card
