"""DQN teacher training (Nature DQN, Double DQN and n-step returns available), top to bottom.

Acting is batched over K environments of the C++ vector env; the env steps on its own
threads while the learner updates (send, update, recv). The replay ratio is fixed per env
step: ``train_freq`` env steps per gradient update, whatever K is. Checkpoints are written
atomically every ``checkpoint_every`` env steps and on SIGINT / SIGTERM; ``--resume``
restores weights, target, optimizer, step counter, epsilon, RNG states, TensorBoard step and
(when ``replay.npz`` is beside the checkpoint) the replay memory.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rl_compress.agent import CARD, agent_files, load_agent, make_card, read_card, save_agent, source_ref
from rl_compress.config import check_ranges, option
from rl_compress.envs import EnvConfig, make_vector_env, num_actions, resolve_game
from rl_compress.errors import UserError, first_line
from rl_compress.evaluate import DEFAULT_PROTOCOL, evaluate
from rl_compress.networks import bf16_autocast, bf16_enabled, build_network, check_precision, teacher_arch
from rl_compress.progress import progress_bar
from rl_compress.replay import FrameReplay
from rl_compress.outputs import check_output_dir, claim_output_dir
from rl_compress.rundir import (
    CHECKPOINT,
    REPLAY,
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


@dataclass
class TeacherConfig:
    """Every number of a teacher run; the whole dict is stored in the card and TensorBoard."""

    game: str = option("ALE game name or alias", default="pong")
    steps: int = option("total env steps (agent steps, 4 frames each) to train to", default=2_000_000)
    seed: int = option("seed of envs, exploration and network init", default=1)
    envs: int = option("environments stepped together", default=8)
    buffer_size: int = option("replay memory in transitions (frames stored once)", default=100_000)
    learning_starts: int = option("env steps of random play before the first update", default=20_000)
    train_freq: int = option("env steps per gradient update (replay ratio = batch / train_freq)", default=4)
    batch_size: int = option("transitions per update", default=32)
    lr: float = option("Adam learning rate", default=1e-4)
    adam_eps: float = option("Adam epsilon", default=1.5e-4)
    gamma: float = option("discount", default=0.99)
    n_step: int = option("n-step returns", default=3)
    double: bool = option("Double DQN targets", default=False)
    target_update: int = option("env steps between target network copies", default=2_000)
    eps_start: float = option("initial exploration epsilon", default=1.0)
    eps_end: float = option("final exploration epsilon", default=0.01)
    eps_decay: int = option("env steps of linear epsilon decay after learning_starts", default=100_000)
    max_grad_norm: float = option("gradient clipping norm (0 = off)", default=10.0)
    sticky: float = option("sticky-action probability while training", default=0.25)
    life_loss_terminal: bool = option("treat a life loss as terminal for bootstrapping", default=True)
    checkpoint_every: int = option("env steps between checkpoints", default=25_000)
    eval_every: int = option("env steps between evaluations (0 = off)", default=100_000)
    eval_episodes: int = option("episodes per evaluation (default protocol)", default=5)
    save_replay: bool = option("save the replay memory with each checkpoint (for exact resume)", default=True)
    threads: int = option("torch threads (0 = all cores)", default=0)
    overlap_env: bool = option("step the emulators on their threads while the learner updates", default=True)
    env_threads: int = option("emulator threads (0 = one per env); 1 leaves the cores to the learner", default=1)
    compile: bool = option("torch.compile the update's networks (~30 s once; eager if compiling fails)", default=True)
    precision: str = option("precision of the update's forward passes: fp32, or bf16 (autocast; weights, Adam and "
                            "the loss stay fp32; ~1.6x faster updates on CPUs with AMX, slower on others)",
                            default="fp32")
    init_from: str = option("agent directory (same game and arch) whose weights start a new run, e.g. to go on "
                            "from a trained teacher with another --lr; Adam and the replay memory start empty",
                            default="")


def epsilon_at(cfg: TeacherConfig, step: int) -> float:
    """Linear decay from eps_start to eps_end over eps_decay steps after learning_starts."""
    frac = min(max(step - cfg.learning_starts, 0) / max(cfg.eps_decay, 1), 1.0)
    return cfg.eps_start + frac * (cfg.eps_end - cfg.eps_start)


def td_update(
    online: nn.Module,
    target: nn.Module,
    opt: torch.optim.Optimizer,
    batch: Any,
    double: bool,
    max_grad_norm: float,
    bf16: bool = False,
) -> tuple[float, float]:
    """One DQN update (Huber loss on n-step targets); returns (loss, mean Q of taken actions).

    With ``bf16`` the forward passes run under bfloat16 autocast; Q-values, targets, the
    loss, the gradients' accumulation in the fp32 weights and Adam stay fp32.
    """
    obs = torch.from_numpy(batch.obs)
    next_obs = torch.from_numpy(batch.next_obs)
    actions = torch.from_numpy(batch.actions)
    with torch.no_grad(), bf16_autocast(bf16):
        q_next = target(next_obs).float()
        if double:
            best = online(next_obs).argmax(1, keepdim=True)
            v_next = q_next.gather(1, best).squeeze(1)
        else:
            v_next = q_next.max(1).values
    y = torch.from_numpy(batch.returns) + torch.from_numpy(batch.discounts) * v_next
    with bf16_autocast(bf16):
        q_all = online(obs)
    q = q_all.float().gather(1, actions[:, None]).squeeze(1)
    loss = F.smooth_l1_loss(q, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if max_grad_norm > 0:
        nn.utils.clip_grad_norm_(online.parameters(), max_grad_norm)
    opt.step()
    return float(loss.detach()), float(q.detach().mean())


def compile_for_updates(
    online: nn.Module, target: nn.Module, batch_size: int, double: bool, bf16: bool = False
) -> tuple[nn.Module, nn.Module]:
    """torch.compile both networks and compile them now, on a dummy batch shaped like the
    updates' (and under the same autocast), so that no compile lands inside the timed loop.
    Falls back to the eager modules, with a warning, where compiling fails (e.g. no C++
    compiler)."""
    import warnings

    try:
        on_c, tg_c = torch.compile(online), torch.compile(target)
        x = torch.zeros((batch_size, 4, 84, 84), dtype=torch.uint8)
        with torch.no_grad(), bf16_autocast(bf16):
            tg_c(x)
            if double:
                on_c(x)
        with bf16_autocast(bf16):
            out = on_c(x)
        out.float().sum().backward()
        for p in online.parameters():
            p.grad = None
        return on_c, tg_c
    except Exception as e:  # noqa: BLE001 - any compiler failure means: run eagerly
        for p in online.parameters():
            p.grad = None
        warnings.warn(f"torch.compile failed, training eagerly: {first_line(e)}", stacklevel=2)
        return online, target


def make_optimizer(params: Any, cfg: TeacherConfig) -> torch.optim.Optimizer:
    """Adam (fused where the build supports it on CPU)."""
    try:
        return torch.optim.Adam(params, lr=cfg.lr, eps=cfg.adam_eps, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=cfg.lr, eps=cfg.adam_eps)


def check_config(cfg: TeacherConfig) -> None:
    """Refuse impossible values with one line each, before any work starts (the CLI, the Python
    API and a study's YAML all come through here)."""
    check_ranges(cfg, positive=["steps", "envs", "buffer_size", "train_freq", "batch_size", "n_step",
                                "target_update", "lr", "adam_eps", "checkpoint_every", "eval_episodes"],
                 non_negative=["seed", "learning_starts", "eps_decay", "max_grad_norm", "eval_every", "threads",
                               "env_threads"],
                 unit=["eps_start", "eps_end", "sticky"])
    cfg.game = resolve_game(cfg.game)
    if not 0 < cfg.gamma <= 1:
        raise UserError(f"--gamma must be in (0, 1], got {cfg.gamma}")
    check_precision(cfg.precision)
    if cfg.buffer_size < cfg.envs * (cfg.n_step + 8):
        raise UserError(f"--buffer-size {cfg.buffer_size} is too small for {cfg.envs} envs")


def _prepare_out(out: Path, cfg: TeacherConfig, resume: bool, arch: dict[str, Any]) -> dict[str, Any] | None:
    """Check ``out`` against --resume; returns the checkpoint to resume from, if any."""
    has_run = (out / CHECKPOINT).exists() or (out / CARD).exists()
    if not resume:
        if has_run:
            raise UserError(f"{out}: already holds a run; pass --resume to continue it or choose another --out")
        return None
    card = read_card(out) if (out / CHECKPOINT).exists() else None
    if card is None:
        raise UserError(f"{out / CHECKPOINT}: missing, nothing to resume (--force starts the run again)")
    if card["game"] != cfg.game:
        raise UserError(f"{out}: run is for game {card['game']!r}, not {cfg.game!r}")
    if card["arch"] != arch:
        raise UserError(f"{out}: run has arch {card['arch']}, not {arch}")
    return load_checkpoint(out)


def _init_source(path: Path, arch: dict[str, Any], game: str) -> tuple[Any, dict[str, Any]]:
    """The agent whose weights start a run (same game and arch) and what the card records of it."""
    src = load_agent(path, game=game)
    if src.card["arch"] != arch:
        raise UserError(f"--init-from {path} has arch {src.card['arch']}, not {arch}")
    return src, source_ref(path, src.card)


def train_teacher(
    cfg: TeacherConfig,
    out: Path,
    resume: bool = False,
    tensorboard: Path | None = None,
    arch: dict[str, Any] | None = None,
    show_progress: bool = True,
    command: str | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Train a DQN agent into the agent directory ``out``; returns the final card.

    ``arch`` defaults to the Nature-DQN teacher; a student arch trains the from-scratch
    baseline of the same size. ``out`` must be new or empty, or hold this run (``resume``), or
    ``force`` replaces the run it holds. The directory is locked for the whole run.
    """
    check_config(cfg)
    out = check_output_dir(out)
    with RunLock(out):
        swept = sweep_temp_files(out)
        if swept:
            note(f"{out}: removed temp files of a stopped writer: {', '.join(swept)}")
        claim_output_dir(out, resume, force)
        return _train_teacher(cfg, out, resume, tensorboard, arch or teacher_arch(), show_progress, command)


RESUME_KEEPS = {"steps", "checkpoint_every", "eval_every", "eval_episodes", "save_replay", "threads",
                "overlap_env", "env_threads", "compile"}


def resumed_config(cfg: TeacherConfig, saved: dict[str, Any], init_ref: dict[str, Any] | None) -> TeacherConfig:
    """The config a resumed run goes on with: the run's own numbers, with this call's ``steps``
    and bookkeeping settings (``RESUME_KEEPS``). The card's record of ``init_from`` wins over the
    checkpoint's copy: it follows a renamed source directory (older runs had neither)."""
    names = {f.name for f in fields(cfg)}
    kept = {k: v for k, v in saved.items() if k in names and k not in RESUME_KEEPS}
    kept["init_from"] = init_ref["agent"] if init_ref else saved.get("init_from", "")
    return replace(cfg, **kept)


def _train_teacher(
    cfg: TeacherConfig,
    out: Path,
    resume: bool,
    tensorboard: Path | None,
    arch: dict[str, Any],
    show_progress: bool,
    command: str | None,
) -> dict[str, Any]:
    """``train_teacher`` once its directory is locked and claimed."""
    from torch.utils.tensorboard import SummaryWriter

    ckpt = _prepare_out(out, cfg, resume, arch)
    init, init_ref = None, None
    if ckpt is not None:  # what the run's first leg recorded, not the source as it is now
        init_ref = (read_card(out).get("training") or {}).get("init_from")
        cfg = resumed_config(cfg, json.loads(ckpt["config"]), init_ref)
    elif cfg.init_from:
        init, init_ref = _init_source(Path(cfg.init_from), arch, cfg.game)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    n_act = num_actions(cfg.game)
    torch.manual_seed(cfg.seed)
    online = build_network(arch, n_act)
    if init is not None:
        online.load_state_dict(init.net.state_dict())
    target = build_network(arch, n_act)
    bf16 = bf16_enabled(cfg.precision)
    online_fn, target_fn = (
        compile_for_updates(online, target, cfg.batch_size, cfg.double, bf16) if cfg.compile else (online, target)
    )
    opt = make_optimizer(online.parameters(), cfg)
    rng = np.random.default_rng(cfg.seed)
    step = 0
    updates = 0
    wall_before = 0.0
    machines = machines_after([] if ckpt is None else ckpt.get("machines"))
    if ckpt is not None:
        online.load_state_dict(ckpt["online"])
        target.load_state_dict(ckpt["target"])
        opt.load_state_dict(ckpt["optimizer"])
        step = int(ckpt["step"])
        updates = int(ckpt["updates"])
        wall_before = float(ckpt["wall_time"])
        rng.bit_generator.state = json.loads(ckpt["np_rng"])
        torch.set_rng_state(ckpt["torch_rng"])
    else:
        target.load_state_dict(online.state_dict())
    target.eval()
    if step >= cfg.steps:
        raise UserError(f"{out}: run is already at {step} steps; ask for more than that with --steps")
    repair = ckpt is not None and reconcile_resume(out, step)

    k = cfg.envs
    env = make_vector_env(
        cfg.game, k, EnvConfig(sticky=cfg.sticky, noop_max=30, clip_rewards=False), num_threads=cfg.env_threads
    )
    replay = FrameReplay(cfg.buffer_size, k, cfg.n_step, cfg.gamma)
    replay_restored = ckpt is not None and (out / REPLAY).exists() and replay.load(out / REPLAY, step=step)
    if ckpt is not None and (out / REPLAY).exists() and not replay_restored:
        note(f"{out / REPLAY}: holds step {FrameReplay.saved_step(out / REPLAY)}, not the checkpoint's {step} "
             f"(or another memory size): refilling the memory for {cfg.learning_starts} steps instead")
    # updates start after learning_starts; a resume without its replay memory refills it first
    warmup_until = cfg.learning_starts if ckpt is None else step + (0 if replay_restored else cfg.learning_starts)
    writer = SummaryWriter(str(tensorboard), purge_step=step if ckpt is not None else None) if tensorboard else None
    if writer is not None and ckpt is None:
        writer.add_text("config", "```\n" + json.dumps(asdict(cfg), indent=2) + "\n```", 0)
    returns_log = ReturnsLog(out)

    # a new episode begins in every env: seed the envs so that a resumed run differs from the first
    obs, info = env.reset(seed=int(cfg.seed * 1000 + step))
    replay.add_frames(obs[:, -1], np.ones(k, dtype=bool))
    lives = info["lives"].copy()
    ep_ret = np.zeros(k)
    ep_len = np.zeros(k, dtype=np.int64)
    just_done = np.zeros(k, dtype=bool)
    recent: deque[float] = deque(maxlen=20)
    last_eval: dict[str, Any] | None = json.loads(ckpt["last_eval"]) if ckpt is not None else None
    update_debt = 0.0
    loss_v = q_v = float("nan")
    t_start = time.time()
    # seconds spent in each part of the loop since this process started (see `bench teacher`)
    prof = {"act": 0.0, "update": 0.0, "sample": 0.0, "env_wait": 0.0, "replay_write": 0.0}
    learn_t0: float | None = None
    learn_step0 = step
    sps_t, sps_step = time.time(), step
    next_ckpt = (step // cfg.checkpoint_every + 1) * cfg.checkpoint_every
    next_eval = (step // cfg.eval_every + 1) * cfg.eval_every if cfg.eval_every else None
    last_target = step - step % cfg.target_update

    def build_card(final: bool) -> dict[str, Any]:
        training = {
            "config": asdict(cfg),
            "steps": step,
            "updates": updates,
            "wall_time_s": round(wall_before + time.time() - t_start, 1),
            "machines": machines,
            "git_commit": git_commit(),
            "command": command or f"rl-compress teacher train --game {cfg.game} --steps {cfg.steps} --out {out}",
            "last_eval": last_eval,
            "finished": final,
            "profile": _profile(prof, learn_t0, learn_step0, step, updates),
        }
        if init_ref is not None:
            training["init_from"] = init_ref  # env steps and wall time before this run's
        card = make_card("teacher" if arch["name"] == "nature_dqn" else "student", cfg.game, arch, online)
        card["training"] = training  # no "evaluation": one made of earlier weights would not apply to these
        return card

    def save(final: bool = False) -> dict[str, Any]:
        card = build_card(final)
        state = {
            "online": online.state_dict(),
            "target": target.state_dict(),
            "optimizer": opt.state_dict(),
            "step": step,
            "updates": updates,
            "wall_time": wall_before + time.time() - t_start,
            "machines": machines,
            "np_rng": json.dumps(rng.bit_generator.state),
            "torch_rng": torch.get_rng_state(),
            "config": json.dumps(asdict(cfg)),
            "last_eval": json.dumps(last_eval),
        }
        # one generation, the checkpoint last: it names the step the other files must hold
        files = [(REPLAY, replay.npz_writer(step))] if cfg.save_replay else []
        write_generation(out, [*files, *agent_files(online, card), (CHECKPOINT, checkpoint_writer(state))])
        src = init_ref if init_ref is not None and Path(init_ref["agent"]).is_dir() else None
        plot_curve(out, before=(Path(src["agent"]), int(src["env_steps"])) if src else None)
        return card

    if repair:
        save_agent(out, online, build_card(False))
    try:
        with StopFlag() as flag, progress_bar(show_progress) as bar:
            task = bar.add_task(f"teacher {cfg.game}", total=cfg.steps, completed=step, info="")
            while step < cfg.steps and not flag.stop:
                t0 = time.perf_counter()
                eps = epsilon_at(cfg, step)
                explore = rng.random(k) < eps
                actions = rng.integers(0, n_act, k)
                if not explore.all():
                    with torch.no_grad():
                        greedy = online(torch.from_numpy(obs)).argmax(1).numpy()
                    actions = np.where(explore, actions, greedy)
                actions = actions.astype(np.int64)
                env.send(actions)
                t1 = time.perf_counter()
                prof["act"] += t1 - t0
                if not cfg.overlap_env:
                    obs, reward, term, trunc, info = env.recv()
                    prof["env_wait"] += time.perf_counter() - t1
                # learn while the emulators run
                if step >= warmup_until and len(replay) > cfg.batch_size:
                    if learn_t0 is None:
                        learn_t0, learn_step0 = time.perf_counter(), step
                    update_debt += k / cfg.train_freq
                    while update_debt >= 1.0:
                        ta = time.perf_counter()
                        batch = replay.sample(cfg.batch_size, rng)
                        tb = time.perf_counter()
                        loss_v, q_v = td_update(online_fn, target_fn, opt, batch, cfg.double, cfg.max_grad_norm, bf16)
                        prof["sample"] += tb - ta
                        prof["update"] += time.perf_counter() - tb
                        updates += 1
                        update_debt -= 1.0
                t2 = time.perf_counter()
                if cfg.overlap_env:
                    obs, reward, term, trunc, info = env.recv()
                t3 = time.perf_counter()
                prof["env_wait"] += t3 - t2
                step += k
                # record transitions: envs that just reset return the reset frame instead
                live = ~just_done
                life_lost = (info["lives"] < lives) & cfg.life_loss_terminal
                lives = info["lives"].copy()
                replay.record_step(obs, actions, np.sign(reward).astype(np.float32), term | life_lost, just_done)
                prof["replay_write"] += time.perf_counter() - t3
                ep_ret += np.where(live, reward, 0.0)
                ep_len += live
                done = (term | trunc) & live
                for i in np.flatnonzero(done):
                    recent.append(float(ep_ret[i]))
                    returns_log.add(step, ep_ret[i], ep_len[i], wall_before + time.time() - t_start)
                    if writer is not None:
                        writer.add_scalar("charts/episodic_return", ep_ret[i], step)
                        writer.add_scalar("charts/episodic_length", ep_len[i], step)
                    ep_ret[i] = 0.0
                    ep_len[i] = 0
                just_done = done
                if step - last_target >= cfg.target_update:
                    target.load_state_dict(online.state_dict())
                    last_target = step - step % cfg.target_update
                if step - sps_step >= 1_000:
                    sps = (step - sps_step) / (time.time() - sps_t)
                    sps_t, sps_step = time.time(), step
                    if writer is not None:
                        writer.add_scalar("charts/SPS", sps, step)
                        writer.add_scalar("charts/epsilon", eps, step)
                        if updates:
                            writer.add_scalar("losses/td_loss", loss_v, step)
                            writer.add_scalar("losses/q_mean", q_v, step)
                    mean = f"{np.mean(recent):.1f}" if recent else "-"
                    bar.update(task, completed=step, info=f"{sps:.0f} sps  eps {eps:.2f}  return(20) {mean}")
                if next_eval is not None and step >= next_eval:
                    next_eval += cfg.eval_every
                    res = evaluate(online, cfg.game, cfg.eval_episodes, seed=10_000, protocol=DEFAULT_PROTOCOL)
                    last_eval = {"step": step, "mean": res["mean"], "std": res["std"], "episodes": res["episodes"]}
                    if writer is not None:
                        writer.add_scalar("eval/return_mean", res["mean"], step)
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


def _profile(
    prof: dict[str, float], learn_t0: float | None, learn_step0: int, step: int, updates: int
) -> dict[str, Any]:
    """Where this process's time went, and the env steps/s since updates began."""
    out: dict[str, Any] = {k: round(v, 3) for k, v in prof.items()}
    if learn_t0 is not None:
        secs = time.perf_counter() - learn_t0
        out["learning_seconds"] = round(secs, 3)
        out["learning_env_steps"] = step - learn_step0
        out["learning_sps"] = round((step - learn_step0) / max(secs, 1e-9), 2)
    return out
