"""rl-compress: DQN teachers on Atari, tiny global-max-pool students via Actor-Mimic, attention maps.

The Python API (the CLI calls the same functions):

    load_agent(path)                 an agent directory or an SB3 zip -> Agent
    Agent.predict(obs)               actions for uint8 [4,84,84] observations
    Agent.attention(obs, method)     attention maps and peaks over the screen
    make_env(game) / make_vector_env(game, n)   our preprocessing, as gymnasium envs
    AttentionWrapper(env, agent)     attention in ``info`` and drawn by ``render()``
    evaluate(agent, episodes, seed)  the evaluation protocol
    train_teacher(TeacherConfig(...), out) / distill(teacher_dir, DistillConfig(...), out)
"""

from rl_compress.api import Agent, AttentionWrapper, check_observations, evaluate, load_agent, make_env
from rl_compress.atari.envs import make_vector_env
from rl_compress.atari.evaluate import DEFAULT_PROTOCOL, Protocol
from rl_compress.core.errors import StorageError, UserError
from rl_compress.train.distill import DistillConfig, distill
from rl_compress.train.teacher import TeacherConfig, train_teacher

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_PROTOCOL", "Agent", "AttentionWrapper", "DistillConfig", "Protocol", "StorageError", "TeacherConfig",
    "UserError", "check_observations", "distill", "evaluate", "load_agent", "make_env", "make_vector_env",
    "train_teacher",
]
