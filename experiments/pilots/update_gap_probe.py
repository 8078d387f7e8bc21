"""Where does the trainer lose time against the floor of `bench teacher`? Two probes at the bench's
settings (Pong, batch 32, one update per 4 env steps, 8 envs, compiled Nature-DQN update):

    python experiments/pilots/update_gap_probe.py updates   # one update alone: median vs mean,
                                                             # one fixed batch vs fresh replay batches
    python experiments/pilots/update_gap_probe.py loop      # the trainer's env steps/s and profile with the
                                                             # emulators overlapped (1 thread) or in series (1, 2)

Run it with nothing else on the machine; each prints one line per case.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from rl_compress.bench import random_batch
from rl_compress.models.networks import build_network, teacher_arch
from rl_compress.train.replay import FrameReplay
from rl_compress.train.teacher import TeacherConfig, compile_for_updates, make_optimizer, td_update, train_teacher


def probe_updates(n: int = 200) -> None:
    """Median and mean of one update on a fixed batch and on fresh batches sampled from a replay memory."""
    online, target = compile_for_updates(build_network(teacher_arch(), 6), build_network(teacher_arch(), 6), 32, False)
    opt = make_optimizer(online.parameters(), TeacherConfig())
    rng = np.random.default_rng(0)
    fixed = random_batch(32, 0.99, rng)
    k = 8
    replay = FrameReplay(20_000, k, 1, 0.99)
    replay.add_frames(rng.integers(0, 256, (k, 84, 84), dtype=np.uint8), np.ones(k, bool))
    for _ in range(2_500):
        replay.record_step(rng.integers(0, 256, (k, 4, 84, 84), dtype=np.uint8), rng.integers(0, 6, k),
                           np.zeros(k, np.float32), np.zeros(k, bool), np.zeros(k, bool))
    for _ in range(10):
        td_update(online, target, opt, fixed, False, 10.0)
    for name, get in (("fixed batch", lambda: fixed), ("replay batches", lambda: replay.sample(32, rng))):
        upd, smp = [], []
        for _ in range(n):
            t0 = time.perf_counter()
            batch = get()
            t1 = time.perf_counter()
            td_update(online, target, opt, batch, False, 10.0)
            upd.append(time.perf_counter() - t1)
            smp.append(t1 - t0)
        print(f"{name}: update median {1e3 * statistics.median(upd):.2f} ms, mean {1e3 * statistics.mean(upd):.2f} ms; "
              f"sampling mean {1e3 * statistics.mean(smp):.2f} ms")


def probe_loop() -> None:
    """The trainer at the bench's settings, the emulators overlapped with the update or stepped in series."""
    for overlap, env_threads in ((True, 1), (False, 1), (False, 2)):
        cfg = TeacherConfig(game="pong", steps=6_000, envs=8, buffer_size=20_000, learning_starts=2_000, n_step=1,
                            target_update=2_000, checkpoint_every=10**9, eval_every=0, save_replay=False,
                            overlap_env=overlap, env_threads=env_threads)
        with tempfile.TemporaryDirectory() as d:
            card = train_teacher(cfg, Path(d) / "run", show_progress=False)
        print(json.dumps({"overlap_env": overlap, "env_threads": env_threads, **card["training"]["profile"]}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("probe", choices=["updates", "loop"])
    {"updates": probe_updates, "loop": probe_loop}[p.parse_args().probe]()


if __name__ == "__main__":
    main()
