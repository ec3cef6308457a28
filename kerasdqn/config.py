"""The hyperparameters of a DQN experiment, in one typed place.

``DQNConfig`` is the single source of defaults: the ``kerasdqn`` command and
scripts/train_cartpole.py turn its fields into command-line flags (``batch_size`` becomes
``--batch-size``), and the benchmarks build their settings from it. The defaults were tuned by
measurement on CartPole-v1 (rl-zoo's hyperparameters; benchmarks/README.md): they solve it within
50,000 steps.

    config = DQNConfig(steps=20_000, hidden=(64, 64))
    agent = kerasdqn.training.build_agent(env, config)
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any


def _setting(default: Any, help: str, **flag: Any) -> Any:
    """A config field with its help text and the argparse options of its flag."""
    return field(default=default, metadata={"help": help, "flag": flag})


def whole_number(text: str) -> int:
    """An argparse type: a whole number, 0 or more."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value


@dataclass(frozen=True)
class DQNConfig:
    """What a DQN training run is made of: its length and seed, the network, the agent's
    hyperparameters, the exploration schedule and the optimizer."""

    steps: int = _setting(50_000, "environment steps to train", type=whole_number)
    seed: int = _setting(0, "seed of networks, agent and env", type=whole_number)
    hidden: tuple[int, ...] = _setting((256, 256), "hidden layer widths", type=int, nargs="+")
    dueling: bool = _setting(False, "dueling network head")
    lr: float = _setting(2.3e-3, "Adam learning rate at start", type=float)
    lr_end: float | None = _setting(
        1e-5, "learning rate reached linearly at the end of training", type=float
    )
    batch_size: int = _setting(64, "transitions per update", type=int)
    gamma: float = _setting(0.99, "discount factor", type=float)
    memory: int = _setting(100_000, "replay memory size", type=int)
    warmup: int = _setting(1_000, "steps of exploration before learning starts", type=int)
    train_interval: int = _setting(256, "learn every N steps", type=int)
    gradient_steps: int = _setting(128, "gradient steps each time the agent learns", type=int)
    n_step: int = _setting(5, "n-step returns", type=int)
    target_update: float = _setting(
        10, "below 1: soft update tau; 1 or more: hard copy every N steps", type=float
    )
    eps_start: float = _setting(1.0, "initial exploration", type=float)
    eps_end: float = _setting(0.04, "final exploration", type=float)
    eps_fraction: float = _setting(
        0.16, "fraction of --steps over which exploration anneals", type=float
    )
    double: bool = _setting(True, "Double DQN")
    delta_clip: float = _setting(1.0, "Huber loss threshold (inf: squared error)", type=float)
    adam_epsilon: float = _setting(1e-7, "Adam's epsilon (Keras's default)", type=float)
    max_grad_norm: float | None = _setting(
        None, "clip gradients to this global norm (default: no clipping)", type=float
    )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DQNConfig:
        """The config with the values ``args`` has for its fields, the defaults elsewhere."""
        values = {
            item.name: getattr(args, item.name)
            for item in dataclasses.fields(cls)
            if hasattr(args, item.name)
        }
        if "hidden" in values:
            values["hidden"] = tuple(values["hidden"])
        return cls(**values)


NETWORK_FIELDS = ("hidden", "dueling")  # what a weights file must be loaded into


def add_config_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    defaults: DQNConfig | None = None,
    only: tuple[str, ...] | None = None,
) -> None:
    """Declare a flag for each field of ``DQNConfig`` (or those in ``only``), with the values
    of ``defaults`` (default: ``DQNConfig()``) as their defaults."""
    defaults = DQNConfig() if defaults is None else defaults
    for item in dataclasses.fields(DQNConfig):
        if only is not None and item.name not in only:
            continue
        options = dict(item.metadata["flag"], default=getattr(defaults, item.name))
        if "type" not in options:
            options["action"] = argparse.BooleanOptionalAction
        flag = "--" + item.name.replace("_", "-")
        parser.add_argument(flag, dest=item.name, help=item.metadata["help"], **options)
