"""What every teacher trainer shares (DQN in ``train.teacher``, PQN in ``train.pqn``): the config
fields common to both (``TeacherRunConfig``) and the method hooks that do not depend on how the
network learns (``TeacherMethodBase``: evaluation, progress, the card)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from rl_compress.atari.evaluate import DEFAULT_PROTOCOL, evaluate
from rl_compress.atari.games import num_actions
from rl_compress.core.config import option
from rl_compress.core.device import autocast, device_record, model_device
from rl_compress.core.errors import UserError, arg_name
from rl_compress.core.provenance import git_commit
from rl_compress.models.agent import make_card
from rl_compress.models.networks import PRECISIONS, build_network
from rl_compress.train.run import RunConfig, RunState


@dataclass
class TeacherRunConfig(RunConfig):
    """The numbers every teacher trainer has (DQN's ``TeacherConfig``, ``PQNConfig``), beside those
    of every run (``RunConfig``); the whole dict is stored in the card and TensorBoard."""

    game: str = option("ALE game name or alias", default="pong")
    stop_at_score: float = option("stop and save at the first periodic evaluation (--eval-every, --eval-episodes) "
                                  "whose mean return reaches this, e.g. 18 on Pong (0 = off); --resume goes on",
                                  default=0.0)
    lr: float = option("Adam learning rate", default=1e-4)
    gamma: float = option("discount", default=0.99)
    eps_start: float = option("initial exploration epsilon", default=1.0)
    eps_end: float = option("final exploration epsilon", default=0.01)
    eps_decay: int = option("env steps of linear epsilon decay after learning_starts", default=100_000)
    max_grad_norm: float = option("gradient clipping norm (0 = off)", default=10.0)
    life_loss_terminal: bool = option("treat a life loss as terminal for bootstrapping", default=True)
    compile: bool = option("torch.compile the update's networks (~30 s once; eager if compiling fails)", default=True)
    precision: str = option("precision of the update's forward passes: fp32, bf16 (autocast; weights, Adam and "
                            "the loss stay fp32; ~1.6x faster updates on CPUs with AMX, slower on others) or auto "
                            "(bf16 on devices with bfloat16 units: AMX CPUs, CUDA GPUs from Ampere on)",
                            choices=PRECISIONS, default="fp32")
    init_from: str = option("agent directory (same game and arch) whose weights start a new run, e.g. to go on "
                            "from a trained teacher with another --lr; the optimizer (and a replay memory) start "
                            "empty", default="")

    OWN_RANGES: ClassVar[dict[str, list[str]]] = {
        "positive": ["lr"], "non_negative": ["eps_decay", "max_grad_norm"], "unit": ["eps_start", "eps_end"]}

    def check_own(self) -> None:
        """The discount lies in (0, 1]."""
        if not 0 < self.gamma <= 1:
            raise UserError(f"{arg_name('gamma')} must be in (0, 1], got {self.gamma}")


def taken_q(net: nn.Module, obs: torch.Tensor, actions: torch.Tensor, bf16: bool) -> torch.Tensor:
    """The float32 Q-values [B] of the taken ``actions`` (the forward pass under bf16 autocast with
    ``bf16``)."""
    with autocast(obs.device, bf16):
        q_all = net(obs)
    return q_all.float().gather(1, actions[:, None]).squeeze(1)


def gradient_step(loss: torch.Tensor, opt: torch.optim.Optimizer, net: nn.Module, max_grad_norm: float) -> None:
    """Backpropagate ``loss`` and step ``opt``, the gradient norm of ``net`` clipped at ``max_grad_norm``
    (0 = off)."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if max_grad_norm > 0:
        nn.utils.clip_grad_norm_(net.parameters(), max_grad_norm)
    opt.step()


class TeacherMethodBase:
    """The hooks of a teacher method (``run.Method``) that every algorithm shares. A subclass sets
    ``algo`` and ``overlap_env`` and adds ``act``, ``learn``, ``observe``, ``report`` and
    ``checkpoint_state``; it keeps ``eps`` (the exploration epsilon now) up to date."""

    algo = ""
    return_tag = "charts/episodic_return"
    length_tag = "charts/episodic_length"

    def __init__(self, cfg: TeacherRunConfig, arch: dict[str, Any], net: nn.Module,
                 card_extra: dict[str, Any]) -> None:
        self.cfg, self.arch, self.net, self.card_extra = cfg, arch, net, card_extra
        self.device: torch.device = model_device(net)
        self.bf16 = False
        self.label = f"teacher {cfg.game}"
        self.n_act = int(net.num_actions)
        self.eps = cfg.eps_start
        self.learn_t0: float | None = None
        self.learn_step0 = 0

    def mark_learning(self, state: RunState) -> None:
        """Note the time and step of this process's first update (for the card's profile)."""
        if self.learn_t0 is None:
            self.learn_t0, self.learn_step0 = time.perf_counter(), state.step

    def evaluate(self, state: RunState, writer: Any) -> dict[str, Any]:
        """Five games (``eval_episodes``) of the default protocol, seed 10,000."""
        res = evaluate(self.net, self.cfg.game, self.cfg.eval_episodes, seed=10_000, protocol=DEFAULT_PROTOCOL)
        if writer is not None:
            writer.add_scalar("eval/return_mean", res["mean"], state.step)
        return {"step": state.step, "mean": res["mean"], "std": res["std"], "episodes": res["episodes"]}

    def progress_info(self) -> str:
        """The progress bar's part of this method."""
        return f"eps {self.eps:.2f}"

    def extra_files(self, state: RunState) -> list[tuple[str, Any]]:
        """Files saved beside the weights with each generation (none by default)."""
        return []

    def build_card(self, state: RunState, final: bool) -> dict[str, Any]:
        """The agent card of the weights as they are."""
        cfg = self.cfg
        training = {
            "algo": self.algo, "config": asdict(cfg), "device": device_record(self.device),
            "precision_used": "bf16" if self.bf16 else "fp32", "steps": state.step, "updates": state.updates,
            "wall_time_s": round(state.wall_time(), 1), "machines": state.machines, "git_commit": git_commit(),
            "command": self.card_extra.get("command") or f"rl-compress teacher train --algo {self.algo} --game "
            f"{cfg.game} --steps {cfg.steps} --out {self.card_extra['out']}",
            "last_eval": state.last_eval, "finished": final, "stopped": state.stopped,
            "profile": _profile(state.profile, self.learn_t0, self.learn_step0, state.step),
        }
        if self.card_extra.get("init_from") is not None:
            training["init_from"] = self.card_extra["init_from"]  # env steps and wall time before this run's
        card = make_card("teacher" if self.arch["name"] == "nature_dqn" else "student", cfg.game, self.arch, self.net)
        card["training"] = training  # no "evaluation": one made of earlier weights would not apply to these
        return card


def _profile(prof: dict[str, float], learn_t0: float | None, learn_step0: int, step: int) -> dict[str, Any]:
    """Where this process's time went, and the env steps/s since updates began."""
    out: dict[str, Any] = {k: round(v, 3) for k, v in prof.items()}
    if learn_t0 is not None:
        secs = time.perf_counter() - learn_t0
        out["learning_seconds"] = round(secs, 3)
        out["learning_env_steps"] = step - learn_step0
        out["learning_sps"] = round((step - learn_step0) / max(secs, 1e-9), 2)
    return out


@dataclass
class TeacherStart:
    """What a teacher algorithm's builder gets to make its method: the checked config, the arch, the
    run directory, the device, the agent to start from (``--init-from``) or the checkpoint to resume,
    the run's counters and RNG, the started envs' first observation and info, and the card's extras."""

    cfg: TeacherRunConfig
    arch: dict[str, Any]
    out: Path
    device: torch.device
    init: Any
    ckpt: dict[str, Any] | None
    state: RunState
    rng: np.random.Generator
    obs: np.ndarray
    info: dict[str, Any]
    card_extra: dict[str, Any]

    def new_network(self, init_fn: Callable[[nn.Module], nn.Module] | None = None) -> nn.Module:
        """The run's network on its device, seeded by the config: ``init_fn`` initialises a fresh one,
        ``--init-from``'s weights replace it (a checkpoint's are the builder's to load)."""
        torch.manual_seed(self.cfg.seed)
        net = build_network(self.arch, num_actions(self.cfg.game))
        if init_fn is not None:
            net = init_fn(net)
        if self.init is not None:
            net.load_state_dict(self.init.net.state_dict())
        return net.to(self.device)
