"""Game names, and the vector env and the screen env giving identical observations."""

from __future__ import annotations

import numpy as np
import pytest

from rl_compress.atari.envs import EnvConfig, ScreenEnv, make_vector_env
from rl_compress.atari.games import game_info, num_actions, resolve_game
from rl_compress.core.errors import UserError


@pytest.mark.parametrize(
    "name,rom",
    [
        ("pong", "pong"),
        ("Pong", "pong"),
        ("ALE/Pong-v5", "pong"),
        ("PongNoFrameskip-v4", "pong"),
        ("SpaceInvaders", "space_invaders"),
        ("ALE/SpaceInvaders-v5", "space_invaders"),
        ("space-invaders", "space_invaders"),
        ("MsPacmanNoFrameskip-v4", "ms_pacman"),
        ("BreakoutDeterministic-v4", "breakout"),
    ],
)
def test_aliases(name: str, rom: str) -> None:
    assert resolve_game(name) == rom


def test_unknown_game_lists_close_names() -> None:
    with pytest.raises(UserError) as e:
        resolve_game("Pongg")
    msg = str(e.value)
    assert "unknown game 'Pongg'" in msg and "pong" in msg and "\n" not in msg


def test_num_actions() -> None:
    assert num_actions("pong") == 6
    assert num_actions("breakout") == 4



def test_game_value_carries_its_facts() -> None:
    pong = game_info("PongNoFrameskip-v4")
    assert pong is game_info("PongNoFrameskip-v4")  # resolved once, then cached
    assert (pong.id, pong.num_actions, pong.actions[:2]) == ("pong", 6, ("NOOP", "FIRE"))
    assert (pong.random_score, pong.human_score) == (-20.7, 14.6)
    assert pong.retention(-20.7, 18.83) == 0.0 and abs(pong.retention(17.13, 18.83) - 37.83 / 39.53) < 1e-12
    assert pong.retention(5.0, -21.0) is None  # a teacher no better than random: no retention
    assert abs(game_info("Breakout").human_normalized(30.5) - 1.0) < 1e-12
    tennis = game_info("tennis")  # an ALE game outside the reference table
    assert tennis.num_actions == 18 and tennis.retention(1.0, 2.0) is None and tennis.human_normalized(1.0) is None
    with pytest.raises(UserError, match="closest valid names"):
        game_info("Pongg")

@pytest.mark.parametrize("game", ["pong", "breakout"])
def test_vector_and_screen_env_identical(game: str) -> None:
    """Sticky actions and no-ops off: same actions from reset give the same bytes, across resets."""
    cfg = EnvConfig(sticky=0.0, noop_max=0, max_frames=1200)  # truncation every 300 steps
    vec = make_vector_env(game, 1, cfg)
    one = ScreenEnv(game, cfg)
    obs_v, _ = vec.reset(seed=0)
    obs_s = one.reset(seed=0)
    assert obs_v.shape == (1, 4, 84, 84) and obs_v.dtype == np.uint8
    assert np.array_equal(obs_v[0], obs_s)
    assert not obs_s[:3].any(), "the stack is zero-padded at reset"
    rng = np.random.default_rng(0)
    resets = 0
    for _ in range(700):
        a = int(rng.integers(0, one.num_actions))
        obs_v, r_v, term_v, trunc_v, _ = vec.step(np.array([a]))
        obs_s, r_s, term_s, trunc_s = one.step(a)
        assert np.array_equal(obs_v[0], obs_s)
        assert r_v[0] == r_s and bool(term_v[0]) == term_s and bool(trunc_v[0]) == trunc_s
        if term_s or trunc_s:
            resets += 1
            obs_v, *_ = vec.step(np.array([0]))  # NEXT_STEP autoreset: this step resets
            obs_s = one.reset()
            assert np.array_equal(obs_v[0], obs_s)
    assert resets >= 2
    screen, ram = one.screen(), one.ram()
    assert screen.shape == (210, 160, 3) and screen.dtype == np.uint8
    assert ram.shape == (128,) and ram.dtype == np.uint8
    vec.close()
    one.close()


def test_zero_envs_refused() -> None:
    with pytest.raises(UserError):
        make_vector_env("pong", 0)
