"""The run loop that every training method shares (the teacher's DQN, distillation), in the
spirit of dqn_zoo: the method acts, learns and records; the loop owns the rest.

The loop owns: the run's counters and their trip to and from ``checkpoint.pt`` (``RunState``),
episode statistics of the vector env (``Episodes``) to ``returns.csv`` and TensorBoard, the
steps/s and progress bar, the periodic evaluation and checkpoint triggers, the SIGINT / SIGTERM
stop (a ``StopToken``: the loop ends at the next step and checkpoints) and the save of one consistent
generation (weights, card, the method's extra files such as the replay memory, the checkpoint last).

A method is an object with the hooks of ``Method``; one iteration is:

    actions = method.act(obs)            # batched forward for the K envs
    env.send(actions)                    # the emulators step on their threads...
    method.learn(state)                  # ...while the learner updates
    obs, reward, term, trunc, info = env.recv()
    state.step += K
    method.observe(state, obs, actions, reward, term, trunc, info, episodes.just_done)
    episodes -> returns.csv, TensorBoard; every 1,000 steps: SPS, method.log_scalars
    evaluation and checkpoint when their step comes
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
import yaml
from torch import nn

from rl_compress.core.config import check_ranges, option
from rl_compress.core.device import DEVICE_HELP
from rl_compress.core.errors import Diverged
from rl_compress.core.files import bytes_writer, write_generation
from rl_compress.core.progress import progress_bar
from rl_compress.core.provenance import machines_after
from rl_compress.core.rundir import CHECKPOINT, CONFIG, ReturnsLog, checkpoint_writer
from rl_compress.core.signals import StopToken, signals_to
from rl_compress.models.agent import agent_files
from rl_compress.train.curve import plot_curve


@dataclass
class RunConfig:
    """The fields every training run has, teacher or student, with their checks: a wrong type or an
    impossible value is refused at construction with one line. A subclass adds its fields and the
    ranges they must lie in (``OWN_RANGES``: positive, non_negative, unit), and ``check_own`` for
    what ranges cannot say; it may redeclare a field here to give it another default or help."""

    steps: int = option("total env steps (agent steps, 4 frames each) to train to", default=2_000_000)
    max_wall_time: float = option("stop, evaluate and save once the run has trained this many seconds (all legs; "
                                  "0 = off); --resume with a larger value goes on", default=0.0)
    seed: int = option("seed of envs, exploration and network init", default=1)
    envs: int = option("environments stepped together", default=8)
    env_threads: int = option("emulator threads (0 = one per env); 1 leaves the cores to the learner", default=1)
    sticky: float = option("sticky-action probability while training", default=0.25)
    checkpoint_every: int = option("env steps between checkpoints", default=25_000)
    eval_every: int = option("env steps between evaluations (0 = off)", default=100_000)
    eval_episodes: int = option("episodes per evaluation (default protocol)", default=5)
    threads: int = option("torch threads (0 = all cores)", default=0)
    device: str = option(f"where the networks train: {DEVICE_HELP}; a run may resume on another (Python: a "
                         "torch.device too)", default="auto")

    OWN_RANGES: ClassVar[dict[str, list[str]]] = {
        "positive": ["steps", "envs", "checkpoint_every", "eval_episodes"],
        "non_negative": ["seed", "max_wall_time", "env_threads", "eval_every", "threads"], "unit": ["sticky"]}

    @classmethod
    def ranges(cls) -> dict[str, list[str]]:
        """The ranges of every field, gathered from this class and its bases (``OWN_RANGES``)."""
        out: dict[str, list[str]] = {"positive": [], "non_negative": [], "unit": []}
        for klass in reversed(cls.__mro__):
            for kind, names in vars(klass).get("OWN_RANGES", {}).items():
                out[kind] += names
        return out

    def __post_init__(self) -> None:
        """Types and ranges checked here, at construction, then what the subclass adds."""
        check_ranges(self, **self.ranges())
        self.check_own()

    def check_own(self) -> None:
        """What a subclass checks beyond types and ranges (one line each): nothing here."""


@dataclass
class RunState:
    """The counters of a run that every method has; saved in and restored from its checkpoint."""

    step: int = 0
    updates: int = 0
    wall_before: float = 0.0  # seconds trained by earlier legs of this run
    machines: list[str] = field(default_factory=list)
    last_eval: dict[str, Any] | None = None
    started: float = field(default_factory=time.time)
    stopped: str | None = None  # why a run ended before its steps: "signal", "max_wall_time" or "target"
    # seconds this process spent in each part of the loop (not checkpointed; see `bench teacher`)
    profile: dict[str, float] = field(default_factory=lambda: dict.fromkeys(
        ("act", "update", "sample", "env_wait", "replay_write"), 0.0))

    @classmethod
    def restore(cls, ckpt: dict[str, Any] | None, device: torch.device | None = None) -> RunState:
        """The state of a new run (``ckpt`` None) or of the run that wrote ``ckpt``, going on with
        ``device`` (recorded with the machine)."""
        if ckpt is None:
            return cls(machines=machines_after([], device))
        return cls(step=int(ckpt["step"]), updates=int(ckpt["updates"]), wall_before=float(ckpt["wall_time"]),
                   machines=machines_after(ckpt.get("machines"), device), last_eval=json.loads(ckpt["last_eval"]))

    def wall_time(self) -> float:
        """Seconds of training in all legs of the run so far."""
        return self.wall_before + time.time() - self.started

    def to_checkpoint(self) -> dict[str, Any]:
        """The entries of checkpoint.pt that this state fills."""
        return {"step": self.step, "updates": self.updates, "wall_time": self.wall_time(),
                "machines": self.machines, "last_eval": json.dumps(self.last_eval)}


def rng_to_checkpoint(rng: np.random.Generator) -> dict[str, Any]:
    """The numpy and torch RNG states, for checkpoint.pt."""
    return {"np_rng": json.dumps(rng.bit_generator.state), "torch_rng": torch.get_rng_state()}


def restore_rngs(ckpt: dict[str, Any], rng: np.random.Generator) -> None:
    """Put back the RNG states ``rng_to_checkpoint`` saved."""
    rng.bit_generator.state = json.loads(ckpt["np_rng"])
    torch.set_rng_state(ckpt["torch_rng"])


class Episodes:
    """Returns and lengths of the episodes of K envs. An env whose episode just ended returns its
    reset frame on the next step: that step belongs to no episode."""

    def __init__(self, k: int) -> None:
        self.ret = np.zeros(k)
        self.len = np.zeros(k, dtype=np.int64)
        self.just_done = np.zeros(k, dtype=bool)
        self.recent: deque[float] = deque(maxlen=20)
        self.window: deque[tuple[float, int]] = deque(maxlen=100)  # (return, length): SB3's rollout/ means

    def step(self, reward: np.ndarray, term: np.ndarray, trunc: np.ndarray) -> list[tuple[float, int]]:
        """Account one env step; returns (return, length) of each episode that ended in it."""
        live = ~self.just_done
        self.ret += np.where(live, reward, 0.0)
        self.len += live
        done = (term | trunc) & live
        ended = [(float(self.ret[i]), int(self.len[i])) for i in np.flatnonzero(done)]
        self.recent.extend(r for r, _ in ended)
        self.window.extend(ended)
        self.ret[done] = 0.0
        self.len[done] = 0
        self.just_done = done
        return ended

    def mean_recent(self) -> str:
        """Mean return of the last 20 episodes, for the progress bar."""
        return f"{np.mean(self.recent):.1f}" if self.recent else "-"


class Method(Protocol):
    """What a training method plugs into ``run_loop``."""

    net: nn.Module  # the network saved as the agent
    label: str  # progress bar label
    return_tag: str  # TensorBoard tag of the acting agent's episode returns
    length_tag: str | None  # TensorBoard tag of their lengths (None: not logged)
    overlap_env: bool  # learn while the emulators step (else after they have)

    def act(self, obs: np.ndarray, state: RunState) -> np.ndarray: ...

    def learn(self, state: RunState) -> None: ...

    def observe(self, state: RunState, obs: np.ndarray, actions: np.ndarray, reward: np.ndarray,
                term: np.ndarray, trunc: np.ndarray, info: dict[str, Any], just_done: np.ndarray) -> None: ...

    def evaluate(self, state: RunState, writer: Any) -> dict[str, Any]: ...

    def report(self, writer: Any, state: RunState) -> None: ...

    def progress_info(self) -> str: ...

    def checkpoint_state(self, state: RunState) -> dict[str, Any]: ...

    def build_card(self, state: RunState, final: bool) -> dict[str, Any]: ...

    def extra_files(self, state: RunState) -> list[tuple[str, Any]]: ...


@dataclass
class Schedule:
    """When a run stops, checkpoints and evaluates (env steps; ``eval_every`` 0 = never). With
    ``max_wall_time`` > 0 the run also stops, evaluates and saves once its training wall time (all
    legs) reaches that many seconds; with ``target`` = (key, value) it stops and saves at the first
    periodic evaluation of this leg whose ``key`` (e.g. "retention") reaches ``value``."""

    steps: int
    checkpoint_every: int
    eval_every: int
    max_wall_time: float = 0.0
    target: tuple[str, float] | None = None

    def out_of_time(self, state: RunState) -> bool:
        """Whether the run has used its wall-time budget."""
        return self.max_wall_time > 0 and state.wall_time() >= self.max_wall_time

    def reached_target(self, evaluation: dict[str, Any] | None) -> bool:
        """Whether ``evaluation`` (a method's ``evaluate`` result) meets the target."""
        if self.target is None or not evaluation:
            return False
        key, value = self.target
        return evaluation.get(key) is not None and evaluation[key] >= value

    def next_after(self, step: int, every: int) -> int | None:
        """The first multiple of ``every`` after ``step`` (None when ``every`` is 0)."""
        return (step // every + 1) * every if every else None


@dataclass
class RunDir:
    """Where a run writes: its directory, logs and the learning curve's labels."""

    out: Path
    returns_log: ReturnsLog
    writer: Any = None  # a TensorBoard SummaryWriter, or None
    curve_ylabel: str = "return (raw, training protocol)"
    curve_before: tuple[Path, int, int] | None = None  # the source agent's curve, for --init-from runs (plot_curve)

    def log_episode(self, state: RunState, method: Method, ret: float, length: int) -> None:
        """One finished episode to returns.csv and TensorBoard."""
        self.returns_log.add(state.step, ret, length, state.wall_time())
        if self.writer is not None:
            self.writer.add_scalar(method.return_tag, ret, state.step)
            if method.length_tag:
                self.writer.add_scalar(method.length_tag, length, state.step)

    def close(self) -> None:
        """Close the returns log and the TensorBoard writer."""
        self.returns_log.close()
        if self.writer is not None:
            self.writer.close()


def open_run_dir(out: Path, tensorboard: Path | None, state: RunState, resumed: bool, config: dict[str, Any],
                 **curve: Any) -> RunDir:
    """The returns log and TensorBoard writer of a run: its events go to ``tensorboard/<name of out>``,
    one folder per run as SB3's ``tb_log_name`` does (a resumed run's log continues at its step).
    """
    writer = None
    if tensorboard:
        from torch.utils.tensorboard import SummaryWriter  # heavy: only when asked for

        writer = SummaryWriter(str(Path(tensorboard) / Path(out).resolve().name),
                               purge_step=state.step if resumed else None)
        if not resumed:
            writer.add_text("config", "```\n" + json.dumps(config, indent=2) + "\n```", 0)
    return RunDir(out, ReturnsLog(out), writer, **curve)


def check_finite(net: nn.Module, step: int) -> None:
    """Stop a run whose weights hold NaN or Inf (a diverged update) before any of them is saved: the
    run directory keeps its last checkpoint."""
    for name, tensor in net.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise Diverged(f"training diverged: {name} holds NaN or Inf at env step {step:,}; nothing of it was "
                           "saved, the run keeps its last checkpoint (a lower --lr may help)")


def save_run(method: Method, state: RunState, run: RunDir, final: bool = False) -> dict[str, Any]:
    """Write one generation (the method's extra files, weights, card, ``config.yml`` (the settings,
    as ``--config`` reads them), the checkpoint last: it names the step the others hold), then the
    learning curve; returns the card. Weights that hold NaN or Inf are never written (``Diverged``)."""
    check_finite(method.net, state.step)
    card = method.build_card(state, final)
    ckpt = {**method.checkpoint_state(state), **state.to_checkpoint()}
    config = yaml.safe_dump(card["training"].get("config") or {}, sort_keys=False).encode()
    write_generation(run.out, [*method.extra_files(state), *agent_files(method.net, card),
                               (CONFIG, bytes_writer(config)), (CHECKPOINT, checkpoint_writer(ckpt))])
    plot_curve(run.out, ylabel=run.curve_ylabel, before=run.curve_before)
    return card


class _Triggers:
    """Steps/s, evaluation and checkpoint triggers of one loop."""

    def __init__(self, schedule: Schedule, step: int) -> None:
        self.schedule = schedule
        self.next_ckpt = schedule.next_after(step, schedule.checkpoint_every)
        self.next_eval = schedule.next_after(step, schedule.eval_every)
        self.sps_t, self.sps_step = time.time(), step

    def sps(self, step: int) -> float | None:
        """Env steps/s since the last report, every 1,000 steps (else None)."""
        if step - self.sps_step < 1_000:
            return None
        sps = (step - self.sps_step) / max(time.time() - self.sps_t, 1e-9)
        self.sps_t, self.sps_step = time.time(), step
        return sps

    def evaluate_now(self, step: int) -> bool:
        """Whether an evaluation is due (and schedule the next one)."""
        if self.next_eval is None or step < self.next_eval:
            return False
        self.next_eval += self.schedule.eval_every
        return True

    def checkpoint_now(self, step: int) -> bool:
        """Whether a checkpoint is due (and schedule the next one)."""
        if self.next_ckpt is None or step < self.next_ckpt:
            return False
        self.next_ckpt += self.schedule.checkpoint_every
        return True


def run_loop(method: Method, env: Any, obs: np.ndarray, state: RunState, run: RunDir, schedule: Schedule,
             show_progress: bool = True, stop: StopToken | None = None) -> dict[str, Any]:
    """Run ``method`` from ``state`` to ``schedule.steps`` env steps on the started vector env whose
    observation is ``obs``, or until ``stop`` is set (by default a token of this loop's own that
    SIGINT / SIGTERM set while it runs); checkpoints as scheduled and at the end. Returns the final
    card: "finished" when all steps were trained, else "stopped" says why ("signal",
    "max_wall_time", "target")."""
    k = len(obs)
    episodes = Episodes(k)
    triggers = _Triggers(schedule, state.step)
    state.started = time.time()  # wall time counts the loop's time, not the setup's (compile, env start)
    prof = state.profile
    token = stop if stop is not None else StopToken()
    try:
        with signals_to(token), progress_bar(show_progress) as bar:
            task = bar.add_task(method.label, total=schedule.steps, completed=state.step, info="")
            while (state.step < schedule.steps and not token.requested and state.stopped is None
                   and not schedule.out_of_time(state)):
                t0 = time.perf_counter()
                actions = method.act(obs, state)
                env.send(actions)
                t1 = time.perf_counter()
                if not method.overlap_env:
                    obs, reward, term, trunc, info = env.recv()
                t2 = time.perf_counter()
                method.learn(state)  # while the emulators run, with overlap_env
                t3 = time.perf_counter()
                if method.overlap_env:
                    obs, reward, term, trunc, info = env.recv()
                t4 = time.perf_counter()
                state.step += k
                method.observe(state, obs, actions, reward, term, trunc, info, episodes.just_done)
                prof["act"] += t1 - t0
                prof["env_wait"] += (t2 - t1) + (t4 - t3)
                prof["replay_write"] += time.perf_counter() - t4
                for ret, length in episodes.step(reward, term, trunc):
                    run.log_episode(state, method, ret, length)
                _periodic(method, state, run, triggers, bar, task, episodes)
            bar.update(task, completed=state.step, total=max(state.step, _expected_steps(schedule, state)))
            if state.step < schedule.steps and token.requested and state.stopped is None:
                state.stopped = "signal"
            elif state.step < schedule.steps:  # a budget or the target ended it: say how far it got
                state.stopped = state.stopped or "max_wall_time"
                if (state.last_eval or {}).get("step") != state.step:
                    state.last_eval = method.evaluate(state, run.writer)
            if state.step >= schedule.steps:  # all its env steps: finished, even when its last evaluation met the target
                state.stopped = None
            return save_run(method, state, run, final=state.step >= schedule.steps)
    finally:
        env.close()
        run.close()


def _sb3_scalars(writer: Any, step: int, sps: float, episodes: Episodes) -> None:
    """The tags stable-baselines3 users look for, beside ours: ``time/fps`` and the means of the last
    100 episodes' returns and lengths (``rollout/ep_rew_mean``, ``rollout/ep_len_mean``)."""
    writer.add_scalar("time/fps", sps, step)
    if episodes.window:
        writer.add_scalar("rollout/ep_rew_mean", float(np.mean([r for r, _ in episodes.window])), step)
        writer.add_scalar("rollout/ep_len_mean", float(np.mean([n for _, n in episodes.window])), step)


def _expected_steps(schedule: Schedule, state: RunState, sps: float = 0.0) -> int:
    """The env steps a run will reach: its ``steps``, or fewer where its wall-time budget ends it
    first (projected at ``sps``; at the end of the loop, where it stopped)."""
    if schedule.max_wall_time <= 0:
        return schedule.steps
    if sps <= 0:
        return state.step if schedule.out_of_time(state) else schedule.steps
    left = max(schedule.max_wall_time - state.wall_time(), 0.0)
    return min(schedule.steps, state.step + int(sps * left))


def _periodic(method: Method, state: RunState, run: RunDir, triggers: _Triggers, bar: Any, task: Any,
              episodes: Episodes) -> None:
    """What the loop does between steps when its time comes: SPS and scalars, evaluation, checkpoint."""
    sps = triggers.sps(state.step)
    if sps is not None:
        check_finite(method.net, state.step)
        if run.writer is not None:
            run.writer.add_scalar("charts/SPS", sps, state.step)
            _sb3_scalars(run.writer, state.step, sps, episodes)
        method.report(run.writer, state)
        bar.update(task, completed=state.step, total=_expected_steps(triggers.schedule, state, sps),
                   info=f"{sps:.0f} sps  {method.progress_info()}  return(20) {episodes.mean_recent()}")
    if triggers.evaluate_now(state.step):
        state.last_eval = method.evaluate(state, run.writer)
        if triggers.schedule.reached_target(state.last_eval):
            state.stopped = "target"
    if triggers.checkpoint_now(state.step):
        save_run(method, state, run)
