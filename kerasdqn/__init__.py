"""kerasdqn: keras-rl's DQN API on Keras 3, TensorFlow and gymnasium."""

from kerasdqn._version import __version__
from kerasdqn.agents.dqn import DQNAgent
from kerasdqn.callbacks import (
    Callback,
    FileLogger,
    History,
    ModelIntervalCheckpoint,
    TrainingCheckpoint,
)
from kerasdqn.core import Agent, Processor
from kerasdqn.memory import SequentialMemory
from kerasdqn.networks import build_mlp
from kerasdqn.policy import (
    BoltzmannQPolicy,
    EpsGreedyQPolicy,
    GreedyQPolicy,
    LinearAnnealedPolicy,
    MaxBoltzmannQPolicy,
)
from kerasdqn.state import StateWindow
from kerasdqn.targets import HardTargetUpdate, SoftTargetUpdate

__all__ = [
    "Agent",
    "BoltzmannQPolicy",
    "Callback",
    "DQNAgent",
    "EpsGreedyQPolicy",
    "FileLogger",
    "GreedyQPolicy",
    "HardTargetUpdate",
    "History",
    "LinearAnnealedPolicy",
    "MaxBoltzmannQPolicy",
    "ModelIntervalCheckpoint",
    "Processor",
    "SequentialMemory",
    "SoftTargetUpdate",
    "StateWindow",
    "TrainingCheckpoint",
    "__version__",
    "build_mlp",
]
