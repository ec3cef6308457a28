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

from kerasdqn._checks import check_bool, check_choice, check_float, check_int
from kerasdqn.errors import UsageError

#: The choices of ``DQNConfig.distributional``: expected values (DQN), C51, QR-DQN.
DISTRIBUTIONAL = ("none", "c51", "qr")


def _setting(default: Any, help: str, **flag: Any) -> Any:
    """A config field with its help text and the argparse options of its flag."""
    return field(default=default, metadata={"help": help, "flag": flag})


def whole_number(text: str) -> int:
    """An argparse type: a whole number, 0 or more."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value


def positive_number(text: str) -> int:
    """An argparse type: a whole number, 1 or more."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value}")
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
    prioritized: bool = _setting(False, "prioritized replay (Schaul et al., 2016, proportional)")
    priority_alpha: float = _setting(
        0.6, "prioritized replay: how strongly priorities shape sampling (0: uniform)", type=float
    )
    priority_beta: float = _setting(
        0.4,
        "prioritized replay: importance-sampling exponent, annealed to 1 over --steps",
        type=float,
    )
    noisy: bool = _setting(
        False, "noisy networks (NoisyDense layers); acting is greedy, the --eps-* go unused"
    )
    noisy_sigma0: float = _setting(0.5, "initial noise scale of the noisy layers", type=float)
    distributional: str = _setting(
        "none",
        "learn the return distribution: c51 (categorical) or qr (quantile regression)",
        type=str,
        choices=DISTRIBUTIONAL,
    )
    atoms: int = _setting(51, "c51: atoms of the support", type=int)
    v_min: float = _setting(-10.0, "c51: the lowest atom (the smallest return held)", type=float)
    v_max: float = _setting(10.0, "c51: the highest atom (the largest return held)", type=float)
    quantiles: int = _setting(200, "qr: quantiles per action", type=int)
    xla: bool = _setting(
        True,
        "compile the training step (and a CNN's acting) with XLA; which is faster for the "
        "Nature CNN depends on the CPU (benchmarks/bench_atari.py times both)",
    )

    def __post_init__(self) -> None:
        for name in ("steps", "seed", "warmup"):
            check_int(name, getattr(self, name), minimum=0)
        for name in ("batch_size", "train_interval", "gradient_steps", "n_step"):
            check_int(name, getattr(self, name), minimum=1)
        check_int("memory", self.memory, minimum=2)
        if not isinstance(self.hidden, tuple) or not self.hidden:
            raise TypeError(f"hidden: expected a tuple of layer widths, got {self.hidden!r}")
        for units in self.hidden:
            check_int("hidden", units, minimum=1)
        for name in ("lr", "target_update", "adam_epsilon"):
            check_float(name, getattr(self, name), 0.0, low_open=True)
        for name in ("lr_end", "max_grad_norm"):
            if getattr(self, name) is not None:
                check_float(name, getattr(self, name), 0.0, low_open=True)
        for name in ("gamma", "eps_start", "eps_end"):
            check_float(name, getattr(self, name), 0.0, 1.0)
        check_float("eps_fraction", self.eps_fraction, 0.0, 1.0, low_open=True)
        check_float("delta_clip", self.delta_clip, 0.0, low_open=True, allow_inf=True)
        check_bool("dueling", self.dueling)
        check_bool("double", self.double)
        check_bool("xla", self.xla)
        self._check_pieces()

    def _check_pieces(self) -> None:
        """Check the settings of prioritized replay, noisy networks and distributions."""
        check_bool("prioritized", self.prioritized)
        check_float("priority_alpha", self.priority_alpha, 0.0)
        check_float("priority_beta", self.priority_beta, 0.0, 1.0)
        check_bool("noisy", self.noisy)
        check_float("noisy_sigma0", self.noisy_sigma0, 0.0)
        check_choice("distributional", self.distributional, DISTRIBUTIONAL)
        check_int("atoms", self.atoms, minimum=2)
        check_int("quantiles", self.quantiles, minimum=1)
        check_float("v_min", self.v_min)
        check_float("v_max", self.v_max)
        if self.v_max <= self.v_min:
            raise ValueError(
                f"v_max: expected a number above v_min = {self.v_min}, got {self.v_max}"
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


# What a weights file must be loaded into.
NETWORK_FIELDS = ("hidden", "dueling", "noisy", "distributional", "atoms", "quantiles")

#: The pieces of Rainbow (Hessel et al., 2018) as ``DQNConfig`` fields, with the paper's
#: prioritized-replay exponents (alpha 0.5, beta 0.4 -> 1), 3-step returns and C51's 51 atoms.
RAINBOW = {
    "double": True,
    "dueling": True,
    "prioritized": True,
    "priority_alpha": 0.5,
    "priority_beta": 0.4,
    "n_step": 3,
    "noisy": True,
    "distributional": "c51",
    "atoms": 51,
}


def rainbow_config(**changes: Any) -> DQNConfig:
    """Rainbow: ``DQNConfig``'s defaults with all six pieces on (``RAINBOW``: Double DQN, a
    dueling head, prioritized replay, 3-step returns, noisy networks and C51), then
    ``changes`` (any field, e.g. ``steps``, ``v_min``, ``v_max``). For Atari, the ``rainbow``
    preset has Dopamine's hyperparameters.

        agent = build_agent(env, rainbow_config(steps=50_000, v_min=0.0, v_max=100.0))
    """
    return DQNConfig(**{**RAINBOW, **changes})


def flag_for(field_name: str) -> str:
    """The command-line flag of a config field: ``batch_size`` -> ``--batch-size``."""
    return "--" + field_name.replace("_", "-")


def config_from_flags(args: argparse.Namespace) -> DQNConfig:
    """The config in parsed command-line ``args``; a bad value raises ``UsageError`` naming
    its flag (``--batch-size: expected an integer >= 1, got 0``)."""
    try:
        return DQNConfig.from_args(args)
    except (TypeError, ValueError) as error:
        name, _, problem = str(error).partition(": ")
        raise UsageError(f"{flag_for(name)}: {problem}" if problem else str(error)) from None


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
        parser.add_argument(
            flag_for(item.name), dest=item.name, help=item.metadata["help"], **options
        )


def add_run_arguments(
    parser: argparse.ArgumentParser, logdir: str, weights: str
) -> argparse._ArgumentGroup:
    """Declare where a training run writes and how it reports (group ``run``): --logdir,
    --weights, --episodes, --eval-interval, --eval-episodes, --verbose, --threads,
    --checkpoint-dir, --checkpoint-interval, --resume, --n-envs. ``logdir`` and ``weights`` are the
    default paths. Returns the group, for the caller's own run options."""
    run = parser.add_argument_group("run")
    run.add_argument("--logdir", default=logdir, help="TensorBoard log directory")
    run.add_argument("--weights", default=weights, help="HDF5 weights file written after training")
    run.add_argument(
        "--episodes",
        type=whole_number,
        default=100,
        help="greedy evaluation episodes after training",
    )
    run.add_argument(
        "--eval-interval",
        type=whole_number,
        default=10_000,
        help="steps between greedy evaluations on a separate environment during training, "
        "logged as eval/mean_reward; the best weights go beside --weights as *_best.h5 "
        "(0: no evaluation during training)",
    )
    run.add_argument(
        "--eval-episodes",
        type=positive_number,
        default=10,
        help="greedy episodes per evaluation during training",
    )
    run.add_argument(
        "--verbose",
        type=int,
        default=1,
        choices=[0, 1, 2],
        help="0 quiet, 1 progress bar, 2 one line per episode",
    )
    run.add_argument(
        "--checkpoint-dir",
        help="write the whole training state to DIR/checkpoint.h5 (at the end, on Ctrl-C, and "
        "every --checkpoint-interval steps)",
    )
    run.add_argument(
        "--checkpoint-interval",
        type=positive_number,
        help="steps between checkpoints (needs --checkpoint-dir)",
    )
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue from --checkpoint-dir's checkpoint up to a total of --steps steps",
    )
    add_n_envs_argument(run)
    add_threads_argument(run)
    return run


def add_n_envs_argument(parser) -> None:
    """Declare --n-envs (see ``kerasdqn.training.training_envs``)."""
    parser.add_argument(
        "--n-envs",
        type=positive_number,
        default=1,
        help="environments acting at once (a gymnasium SyncVectorEnv; --steps counts the "
        "steps of all of them)",
    )


def add_threads_argument(parser) -> None:
    """Declare --threads (see ``kerasdqn.training.configure_threads``)."""
    parser.add_argument(
        "--threads",
        type=whole_number,
        default=1,
        help="TensorFlow CPU threads (0: TensorFlow's default); small networks run fastest on one",
    )
