"""``bench deploy``: what each agent costs where it is deployed, fp32 and int8 side by side: its
ONNX file in bytes, its parameters, its latency per frame with ONNX Runtime on one CPU thread at
batch 1 and 32 (on frames it plays), and its score and retention under the evaluation protocol.

Latencies are medians of repeated runs on one machine in one call: compare rows of one table,
never tables of different machines.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from rl_compress.atari.evaluate import evaluate, retention
from rl_compress.bench import frames_per_second
from rl_compress.core.provenance import cpu_model
from rl_compress.models.agent import Agent
from rl_compress.models.export import exported_bytes
from rl_compress.models.networks import count_params
from rl_compress.models.quantize import OnnxNet, onnx_session, played_frames, quantize_int8

BATCHES = (1, 32)


@dataclass
class DeployRow:
    """One agent in one precision."""

    agent: str
    precision: str  # fp32 | int8
    params: int
    bytes: int
    ms_per_frame: dict[str, float]  # "b1", "b32" -> milliseconds per frame
    score: float | None
    retention: float | None  # of the teacher's score (a teacher: of its own card's score)
    agreement: float | None  # int8: share of held-out frames with the fp32 action


def latency_ms(model: bytes, frames: np.ndarray, batch: int, repeats: int = 7, seconds: float = 0.3) -> float:
    """Median milliseconds per frame of ``model`` at ``batch`` on one ONNX Runtime thread."""
    sess = onnx_session(model, threads=1)
    x = np.ascontiguousarray(frames[:batch])
    rates = [frames_per_second(lambda a: sess.run(None, {"obs": a}), x, seconds) for _ in range(repeats)]
    return float(np.median([1e3 / r for r in rates]))


def _row(agent: Agent, precision: str, model: bytes, frames: np.ndarray, episodes: int,
         agreement: float | None) -> DeployRow:
    """Bytes, latency and (``episodes`` > 0) score and retention of one exported model."""
    score = ret = None
    if episodes > 0:
        score = evaluate(OnnxNet(model), agent.game, episodes)["mean"]
        reference = _reference_score(agent)
        ret = None if reference is None else retention(agent.game, score, reference)
    return DeployRow(str(agent.path), precision, count_params(agent.net), len(model),
                     {f"b{b}": round(latency_ms(model, frames, b), 4) for b in BATCHES}, score, ret, agreement)


def _reference_score(agent: Agent) -> float | None:
    """What retention is measured against: a student's teacher's score, a teacher's own (its cards)."""
    if agent.kind == "student":
        return (agent.card.get("teacher") or {}).get("evaluation")
    return (agent.card.get("evaluation") or {}).get("mean")


def bench_deploy(agents: list[Agent], episodes: int = 30, calibration_frames: int = 2000) -> dict[str, Any]:
    """A fp32 row for every agent and an int8 row for every student, each played ``episodes``
    games (0: no games)."""
    rows = []
    for agent in agents:
        net = agent.net.cpu().eval()
        frames = played_frames(net, agent.game, max(BATCHES), seed=7)
        rows.append(_row(agent, "fp32", exported_bytes(net, "onnx"), frames, episodes, None))
        if agent.kind == "student":
            model, cal = quantize_int8(net, agent.game, calibration_frames)
            rows.append(_row(agent, "int8", model, frames, episodes, cal.agreement))
    return {"benchmark": "deploy", "episodes": episodes, "calibration_frames": calibration_frames,
            "runtime": "onnxruntime CPU, 1 thread", "machine": cpu_model(), "rows": [asdict(r) for r in rows]}


def deploy_table(res: dict[str, Any]) -> str:
    """The result as a markdown table; bytes also as a share of the largest fp32 model (the teacher)."""
    rows = res["rows"]
    biggest = max((r["bytes"] for r in rows if r["precision"] == "fp32"), default=1)
    lines = ["| agent | precision | params | bytes | of the largest | ms/frame b1 | ms/frame b32 | score | retention "
             "| agreement with fp32 |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(
            f"| {r['agent']} | {r['precision']} | {r['params']:,} | {r['bytes']:,} | {100 * r['bytes'] / biggest:.2f}% "
            f"| {r['ms_per_frame']['b1']:.3f} | {r['ms_per_frame']['b32']:.3f} | {_num(r['score'], 2)} "
            f"| {_num(r['retention'], 3)} | {_num(r['agreement'], 3)} |")
    return "\n".join(lines)


def _num(v: float | None, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"
