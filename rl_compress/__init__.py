"""rl-compress: DQN teachers on Atari, tiny global-max-pool students via Actor-Mimic, attention maps.

The Python API (the CLI calls the same functions):

    load_agent(source)               an agent directory, an SB3 zip, a CleanRL file or hf:ORG/NAME -> Agent
    Agent.predict(obs)               (actions, state) for uint8 [4,84,84] observations, as SB3 gives them
    Agent.attention(obs, method)     attention maps and peaks over the screen
    make_env(game) / make_vector_env(game, n)   our preprocessing, as gymnasium envs
    AttentionWrapper(env, agent)     attention in ``info`` and drawn by ``render()``
    evaluate(agent, episodes, seed)  the evaluation protocol
    record / localize / export / prune / push    what the commands of the same names do
    train_teacher(TeacherConfig(...) | PQNConfig(...), out) / distill(teacher, DistillConfig(...), out)
"""

from rl_compress.api import AttentionWrapper, evaluate, export, load_agent, localize, make_env, prune, push, record
from rl_compress.atari.envs import make_vector_env
from rl_compress.atari.evaluate import DEFAULT_PROTOCOL, Protocol
from rl_compress.core.errors import StorageError, UserError
from rl_compress.core.signals import StopToken
from rl_compress.models.agent import Agent, check_observations
from rl_compress.train.distill import DistillConfig, distill
from rl_compress.train.teacher import PQNConfig, TeacherConfig, train_teacher

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_PROTOCOL", "Agent", "AttentionWrapper", "DistillConfig", "PQNConfig", "Protocol", "StopToken",
    "StorageError", "TeacherConfig",
    "UserError", "check_observations", "distill", "evaluate", "export", "load_agent", "localize", "make_env",
    "make_vector_env", "prune", "push", "record", "train_teacher",
]
