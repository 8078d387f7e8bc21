"""The one epsilon-greedy actor of the package: training (DQN, PQN, distillation), evaluation,
playback, pruning's state collection and ``Agent.predict`` all choose their actions here."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def epsilon_greedy(k: int, epsilon: float, rng: np.random.Generator, num_actions: int,
                   greedy: Callable[[], np.ndarray]) -> np.ndarray:
    """Actions int64 [k]: a uniformly random action with probability ``epsilon`` each, else the
    greedy action that ``greedy()`` returns (not called when every env explores). The draws are
    always ``rng.random(k)`` then ``rng.integers(0, num_actions, k)``, so a seed gives the same
    actions whatever the greedy ones are."""
    explore = rng.random(k) < epsilon
    actions = rng.integers(0, num_actions, k)
    if not explore.all():
        actions = np.where(explore, actions, greedy())
    return actions.astype(np.int64)
