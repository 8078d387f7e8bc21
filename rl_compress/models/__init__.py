"""Networks (the Nature-DQN teacher, GMP and flat students), the agent directory, export, pruning and
the SB3 import."""
