"""Experiments: build the agent a ``DQNConfig`` describes, train it, and play saved weights.

This is what the ``kerasdqn`` command runs (scripts/train_cartpole.py spells the same experiment
out step by step):

    parser = argparse.ArgumentParser()
    add_run_arguments(parser, logdir="runs/cartpole", weights="weights/dqn_cartpole.h5")
    add_config_arguments(parser)
    args = parser.parse_args()
    configure_threads(args.threads)
    print(train("CartPole-v1", args).summary())

Problems the user can fix (an unknown environment id, a missing weights file, a bad setting)
raise ``UsageError`` with a message saying what to do.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from dataclasses import dataclass

import gymnasium
import keras
import numpy as np
import tensorflow as tf

from kerasdqn.agents.dqn import DQNAgent
from kerasdqn.callbacks import TensorBoard
from kerasdqn.config import DQNConfig, whole_number
from kerasdqn.envs import display_available, file_name, make_env, record_video
from kerasdqn.errors import UsageError
from kerasdqn.memory import SequentialMemory
from kerasdqn.networks import build_model
from kerasdqn.policy import EpsGreedyQPolicy, LinearAnnealedPolicy, Policy

logger = logging.getLogger(__name__)

__all__ = [
    "TrainingResult",
    "UsageError",
    "add_run_arguments",
    "add_threads_argument",
    "build_agent",
    "build_model",
    "configure_threads",
    "evaluate",
    "learning_rate_schedule",
    "play",
    "train",
]

# --------------------------------------------------------------------------- arguments


def add_run_arguments(
    parser: argparse.ArgumentParser, logdir: str, weights: str
) -> argparse._ArgumentGroup:
    """Declare where a run writes and how it reports (group ``run``): --logdir, --weights,
    --episodes, --verbose, --threads. ``logdir`` and ``weights`` are the default paths.
    Returns the group, for the caller's own run options."""
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
        "--verbose",
        type=int,
        default=1,
        choices=[0, 1, 2],
        help="0 quiet, 1 progress bar, 2 one line per episode",
    )
    add_threads_argument(run)
    return run


def add_threads_argument(parser) -> None:
    """Declare --threads (see ``configure_threads``)."""
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="TensorFlow CPU threads (0: TensorFlow's default); small networks run fastest on one",
    )


def configure_threads(threads: int) -> None:
    """Run TensorFlow on ``threads`` CPU threads (0: TensorFlow's default).

    TensorFlow fixes its thread pools when it starts; if it has started with other settings,
    this logs a warning and leaves them.
    """
    if not threads:
        return
    threading = tf.config.threading
    current = (
        threading.get_inter_op_parallelism_threads(),
        threading.get_intra_op_parallelism_threads(),
    )
    if current == (threads, threads):
        return
    try:
        threading.set_inter_op_parallelism_threads(threads)
        threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:
        logger.warning("--threads %d: TensorFlow has already started; its threads stay", threads)


# --------------------------------------------------------------------------- agent


def build_agent(
    env: gymnasium.Env,
    config: DQNConfig | argparse.Namespace | None = None,
    model: keras.Model | None = None,
) -> DQNAgent:
    """The compiled DQN agent ``config`` describes (default ``DQNConfig()``; parsed arguments
    work too), on ``model`` or else ``build_model(env, config.hidden)``.

    Epsilon anneals linearly from ``eps_start`` to ``eps_end`` over the first ``eps_fraction``
    of ``steps``, and Adam's learning rate follows ``learning_rate_schedule``.
    """
    if config is None or isinstance(config, argparse.Namespace):
        config = DQNConfig.from_args(config or argparse.Namespace())
    if model is None:
        model = build_model(env, config.hidden)
    agent = DQNAgent(
        model=model,
        nb_actions=int(env.action_space.n),
        policy=exploration_policy(config),
        memory=SequentialMemory(limit=config.memory, window_length=1),
        gamma=config.gamma,
        batch_size=config.batch_size,
        nb_steps_warmup=config.warmup,
        train_interval=config.train_interval,
        gradient_steps=config.gradient_steps,
        n_step=config.n_step,
        target_model_update=config.target_update,
        delta_clip=config.delta_clip,
        enable_double_dqn=config.double,
        enable_dueling_network=config.dueling,
        seed=config.seed,
    )
    optimizer = keras.optimizers.Adam(
        learning_rate=learning_rate_schedule(config),
        epsilon=config.adam_epsilon,
        global_clipnorm=config.max_grad_norm,
    )
    agent.compile(optimizer)
    return agent


def exploration_policy(config: DQNConfig) -> Policy:
    """Epsilon-greedy, annealed from ``eps_start`` to ``eps_end`` unless they are equal."""
    if config.eps_start == config.eps_end:
        return EpsGreedyQPolicy(config.eps_start)
    return LinearAnnealedPolicy(
        EpsGreedyQPolicy(),
        attr="eps",
        value_max=config.eps_start,
        value_min=config.eps_end,
        value_test=0.0,
        nb_steps=max(1, int(config.eps_fraction * config.steps)),
    )


def learning_rate_schedule(config: DQNConfig) -> float | keras.optimizers.schedules.Schedule:
    """Linear decay from ``lr`` to ``lr_end`` over the run's gradient steps (``lr`` throughout
    if ``lr_end`` is None)."""
    if config.lr_end is None:
        return config.lr
    updates = (config.steps - config.warmup) // config.train_interval * config.gradient_steps
    return keras.optimizers.schedules.PolynomialDecay(config.lr, max(1, updates), config.lr_end)


# --------------------------------------------------------------------------- runs


def evaluate(
    agent: DQNAgent, env: gymnasium.Env, episodes: int, verbose: int = 0, visualize: bool = False
) -> list[float]:
    """Greedy episode rewards."""
    history = agent.test(env, nb_episodes=episodes, visualize=visualize, verbose=verbose)
    return history.history["episode_reward"]


@dataclass
class TrainingResult:
    """What ``train`` did: steps, wall-clock seconds, where it wrote, greedy rewards after."""

    steps: int
    seconds: float
    weights: str
    logdir: str
    rewards: list[float]

    def summary(self) -> str:
        """The report printed at the end of a run."""
        rate = self.steps / max(self.seconds, 1e-9)
        lines = [
            f"\nTrained {self.steps} steps in {self.seconds:.1f} s ({rate:.0f} steps/s).",
            f"Weights:     {self.weights}",
            f"TensorBoard: tensorboard --logdir {self.logdir}",
        ]
        if self.rewards:
            lines.append(
                f"Greedy evaluation over {len(self.rewards)} episodes: mean "
                f"{np.mean(self.rewards):.1f}, min {np.min(self.rewards):.0f}, "
                f"max {np.max(self.rewards):.0f}"
            )
        return "\n".join(lines)


def prepare_weights_path(path: str) -> None:
    """Refuse a directory as --weights, and create the directory the file goes in."""
    if os.path.isdir(path):
        raise UsageError(f"--weights {path!r} is a directory; expected a file path")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


def train(env_id: str, args: argparse.Namespace) -> TrainingResult:
    """Train on ``env_id`` with the config in ``args``, TensorBoard logs under --logdir; save
    the weights to --weights, then play --episodes greedy episodes on a fresh environment."""
    config = _config(args)
    keras.utils.set_random_seed(config.seed)
    env = make_env(env_id, seed=config.seed)
    agent = checked_build_agent(env, config)
    prepare_weights_path(args.weights)
    tensorboard = TensorBoard(log_dir=args.logdir)
    start = time.perf_counter()
    agent.fit(
        env,
        nb_steps=config.steps,
        callbacks=[tensorboard],
        verbose=args.verbose,
        log_interval=10_000,
    )
    seconds = time.perf_counter() - start
    tensorboard.close()
    env.close()
    agent.save_weights(args.weights, overwrite=True)

    eval_env = make_env(env_id, seed=config.seed + 1_000)
    rewards = evaluate(agent, eval_env, args.episodes)
    eval_env.close()
    return TrainingResult(config.steps, seconds, args.weights, args.logdir, rewards)


def mean_reward(rewards: list[float]) -> str:
    """The line that reports ``play``'s rewards."""
    if not rewards:
        return "No episodes played (--episodes 0)."
    return f"Mean reward over {len(rewards)} episodes: {np.mean(rewards):.1f}"


def play(env_id: str, args: argparse.Namespace, video_folder: str | None = None) -> list[float]:
    """Load --weights into the network --hidden and --dueling describe and play --episodes
    greedy episodes, printing each one's reward; return the rewards.

    With --render the episodes show in a window if there is a display (else a warning says
    so); with ``video_folder`` each is saved there as an MP4.
    """
    if not os.path.isfile(args.weights):
        raise UsageError(
            f"--weights {args.weights!r}: no such file (train first, or point --weights at a "
            "weights file)"
        )
    render_mode = _render_mode(args.render, video_folder)
    config = _config(args)
    keras.utils.set_random_seed(config.seed)
    env = make_env(env_id, seed=config.seed, render_mode=render_mode)
    try:
        if video_folder is not None:
            env = record_video(env, video_folder, name_prefix=file_name(env_id))
        agent = checked_build_agent(env, config)
        try:
            agent.load_weights(args.weights)
        except ValueError as error:
            raise UsageError(
                f"{error}; build the network with the --hidden and --dueling it was trained with"
            ) from None
        return evaluate(agent, env, args.episodes, verbose=1, visualize=render_mode == "human")
    finally:
        env.close()


def _render_mode(render: bool, video_folder: str | None) -> str | None:
    """``rgb_array`` to record videos, ``human`` to show a window (if there is a display)."""
    if video_folder is not None:
        return "rgb_array"
    if render and display_available():
        return "human"
    if render:
        logger.warning("--render: no display found (DISPLAY is not set); playing without a window.")
    return None


def _config(args: argparse.Namespace) -> DQNConfig:
    try:
        return DQNConfig.from_args(args)
    except (TypeError, ValueError) as error:
        raise UsageError(str(error)) from None


def checked_build_agent(env: gymnasium.Env, config: DQNConfig) -> DQNAgent:
    """``build_agent``, a bad setting (its ValueError, naming the argument) reported as a
    UsageError."""
    try:
        return build_agent(env, config)
    except ValueError as error:
        raise UsageError(str(error)) from None
