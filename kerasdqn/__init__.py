"""kerasdqn: keras-rl's DQN API on Keras 3, TensorFlow and gymnasium."""

from kerasdqn.agents.dqn import DQNAgent
from kerasdqn.callbacks import (
    Callback,
    FileLogger,
    HardTargetUpdate,
    History,
    ModelIntervalCheckpoint,
    SoftTargetUpdate,
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

__version__ = "0.1.0"

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
    "build_mlp",
]
