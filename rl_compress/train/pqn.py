"""PQN teacher training (Gallici et al. 2024, "Simplifying Deep Temporal Difference Learning"):
Q-learning without a replay memory or a target network, top to bottom.

K environments play ``rollout_steps`` env steps each with an epsilon-greedy Nature-DQN that has a
LayerNorm before every ReLU; the max Q-value of every observation is kept from acting. The
rollout's Q(lambda) returns are then computed backwards (``q_lambda_returns``) and the network
regresses its Q-value of the taken action onto them (``pqn_update``), ``epochs`` passes of
shuffled minibatches; then the next rollout starts. Each env step costs one forward pass for
acting and ``epochs`` samples of backprop, against DQN's 8 samples and a target forward, and the
learner's batches are large: the cost per env step fits a 2-core CPU and a GPU alike.

The method plugs into the shared run loop (``train.run``) like DQN: resume (weights, RAdam,
counters, RNGs; a rollout cut by a checkpoint starts afresh), ``--max-wall-time``, ``--device``,
bf16 autocast, TensorBoard, the card, SIGINT / SIGTERM checkpoints.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rl_compress.atari.acting import epsilon_greedy
from rl_compress.core.config import option
from rl_compress.core.device import model_device, to_device
from rl_compress.core.errors import first_line
from rl_compress.models.networks import BF16_AUTO_HELP, PRECISIONS, bf16_autocast, bf16_enabled
from rl_compress.train.run import RunState, rng_to_checkpoint
from rl_compress.train.teacher_base import TeacherMethodBase, TeacherRunConfig, TeacherStart, gradient_step, taken_q


@dataclass
class PQNConfig(TeacherRunConfig):
    """Every number of a PQN teacher run (``teacher train --algo pqn``)."""

    envs: int = option("environments stepped together (one rollout is envs x rollout_steps transitions)",
                       default=64)
    lr: float = option("RAdam learning rate", default=2.5e-4)
    eps_decay: int = option("env steps of linear epsilon decay from the start", default=250_000)
    q_lambda: float = option("lambda of the Q(lambda) returns (0: one-step Q-learning, 1: Monte Carlo)",
                             default=0.65)
    lr_decay_steps: int = option("decay the learning rate linearly to 0 at this env step, as PQN does over its whole "
                                 "run (0 = constant)", default=0)
    rollout_steps: int = option("env steps per env between updates", default=32)
    epochs: int = option("passes over each rollout (samples of backprop per env step)", default=2)
    minibatch_size: int = option("transitions per gradient step (128: one step per 64 env steps, as CleanRL's and "
                                 "purejaxql's PQN)", default=128)
    env_threads: int = option("emulator threads (0 = one per env); the learner waits while they step",
                              default=2)
    precision: str = option("precision of the forward passes: fp32, bf16 (autocast; weights, RAdam and the loss "
                            f"stay fp32) or auto ({BF16_AUTO_HELP})", choices=PRECISIONS, default="auto")

    OWN_RANGES: ClassVar[dict[str, list[str]]] = {
        "positive": ["rollout_steps", "epochs", "minibatch_size"], "non_negative": ["lr_decay_steps"],
        "unit": ["q_lambda"]}


def q_lambda_returns(rewards: torch.Tensor, next_values: torch.Tensor, terminal: torch.Tensor,
                     ended: torch.Tensor, gamma: float, lam: float) -> torch.Tensor:
    """Peng's Q(lambda) returns of a rollout, [T,K] each, computed backwards.

    ``next_values[t]`` is max_a Q(s_{t+1}, a); ``terminal[t]`` stops bootstrapping after step t (a
    game over, or a life loss that counts as one); ``ended[t]`` marks the last step of an episode
    (terminal or truncated), after which the next transition belongs to another episode, so the
    lambda-return does not run on through it. With G_T = V_T:

        G_t = r_t + gamma * (1 - terminal_t) * (lam' * G_{t+1} + (1 - lam') * V_{t+1}),
        lam' = 0 at the rollout's last step and where the episode ended, else ``lam``.
    """
    steps = rewards.shape[0]
    out = torch.empty_like(rewards)
    g = next_values[-1]
    for t in reversed(range(steps)):
        v = next_values[t]
        lam_t = 0.0 if t == steps - 1 else lam
        mix = torch.where(ended[t], v, lam_t * g + (1 - lam_t) * v)
        g = rewards[t] + gamma * (1.0 - terminal[t].float()) * mix
        out[t] = g
    return out


def pqn_update(net: nn.Module, opt: torch.optim.Optimizer, obs: torch.Tensor, actions: torch.Tensor,
               returns: torch.Tensor, max_grad_norm: float, bf16: bool = False) -> torch.Tensor:
    """One gradient step of the Q-value of the taken ``actions`` onto the ``returns`` (MSE), with
    the gradient norm clipped at ``max_grad_norm`` (0 = off); returns the loss (0-d, on device)."""
    loss = F.mse_loss(taken_q(net, obs, actions, bf16), returns)
    gradient_step(loss, opt, net, max_grad_norm)
    return loss.detach()


def compile_pqn(net: nn.Module, envs: int, minibatch: int, bf16: bool, device: torch.device) -> nn.Module:
    """``torch.compile`` of the network, compiled now for both shapes it will see (acting on ``envs``
    observations without gradients, an update on ``minibatch``), so that no compile lands inside the
    timed loop; the eager network, with a warning, where compiling fails (e.g. no C++ compiler)."""
    try:
        fn = torch.compile(net)
        with torch.no_grad(), bf16_autocast(bf16, device):
            fn(torch.zeros((envs, 4, 84, 84), dtype=torch.uint8, device=device))
        with bf16_autocast(bf16, device):
            out = fn(torch.zeros((minibatch, 4, 84, 84), dtype=torch.uint8, device=device))
        out.float().sum().backward()
        return fn
    except Exception as e:  # noqa: BLE001 - any compiler failure means: run eagerly
        warnings.warn(f"torch.compile failed, training eagerly: {first_line(e)}", stacklevel=2)
        return net
    finally:
        for p in net.parameters():
            p.grad = None


def learning_rate(cfg: PQNConfig, step: int) -> float:
    """The learning rate at env step ``step``: ``lr``, decayed linearly to 0 at ``lr_decay_steps``."""
    if cfg.lr_decay_steps <= 0:
        return cfg.lr
    return cfg.lr * max(0.0, 1.0 - step / cfg.lr_decay_steps)


def make_pqn_optimizer(net: nn.Module, cfg: PQNConfig) -> torch.optim.Optimizer:
    """RAdam, as PQN uses (no warm-up schedule needed)."""
    return torch.optim.RAdam(net.parameters(), lr=cfg.lr)


def init_pqn_network(net: nn.Module) -> nn.Module:
    """Orthogonal weights (gain sqrt 2, the head's 1) and zero biases, as PQN starts its network."""
    layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for m in layers:
        nn.init.orthogonal_(m.weight, 1.0 if m is layers[-1] else math.sqrt(2))
        nn.init.zeros_(m.bias)
    return net


class Rollout:
    """The last ``steps`` transitions of K envs, with the acting Q's max of every observation
    (slot ``steps`` holds the bootstrap observation, which then opens the next rollout)."""

    def __init__(self, steps: int, k: int, device: torch.device) -> None:
        self.steps, self.t = steps, 0
        self.obs = torch.zeros((steps + 1, k, 4, 84, 84), dtype=torch.uint8, device=device)
        self.actions = torch.zeros((steps + 1, k), dtype=torch.int64, device=device)
        self.values = torch.zeros((steps + 1, k), device=device)
        self.rewards = torch.zeros((steps, k), device=device)
        self.terminal = torch.zeros((steps, k), dtype=torch.bool, device=device)
        self.ended = torch.zeros((steps, k), dtype=torch.bool, device=device)
        self.valid = torch.zeros((steps, k), dtype=torch.bool, device=device)

    @property
    def full(self) -> bool:
        """Whether the rollout holds its transitions and the bootstrap observation's values."""
        return self.t == self.steps

    def restart(self) -> None:
        """Open the next rollout with the bootstrap observation (already acted on) as its first."""
        self.obs[0], self.actions[0], self.values[0] = self.obs[-1], self.actions[-1], self.values[-1]
        self.t = 0


class PQNMethod(TeacherMethodBase):
    """PQN as a method of the shared run loop: epsilon-greedy acting that keeps each max Q, and
    every ``rollout_steps`` env steps a learning phase on the rollout's Q(lambda) returns."""

    algo = "pqn"
    overlap_env = False  # the update comes in bursts between rollouts, not one per env step

    def __init__(self, cfg: PQNConfig, arch: dict[str, Any], net: nn.Module, opt: torch.optim.Optimizer,
                 rng: np.random.Generator, lives: np.ndarray, card_extra: dict[str, Any]) -> None:
        super().__init__(cfg, arch, net, card_extra)
        self.opt, self.rng, self.lives = opt, rng, lives
        self.device = model_device(net)
        self.bf16 = bf16_enabled(cfg.precision, self.device)
        self.rollout = Rollout(cfg.rollout_steps, cfg.envs, self.device)
        self.fn = compile_pqn(net, cfg.envs, cfg.minibatch_size, self.bf16, self.device) if cfg.compile else net
        self.gen = torch.Generator(device="cpu").manual_seed(int(rng.integers(2**31)))
        self.loss_v: torch.Tensor | float = float("nan")
        self.q_v: torch.Tensor | float = float("nan")

    def epsilon(self, step: int) -> float:
        """Linear decay from eps_start to eps_end over eps_decay env steps."""
        frac = min(step / max(self.cfg.eps_decay, 1), 1.0)
        return self.cfg.eps_start + frac * (self.cfg.eps_end - self.cfg.eps_start)

    def act(self, obs: np.ndarray, state: RunState) -> np.ndarray:
        """Epsilon-greedy actions; the observation, its max Q and the action go to the rollout."""
        k, ro = len(obs), self.rollout
        self.eps = self.epsilon(state.step)
        x = to_device(obs, self.device)
        with torch.no_grad(), bf16_autocast(self.bf16, self.device):
            q = self.fn(x).float()
        actions = epsilon_greedy(k, self.eps, self.rng, self.n_act, lambda: q.argmax(1).cpu().numpy())
        ro.obs[ro.t] = x
        ro.values[ro.t] = q.max(1).values
        ro.actions[ro.t] = to_device(actions, self.device)
        return actions

    def learn(self, state: RunState) -> None:
        """Once the rollout is full: its returns, then ``epochs`` passes of full minibatches (each pass
        leaves out a different remainder of fewer than ``minibatch_size`` transitions)."""
        ro = self.rollout
        if not ro.full:
            return
        t0 = time.perf_counter()
        returns = q_lambda_returns(ro.rewards, ro.values[1:], ro.terminal, ro.ended, self.cfg.gamma,
                                   self.cfg.q_lambda)
        keep = ro.valid.flatten()
        obs = ro.obs[:-1].flatten(0, 1)[keep]
        actions, returns = ro.actions[:-1].flatten()[keep], returns.flatten()[keep]
        n, mb = len(obs), self.cfg.minibatch_size
        for group in self.opt.param_groups:
            group["lr"] = learning_rate(self.cfg, state.step)
        for _ in range(self.cfg.epochs):
            order = torch.randperm(n, generator=self.gen).to(self.device)
            for start in range(0, n - mb + 1, mb):
                idx = order[start:start + mb]
                self.loss_v = pqn_update(self.fn, self.opt, obs[idx], actions[idx], returns[idx],
                                         self.cfg.max_grad_norm, self.bf16)
                state.updates += 1
        self.q_v = ro.values[:-1].mean()
        ro.restart()
        state.profile["update"] += time.perf_counter() - t0

    def observe(self, state: RunState, obs: np.ndarray, actions: np.ndarray, reward: np.ndarray,
                term: np.ndarray, trunc: np.ndarray, info: dict[str, Any], just_done: np.ndarray) -> None:
        """The step's clipped reward, terminal (a life loss counts), episode end and validity (the
        step after an episode's end only resets its env: it trains nothing)."""
        ro, dev = self.rollout, self.device
        life_lost = (info["lives"] < self.lives) & self.cfg.life_loss_terminal
        self.lives = info["lives"].copy()
        ro.rewards[ro.t] = to_device(np.sign(reward).astype(np.float32), dev)
        ro.terminal[ro.t] = to_device(term | life_lost, dev)
        ro.ended[ro.t] = to_device(term | trunc, dev)
        ro.valid[ro.t] = to_device(~just_done, dev)
        ro.t += 1

    def report(self, writer: Any, state: RunState) -> None:
        """Scalars every 1,000 env steps."""
        if writer is None:
            return
        writer.add_scalar("charts/epsilon", self.eps, state.step)
        lr = learning_rate(self.cfg, state.step)
        writer.add_scalar("charts/learning_rate", lr, state.step)
        writer.add_scalar("train/learning_rate", lr, state.step)
        if state.updates:
            writer.add_scalar("losses/td_loss", float(self.loss_v), state.step)
            writer.add_scalar("train/loss", float(self.loss_v), state.step)
            writer.add_scalar("losses/q_mean", float(self.q_v), state.step)

    def checkpoint_state(self, state: RunState) -> dict[str, Any]:
        """The network, RAdam, RNGs and config for checkpoint.pt."""
        return {"online": self.net.state_dict(), "optimizer": self.opt.state_dict(),
                "config": json.dumps(asdict(self.cfg)), "algo": self.algo, "shuffle_rng": self.gen.get_state(),
                **rng_to_checkpoint(self.rng)}


def build_pqn(start: TeacherStart) -> PQNMethod:
    """The PQN method of a run: its network (orthogonal init) and RAdam on the run's device, new
    or restored from the checkpoint (the shuffling RNG too)."""
    cfg = start.cfg
    assert isinstance(cfg, PQNConfig)
    net = start.new_network(init_pqn_network)
    opt = make_pqn_optimizer(net, cfg)
    if start.ckpt is not None:
        net.load_state_dict(start.ckpt["online"])
        opt.load_state_dict(start.ckpt["optimizer"])
    method = PQNMethod(cfg, start.arch, net, opt, start.rng, start.info["lives"].copy(), start.card_extra)
    if start.ckpt is not None:
        method.gen.set_state(start.ckpt["shuffle_rng"])
    return method
