"""kerasdqn: keras-rl's DQN API on Keras 3, TensorFlow and gymnasium.

The public names below are imported when first used, so that ``import kerasdqn`` (and the
``kerasdqn`` command's ``--help``) does not wait for TensorFlow to start.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from kerasdqn._version import __version__

_HOMES = {
    "Agent": "kerasdqn.core",
    "BoltzmannQPolicy": "kerasdqn.policy",
    "Callback": "kerasdqn.callbacks",
    "CategoricalDQNAgent": "kerasdqn.agents.categorical",
    "DQNAgent": "kerasdqn.agents.dqn",
    "EpsGreedyQPolicy": "kerasdqn.policy",
    "EvalCallback": "kerasdqn.evaluation",
    "FileLogger": "kerasdqn.callbacks",
    "GreedyQPolicy": "kerasdqn.policy",
    "HardTargetUpdate": "kerasdqn.targets",
    "History": "kerasdqn.callbacks",
    "LinearAnnealedPolicy": "kerasdqn.policy",
    "MaxBoltzmannQPolicy": "kerasdqn.policy",
    "ModelIntervalCheckpoint": "kerasdqn.callbacks",
    "NoisyDense": "kerasdqn.layers",
    "PrioritizedMemory": "kerasdqn.memory",
    "Processor": "kerasdqn.core",
    "QuantileDQNAgent": "kerasdqn.agents.quantile",
    "SequentialMemory": "kerasdqn.memory",
    "SoftTargetUpdate": "kerasdqn.targets",
    "StateWindow": "kerasdqn.state",
    "TrainingCheckpoint": "kerasdqn.callbacks",
    "build_mlp": "kerasdqn.networks",
}

__all__ = sorted(_HOMES) + ["__version__"]

if TYPE_CHECKING:
    from kerasdqn.agents.categorical import CategoricalDQNAgent
    from kerasdqn.agents.dqn import DQNAgent
    from kerasdqn.agents.quantile import QuantileDQNAgent
    from kerasdqn.callbacks import (
        Callback,
        FileLogger,
        History,
        ModelIntervalCheckpoint,
        TrainingCheckpoint,
    )
    from kerasdqn.core import Agent, Processor
    from kerasdqn.evaluation import EvalCallback
    from kerasdqn.layers import NoisyDense
    from kerasdqn.memory import PrioritizedMemory, SequentialMemory
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


def __getattr__(name: str):
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'kerasdqn' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
