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
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rl_compress.atari.acting import epsilon_greedy
from rl_compress.atari.envs import EnvConfig, make_vector_env
from rl_compress.atari.games import resolve_game
from rl_compress.core.config import option, resumed_config
from rl_compress.core.device import announce_choice, check_memory, config_device, resolve_device, to_device
from rl_compress.core.errors import UserError, arg_name, first_line
from rl_compress.core.outputs import check_not_inputs, check_output_dir
from rl_compress.core.rundir import (
    CHECKPOINT,
    REPLAY,
    load_checkpoint,
    note,
    own_run_dir,
    reconcile_resume,
)
from rl_compress.core.signals import StopToken, stops_end_at_once
from rl_compress.models.agent import load_agent, read_card, save_agent, source_ref
from rl_compress.models.networks import bf16_autocast, bf16_enabled, build_network, check_precision, teacher_arch
from rl_compress.train.pqn import PQNConfig, build_pqn
from rl_compress.train.replay import SLOT_BYTES, FrameReplay
from rl_compress.train.run import RunState, Schedule, open_run_dir, restore_rngs, rng_to_checkpoint, run_loop
from rl_compress.train.teacher_base import TeacherMethodBase, TeacherRunConfig, TeacherStart, gradient_step, taken_q


@dataclass
class TeacherConfig(TeacherRunConfig):
    """Every number of a DQN teacher run (``teacher train --algo dqn``)."""

    buffer_size: int = option("replay memory in transitions (frames stored once)", default=100_000)
    learning_starts: int = option("env steps of random play before the first update", default=20_000)
    train_freq: int = option("env steps per gradient update (replay ratio = batch / train_freq)", default=4)
    batch_size: int = option("transitions per update", default=32)
    adam_eps: float = option("Adam epsilon", default=1.5e-4)
    n_step: int = option("n-step returns", default=3)
    double: bool = option("Double DQN targets", default=False)
    target_update: int = option("env steps between target network copies", default=2_000)
    save_replay: bool = option("save the replay memory with each checkpoint (for exact resume)", default=True)
    overlap_env: bool = option("step the emulators on their threads while the learner updates", default=True)

    OWN_RANGES: ClassVar[dict[str, list[str]]] = {
        "positive": ["buffer_size", "train_freq", "batch_size", "n_step", "target_update", "adam_eps"],
        "non_negative": ["learning_starts"]}


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
    device: torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One DQN update (Huber loss on n-step targets) on ``device`` (the CPU by default); returns
    (loss, mean Q of taken actions) as 0-d tensors on the device: reading them is a host sync,
    which the caller makes only when it logs.

    The batch's arrays move to the device with one copy each (non-blocking on CUDA). With
    ``bf16`` the forward passes run under bfloat16 autocast; Q-values, targets, the loss, the
    gradients' accumulation in the fp32 weights and Adam stay fp32.
    """
    device = device or torch.device("cpu")
    obs, next_obs = to_device(batch.obs, device), to_device(batch.next_obs, device)
    actions = to_device(batch.actions, device)
    returns, discounts = to_device(batch.returns, device), to_device(batch.discounts, device)
    with torch.no_grad(), bf16_autocast(bf16, device):
        q_next = target(next_obs).float()
        if double:
            best = online(next_obs).argmax(1, keepdim=True)
            v_next = q_next.gather(1, best).squeeze(1)
        else:
            v_next = q_next.max(1).values
    y = returns + discounts * v_next
    q = taken_q(online, obs, actions, bf16)
    loss = F.smooth_l1_loss(q, y)
    gradient_step(loss, opt, online, max_grad_norm)
    return loss.detach(), q.detach().mean()


def compile_for_updates(
    online: nn.Module, target: nn.Module, batch_size: int, double: bool, bf16: bool = False,
    device: torch.device | None = None,
) -> tuple[nn.Module, nn.Module]:
    """torch.compile both networks and compile them now, on a dummy batch shaped like the
    updates' (and under the same autocast), so that no compile lands inside the timed loop.
    Falls back to the eager modules, with a warning, where compiling fails (e.g. no C++
    compiler)."""
    try:
        on_c, tg_c = torch.compile(online), torch.compile(target)
        device = device or torch.device("cpu")
        x = torch.zeros((batch_size, 4, 84, 84), dtype=torch.uint8, device=device)
        with torch.no_grad(), bf16_autocast(bf16, device):
            tg_c(x)
            if double:
                on_c(x)
        with bf16_autocast(bf16, device):
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
    """Adam, fused (one kernel for all parameters) where the build supports it on the device."""
    try:
        return torch.optim.Adam(params, lr=cfg.lr, eps=cfg.adam_eps, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(params, lr=cfg.lr, eps=cfg.adam_eps)


def check_config(cfg: TeacherRunConfig) -> TeacherRunConfig:
    """Refuse impossible values with one line each, before any work starts (the CLI, the Python
    API and a study's YAML all come through here); returns the config with its game resolved to
    the ROM id (a new config: the caller's is not changed)."""
    cfg = replace(cfg, device=config_device(cfg.device))  # a torch.device too; CUDA only where it is
    cfg = replace(cfg, game=resolve_game(cfg.game))  # types and ranges: checked at construction
    check_precision(cfg.precision)
    if cfg.stop_at_score and cfg.eval_every == 0:
        raise UserError(f"{arg_name('stop_at_score')} needs periodic evaluations: {arg_name('eval_every')} > 0")
    if isinstance(cfg, TeacherConfig) and cfg.buffer_size < cfg.envs * (cfg.n_step + 8):
        raise UserError(f"{arg_name('buffer_size')} {cfg.buffer_size} is too small for {cfg.envs} envs")
    if isinstance(cfg, TeacherConfig):
        check_memory(cfg.buffer_size * SLOT_BYTES, f"{arg_name('buffer_size')} {cfg.buffer_size}")
    if isinstance(cfg, PQNConfig) and cfg.minibatch_size > cfg.envs * cfg.rollout_steps:
        raise UserError(f"{arg_name('minibatch_size')} {cfg.minibatch_size} is larger than a rollout "
                        f"({cfg.envs} envs x {cfg.rollout_steps} steps)")
    return cfg


def algo_of(cfg: TeacherRunConfig) -> str:
    """The algorithm a teacher config trains with: "pqn" or "dqn"."""
    return "pqn" if isinstance(cfg, PQNConfig) else "dqn"


def _prepare_out(out: Path, cfg: TeacherRunConfig, resume: bool, arch: dict[str, Any]) -> dict[str, Any] | None:
    """The checkpoint to resume from (``resume``), after checking it is this game's and arch's run;
    None for a new run (``own_run_dir`` has refused a directory that holds another)."""
    if not resume:
        return None
    card = read_card(out) if (out / CHECKPOINT).exists() else None
    if card is None:
        raise UserError(f"{out / CHECKPOINT}: missing, nothing to resume ({arg_name('force')} starts the run again)")
    if card["game"] != cfg.game:
        raise UserError(f"{out}: run is for game {card['game']!r}, not {cfg.game!r}")
    if card["arch"] != arch:
        raise UserError(f"{out}: run has arch {card['arch']}, not {arch}")
    ckpt = load_checkpoint(out)
    if ckpt.get("algo", "dqn") != algo_of(cfg):
        raise UserError(f"{out}: run was trained with {arg_name('algo')} {ckpt.get('algo', 'dqn')}, not {algo_of(cfg)}")
    return ckpt


def _init_source(path: Path, arch: dict[str, Any], game: str) -> tuple[Any, dict[str, Any]]:
    """The agent whose weights start a run (same game and arch) and what the card records of it."""
    src = load_agent(path, game=game)
    if src.card["arch"] != arch:
        raise UserError(f"{arg_name('init_from')} {path} has arch {src.card['arch']}, not {arch}")
    return src, source_ref(path, src.card)


def train_teacher(
    cfg: TeacherRunConfig,
    out: Path,
    resume: bool = False,
    tensorboard: Path | None = None,
    arch: dict[str, Any] | None = None,
    show_progress: bool = True,
    command: str | None = None,
    force: bool = False,
    stop: StopToken | None = None,
) -> dict[str, Any]:
    """Train a teacher into the agent directory ``out`` with DQN (a ``TeacherConfig``) or PQN (a
    ``PQNConfig``); returns the final card.

    ``arch`` defaults to the Nature-DQN teacher (with LayerNorms for PQN); a student arch trains the from-scratch
    baseline of the same size. ``out`` must be new or empty, or hold this run (``resume``), or
    ``force`` replaces the run it holds. The directory is locked for the whole run. ``stop`` (default: the run's own token, set by
    SIGINT / SIGTERM while the loop runs) ends the loop at its next step with a checkpoint.
    """
    cfg = check_config(cfg)
    out = check_output_dir(out)
    check_not_inputs(out, [cfg.init_from])
    if tensorboard is not None:
        check_output_dir(tensorboard, name="tensorboard")
    with own_run_dir(out, resume, force):
        arch = arch or teacher_arch(layer_norm=algo_of(cfg) == "pqn")
        return _train_teacher(cfg, out, resume, tensorboard, arch, show_progress, command, stop)


RESUME_KEEPS = {"steps", "max_wall_time", "stop_at_score", "checkpoint_every", "eval_every", "eval_episodes", "save_replay", "threads",
                "overlap_env", "env_threads", "compile", "device"}


class DQNMethod(TeacherMethodBase):
    """The teacher's DQN as a method of the shared run loop (``run.run_loop``): epsilon-greedy
    acting batched over the envs, ``train_freq`` env steps per ``td_update``, the replay memory, the
    target network copy every ``target_update`` env steps."""

    overlap_env: bool
    algo = "dqn"

    def __init__(self, cfg: TeacherConfig, arch: dict[str, Any], nets: tuple[nn.Module, nn.Module],
                 opt: torch.optim.Optimizer, replay: FrameReplay, rng: np.random.Generator, lives: np.ndarray,
                 warmup_until: int, card_extra: dict[str, Any]) -> None:
        super().__init__(cfg, arch, nets[0], card_extra)
        self.opt, self.replay, self.rng = opt, replay, rng
        self.target = nets[1]
        bf16 = bf16_enabled(cfg.precision, self.device)
        self.update_fns = (compile_for_updates(self.net, self.target, cfg.batch_size, cfg.double, bf16, self.device)
                           if cfg.compile else (self.net, self.target))
        self.bf16, self.lives, self.warmup_until = bf16, lives, warmup_until
        self.overlap_env = cfg.overlap_env
        self.update_debt = 0.0
        # the last update's loss and mean Q, left on the device until a report reads them
        self.loss_v: torch.Tensor | float = float("nan")
        self.q_v: torch.Tensor | float = float("nan")
        self.last_target = 0

    def act(self, obs: np.ndarray, state: RunState) -> np.ndarray:
        """Epsilon-greedy actions of the online network for the K envs."""
        self.eps = epsilon_at(self.cfg, state.step)

        def greedy() -> np.ndarray:
            with torch.no_grad():
                return self.net(to_device(obs, self.device)).argmax(1).cpu().numpy()

        return epsilon_greedy(len(obs), self.eps, self.rng, self.n_act, greedy)

    def learn(self, state: RunState) -> None:
        """The updates this env step owes (``train_freq`` env steps each), once the memory is warm."""
        if state.step < self.warmup_until or len(self.replay) <= self.cfg.batch_size:
            return
        self.mark_learning(state)
        self.update_debt += self.cfg.envs / self.cfg.train_freq
        online_fn, target_fn = self.update_fns
        while self.update_debt >= 1.0:
            ta = time.perf_counter()
            batch = self.replay.sample(self.cfg.batch_size, self.rng)
            tb = time.perf_counter()
            self.loss_v, self.q_v = td_update(online_fn, target_fn, self.opt, batch, self.cfg.double,
                                              self.cfg.max_grad_norm, self.bf16, self.device)
            state.profile["sample"] += tb - ta
            state.profile["update"] += time.perf_counter() - tb
            state.updates += 1
            self.update_debt -= 1.0

    def observe(self, state: RunState, obs: np.ndarray, actions: np.ndarray, reward: np.ndarray,
                term: np.ndarray, trunc: np.ndarray, info: dict[str, Any], just_done: np.ndarray) -> None:
        """Record the transitions (a life loss ends bootstrapping); copy the target when due."""
        life_lost = (info["lives"] < self.lives) & self.cfg.life_loss_terminal
        self.lives = info["lives"].copy()
        self.replay.record_step(obs, actions, np.sign(reward).astype(np.float32), term | life_lost, just_done)
        if state.step - self.last_target >= self.cfg.target_update:
            self.target.load_state_dict(self.net.state_dict())
            self.last_target = state.step - state.step % self.cfg.target_update

    def report(self, writer: Any, state: RunState) -> None:
        """Scalars every 1,000 env steps."""
        if writer is None:
            return
        writer.add_scalar("charts/epsilon", self.eps, state.step)
        writer.add_scalar("train/learning_rate", self.cfg.lr, state.step)
        if state.updates:
            writer.add_scalar("losses/td_loss", float(self.loss_v), state.step)
            writer.add_scalar("train/loss", float(self.loss_v), state.step)
            writer.add_scalar("losses/q_mean", float(self.q_v), state.step)

    def checkpoint_state(self, state: RunState) -> dict[str, Any]:
        """Networks, Adam, RNGs and config for checkpoint.pt."""
        return {"online": self.net.state_dict(), "target": self.target.state_dict(),
                "optimizer": self.opt.state_dict(), "config": json.dumps(asdict(self.cfg)),
                **rng_to_checkpoint(self.rng)}

    def extra_files(self, state: RunState) -> list[tuple[str, Any]]:
        """The replay memory, when the config keeps it."""
        return [(REPLAY, self.replay.npz_writer(state.step))] if self.cfg.save_replay else []


def build_dqn(start: TeacherStart) -> DQNMethod:
    """The DQN method of a run: online and target networks and Adam on the run's device, new (from
    ``init``'s weights if given) or restored (a checkpoint written on another device loads the
    same), and the replay memory."""
    cfg, device, ckpt = start.cfg, start.device, start.ckpt
    assert isinstance(cfg, TeacherConfig)
    online = start.new_network()
    target = build_network(start.arch, online.num_actions).to(device)
    opt = make_optimizer(online.parameters(), cfg)
    if ckpt is not None:
        online.load_state_dict(ckpt["online"])
        target.load_state_dict(ckpt["target"])
        opt.load_state_dict(ckpt["optimizer"])
    else:
        target.load_state_dict(online.state_dict())
    replay, warmup_until = _replay_memory(cfg, start.out, start.state, ckpt is not None)
    replay.add_frames(start.obs[:, -1], np.ones(cfg.envs, dtype=bool))
    method = DQNMethod(cfg, start.arch, (online, target.eval()), opt, replay, start.rng, start.info["lives"].copy(),
                       warmup_until, start.card_extra)
    method.last_target = start.state.step - start.state.step % cfg.target_update
    return method


def _replay_memory(cfg: TeacherConfig, out: Path, state: RunState, resumed: bool) -> tuple[FrameReplay, int]:
    """The replay memory (restored when ``replay.npz`` holds the checkpoint's step) and the env step
    updates may start at: after learning_starts, or after a refill when a resume has no memory."""
    replay = FrameReplay(cfg.buffer_size, cfg.envs, cfg.n_step, cfg.gamma)
    if not resumed:
        return replay, cfg.learning_starts
    path = out / REPLAY
    restored = path.exists() and replay.load(path, step=state.step)
    if path.exists() and not restored:
        note(f"{path}: holds step {FrameReplay.saved_step(path)}, not the checkpoint's {state.step} "
             f"(or another memory size): refilling the memory for {cfg.learning_starts} steps instead")
    return replay, state.step + (0 if restored else cfg.learning_starts)


BUILDERS: dict[str, Callable[[TeacherStart], Any]] = {"dqn": build_dqn, "pqn": build_pqn}


def _train_teacher(cfg: TeacherRunConfig, out: Path, resume: bool, tensorboard: Path | None, arch: dict[str, Any],
                   show_progress: bool, command: str | None, stop: StopToken | None = None) -> dict[str, Any]:
    """``train_teacher`` once its directory is locked and claimed: set up the method, run the loop."""
    ckpt = _prepare_out(out, cfg, resume, arch)
    cfg, init, init_ref = _resumed_or_init(cfg, out, ckpt, arch)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device, announce=False)
    rng = np.random.default_rng(cfg.seed)
    state = RunState.restore(ckpt, device)
    if ckpt is not None:
        restore_rngs(ckpt, rng)
    if state.step >= cfg.steps:
        raise UserError(f"{out}: run is already at {state.step} steps; ask for more than that with {arg_name('steps')}")
    if 0 < cfg.max_wall_time <= state.wall_before:
        raise UserError(f"{out}: run has already trained {state.wall_before:.0f} s; "
                        f"ask for more with {arg_name('max_wall_time')}")
    repair = ckpt is not None and reconcile_resume(out, state.step)
    with stops_end_at_once():  # nothing of this run is written yet; the emulators' start holds the GIL
        env = make_vector_env(cfg.game, cfg.envs, EnvConfig(sticky=cfg.sticky, noop_max=30, clip_rewards=False),
                              num_threads=cfg.env_threads)
    try:
        # a new episode begins in every env: seed the envs so that a resumed run differs from the first
        obs, info = env.reset(seed=int(cfg.seed * 1000 + state.step))
        start = TeacherStart(cfg, arch, out, device, init, ckpt, state, rng, obs, info,
                             {"command": command, "out": out, "init_from": init_ref})
        method = BUILDERS[algo_of(cfg)](start)
    except BaseException:
        env.close()
        raise
    src = init_ref if init_ref is not None and Path(init_ref["agent"]).is_dir() else None
    run = open_run_dir(out, tensorboard, state, ckpt is not None, asdict(cfg),
                       curve_before=(Path(src["agent"]), int(src["env_steps"]),
                                     int((src.get("init_from") or {}).get("env_steps") or 0)) if src else None)
    if repair:
        save_agent(out, method.net, method.build_card(state, False))
    if show_progress:
        announce_choice(cfg.device, device)
    target = ("mean", cfg.stop_at_score) if cfg.stop_at_score else None
    return run_loop(method, env, obs, state, run, Schedule(cfg.steps, cfg.checkpoint_every, cfg.eval_every,
                                                              cfg.max_wall_time, target), show_progress, stop)


def _resumed_or_init(cfg: TeacherRunConfig, out: Path, ckpt: dict[str, Any] | None,
                     arch: dict[str, Any]) -> tuple[TeacherRunConfig, Any, dict[str, Any] | None]:
    """The config a run goes on with (a resumed run's own), the agent whose weights start a new run
    (``--init-from``) and what the card records of that source."""
    if ckpt is not None:  # what the run's first leg recorded, not the source as it is now
        init_ref = (read_card(out).get("training") or {}).get("init_from")
        saved = json.loads(ckpt["config"])
        # the card's record of init_from wins over the checkpoint's copy: it follows a renamed source
        # directory (runs older than the option had neither)
        cfg = resumed_config(cfg, saved, RESUME_KEEPS,
                             init_from=init_ref["agent"] if init_ref else saved.get("init_from", ""))
        return cfg, None, init_ref
    if cfg.init_from:
        init, init_ref = _init_source(Path(cfg.init_from), arch, cfg.game)
        return cfg, init, init_ref
    return cfg, None, None
