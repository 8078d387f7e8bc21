"""The model card of an agent: a README.md with Hugging Face Hub metadata (library, tags, a
``model-index`` entry with the evaluation result) and, for a person, what the agent is, its size and
share of its teacher, its score under the evaluation protocol, its retention, how it was made and how
to use it. ``rl-compress card AGENT_DIR`` writes it into the agent directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCardData

from rl_compress.atari.games import _env_id_name, game_info
from rl_compress.models.agent import agent_summary

PROTOCOL_TEXT = ("ALE v5 rules: sticky actions p = 0.25, minimal action set, an episode is one whole game (life "
                 "losses do not end it), at most 108,000 frames, raw unclipped score, up to 30 no-op starts, "
                 "epsilon 0.001")


LICENSE = "mit"  # the licence pushed agents carry, as rl-compress itself (LICENSE)


def base_model(card: dict[str, Any]) -> str | None:
    """The Hub repository this agent derives from: a student's teacher, or an imported agent's own
    source, where it came from the Hub; None otherwise."""
    for origin in ((card.get("teacher") or {}).get("hub"), (card.get("training") or {}).get("hub")):
        if isinstance(origin, dict) and origin.get("repo"):
            return str(origin["repo"])
    return None


def hub_env_id(game: str) -> str:
    """The gymnasium id of ``game`` as the Hub's Atari models name their dataset: ``ALE/Pong-v5``."""
    return f"ALE/{_env_id_name(game_info(game).id)}-v5"


def card_metadata(card: dict[str, Any], name: str) -> ModelCardData:
    """The YAML front matter as huggingface_hub's ``ModelCardData``: library, licence, tags, the
    teacher's Hub id as ``base_model`` and the evaluation as a ``model-index`` result."""
    env_id = hub_env_id(card["game"])
    ev = card.get("evaluation") or {}
    results = None
    if ev.get("mean") is not None:
        results = [EvalResult(task_type="reinforcement-learning", task_name="reinforcement-learning",
                              dataset_type=env_id, dataset_name=env_id, metric_type="mean_reward",
                              metric_value=f"{ev['mean']:.2f} +/- {ev['std']:.2f}",
                              metric_name=f"mean_reward ({ev['episodes']} games, sticky actions 0.25)",
                              verified=False)]
    return ModelCardData(
        library_name="rl-compress", license=LICENSE, base_model=base_model(card), model_name=name,
        tags=[env_id, "atari", "reinforcement-learning", "deep-reinforcement-learning", "rl-compress",
              "knowledge-distillation" if card["kind"] == "student" else "dqn"],
        eval_results=results)


def _uses(path: Path, card: dict[str, Any], repo_id: str | None) -> list[str]:
    local = f"{path}" if repo_id is None else "agent"
    fetch = [] if repo_id is None else [f"rl-compress teacher import hf:{repo_id} --out agent   # fetch it"]
    return ["## Use it", "", "```bash", *fetch,
            f"rl-compress evaluate {local} --episodes 30            # the evaluation protocol",
            f"rl-compress record {local} --out agent.mp4 --max-frames 600   # attention overlay video",
            f"rl-compress export {local} --format onnx --out agent.onnx",
            "```", "", "```python", "import rl_compress as rlc", "",
            f'agent = rlc.load_agent("{path if repo_id is None else "hf:" + repo_id}")',
            f'env = rlc.make_env("{card["game"]}")',
            "obs, info = env.reset(seed=0)",
            "action, _ = agent.predict(obs)                 # uint8 [4,84,84] -> int, as SB3's predict",
            "maps, peaks = agent.attention(obs[None])       # where it looks, in screen pixels",
            "```"]


def model_card(card: dict[str, Any], path: Path, repo_id: str | None = None, assets: Path | None = None) -> str:
    """The README.md model card of the agent whose card is ``card``, in directory ``path`` (or
    published as the Hub repository ``repo_id``); pictures are shown where ``assets`` (default: the
    agent's directory) holds them."""
    path = Path(path)
    assets = Path(assets) if assets is not None else path
    meta = card_metadata(card, repo_id or path.name).to_yaml()
    arch = card["arch"].get("spec") or card["arch"].get("name")
    kind = "a student distilled by rl-compress" if card["kind"] == "student" else "a DQN teacher"
    lines = [f"---\n{meta}\n---", "", f"# {repo_id or path.name}: {arch}, {kind}", "",
             f"An agent that plays {game_info(card['game']).id} from 4 stacked 84x84 grey frames (uint8 [4,84,84],",
             "channel 0 the oldest), made and checked with rl-compress (Actor-Mimic",
             "distillation into students that end in a global max pool, whose pool shows where they look).", "",
             "```text", *agent_summary(card, path), "```", ""]
    if (assets / "attention.png").exists():
        lines += ["![where it looks: its attention on a frame of its own game](attention.png)", ""]
    if (assets / "learning_curve.png").exists():
        lines += ["![learning curve](learning_curve.png)", ""]
    lines += [f"Evaluation protocol: {PROTOCOL_TEXT}.", "", *_uses(path, card, repo_id), "",
              "Files: `model.safetensors` (weights only; nothing is unpickled on load), `agent.json` (the full card:",
              "architecture, observation, training config, evaluation scores per game).", ""]
    return "\n".join(lines)
