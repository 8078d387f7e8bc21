"""Distillation of a teacher into a student (Actor-Mimic and Policy Distillation), top to bottom.

Actor (``--actor``): ``student`` (Actor-Mimic: the student acts epsilon-greedy, eps 0.1) or
``teacher`` (Policy Distillation: the teacher acts, eps 0.05). Every state that enters the
replay memory is labelled once by the teacher (Q-values, and its 512-d layer when feature
regression is on), in the same batched forward that serves acting.

Losses (student outputs z are logits, teacher outputs Q):
- ``actor-mimic``: cross-entropy between softmax(Q / tau) and softmax(z) (tau default 0.1);
- ``kl``: KL(softmax(Q / tau) || softmax(z)), tau default 0.01 as in Policy Distillation;
- ``mse``: mean squared error between z and Q (the student regresses Q-values);
- ``nll``: cross-entropy on the teacher's argmax action.
Optional feature regression: ``feature_weight * ||W h_student - h_teacher||^2`` through a
learned linear map W (Actor-Mimic's beta; 0 = off).
"""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rl_compress.agent import WEIGHTS, agent_files, load_agent, make_card, read_card, save_agent, sha256_file, source_ref
from rl_compress.config import check_ranges, option
from rl_compress.envs import EnvConfig, make_vector_env
from rl_compress.errors import UserError
from rl_compress.evaluate import DEFAULT_PROTOCOL, evaluate, retention
from rl_compress.networks import (
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
from rl_compress.progress import progress_bar
from rl_compress.replay import FrameReplay
from rl_compress.outputs import check_output_dir, claim_output_dir
from rl_compress.rundir import (
    CHECKPOINT,
    ReturnsLog,
    RunLock,
    StopFlag,
    checkpoint_writer,
    git_commit,
    load_checkpoint,
    machines_after,
    note,
    plot_curve,
    reconcile_resume,
    sweep_temp_files,
    write_generation,
)

LOSSES = ("actor-mimic", "kl", "mse", "nll")
ACTORS = ("student", "teacher")
DEFAULT_TAU = {"actor-mimic": 0.1, "kl": 0.01, "mse": 1.0, "nll": 1.0}


@dataclass
class DistillConfig:
    """Every number of a distillation run; stored in the student's card."""

    student: str = option("student spec, e.g. gmp16, gmp16-h64, gmp8-16-32, flat16-fc128", default="gmp16")
    steps: int = option("total env steps (4 frames each) to distill for", default=500_000)
    loss: str = option("actor-mimic | kl | mse | nll", default="actor-mimic")
    actor: str = option("who acts: student (Actor-Mimic) or teacher (Policy Distillation)", default="student")
    temperature: float = option("tau of softmax(Q/tau) (0 = the loss's default: actor-mimic 0.1, kl 0.01)", default=0.0)
    feature_weight: float = option("weight of feature regression to the teacher's hidden layer (0 = off)", default=0.0)
    epsilon: float = option("exploration of the actor (0 = 0.1 for a student actor, 0.05 for a teacher actor)", default=0.0)
    seed: int = option("seed of envs, exploration and student init", default=1)
    envs: int = option("environments stepped together", default=8)
    buffer_size: int = option("replay memory in states (frames stored once, teacher labels beside)", default=100_000)
    learning_starts: int = option("env steps before the first update", default=5_000)
    train_freq: int = option("env steps per update", default=4)
    batch_size: int = option("states per update", default=64)
    lr: float = option("Adam learning rate (Actor-Mimic: 2.5e-4)", default=2.5e-4)
    sticky: float = option("sticky-action probability while distilling", default=0.25)
    checkpoint_every: int = option("env steps between checkpoints", default=25_000)
    eval_every: int = option("env steps between evaluations of the student (0 = off)", default=50_000)
    eval_episodes: int = option("episodes per evaluation, same protocol and seeds for teacher and student", default=5)
    eval_seed: int = option("seed of the periodic evaluations", default=10_000)
    tb_clip_steps: int = option("steps of the overlay clip logged to TensorBoard at each evaluation (0 = off)", default=90)
    threads: int = option("torch threads (0 = all cores)", default=0)
    precision: str = option("precision of the student's forward pass in updates: fp32, or bf16 (autocast; weights, "
                            "Adam, the loss and the teacher's labels stay fp32; faster on CPUs with AMX)",
                            default="fp32")
    recycle_every: int = option("updates between recycling the student's dead conv channels (ReDo; 0 = off)", default=0)
    init_from: str = option("student agent directory whose weights start the run, e.g. a pruned one "
                            "(its spec must be --student)", default="")

    def tau(self) -> float:
        """The temperature in use."""
        return self.temperature if self.temperature > 0 else DEFAULT_TAU[self.loss]

    def actor_epsilon(self) -> float:
        """The exploration epsilon in use."""
        return self.epsilon if self.epsilon > 0 else (0.1 if self.actor == "student" else 0.05)


def check_config(cfg: DistillConfig) -> None:
    """Refuse impossible settings with one line each, before any work starts (the CLI, the Python
    API and a study's YAML all come through here)."""
    check_ranges(cfg, positive=["steps", "envs", "buffer_size", "train_freq", "batch_size", "lr",
                                "checkpoint_every", "eval_episodes"],
                 non_negative=["seed", "temperature", "feature_weight", "learning_starts", "eval_every", "eval_seed",
                               "tb_clip_steps", "threads", "recycle_every"],
                 unit=["epsilon", "sticky"])
    if cfg.loss not in LOSSES:
        raise UserError(f"--loss must be one of {', '.join(LOSSES)}, got {cfg.loss!r}")
    if cfg.actor not in ACTORS:
        raise UserError(f"--actor must be one of {', '.join(ACTORS)}, got {cfg.actor!r}")
    if cfg.temperature < 0 or not np.isfinite(cfg.temperature):
        raise UserError(f"--temperature must be > 0 (or 0 for the loss's default), got {cfg.temperature}")
    if cfg.feature_weight < 0:
        raise UserError(f"--feature-weight must be >= 0, got {cfg.feature_weight}")
    if not 0 <= cfg.epsilon <= 1:
        raise UserError(f"--epsilon must be in [0, 1], got {cfg.epsilon}")
    for name in ("steps", "envs", "buffer_size", "train_freq", "batch_size"):
        if getattr(cfg, name) <= 0:
            raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(cfg, name)}")
    if cfg.lr <= 0:
        raise UserError(f"--lr must be positive, got {cfg.lr}")
    check_precision(cfg.precision)
    arch = parse_spec(cfg.student)
    if cfg.recycle_every < 0:
        raise UserError(f"--recycle-every must be >= 0, got {cfg.recycle_every}")
    if cfg.recycle_every and arch["name"] != "gmp":
        raise UserError(f"--recycle-every works on gmp students, not {cfg.student!r}")


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
        fresh = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride)
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
    from rl_compress.localize import play
    from rl_compress.networks import GMPStudent
    from rl_compress.video import render_overlay, tb_add_clip

    method = "gmp" if isinstance(net, GMPStudent) else "gradcam"
    frames = [render_overlay(st.frame, st.map, st.peaks, f"{game} | step {step} | {method} | t {st.t}", scale=2)
              for st in play(net, game, method, steps, episodes=1, seed=seed)]
    if frames:
        writer.add_image("images/overlay", frames[len(frames) // 2], step, dataformats="HWC")
        tb_add_clip(writer, "videos/overlay", frames, step)


def _teacher_ref(path: Path, teacher: Any) -> dict[str, Any]:
    return {"path": str(path), "sha256": sha256_file(path / WEIGHTS), "params": count_params(teacher.net),
            "evaluation": (teacher.card.get("evaluation") or {}).get("mean")}


def _init_source(path: Path, arch: dict[str, Any], game: str) -> Any:
    """The student agent whose weights start a run: same arch and game, or one clear error."""
    src = load_agent(path, game=game)
    if src.card.get("kind") != "student" or src.card["arch"] != arch:
        raise UserError(f"--init-from {path} is {src.card['arch'].get('spec', src.card['arch'].get('name'))!r}, "
                        f"not the student {arch['spec']!r}; pass --student with its spec")
    return src


def distill(
    teacher_dir: Path,
    cfg: DistillConfig,
    out: Path,
    resume: bool = False,
    tensorboard: Path | None = None,
    show_progress: bool = True,
    command: str | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Distill the teacher in ``teacher_dir`` into a student written to ``out``; returns its card.

    ``out`` must be new or empty, or hold this run (``resume``), or ``force`` replaces the run it
    holds. The directory is locked for the whole run."""
    check_config(cfg)
    teacher_dir, out = Path(teacher_dir), check_output_dir(out)
    teacher = load_agent(teacher_dir)
    with RunLock(out):
        swept = sweep_temp_files(out)
        if swept:
            note(f"{out}: removed temp files of a stopped writer: {', '.join(swept)}")
        claim_output_dir(out, resume, force)
        return _distill(teacher_dir, teacher, cfg, out, resume, tensorboard, show_progress, command)


RESUME_KEEPS = {"steps", "checkpoint_every", "eval_every", "eval_episodes", "threads"}


def _distill(
    teacher_dir: Path,
    teacher: Any,
    cfg: DistillConfig,
    out: Path,
    resume: bool,
    tensorboard: Path | None,
    show_progress: bool,
    command: str | None,
) -> dict[str, Any]:
    """``distill`` once its directory is locked and claimed."""
    from torch.utils.tensorboard import SummaryWriter

    arch = parse_spec(cfg.student)
    game, n_act = teacher.game, teacher.num_actions
    ref = _teacher_ref(teacher_dir, teacher)
    ckpt: dict[str, Any] | None = None
    resumed_init: dict[str, Any] | None = None  # training.init_from of the run resumed
    if resume:
        ckpt = load_checkpoint(out)
        card = read_card(out)
        resumed_init = (card.get("training") or {}).get("init_from")
        if card["arch"] != arch:
            raise UserError(f"{out}: run distils {card['arch'].get('spec')!r}, not {arch['spec']!r}")
        if (card.get("teacher") or {}).get("sha256") != ref["sha256"]:
            raise UserError(f"{out}: run was distilled from another teacher than {teacher_dir}")
        names = {f.name for f in fields(cfg)}
        saved = json.loads(ckpt["config"])
        cfg = replace(cfg, **{k: v for k, v in saved.items() if k in names and k not in RESUME_KEEPS})
    init = _init_source(Path(cfg.init_from), arch, game) if cfg.init_from and ckpt is None else None
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    student = build_network(arch, n_act)
    if init is not None:
        student.load_state_dict(init.net.state_dict())
    tnet = teacher.net.eval()
    for p in tnet.parameters():
        p.requires_grad_(False)
    use_feat = cfg.feature_weight > 0
    bf16 = bf16_enabled(cfg.precision)
    feat_dim_t = int(tnet.features(torch.zeros((1, 4, 84, 84), dtype=torch.uint8)).shape[1]) if use_feat else 0
    feat_dim_s = int(student.features(torch.zeros((1, 4, 84, 84), dtype=torch.uint8)).shape[1])
    proj = nn.Linear(feat_dim_s, feat_dim_t) if use_feat else None
    params = list(student.parameters()) + (list(proj.parameters()) if proj is not None else [])
    opt = torch.optim.Adam(params, lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    step = updates = 0
    wall_before = 0.0
    teacher_eval: dict[str, Any] | None = None
    last_eval: dict[str, Any] | None = None
    machines = machines_after([] if ckpt is None else ckpt.get("machines"))
    if ckpt is not None:
        student.load_state_dict(ckpt["student"])
        if proj is not None:
            proj.load_state_dict(ckpt["proj"])
        opt.load_state_dict(ckpt["optimizer"])
        step, updates, wall_before = int(ckpt["step"]), int(ckpt["updates"]), float(ckpt["wall_time"])
        rng.bit_generator.state = json.loads(ckpt["np_rng"])
        torch.set_rng_state(ckpt["torch_rng"])
        teacher_eval = json.loads(ckpt["teacher_eval"])
        last_eval = json.loads(ckpt["last_eval"])
    if step >= cfg.steps:
        raise UserError(f"{out}: run is already at {step} steps; ask for more than that with --steps")
    repair = ckpt is not None and reconcile_resume(out, step)

    k = cfg.envs
    env = make_vector_env(game, k, EnvConfig(sticky=cfg.sticky), num_threads=1)
    replay = FrameReplay(cfg.buffer_size, k, 1, 0.99)
    q_labels = np.zeros((k, replay.cap, n_act), dtype=np.float32)
    f_labels = np.zeros((k, replay.cap, feat_dim_t), dtype=np.float32) if use_feat else None
    learn_from = step + min(cfg.learning_starts, cfg.buffer_size // 2)
    writer = SummaryWriter(str(tensorboard), purge_step=step if ckpt is not None else None) if tensorboard else None
    if writer is not None and ckpt is None:
        writer.add_text("config", "```\n" + json.dumps(asdict(cfg), indent=2) + "\n```", 0)
    returns_log = ReturnsLog(out)
    obs, _ = env.reset(seed=int(cfg.seed * 1000 + step))
    replay.add_frames(obs[:, -1], np.ones(k, dtype=bool))
    rows_all = np.arange(k)
    ep_ret, ep_len = np.zeros(k), np.zeros(k, dtype=np.int64)
    just_done = np.zeros(k, dtype=bool)
    recent: deque[float] = deque(maxlen=20)
    tau, eps = cfg.tau(), cfg.actor_epsilon()
    debt = 0.0
    stats = {"loss": float("nan"), "feature": 0.0, "agreement": float("nan"), "entropy": float("nan"),
             "logit_std": float("nan")}
    dead_share = float("nan")  # share of the student's conv channels dead on the last checked batch
    collapse_warned = False
    recycled = 0
    n_channels = sum(m.out_channels for m in conv_layers(student))
    t_start = time.time()
    sps_t, sps_step = time.time(), step
    next_ckpt = (step // cfg.checkpoint_every + 1) * cfg.checkpoint_every
    next_eval = (step // cfg.eval_every + 1) * cfg.eval_every if cfg.eval_every else None

    history: list[dict[str, Any]] = json.loads(ckpt["history"]) if ckpt is not None else []
    init_ref: dict[str, Any] | None = None
    if init is not None:
        init_ref = source_ref(Path(cfg.init_from), init.card)
    elif ckpt is not None and cfg.init_from:
        init_ref = resumed_init  # the card read for the resume above

    def do_eval() -> None:
        nonlocal teacher_eval, last_eval
        if teacher_eval is None:
            res_t = evaluate(tnet, game, cfg.eval_episodes, seed=cfg.eval_seed, protocol=DEFAULT_PROTOCOL)
            teacher_eval = {"mean": res_t["mean"], "std": res_t["std"], "scores": res_t["scores"]}
        res = evaluate(student, game, cfg.eval_episodes, seed=cfg.eval_seed, protocol=DEFAULT_PROTOCOL)
        ret = retention(game, res["mean"], teacher_eval["mean"])
        last_eval = {"step": step, "wall_time_s": round(wall_before + time.time() - t_start, 1), "mean": res["mean"],
                     "std": res["std"], "teacher_mean": teacher_eval["mean"], "retention": ret}
        history.append(last_eval)
        if writer is not None and cfg.tb_clip_steps > 0:
            log_overlay_clip(writer, student, game, cfg.tb_clip_steps, step, cfg.eval_seed)
        if writer is not None:
            writer.add_scalar("eval/student_return_mean", res["mean"], step)
            writer.add_scalar("eval/teacher_return_mean", teacher_eval["mean"], step)
            if ret is not None:
                writer.add_scalar("eval/retention", ret, step)

    def build_card(final: bool) -> dict[str, Any]:
        training = {
            "config": asdict(cfg), "temperature_used": tau, "epsilon_used": eps, "steps": step, "updates": updates,
            "wall_time_s": round(wall_before + time.time() - t_start, 1), "machines": machines,
            "git_commit": git_commit(),
            "command": command or f"rl-compress distill --teacher {teacher_dir} --student {cfg.student} "
            f"--steps {cfg.steps} --loss {cfg.loss} --actor {cfg.actor} --out {out}",
            "last_eval": last_eval, "eval_history": history, "finished": final,
        }
        if init_ref is not None:
            training["init_from"] = init_ref
        # no "evaluation": one made of earlier weights would not apply to these
        return make_card("student", game, arch, student, training=training, teacher=ref)

    def save(final: bool = False) -> dict[str, Any]:
        card = build_card(final)
        state = {
            "student": student.state_dict(), "proj": proj.state_dict() if proj is not None else {},
            "optimizer": opt.state_dict(), "step": step, "updates": updates,
            "wall_time": wall_before + time.time() - t_start, "machines": machines,
            "np_rng": json.dumps(rng.bit_generator.state),
            "torch_rng": torch.get_rng_state(), "config": json.dumps(asdict(cfg)),
            "teacher_eval": json.dumps(teacher_eval), "last_eval": json.dumps(last_eval),
            "history": json.dumps(history),
        }
        # one generation, the checkpoint last: it names the step the other files must hold
        write_generation(out, [*agent_files(student, card), (CHECKPOINT, checkpoint_writer(state))])
        plot_curve(out, ylabel=f"return of the acting {cfg.actor}")
        return card

    if repair:
        save_agent(out, student, build_card(False))
    try:
        with StopFlag() as flag, progress_bar(show_progress) as bar:
            task = bar.add_task(f"distill {cfg.student} ({game})", total=cfg.steps, completed=step, info="")
            while step < cfg.steps and not flag.stop:
                x = torch.from_numpy(obs)
                with torch.no_grad():
                    if use_feat:
                        h_t = tnet.features(x)
                        q_t = tnet.from_features(h_t)
                    else:
                        q_t = tnet(x)
                    acting = q_t if cfg.actor == "teacher" else student(x)
                # label the states whose newest frame was just written (one per env)
                last = (replay.pos - 1) % replay.cap
                q_labels[rows_all, last] = q_t.numpy()
                if f_labels is not None:
                    f_labels[rows_all, last] = h_t.numpy()
                explore = rng.random(k) < eps
                actions = np.where(explore, rng.integers(0, n_act, k), acting.argmax(1).numpy()).astype(np.int64)
                env.send(actions)
                if step >= learn_from:
                    debt += k / cfg.train_freq
                    while debt >= 1.0:
                        rows, idx, states = replay.sample_states(cfg.batch_size, rng)
                        xs = torch.from_numpy(states)
                        target = torch.from_numpy(q_labels[rows, idx])
                        with bf16_autocast(bf16):
                            if proj is not None:
                                h_s = student.features(xs)
                                logits = student.head(h_s)
                            else:
                                logits = student(xs)
                        logits = logits.float()
                        if proj is not None:
                            feat = ((proj(h_s.float()) - torch.from_numpy(f_labels[rows, idx])) ** 2).sum(1).mean()
                        else:
                            feat = torch.zeros(())
                        main = distill_loss(logits, target, cfg.loss, tau)
                        loss = main + cfg.feature_weight * feat
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
                        updates += 1
                        debt -= 1.0
                        recycle_now = cfg.recycle_every > 0 and updates % cfg.recycle_every == 0
                        if isinstance(student, GMPStudent) and (recycle_now or (writer is not None and updates % 100 == 0)):
                            if recycle_now:
                                n_dead = recycle_dead_channels(student, xs, opt)
                                recycled += sum(n_dead)
                            else:
                                n_dead = [len(d) for d in dead_channels(student, xs)]
                            dead_share = sum(n_dead) / n_channels
                        if updates % 50 == 0:
                            with torch.no_grad():
                                p = F.softmax(logits, 1)
                                stats = {"loss": float(main), "feature": float(feat),
                                         "agreement": float((logits.argmax(1) == target.argmax(1)).float().mean()),
                                         "entropy": float(-(p * torch.log(p.clamp_min(1e-12))).sum(1).mean()),
                                         # spread of each output over the batch: 0 = the input no longer matters
                                         "logit_std": float(logits.std(0).max())}
                obs, reward, term, trunc, _ = env.recv()
                step += k
                replay.record_step(obs, actions, np.sign(reward).astype(np.float32), term, just_done)
                live = ~just_done
                ep_ret += np.where(live, reward, 0.0)
                ep_len += live
                done = (term | trunc) & live
                for i in np.flatnonzero(done):
                    recent.append(float(ep_ret[i]))
                    returns_log.add(step, ep_ret[i], ep_len[i], wall_before + time.time() - t_start)
                    if writer is not None:
                        writer.add_scalar(f"charts/{cfg.actor}_return", ep_ret[i], step)
                    ep_ret[i], ep_len[i] = 0.0, 0
                just_done = done
                if step - sps_step >= 1_000:
                    sps = (step - sps_step) / (time.time() - sps_t)
                    sps_t, sps_step = time.time(), step
                    if writer is not None:
                        writer.add_scalar("charts/SPS", sps, step)
                        if updates:
                            writer.add_scalar("losses/distill", stats["loss"], step)
                            writer.add_scalar("losses/feature", stats["feature"], step)
                            writer.add_scalar("charts/agreement", stats["agreement"], step)
                            writer.add_scalar("charts/entropy", stats["entropy"], step)
                            writer.add_scalar("charts/logit_std", stats["logit_std"], step)
                            if dead_share == dead_share:  # not NaN: a gmp student, checked
                                writer.add_scalar("charts/dead_channels", dead_share, step)
                                writer.add_scalar("charts/recycled_channels", recycled, step)
                    if updates and stats["logit_std"] < 1e-6 and not collapse_warned:
                        collapse_warned = True
                        print(f"warning: {out}: at step {step} the student gives every state the same outputs "
                              "(its units died); it will not learn from here: start again with a lower --lr or "
                              "another --seed", file=sys.stderr)
                    mean = f"{np.mean(recent):.1f}" if recent else "-"
                    bar.update(task, completed=step,
                               info=f"{sps:.0f} sps  agree {stats['agreement']:.2f}  return(20) {mean}")
                if next_eval is not None and step >= next_eval:
                    next_eval += cfg.eval_every
                    do_eval()
                if step >= next_ckpt:
                    next_ckpt += cfg.checkpoint_every
                    save()
            card = save(final=step >= cfg.steps)
    finally:
        env.close()
        returns_log.close()
        if writer is not None:
            writer.close()
    return card
