"""Speed benchmarks, always as ratios against a baseline measured in the same run.

``bench teacher``: our DQN trainer against stable-baselines3's DQN with the same network,
hyperparameters and replay ratio, for the same env steps after the same warm-up, and the
floor that the measured time of one update alone allows; then our PQN at its defaults (env steps
per second only: it learns from fewer samples per step, so time to a score is
``bench time-to-score``'s to say).
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ale_py
import gymnasium as gym
import numpy as np
import torch

from rl_compress.atari.envs import sample_observations
from rl_compress.atari.games import _env_id_name, quiet_ale, resolve_game
from rl_compress.core.device import device_record, resolve_device, to_device
from rl_compress.core.errors import UserError
from rl_compress.core.optional import require
from rl_compress.core.provenance import cpu_model
from rl_compress.models.agent import make_card, save_agent
from rl_compress.models.export import export
from rl_compress.models.maps import GRID, SCREEN_H, SCREEN_W, attention
from rl_compress.models.networks import (
    bf16_is_fast,
    build_network,
    conv_layers,
    count_params,
    forward_macs,
    parse_spec,
    teacher_arch,
)
from rl_compress.train.distill import DistillConfig, distill
from rl_compress.train.pqn import PQNConfig
from rl_compress.train.replay import Batch
from rl_compress.train.teacher import TeacherConfig, compile_for_updates, make_optimizer, td_update, train_teacher


@dataclass
class TeacherBenchConfig:
    """Settings shared by both trainers in ``bench teacher``."""

    game: str = "pong"
    warmup: int = 2_000
    """env steps of random play before updates start (not timed)"""
    steps: int = 4_000
    """env steps timed after the warm-up"""
    buffer_size: int = 20_000
    batch_size: int = 32
    train_freq: int = 4
    """env steps per update: the replay ratio is batch_size / train_freq samples per env step"""
    target_update: int = 2_000
    lr: float = 1e-4
    adam_eps: float = 1.5e-4
    gamma: float = 0.99
    envs: int = 8
    """our trainer's vector env size (SB3 runs its canonical single env, train_freq 4)"""
    compile: bool = True
    """torch.compile our update (the trainer's default)"""
    device: str = "cpu"
    """where both trainers run: cpu, cuda, cuda:N or auto"""
    env_threads: int = 1
    """our emulator threads (0 = one per env): with a GPU the emulators become the bottleneck"""


def random_batch(batch_size: int, gamma: float, rng: np.random.Generator) -> Any:
    """A replay batch of random frames and actions (6 of them), zero rewards and discount gamma:
    what one update costs does not depend on the values."""

    b = batch_size
    return Batch(obs=rng.integers(0, 256, (b, 4, 84, 84), dtype=np.uint8), actions=rng.integers(0, 6, b),
                 returns=np.zeros(b, np.float32), next_obs=rng.integers(0, 256, (b, 4, 84, 84), dtype=np.uint8),
                 discounts=np.full(b, gamma, np.float32))


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously; a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_update(cfg: TeacherBenchConfig, compiled: bool, repeats: int = 30, bf16: bool = False) -> float:
    """Median seconds of one Nature-DQN update (batch to the device, target fwd + online fwd/bwd +
    Adam) alone, on the config's device (the forward passes under bfloat16 autocast with ``bf16``)."""

    device = resolve_device(cfg.device, announce=False)
    online, target = build_network(teacher_arch(), 6).to(device), build_network(teacher_arch(), 6).to(device)
    if compiled:
        online, target = compile_for_updates(online, target, cfg.batch_size, False, bf16, device)
    opt = make_optimizer(online.parameters(), TeacherConfig(lr=cfg.lr, adam_eps=cfg.adam_eps))
    batch = random_batch(cfg.batch_size, cfg.gamma, np.random.default_rng(0))
    for _ in range(5):
        td_update(online, target, opt, batch, False, 10.0, bf16, device)
    times = []
    for _ in range(repeats):
        synchronize(device)
        t = time.perf_counter()
        td_update(online, target, opt, batch, False, 10.0, bf16, device)
        synchronize(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def run_ours(cfg: TeacherBenchConfig, precision: str = "fp32") -> dict[str, Any]:
    """Our trainer for warmup + steps; env steps/s over the timed part and its profile."""

    tcfg = TeacherConfig(
        game=cfg.game, steps=cfg.warmup + cfg.steps, envs=cfg.envs, buffer_size=cfg.buffer_size,
        learning_starts=cfg.warmup, train_freq=cfg.train_freq, batch_size=cfg.batch_size, lr=cfg.lr,
        adam_eps=cfg.adam_eps, gamma=cfg.gamma, n_step=1, double=False, target_update=cfg.target_update,
        checkpoint_every=10**9, eval_every=0, save_replay=False, compile=cfg.compile, precision=precision,
        device=cfg.device, env_threads=cfg.env_threads,
    )
    with tempfile.TemporaryDirectory() as d:
        card = train_teacher(tcfg, Path(d) / "run", show_progress=False)
    prof = card["training"]["profile"]
    return {"env_steps": prof["learning_env_steps"], "seconds": prof["learning_seconds"],
            "sps": prof["learning_sps"], "updates": card["training"]["updates"], "profile": prof}


def run_pqn(cfg: TeacherBenchConfig) -> dict[str, Any]:
    """Our PQN trainer at its defaults (64 envs, 2 samples of backprop per env step) for warmup +
    steps env steps: env steps/s over the run's loop (its compile is before the loop, not timed)."""
    pcfg = PQNConfig(game=cfg.game, steps=cfg.warmup + cfg.steps, checkpoint_every=10**9, eval_every=0,
                     compile=cfg.compile, device=cfg.device)
    with tempfile.TemporaryDirectory() as d:
        card = train_teacher(pcfg, Path(d) / "run", show_progress=False)
    tr = card["training"]
    return {"env_steps": tr["steps"], "seconds": tr["wall_time_s"], "sps": round(tr["steps"] / tr["wall_time_s"], 2),
            "updates": tr["updates"], "precision": tr["precision_used"], "profile": tr["profile"]}


def run_sb3(cfg: TeacherBenchConfig) -> dict[str, Any]:
    """stable-baselines3 DQN (RL Zoo's Atari setup: AtariWrapper, VecFrameStack 4) for the same steps."""
    require("stable_baselines3")  # an extra: one line when it is missing
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack


    quiet_ale()
    gym.register_envs(ale_py)
    env_id = f"{_env_id_name(resolve_game(cfg.game))}NoFrameskip-v4"
    env = VecFrameStack(make_atari_env(env_id, n_envs=1, seed=0), 4)
    marks: dict[str, float] = {}

    class Clock(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps == cfg.warmup:
                marks["t0"] = time.perf_counter()
            return True

    model = DQN(
        "CnnPolicy", env, buffer_size=cfg.buffer_size, learning_starts=cfg.warmup, batch_size=cfg.batch_size,
        train_freq=cfg.train_freq, gradient_steps=1, target_update_interval=cfg.target_update,
        learning_rate=cfg.lr, gamma=cfg.gamma, exploration_fraction=0.1, exploration_final_eps=0.01,
        policy_kwargs={"optimizer_kwargs": {"eps": cfg.adam_eps}}, max_grad_norm=10.0, seed=0, verbose=0,
        device=resolve_device(cfg.device, announce=False),
    )
    model.learn(cfg.warmup + cfg.steps, callback=Clock())
    secs = time.perf_counter() - marks["t0"]
    env.close()
    return {"env_steps": cfg.steps, "seconds": round(secs, 3), "sps": round(cfg.steps / secs, 2),
            "updates": int(model._n_updates)}


def bench_teacher(cfg: TeacherBenchConfig | None = None) -> dict[str, Any]:
    """Run both trainers and the update timing; returns the result dict (see module doc)."""

    cfg = cfg or TeacherBenchConfig()
    if cfg.steps <= 0 or cfg.warmup <= cfg.batch_size:
        raise UserError("bench teacher needs steps > 0 and a warm-up longer than one batch")
    device = resolve_device(cfg.device)
    ours = run_ours(cfg)
    sb3 = run_sb3(cfg)
    pqn = run_pqn(cfg)
    update_s = time_update(cfg, compiled=cfg.compile)
    eager_s = time_update(cfg, compiled=False) if cfg.compile else update_s
    floor = cfg.train_freq / update_s
    bf16: dict[str, Any] | None = None
    bf16_units = bf16_is_fast(device)
    if bf16_units:  # the same run with --precision bf16, where the device has bfloat16 units
        ours_bf16 = run_ours(cfg, "bf16")
        bf16_s = time_update(cfg, compiled=cfg.compile, bf16=True)
        bf16 = {"ours": ours_bf16, "ratio_vs_sb3": round(ours_bf16["sps"] / sb3["sps"], 3),
                "ratio_vs_fp32": round(ours_bf16["sps"] / ours["sps"], 3), "update_ms": round(bf16_s * 1000, 2),
                "floor_sps": round(cfg.train_freq / bf16_s, 2),
                "fraction_of_floor": round(ours_bf16["sps"] * bf16_s / cfg.train_freq, 3)}
    return {
        "benchmark": "teacher",
        "config": asdict(cfg),
        "ours": ours,
        "sb3": sb3,
        "ratio_vs_sb3": round(ours["sps"] / sb3["sps"], 3),
        "update_ms": round(update_s * 1000, 2),
        "update_ms_eager": round(eager_s * 1000, 2),
        "floor_sps_eager": round(cfg.train_freq / eager_s, 2),
        "floor_sps": round(floor, 2),
        "fraction_of_floor": round(ours["sps"] / floor, 3),
        "bf16": bf16,
        "pqn": pqn | {"ratio_vs_sb3": round(pqn["sps"] / sb3["sps"], 3), "ratio_vs_dqn": round(pqn["sps"] / ours["sps"], 3)},
        "machine": {"cpu": platform.processor() or platform.machine(), "model": cpu_model(), "cores": os.cpu_count(),
                    "bf16_units": bf16_units, "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "device": device_record(device)},
    }


def format_teacher(res: dict[str, Any]) -> str:
    """A short human table of ``bench_teacher``'s result."""
    p = res["ours"]["profile"]
    lines = [
        f"device {res['machine']['device']['name']}, {res['machine']['cores']} CPU cores ({res['machine']['model']})",
        f"env steps/s after warm-up ({res['config']['steps']} steps, replay ratio "
        f"{res['config']['batch_size']}/{res['config']['train_freq']}):",
        f"  rl-compress         {res['ours']['sps']:8.1f}",
        f"  stable-baselines3   {res['sb3']['sps']:8.1f}",
        f"  ratio               {res['ratio_vs_sb3']:8.2f}x",
        f"  floor (update {res['update_ms']:.1f} ms) {res['floor_sps']:6.1f}   ours at {100 * res['fraction_of_floor']:.0f}%"
        f"   (eager update {res['update_ms_eager']:.1f} ms: floor {res['floor_sps_eager']:.1f})",
        "  profile (s): " + ", ".join(f"{k} {p[k]:.1f}" for k in ("update", "sample", "act", "env_wait", "replay_write")),
    ]
    if res["machine"]["device"]["type"] == "cuda":
        lines.append("  (CUDA runs asynchronously: 'update' is the time to queue the updates; the GPU's own time shows "
                     "where the host waits for it, in 'act')")
    q = res.get("pqn")
    if q:
        lines.append(f"  rl-compress --algo pqn {q['sps']:8.1f}   ({q['ratio_vs_sb3']:.2f}x SB3, {q['ratio_vs_dqn']:.2f}x our DQN "
                     f"per env step; {q['precision']}, 2 samples of backprop per env step against DQN's 8)")
    b = res.get("bf16")
    if b:
        lines += [
            f"  rl-compress --precision bf16 {b['ours']['sps']:8.1f}   ({b['ratio_vs_sb3']:.2f}x SB3, "
            f"{b['ratio_vs_fp32']:.2f}x fp32; update {b['update_ms']:.1f} ms: floor {b['floor_sps']:.1f}, "
            f"ours at {100 * b['fraction_of_floor']:.0f}%)",
        ]
    return "\n".join(lines)


def frames_per_second(fn: Any, x: Any, seconds: float = 2.0) -> float:
    """Frames/s of ``fn(x)`` over about ``seconds`` after two warm-up calls."""
    fn(x)
    fn(x)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn(x)
        n += 1
    return n * len(x) / (time.perf_counter() - t0)


def bench_inference(student_spec: str = "gmp16", batches: tuple[int, ...] = (1, 256),
                    device: str = "cpu") -> dict[str, Any]:
    """Frames/s of a student and the teacher at each batch size, in PyTorch (on ``device``, the
    input copied there each call) and ONNX Runtime (on the CPU)."""
    ort = require("onnxruntime")

    dev = resolve_device(device)
    nets = {"teacher": build_network(teacher_arch(), 6).eval(), student_spec: build_network(parse_spec(student_spec), 6).eval()}
    rng = np.random.default_rng(0)
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        for name, net in nets.items():
            path = export(net, "onnx", Path(d) / f"{name}.onnx")
            net_dev = net.to(dev)
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = torch.get_num_threads()
            sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            rows[name] = {"params": count_params(net)}
            for b in batches:
                x = rng.integers(0, 256, (b, 4, 84, 84), dtype=np.uint8)
                with torch.inference_mode():
                    def run(a: np.ndarray, n: torch.nn.Module = net_dev) -> Any:
                        return n(to_device(a, dev)).argmax(1).cpu()  # the actions back on the host: a sync
                    rows[name][f"torch_b{b}"] = round(frames_per_second(run, x), 1)
                rows[name][f"onnx_b{b}"] = round(frames_per_second(lambda a, s=sess: s.run(None, {"obs": a}), x), 1)
    ratios = {k: round(rows[student_spec][k] / rows["teacher"][k], 2) for k in rows["teacher"] if k != "params"}
    return {"benchmark": "inference", "frames_per_s": rows, "student_over_teacher": ratios,
            "machine": {"cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                        "device": device_record(dev)}}


def bench_distill(student_spec: str = "gmp16", steps: int = 6_000, warmup: int = 2_000,
                  device: str = "cpu") -> dict[str, Any]:
    """Distillation throughput on ``device``: env steps/s and labelled samples/s after a warm-up
    (the teacher is a random-init Nature DQN: speed does not depend on its weights); again with
    ``--precision bf16`` where the device has bfloat16 units."""
    dev = resolve_device(device)

    def timed(tdir: Path, d: Path, precision: str) -> dict[str, Any]:
        res = {}
        for name, total in (("warmup_only", warmup), ("full", warmup + steps)):
            cfg = DistillConfig(student=student_spec, steps=total, learning_starts=warmup, eval_every=0,
                                checkpoint_every=10**9, precision=precision, device=device)
            t0 = time.perf_counter()
            card = distill(tdir, cfg, d / f"{name}_{precision}", show_progress=False)
            res[name] = {"seconds": time.perf_counter() - t0, "updates": card["training"]["updates"]}
        secs = res["full"]["seconds"] - res["warmup_only"]["seconds"]
        samples = res["full"]["updates"] * DistillConfig().batch_size
        return {"seconds": round(secs, 2), "env_steps_per_s": round(steps / secs, 1),
                "labelled_samples_per_s": round(samples / secs, 1)}

    with tempfile.TemporaryDirectory() as d:
        tdir = Path(d) / "teacher"
        net = build_network(teacher_arch(), 6)
        save_agent(tdir, net, make_card("teacher", "pong", teacher_arch(), net))
        fp32 = timed(tdir, Path(d), "fp32")
        bf16 = timed(tdir, Path(d), "bf16") if bf16_is_fast(dev) else None
    cfg = DistillConfig(student=student_spec)
    if bf16 is not None:
        bf16["ratio_vs_fp32"] = round(bf16["env_steps_per_s"] / fp32["env_steps_per_s"], 3)
    return {"benchmark": "distill", "student": student_spec, "timed_env_steps": steps, **fp32, "bf16": bf16,
            "batch_size": cfg.batch_size, "train_freq": cfg.train_freq,
            "machine": {"model": cpu_model(), "cores": os.cpu_count(), "bf16_units": bf16 is not None,
                        "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                        "device": device_record(dev)}}


def _fastest_pass(call: Any, n: int, repeats: int) -> float:
    """Seconds per call of ``call(i)`` for i in range(n): the fastest of ``repeats`` passes."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(n):
            call(i)
        best = min(best, (time.perf_counter() - t0) / n)
    return best


def attention_macs(method: str, net: torch.nn.Module, perturbations: int = 17 * 17) -> int:
    """Multiply-accumulates per frame of an attention method, the forward that acts included,
    counted from the layer shapes (``forward_macs``) plus the method's own work:
    gmp - for each traced path (at most one per channel) 2 Cout Cin k^2 at every conv (the two
    matmuls of ``winner_path``) and one 210x160 Gaussian outer product;
    gmp-cell - one 84x84 Gaussian per cell of the last map, then the resize to the screen;
    gradcam - the linear layers again (the gradient to the maps), C x H x W for the weighting, and
    the cell map as gmp-cell; perturbation - ``perturbations`` + 1 forwards and a 4x84x84 blend
    per perturbed copy; gmp-occlusion - gmp's trace for every channel, C more forwards (one
    per channel's blurred disc) with a 4x84x84 blend each."""

    conv, linear = forward_macs(net)
    forward = conv + linear
    convs = conv_layers(net)
    with torch.no_grad():
        last = net.conv_maps(torch.zeros(1, 4, GRID, GRID, dtype=torch.uint8))  # type: ignore[operator]
    c, cells = last.shape[1], last.shape[-1]
    cell_map = cells * cells * GRID * GRID + SCREEN_H * SCREEN_W * 4
    per_path = sum(2 * m.out_channels * m.in_channels * m.kernel_size[0] ** 2 for m in convs)
    traced = c * (per_path + SCREEN_H * SCREEN_W)  # every channel's path and its screen Gaussian
    if method == "gmp":
        return forward + traced
    if method == "gmp-cell":
        return forward + cell_map
    if method == "gmp-occlusion":
        return forward + traced + c * forward + c * 4 * GRID * GRID
    if method == "gradcam":
        return forward + linear + c * cells * cells + cell_map
    if method == "perturbation":
        return (perturbations + 1) * forward + perturbations * 4 * GRID * GRID
    raise ValueError(f"unknown method {method!r}")


def bench_localize(
    student_spec: str = "gmp16", frames: int = 16, repeats: int = 5, batches: tuple[int, ...] = (1, 32)
) -> dict[str, Any]:
    """Cost per frame of each attention method, as a ratio to the student's GMP map at the same
    batch size: batch 1 (as while playing) and larger batches (explaining recorded frames).
    Each time is the fastest of ``repeats`` passes, so that a busy moment of the machine does
    not count. GMP's cost includes the forward pass that picks the action; ``extra_ms`` is the
    cost beyond that forward."""

    n_obs = max(frames, *batches)
    obs = sample_observations("pong", n_obs, num_envs=min(n_obs, 16), warmup=50)
    student = build_network(parse_spec(student_spec), 6).eval()
    teacher = build_network(teacher_arch(), 6).eval()
    plan = [("student", student, "gmp"), ("student", student, "gmp-cell"), ("student", student, "gradcam"),
            ("student", student, "perturbation"), ("student", student, "gmp-occlusion"),
            ("teacher", teacher, "gradcam"), ("teacher", teacher, "perturbation")]
    rows: list[dict[str, Any]] = []
    forward_ms: dict[str, dict[str, float]] = {}
    for b in batches:
        calls = max(1, frames // b)  # batches per pass; perturbation, ~300 forwards a frame, gets a quarter
        fwd: dict[str, float] = {}
        for who, net in (("student", student), ("teacher", teacher)):
            with torch.inference_mode():
                net(torch.from_numpy(obs[:b]))
                fwd[who] = _fastest_pass(
                    lambda i: net(torch.from_numpy(obs[i % calls * b : (i % calls + 1) * b])),  # noqa: B023
                    max(4, 4 * calls), repeats,
                ) * 1000 / b
        forward_ms[str(b)] = {k: round(v, 3) for k, v in fwd.items()}
        batch_rows = []
        for who, net, method in plan:
            attention(method, net, obs[:b])
            n = calls if method != "perturbation" else max(1, calls // 4)
            best = _fastest_pass(lambda i: attention(method, net, obs[i * b : (i + 1) * b]), n, repeats)  # noqa: B023
            ms = best * 1000 / b
            batch_rows.append({"batch": b, "agent": who, "method": method, "ms_per_frame": round(ms, 3),
                               "macs_per_frame": attention_macs(method, net), "extra_ms": round(ms - fwd[who], 3)})
        gmp = batch_rows[0]
        for r in batch_rows:
            r["x_gmp"] = round(r["ms_per_frame"] / gmp["ms_per_frame"], 1)
            r["x_gmp_macs"] = round(r["macs_per_frame"] / gmp["macs_per_frame"], 1)
            # beyond the forward pass that the agent runs anyway to act
            r["extra_x_gmp"] = round(r["extra_ms"] / gmp["extra_ms"], 1) if gmp["extra_ms"] > 0 else None
        rows += batch_rows
    return {"benchmark": "localize", "student": student_spec, "frames": frames, "batches": list(batches),
            "repeats": repeats, "rows": rows, "forward_ms": forward_ms,
            "note": "GMP time includes the trace to the pixel and the map on the 210x160 screen (gmp-cell: "
                    "the 7x7 cell centres, no trace); perturbation: (84/5)^2 = 289 forwards per frame, batched "
                    "per frame whatever the batch; ms_per_frame: time of a batch / its size; macs_per_frame: "
                    "multiply-accumulates counted from the layer shapes (attention_macs), not timed"}
