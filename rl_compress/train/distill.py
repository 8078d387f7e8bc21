"""Distillation of a teacher into a student (Actor-Mimic and Policy Distillation), top to bottom.

Actor (``--actor``): ``student`` (Actor-Mimic: the student acts epsilon-greedy, eps 0.1) or
``teacher`` (Policy Distillation: the teacher acts, eps 0.05). Every state that enters the
replay memory is labelled once by the teacher (Q-values, and its 512-d layer when feature
regression is on), in the same batched forward that serves acting.

Losses (student outputs z are logits, teacher outputs Q):
- ``actor-mimic``: cross-entropy between softmax(Q / tau) and softmax(z) (tau default 0.01);
- ``kl``: KL(softmax(Q / tau) || softmax(z)), tau default 0.01 as in Policy Distillation;
- ``mse``: mean squared error between z and Q (the student regresses Q-values);
- ``nll``: cross-entropy on the teacher's argmax action.
Optional feature regression: ``feature_weight * ||W h_student - h_teacher||^2`` through a
learned linear map W (Actor-Mimic's beta; 0 = off).
"""

from __future__ import annotations

import copy
import json
import math
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rl_compress.atari.acting import epsilon_greedy
from rl_compress.atari.envs import EnvConfig, make_vector_env
from rl_compress.atari.evaluate import DEFAULT_PROTOCOL, evaluate, retention
from rl_compress.attention.playback import play
from rl_compress.attention.video import render_overlay, tb_add_clip
from rl_compress.core.config import option, resumed_config
from rl_compress.core.device import (
    announce_choice,
    check_memory,
    config_device,
    device_record,
    model_device,
    resolve_device,
    to_device,
)
from rl_compress.core.errors import UserError, arg_name
from rl_compress.core.files import sha256_file
from rl_compress.core.outputs import check_not_inputs, check_output_dir
from rl_compress.core.provenance import git_commit
from rl_compress.core.rundir import load_checkpoint, note, own_run_dir, reconcile_resume
from rl_compress.core.signals import StopToken, stops_end_at_once
from rl_compress.models.agent import MAX_ACTIONS, WEIGHTS, load_agent, make_card, read_card, save_agent, source_ref
from rl_compress.models.networks import (
    BF16_AUTO_HELP,
    PRECISIONS,
    GMPStudent,
    bf16_autocast,
    bf16_enabled,
    build_network,
    check_precision,
    conv_activations,
    conv_layers,
    count_params,
    parse_spec,
)
from rl_compress.models.transplant import can_start_from, start_from_teacher
from rl_compress.train.replay import SLOT_BYTES, STACK, FrameReplay
from rl_compress.train.run import RunConfig, RunState, Schedule, open_run_dir, restore_rngs, rng_to_checkpoint, run_loop

LOSSES = ("actor-mimic", "kl", "mse", "nll")
INITS = ("teacher", "random")
ACTORS = ("student", "teacher")
DEFAULT_TAU = {"actor-mimic": 0.01, "kl": 0.01, "mse": 1.0, "nll": 1.0}
DEFAULT_RECYCLE_EVERY = 1000  # updates; measured on Pong (docs/results/students.md)
LR_SCHEDULES = ("constant", "linear", "cosine")


@dataclass
class DistillConfig(RunConfig):
    """Every number of a distillation run, beside those of every run (``RunConfig``); stored in the
    student's card. Teacher and student are evaluated with the same protocol and seeds."""

    student: str = option("student spec, e.g. gmp16, gmp16-h64, gmp8-16-32, flat16-fc128", default="gmp15-w5")
    steps: int = option("total env steps (4 frames each) to distill for", default=500_000)
    stop_at_retention: float = option("stop and save at the first periodic evaluation (--eval-every, "
                                      "--eval-episodes) whose retention of the teacher reaches this, e.g. 0.9 "
                                      "(0 = off); --resume goes on from there", default=0.0)
    loss: str = option("the distillation loss", choices=LOSSES, default="actor-mimic")
    actor: str = option("who acts: student (Actor-Mimic) or teacher (Policy Distillation)", choices=ACTORS,
                        default="student")
    temperature: float = option("tau of softmax(Q/tau) (0 = the default: 0.01 for actor-mimic and kl; 1 for a "
                                "teacher of policy logits)", default=0.0)
    feature_weight: float = option("weight of feature regression to the teacher's hidden layer (0 = off)", default=0.0)
    epsilon: float = option("exploration of the actor (0 = 0.1 for a student actor, 0.05 for a teacher actor)", default=0.0)
    buffer_size: int = option("replay memory in states (frames stored once, teacher labels beside)", default=100_000)
    learning_starts: int = option("env steps before the first update", default=5_000)
    train_freq: int = option("env steps per update", default=4)
    batch_size: int = option("states per update", default=64)
    lr: float = option("Adam learning rate (Actor-Mimic used 2.5e-4 from random weights)", default=1e-3)
    ema: float = option("decay per update of an exponential moving average of the student's weights; the average "
                        "is what evaluations play and what is saved as the agent (0 = off: the trained weights)",
                        default=0.0)
    lr_schedule: str = option("constant | linear | cosine: the learning rate falls from --lr to 0 over the run's "
                              "budget (--steps, or --max-wall-time when that ends first; a resume with a larger budget "
                              "stretches it)", choices=LR_SCHEDULES, default="constant")
    eval_every: int = option("env steps between evaluations of the student (0 = off)", default=50_000)
    eval_seed: int = option("seed of the periodic evaluations", default=10_000)
    tb_clip_steps: int = option("steps of the overlay clip logged to TensorBoard at each evaluation (0 = off)", default=90)
    precision: str = option("precision of the student's forward pass in updates: fp32, bf16 (autocast; weights, "
                            "Adam, the loss and the teacher's labels stay fp32; faster on CPUs with AMX) or auto "
                            f"({BF16_AUTO_HELP})",
                            choices=PRECISIONS, default="auto")
    recycle_every: int = option("updates between recycling the student's dead conv channels (ReDo; 0 = off; -1 = "
                                f"auto: every {DEFAULT_RECYCLE_EVERY} updates for a gmp student, off for others)",
                                default=-1)
    init: str = option("how a new student's convolutions start: teacher (a copy of the teacher's most useful "
                       "channels, for gmp / flat students of a Nature-DQN teacher; no one-action plateau) or "
                       "random", choices=INITS, default="teacher")
    init_from: str = option("student agent directory whose weights start the run, e.g. a pruned one "
                            "(its spec must be --student; overrides --init)", default="")

    OWN_RANGES: ClassVar[dict[str, list[str]]] = {
        "positive": ["buffer_size", "train_freq", "batch_size", "lr"],
        "non_negative": ["stop_at_retention", "temperature", "feature_weight", "learning_starts", "eval_seed",
                         "tb_clip_steps"],
        "unit": ["epsilon"]}

    def check_own(self) -> None:
        """The choices, the EMA decay, the recycling interval, and what needs what."""
        check_choices(self)

    def recycle_interval(self) -> int:
        """Updates between recycling dead channels in use (0 = off)."""
        if self.recycle_every >= 0:
            return self.recycle_every
        return DEFAULT_RECYCLE_EVERY if parse_spec(self.student)["name"] == "gmp" else 0

    def actor_epsilon(self) -> float:
        """The exploration epsilon in use."""
        return self.epsilon if self.epsilon > 0 else (0.1 if self.actor == "student" else 0.05)


def teacher_tau(cfg: DistillConfig, teacher_card: dict[str, Any]) -> float:
    """The temperature of the teacher's target policy softmax(outputs / tau): ``--temperature`` when
    given; else for a teacher whose outputs are policy logits (PPO, A2C) 1, its own policy, for the
    actor-mimic and kl losses; else the loss's default for Q-values (``DEFAULT_TAU``: 0.01 for both)."""
    if cfg.temperature > 0:
        return cfg.temperature
    if teacher_card.get("outputs") == "policy_logits" and cfg.loss in ("actor-mimic", "kl"):
        return 1.0
    return DEFAULT_TAU[cfg.loss]


def check_choices(cfg: DistillConfig) -> None:
    """Refuse a value outside its choices, or settings that contradict each other, with one line."""
    if cfg.loss not in LOSSES:
        raise UserError(f"{arg_name('loss')} must be one of {', '.join(LOSSES)}, got {cfg.loss!r}")
    if cfg.init not in INITS:
        raise UserError(f"{arg_name('init')} must be one of {', '.join(INITS)}, got {cfg.init!r}")
    if not 0 <= cfg.ema < 1:
        raise UserError(f"{arg_name('ema')} must be in [0, 1) (0 = off), got {cfg.ema}")
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise UserError(f"{arg_name('lr_schedule')} must be one of {', '.join(LR_SCHEDULES)}, got {cfg.lr_schedule!r}")
    if cfg.actor not in ACTORS:
        raise UserError(f"{arg_name('actor')} must be one of {', '.join(ACTORS)}, got {cfg.actor!r}")
    check_precision(cfg.precision)
    if cfg.stop_at_retention > 0 and cfg.eval_every == 0:
        raise UserError(f"{arg_name('stop_at_retention')} needs periodic evaluations: {arg_name('eval_every')} > 0")
    if cfg.buffer_size < cfg.envs * (STACK + 3):
        raise UserError(f"{arg_name('buffer_size')} {cfg.buffer_size} is too small for {cfg.envs} envs")
    if cfg.recycle_every < -1:
        raise UserError(f"{arg_name('recycle_every')} must be >= 0 (or -1 = auto), got {cfg.recycle_every}")


def check_config(cfg: DistillConfig) -> DistillConfig:
    """Refuse what a valid config still cannot run here with one line, before any work starts (the
    CLI, the Python API and a study's YAML all come through here): a device this machine lacks, a
    replay memory larger than its memory, a student spec that does not parse; returns the config
    with its device as a string (a new config: the caller's is not changed)."""
    cfg = replace(cfg, device=config_device(cfg.device))  # a torch.device too; CUDA only where it is
    check_memory(cfg.buffer_size * (SLOT_BYTES + 4 * MAX_ACTIONS), f"{arg_name('buffer_size')} {cfg.buffer_size}")
    arch = parse_spec(cfg.student)
    if cfg.recycle_every > 0 and arch["name"] != "gmp":
        raise UserError(f"{arg_name('recycle_every')} works on gmp students, not {cfg.student!r}")
    return cfg


def scheduled_lr(cfg: DistillConfig, step: int, wall_time: float) -> float:
    """The learning rate at ``step`` env steps and ``wall_time`` seconds of training: ``cfg.lr``, or
    with ``lr_schedule`` linear / cosine falling to 0 as the run nears the end of its budget (the
    larger of the shares of ``steps`` and of ``max_wall_time`` used)."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    done = step / cfg.steps
    if cfg.max_wall_time > 0:
        done = max(done, wall_time / cfg.max_wall_time)
    left = 1.0 - min(done, 1.0)
    if cfg.lr_schedule == "linear":
        return cfg.lr * left
    return cfg.lr * 0.5 * (1.0 - math.cos(math.pi * left))


def average_weights(average: nn.Module, net: nn.Module, decay: float) -> None:
    """One step of an exponential moving average: ``average``'s parameters move ``1 - decay`` of the
    way to ``net``'s; buffers are copied."""
    with torch.no_grad():
        torch._foreach_lerp_(list(average.parameters()), list(net.parameters()), 1.0 - decay)
        for mine, theirs in zip(average.buffers(), net.buffers()):
            mine.copy_(theirs)


def dead_channels(net: nn.Module, obs: torch.Tensor) -> list[torch.Tensor]:
    """Per conv layer of a student, the channels whose ReLU output is zero at every position of
    every state of ``obs``: they pass no gradient, so they never learn again."""
    with torch.no_grad():
        acts = conv_activations(net.conv, obs)  # type: ignore[arg-type]
    return [(a.amax(dim=(0, 2, 3)) <= 0).nonzero().flatten() for a in acts]


def recycle_dead_channels(
    net: nn.Module, obs: torch.Tensor, opt: torch.optim.Optimizer | None = None
) -> list[int]:
    """ReDo (Sokar et al. 2023, "The Dormant Neuron Phenomenon in Deep RL") for the convolutions of
    a GMP student: every channel that is dead on ``obs`` (``dead_channels``) gets fresh incoming
    weights and bias (the layer's default init) and zero outgoing weights, so the outputs do not
    change at once and the channel can learn again; Adam's moments of those weights are reset.
    Returns how many channels were recycled in each conv layer."""
    if not isinstance(net, GMPStudent):
        raise UserError("recycling dead channels needs a gmp student")
    convs = conv_layers(net)
    after_pool = net.hidden[0] if isinstance(net.hidden, nn.Sequential) else net.head
    layers = list(zip(convs, [*convs[1:], after_pool], dead_channels(net, obs)))
    for conv, nxt, dead in reversed(layers):  # last first: a layer's fresh rows must not refill zeroed columns
        if len(dead) == 0:
            continue
        fresh = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride).to(conv.weight.device)
        with torch.no_grad():
            conv.weight[dead] = fresh.weight[dead]
            conv.bias[dead] = fresh.bias[dead]
            nxt.weight[:, dead] = 0.0
        if opt is not None:
            for param, index in ((conv.weight, dead), (conv.bias, dead), (nxt.weight, (slice(None), dead))):
                for moment in ("exp_avg", "exp_avg_sq"):
                    if moment in opt.state.get(param, {}):
                        opt.state[param][moment][index] = 0.0
    return [len(dead) for _, _, dead in layers]


def distill_loss(
    logits: torch.Tensor, q_teacher: torch.Tensor, loss: str, tau: float
) -> torch.Tensor:
    """The distillation loss of a batch (mean over the batch)."""
    if loss == "mse":
        return F.mse_loss(logits, q_teacher)
    if loss == "nll":
        return F.cross_entropy(logits, q_teacher.argmax(1))
    target = F.softmax(q_teacher / tau, dim=1)
    log_student = F.log_softmax(logits, dim=1)
    if loss == "actor-mimic":
        return -(target * log_student).sum(1).mean()
    if loss == "kl":
        return (target * (torch.log(target.clamp_min(1e-12)) - log_student)).sum(1).mean()
    raise UserError(f"unknown loss {loss!r}")


def log_overlay_clip(writer: Any, net: nn.Module, game: str, steps: int, step: int, seed: int) -> None:
    """Log the student's attention overlay to TensorBoard: one image (images/overlay) and a
    clip of ``steps`` agent steps (videos/overlay), GMP for a gmp student, else Grad-CAM."""
    method = "gmp" if isinstance(net, GMPStudent) else "gradcam"
    frames = [render_overlay(st.frame, st.map, st.peaks, f"{game} | step {step} | {method} | t {st.t}", scale=2)
              for st in play(net, game, method, steps, episodes=1, seed=seed)]
    if frames:
        writer.add_image("images/overlay", frames[len(frames) // 2], step, dataformats="HWC")
        tb_add_clip(writer, "videos/overlay", frames, step)


def _teacher_ref(path: Path, teacher: Any) -> dict[str, Any]:
    """What a student's card records of its teacher; a teacher imported from the Hub keeps its origin
    (repository, revision, file) beside the local copy's sha256."""
    ref = {"path": str(path), "sha256": sha256_file(path / WEIGHTS), "params": count_params(teacher.net),
           "evaluation": (teacher.card.get("evaluation") or {}).get("mean")}
    hub = (teacher.card.get("training") or {}).get("hub")
    return ref | ({"hub": hub} if hub else {})


def teacher_directory(teacher: Any) -> Path:
    """The agent directory a distillation reads its teacher from: a path, or an Agent loaded from a
    directory; a zip, a CleanRL file or a Hub source is refused with the command that imports it."""
    path = getattr(teacher, "path", teacher)
    if not isinstance(path, (str, Path)):
        raise UserError(f"the teacher must be an agent directory or an Agent, got {type(teacher).__name__}")
    if str(path).startswith("hf:") or not Path(path).is_dir():
        if str(path).startswith("hf:") or Path(path).is_file():
            raise UserError(f"{path}: distill reads its teacher from an agent directory; import it first: "
                            f"rl-compress teacher import {path} --out DIR")
        raise UserError(f"{path}: not an agent directory (no such folder)")
    return Path(path)


def _init_source(path: Path, arch: dict[str, Any], game: str) -> Any:
    """The student agent whose weights start a run: same arch and game, or one clear error."""
    src = load_agent(path, game=game)
    if src.card.get("kind") != "student" or src.card["arch"] != arch:
        spec = src.card["arch"].get("spec", src.card["arch"].get("name"))
        raise UserError(f"{arg_name('init_from')} {path} is {spec!r}, not the student {arch['spec']!r}; "
                        f"pass {arg_name('student')} with its spec")
    return src


def distill(
    teacher_dir: Path | str | Any,
    cfg: DistillConfig,
    out: Path,
    resume: bool = False,
    tensorboard: Path | None = None,
    show_progress: bool = True,
    command: str | None = None,
    force: bool = False,
    stop: StopToken | None = None,
) -> dict[str, Any]:
    """Distill the teacher in ``teacher_dir`` (an agent directory, or an Agent loaded from one) into a
    student written to ``out``; returns its card.

    ``out`` must be new or empty, or hold this run (``resume``), or ``force`` replaces the run it
    holds. The directory is locked for the whole run. ``stop`` (default: the run's own token, set by
    SIGINT / SIGTERM while the loop runs) ends the loop at its next step with a checkpoint."""
    cfg = check_config(cfg)
    teacher_dir, out = teacher_directory(teacher_dir), check_output_dir(out)
    check_not_inputs(out, [teacher_dir, cfg.init_from])
    if tensorboard is not None:
        check_output_dir(tensorboard, name="tensorboard")
    teacher = load_agent(teacher_dir)
    with own_run_dir(out, resume, force):
        return _distill(teacher_dir, teacher, cfg, out, resume, tensorboard, show_progress, command, stop)


RESUME_KEEPS = {"steps", "max_wall_time", "stop_at_retention", "checkpoint_every", "eval_every", "eval_episodes",
                "threads", "device", "env_threads"}
# what a run saved before an option existed ran with: a resume goes on so, not at today's default
RUNS_BEFORE = {"init": "random", "lr_schedule": "constant", "precision": "fp32", "ema": 0.0, "recycle_every": 0}


@dataclass
class UpdateResult:
    """What one distillation update returns: the student's logits on the batch and the two losses."""

    logits: torch.Tensor
    loss: torch.Tensor  # the distillation loss (before the feature term)
    feature: torch.Tensor  # the feature-regression loss (0 when off)


def distill_update(
    student: nn.Module,
    opt: torch.optim.Optimizer,
    states: torch.Tensor,
    q_teacher: torch.Tensor,
    loss: str,
    tau: float,
    bf16: bool = False,
    proj: nn.Module | None = None,
    h_teacher: torch.Tensor | None = None,
    feature_weight: float = 0.0,
) -> UpdateResult:
    """One Adam step of the student on teacher-labelled ``states`` (uint8 [B,4,84,84], on the
    student's device): the ``loss`` against ``q_teacher`` at temperature ``tau``, plus
    ``feature_weight`` times the regression of ``proj`` (student features) onto ``h_teacher`` when
    ``proj`` is given. With ``bf16`` the student's forward pass runs under bfloat16 autocast; the
    loss stays fp32. Nothing here waits for the device: the returned tensors stay on it."""
    with bf16_autocast(bf16, states.device):
        if proj is not None:
            h_s = student.features(states)
            logits = student.head(h_s)
        else:
            logits = student(states)
    logits = logits.float()
    if proj is not None and h_teacher is not None:
        feat = ((proj(h_s.float()) - h_teacher) ** 2).sum(1).mean()
    else:
        feat = torch.zeros((), device=logits.device)
    main = distill_loss(logits, q_teacher, loss, tau)
    opt.zero_grad(set_to_none=True)
    (main + feature_weight * feat).backward()
    opt.step()
    return UpdateResult(logits.detach(), main.detach(), feat.detach())


def batch_stats(res: UpdateResult, q_teacher: torch.Tensor) -> dict[str, float]:
    """Agreement with the teacher's action, entropy and spread of the student's outputs on a batch."""
    with torch.no_grad():
        p = F.softmax(res.logits, 1)
        return {"loss": float(res.loss), "feature": float(res.feature),
                "agreement": float((res.logits.argmax(1) == q_teacher.argmax(1)).float().mean()),
                "entropy": float(-(p * torch.log(p.clamp_min(1e-12))).sum(1).mean()),
                # spread of each output over the batch: 0 = the input no longer matters
                "logit_std": float(res.logits.std(0).max())}


class DistillMethod:
    """Distillation as a method of the shared run loop (``run.run_loop``): the actor (student or
    teacher) acts epsilon-greedy; every state that enters the replay memory is labelled once by the
    teacher in the batched forward that serves acting; ``train_freq`` env steps per ``distill_update``."""

    overlap_env = True
    length_tag = None

    def __init__(self, cfg: DistillConfig, teacher: Any, student: nn.Module, average: nn.Module | None,
                 proj: nn.Module | None, opt: torch.optim.Optimizer, rng: np.random.Generator, learn_from: int,
                 resumed: dict[str, Any], card_extra: dict[str, Any]) -> None:
        self.cfg, self.teacher, self.proj, self.opt, self.rng = cfg, teacher, proj, opt, rng
        # the learner trains and acts; the agent (its moving average with --ema) is evaluated and saved
        self.learner, self.average = student, average
        self.net = average if average is not None else student
        self.device = model_device(student)
        self.tnet, self.game, self.n_act = teacher.net.to(self.device).eval(), teacher.game, teacher.num_actions
        for p in self.tnet.parameters():
            p.requires_grad_(False)
        self.learn_from, self.card_extra = learn_from, card_extra
        self.teacher_eval: dict[str, Any] | None = resumed.get("teacher_eval")
        self.history: list[dict[str, Any]] = resumed.get("history", [])
        self.label, self.return_tag = f"distill {cfg.student} ({self.game})", f"charts/{cfg.actor}_return"
        self.tau, self.eps, self.bf16 = teacher_tau(cfg, teacher.card), cfg.actor_epsilon(), bf16_enabled(cfg.precision, self.device)
        self.replay = FrameReplay(cfg.buffer_size, cfg.envs, 1, 0.99)
        self.q_labels = np.zeros((cfg.envs, self.replay.cap, self.n_act), dtype=np.float32)
        feat_dim = int(proj.out_features) if proj is not None else 0
        self.f_labels = np.zeros((cfg.envs, self.replay.cap, feat_dim), dtype=np.float32) if proj else None
        self.debt = 0.0
        self.stats = {"loss": float("nan"), "feature": 0.0, "agreement": float("nan"), "entropy": float("nan"),
                      "logit_std": float("nan")}
        self.dead_share = float("nan")  # share of the student's conv channels dead on the last checked batch
        self.recycled, self.recycle_every = 0, cfg.recycle_interval()
        self.collapse_warned = False
        self.n_channels = sum(m.out_channels for m in conv_layers(student))
        self.writer: Any = None

    def begin(self, obs: np.ndarray) -> None:
        """The first frames of the episodes the envs just started."""
        self.replay.add_frames(obs[:, -1], np.ones(len(obs), dtype=bool))

    def act(self, obs: np.ndarray, state: RunState) -> np.ndarray:
        """Label the states just written (one per env) with the teacher; the actor's actions."""
        x = to_device(obs, self.device)
        with torch.no_grad():
            if self.f_labels is not None:
                h_t = self.tnet.features(x)
                q_t = self.tnet.from_features(h_t)
            else:
                q_t = self.tnet(x)
            acting = q_t if self.cfg.actor == "teacher" else self.learner(x)
        last = (self.replay.pos - 1) % self.replay.cap
        self.q_labels[np.arange(len(obs)), last] = q_t.cpu().numpy()
        if self.f_labels is not None:
            self.f_labels[np.arange(len(obs)), last] = h_t.cpu().numpy()
        return epsilon_greedy(len(obs), self.eps, self.rng, self.n_act, lambda: acting.argmax(1).cpu().numpy())

    def learn(self, state: RunState) -> None:
        """The updates this env step owes, from ``learn_from`` on."""
        if state.step < self.learn_from:
            return
        self.debt += self.cfg.envs / self.cfg.train_freq
        if self.debt >= 1.0 and self.cfg.lr_schedule != "constant":
            lr = scheduled_lr(self.cfg, state.step, state.wall_time())
            for group in self.opt.param_groups:
                group["lr"] = lr
        while self.debt >= 1.0:
            rows, idx, states = self.replay.sample_states(self.cfg.batch_size, self.rng)
            xs, target = to_device(states, self.device), to_device(self.q_labels[rows, idx], self.device)
            h_t = to_device(self.f_labels[rows, idx], self.device) if self.f_labels is not None else None
            res = distill_update(self.learner, self.opt, xs, target, self.cfg.loss, self.tau, self.bf16, self.proj, h_t,
                                 self.cfg.feature_weight)
            if self.average is not None:
                average_weights(self.average, self.learner, self.cfg.ema)
            state.updates += 1
            self.debt -= 1.0
            self._watch_channels(xs, state.updates)
            if state.updates % 50 == 0:
                self.stats = batch_stats(res, target)

    def _watch_channels(self, xs: torch.Tensor, updates: int) -> None:
        """Recycle dead channels when due (``recycle_interval``); measure their share for TensorBoard."""
        recycle_now = self.recycle_every > 0 and updates % self.recycle_every == 0
        if not isinstance(self.learner, GMPStudent) or not (recycle_now or (self.writer is not None and updates % 100 == 0)):
            return
        if recycle_now:
            n_dead = recycle_dead_channels(self.learner, xs, self.opt)
            self.recycled += sum(n_dead)
        else:
            n_dead = [len(d) for d in dead_channels(self.learner, xs)]
        self.dead_share = sum(n_dead) / self.n_channels

    def observe(self, state: RunState, obs: np.ndarray, actions: np.ndarray, reward: np.ndarray,
                term: np.ndarray, trunc: np.ndarray, info: dict[str, Any], just_done: np.ndarray) -> None:
        """Record the step's states in the replay memory."""
        self.replay.record_step(obs, actions, np.sign(reward).astype(np.float32), term, just_done)

    def evaluate(self, state: RunState, writer: Any) -> dict[str, Any]:
        """Student (and, once, teacher) under the default protocol on the same seeds; retention."""
        cfg, game = self.cfg, self.game
        if self.teacher_eval is None:
            res_t = evaluate(self.tnet, game, cfg.eval_episodes, seed=cfg.eval_seed, protocol=DEFAULT_PROTOCOL)
            self.teacher_eval = {"mean": res_t["mean"], "std": res_t["std"], "scores": res_t["scores"]}
        res = evaluate(self.net, game, cfg.eval_episodes, seed=cfg.eval_seed, protocol=DEFAULT_PROTOCOL)
        ret = retention(game, res["mean"], self.teacher_eval["mean"])
        last_eval = {"step": state.step, "wall_time_s": round(state.wall_time(), 1), "mean": res["mean"],
                     "std": res["std"], "teacher_mean": self.teacher_eval["mean"], "retention": ret}
        self.history.append(last_eval)
        if writer is not None and cfg.tb_clip_steps > 0:
            log_overlay_clip(writer, self.net, game, cfg.tb_clip_steps, state.step, cfg.eval_seed)
        if writer is not None:
            writer.add_scalar("eval/student_return_mean", res["mean"], state.step)
            writer.add_scalar("eval/teacher_return_mean", self.teacher_eval["mean"], state.step)
            if ret is not None:
                writer.add_scalar("eval/retention", ret, state.step)
        return last_eval

    def report(self, writer: Any, state: RunState) -> None:
        """Scalars every 1,000 env steps, and one warning when the student's outputs collapse."""
        stats = self.stats
        if writer is not None and state.updates:
            for tag, key in (("losses/distill", "loss"), ("losses/feature", "feature"),
                             ("charts/agreement", "agreement"), ("charts/entropy", "entropy"),
                             ("charts/logit_std", "logit_std")):
                writer.add_scalar(tag, stats[key], state.step)
            writer.add_scalar("train/loss", stats["loss"], state.step)
            writer.add_scalar("train/learning_rate", scheduled_lr(self.cfg, state.step, state.wall_time()), state.step)
            if self.dead_share == self.dead_share:  # not NaN: a gmp student, checked
                writer.add_scalar("charts/dead_channels", self.dead_share, state.step)
                writer.add_scalar("charts/recycled_channels", self.recycled, state.step)
        if state.updates and stats["logit_std"] < 1e-6 and not self.collapse_warned:
            self.collapse_warned = True
            print(f"warning: {self.card_extra['out']}: at step {state.step} the student gives every state the same "
                  "outputs (its units died); it will not learn from here: start again with a lower --lr or "
                  "another --seed", file=sys.stderr)

    def progress_info(self) -> str:
        """The progress bar's part of this method."""
        return f"agree {self.stats['agreement']:.2f}"

    def checkpoint_state(self, state: RunState) -> dict[str, Any]:
        """Student (and its average), projection, Adam, RNGs, config and evaluations for checkpoint.pt."""
        averaged = {"student_average": self.average.state_dict()} if self.average is not None else {}
        return {"student": self.learner.state_dict(), **averaged,
                "proj": self.proj.state_dict() if self.proj is not None else {},
                "optimizer": self.opt.state_dict(), "config": json.dumps(asdict(self.cfg)),
                "teacher_eval": json.dumps(self.teacher_eval), "history": json.dumps(self.history),
                **rng_to_checkpoint(self.rng)}

    def extra_files(self, state: RunState) -> list[tuple[str, Any]]:
        """None: the labelled memory is refilled on resume."""
        return []

    def build_card(self, state: RunState, final: bool) -> dict[str, Any]:
        """The student's card for the weights as they are."""
        cfg, extra = self.cfg, self.card_extra
        training = {
            "config": asdict(cfg), "device": device_record(self.device),
            "precision_used": "bf16" if self.bf16 else "fp32", "temperature_used": self.tau, "epsilon_used": self.eps,
            "recycle_every_used": self.recycle_every, "steps": state.step,
            "updates": state.updates, "wall_time_s": round(state.wall_time(), 1), "machines": state.machines,
            "git_commit": git_commit(),
            "command": extra.get("command") or f"rl-compress distill --teacher {extra['teacher_dir']} --student "
            f"{cfg.student} --steps {cfg.steps} --loss {cfg.loss} --actor {cfg.actor} --out {extra['out']}",
            "last_eval": state.last_eval, "eval_history": self.history, "finished": final,
            "stopped": state.stopped,
        }
        if extra.get("init_from") is not None:
            training["init_from"] = extra["init_from"]
        if extra.get("started") is not None:
            training["start"] = extra["started"]
        # no "evaluation": one made of earlier weights would not apply to these
        return make_card("student", self.game, parse_spec(cfg.student), self.net, training=training,
                         teacher=extra["teacher"])


def _resume_check(out: Path, cfg: DistillConfig, arch: dict[str, Any], ref: dict[str, Any], teacher_dir: Path
                  ) -> tuple[dict[str, Any], DistillConfig, dict[str, Any] | None]:
    """The checkpoint of the run in ``out``, its config and its ``init_from`` record; refuses a run of
    another student spec or another teacher's weights."""
    ckpt = load_checkpoint(out)
    card = read_card(out)
    if card["arch"] != arch:
        raise UserError(f"{out}: run distils {card['arch'].get('spec')!r}, not {arch['spec']!r}")
    if (card.get("teacher") or {}).get("sha256") != ref["sha256"]:
        raise UserError(f"{out}: run was distilled from another teacher than {teacher_dir}")
    saved = json.loads(ckpt["config"])
    # a run goes on at the temperature it used (the default changed; its card has it) and, for
    # options newer than the run, at what it ran with then (RUNS_BEFORE)
    tau = saved.get("temperature") or (card.get("training") or {}).get("temperature_used", 0.0)
    cfg = resumed_config(cfg, saved, RESUME_KEEPS, before=RUNS_BEFORE, temperature=tau)
    return ckpt, cfg, (card.get("training") or {}).get("init_from")


def _student(cfg: DistillConfig, arch: dict[str, Any], teacher: Any, init: Any, ckpt: dict[str, Any] | None,
             device: torch.device) -> tuple[nn.Module, nn.Module | None, torch.optim.Optimizer, dict[str, Any] | None]:
    """The student, the feature projection (feature regression on) and Adam on ``device``: new (from
    ``init``'s weights, or from the teacher's convolutions with ``--init teacher``) or restored (a
    checkpoint written on another device loads the same); and the card's record of a teacher start.
    The moving average of the student (``--ema``) is ``_average``'s."""
    torch.manual_seed(cfg.seed)
    teacher.net.to(device)
    student = build_network(arch, teacher.num_actions).to(device)
    started = None
    if init is not None:
        student.load_state_dict(init.net.state_dict())
    elif ckpt is None and cfg.init == "teacher":
        if can_start_from(student, teacher.net):
            started = start_from_teacher(student, teacher, cfg.seed)
        else:
            note(f"{arg_name('init')} teacher: {cfg.student} cannot take this teacher's convolutions; "
                 "starting from random weights")
    proj = None
    if cfg.feature_weight > 0:
        x = torch.zeros((1, 4, 84, 84), dtype=torch.uint8, device=device)
        width = int(teacher.net.features(x).shape[1])
        proj = nn.Linear(int(student.features(x).shape[1]), width).to(device)
    params = list(student.parameters()) + (list(proj.parameters()) if proj is not None else [])
    opt = torch.optim.Adam(params, lr=cfg.lr)
    if ckpt is not None:
        student.load_state_dict(ckpt["student"])
        if proj is not None:
            proj.load_state_dict(ckpt["proj"])
        opt.load_state_dict(ckpt["optimizer"])
    return student, proj, opt, started


def _average(cfg: DistillConfig, student: nn.Module, ckpt: dict[str, Any] | None) -> nn.Module | None:
    """With ``--ema``, the moving average of ``student``'s weights: the checkpoint's, or a copy of the
    student as it starts."""
    if cfg.ema <= 0:
        return None
    average = copy.deepcopy(student).requires_grad_(False)
    if ckpt is not None and "student_average" in ckpt:
        average.load_state_dict(ckpt["student_average"])
    return average


def _distill(
    teacher_dir: Path,
    teacher: Any,
    cfg: DistillConfig,
    out: Path,
    resume: bool,
    tensorboard: Path | None,
    show_progress: bool,
    command: str | None,
    stop: StopToken | None = None,
) -> dict[str, Any]:
    """``distill`` once its directory is locked and claimed: set up the method, run the loop."""
    arch = parse_spec(cfg.student)
    ref = _teacher_ref(teacher_dir, teacher)
    ckpt, init_ref, resumed_start = None, None, None
    if resume:
        ckpt, cfg, resumed_init = _resume_check(out, cfg, arch, ref, teacher_dir)
        init_ref = resumed_init if cfg.init_from else None
        resumed_start = (read_card(out).get("training") or {}).get("start")
    init = _init_source(Path(cfg.init_from), arch, teacher.game) if cfg.init_from and ckpt is None else None
    if init is not None:
        init_ref = source_ref(Path(cfg.init_from), init.card)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device, announce=False)
    student, proj, opt, started = _student(cfg, arch, teacher, init, ckpt, device)
    average = _average(cfg, student, ckpt)
    rng = np.random.default_rng(cfg.seed)
    state = RunState.restore(ckpt, device)
    if started is not None:  # the teacher's states and the copy are part of the run's time
        state.wall_before += started["seconds"]
    resumed: dict[str, Any] = {}
    if ckpt is not None:
        restore_rngs(ckpt, rng)
        resumed = {"teacher_eval": json.loads(ckpt["teacher_eval"]), "history": json.loads(ckpt["history"])}
    if state.step >= cfg.steps:
        raise UserError(f"{out}: run is already at {state.step} steps; ask for more than that with {arg_name('steps')}")
    if ckpt is not None and 0 < cfg.max_wall_time <= state.wall_before:  # a new run's start counts, but runs
        raise UserError(f"{out}: run has already trained {state.wall_before:.0f} s; "
                        f"ask for more with {arg_name('max_wall_time')}")
    repair = ckpt is not None and reconcile_resume(out, state.step)
    with stops_end_at_once():  # nothing of this run is written yet; the emulators' start holds the GIL
        env = make_vector_env(teacher.game, cfg.envs, EnvConfig(sticky=cfg.sticky), num_threads=cfg.env_threads)
    learn_from = state.step + min(cfg.learning_starts, cfg.buffer_size // 2)
    method = DistillMethod(cfg, teacher, student, average, proj, opt, rng, learn_from, resumed,
                           {"command": command, "out": out, "teacher_dir": teacher_dir, "teacher": ref,
                            "init_from": init_ref, "started": started if ckpt is None else resumed_start})
    run = open_run_dir(out, tensorboard, state, ckpt is not None, asdict(cfg),
                       curve_ylabel=f"return of the acting {cfg.actor}")
    method.writer = run.writer
    obs, _ = env.reset(seed=int(cfg.seed * 1000 + state.step))
    method.begin(obs)
    if repair:
        save_agent(out, method.net, method.build_card(state, False))
    if show_progress:
        announce_choice(cfg.device, device)
    target = ("retention", cfg.stop_at_retention) if cfg.stop_at_retention > 0 else None
    return run_loop(method, env, obs, state, run, Schedule(cfg.steps, cfg.checkpoint_every, cfg.eval_every,
                                                              cfg.max_wall_time, target),
                    show_progress, stop)
