"""rl-compress: DQN teachers on Atari, tiny global-max-pool students via Actor-Mimic, attention maps."""

__version__ = "0.1.0"
