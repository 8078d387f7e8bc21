"""The frame-once replay memory rebuilds exactly the stacks and n-step targets the env gave."""

from __future__ import annotations

import numpy as np
import pytest

from rl_compress.atari.envs import EnvConfig, make_vector_env
from rl_compress.train.replay import FrameReplay


def _play(game: str, steps: int, capacity: int, n_step: int, gamma: float, max_frames: int):
    """Fill a replay from a real vector env, remembering the true stack and transition of every slot."""
    k = 2
    env = make_vector_env(game, k, EnvConfig(sticky=0.0, noop_max=5, max_frames=max_frames))
    rep = FrameReplay(capacity, k, n_step, gamma)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=3)
    rep.add_frames(obs[:, -1], np.ones(k, dtype=bool))
    truth: dict[tuple[int, int], dict] = {(i, int(rep.pos[i] - 1) % rep.cap): {"obs": obs[i].copy()} for i in range(k)}
    just_done = np.zeros(k, dtype=bool)
    ends = 0
    for _ in range(steps):
        actions = rng.integers(0, env.single_action_space.n, k).astype(np.int64)
        nxt, reward, term, trunc, _ = env.step(actions)
        for i in range(k):
            slot = int(rep.pos[i] - 1) % rep.cap
            if not just_done[i]:
                truth[(i, slot)].update(a=int(actions[i]), r=float(np.sign(reward[i])), term=bool(term[i]))
        rep.record_step(nxt, actions, np.sign(reward).astype(np.float32), term, just_done)
        for i in range(k):
            truth[(i, int(rep.pos[i] - 1) % rep.cap)] = {"obs": nxt[i].copy(), "trunc": bool(trunc[i] and not term[i])}
        just_done = term | trunc
        ends += int(just_done.sum())
    env.close()
    return rep, truth, ends


def _expected(rep: FrameReplay, truth: dict, k: int, t: int):
    """n-step return, discount and bootstrap stack computed from the remembered truth."""
    g, disc, cur = 0.0, 1.0, t
    for _ in range(rep.n_step):
        rec = truth[(k, cur)]
        g += disc * rec["r"]
        if rec["term"]:
            return g, 0.0, None
        disc *= rep.gamma
        cur = (cur + 1) % rep.cap
        if "a" not in truth[(k, cur)]:
            break
    return g, disc, truth[(k, cur)]["obs"]


@pytest.mark.parametrize("game,n_step,max_frames", [("breakout", 3, 108_000), ("pong", 1, 400)])
def test_samples_match_env(game: str, n_step: int, max_frames: int) -> None:
    rep, truth, ends = _play(game, steps=1500, capacity=1200, n_step=n_step, gamma=0.9, max_frames=max_frames)
    assert ends >= 2, "the run must cross episode boundaries"
    assert rep.count.max() == rep.cap, "the ring must have wrapped"
    rng = np.random.default_rng(1)
    batch = rep.sample(256, rng)
    assert batch.obs.shape == (256, 4, 84, 84) and batch.obs.dtype == np.uint8
    # find each sample's slot by matching its stack against the remembered truth
    index = {}
    for (k, t), rec in truth.items():
        if "a" in rec:
            index.setdefault(rec["obs"].tobytes(), []).append((k, t))
    checked_terminal = 0
    for b in range(256):
        cands = index.get(batch.obs[b].tobytes())
        assert cands, "sampled stack is not an observation the env produced"
        ok = False
        for k, t in cands:
            g, disc, boot = _expected(rep, truth, k, t)
            if truth[(k, t)]["a"] != batch.actions[b]:
                continue
            if not np.isclose(g, batch.returns[b]) or not np.isclose(disc, batch.discounts[b]):
                continue
            if boot is not None and not np.array_equal(boot, batch.next_obs[b]):
                continue
            ok = True
            checked_terminal += disc == 0.0
            break
        assert ok, f"sample {b} does not match any true transition"
    if game == "breakout":
        assert checked_terminal > 0, "no sampled transition ended in a game over"


def test_stack_is_zero_padded_at_episode_start() -> None:
    rep, truth, _ = _play("pong", steps=20, capacity=400, n_step=1, gamma=0.99, max_frames=108_000)
    stack = rep._stack(np.array([0]), np.array([0]))
    assert np.array_equal(stack[0], truth[(0, 0)]["obs"])
    assert not stack[0, :3].any() and stack[0, 3].any()


def test_too_small_capacity_is_refused() -> None:
    with pytest.raises(ValueError):
        FrameReplay(10, 4, 3)
