"""Experiments: the hyperparameters, networks and train/test runs behind the ``kerasdqn``
command and ``scripts/train_cartpole.py``.

    parser = argparse.ArgumentParser()
    add_run_arguments(parser, logdir="runs/cartpole", weights="weights/dqn_cartpole.h5")
    add_agent_arguments(parser)
    args = parser.parse_args()
    configure_threads(args.threads)
    print(train("CartPole-v1", args).summary())

The agent's defaults were tuned by measurement on CartPole-v1 (benchmarks/README.md): they solve
it within 50,000 steps. Problems the user can fix (an unknown environment id, a missing weights
file, a missing optional package) raise ``UsageError`` with a message saying what to do.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import gymnasium
import keras
import numpy as np
import tensorflow as tf

from kerasdqn._checks import check_int
from kerasdqn.agents.dqn import DQNAgent
from kerasdqn.callbacks import TensorBoard
from kerasdqn.memory import SequentialMemory
from kerasdqn.networks import build_mlp, glorot_dense
from kerasdqn.policy import EpsGreedyQPolicy, LinearAnnealedPolicy

logger = logging.getLogger(__name__)

DEFAULT_STEPS = 50_000


class UsageError(Exception):
    """A problem with the experiment's input that the user can fix; the message says how."""


# --------------------------------------------------------------------------- arguments


def add_run_arguments(
    parser: argparse.ArgumentParser, logdir: str, weights: str
) -> argparse._ArgumentGroup:
    """Declare how a training run goes (group ``run``): --steps, --seed, --logdir, --weights,
    --episodes, --verbose, --threads. ``logdir`` and ``weights`` are the default paths.
    Returns the group, for the caller's own run options."""
    run = parser.add_argument_group("run")
    run.add_argument(
        "--steps", type=count, default=DEFAULT_STEPS, help="environment steps to train"
    )
    run.add_argument("--seed", type=count, default=0, help="seed of networks, agent and env")
    run.add_argument("--logdir", default=logdir, help="TensorBoard log directory")
    run.add_argument("--weights", default=weights, help="HDF5 weights file written after training")
    run.add_argument(
        "--episodes", type=count, default=100, help="greedy evaluation episodes after training"
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


def count(text: str) -> int:
    """An argparse type: a whole number, 0 or more."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value


def add_threads_argument(parser) -> None:
    """Declare --threads (see ``configure_threads``)."""
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="TensorFlow CPU threads (0: TensorFlow's default); small networks run fastest on one",
    )


def add_network_arguments(parser) -> None:
    """Declare what fixes the network's architecture, --hidden and --dueling: a weights file
    loads only into a network built with the values it was trained with."""
    parser.add_argument(
        "--hidden", type=int, nargs="+", default=[256, 256], help="hidden layer widths"
    )
    parser.add_argument(
        "--dueling",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="dueling network head",
    )


def add_agent_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """Declare the agent's hyperparameters (group ``agent``), with the tuned defaults."""
    agent = parser.add_argument_group("agent")
    add_network_arguments(agent)
    agent.add_argument("--lr", type=float, default=2.3e-3, help="Adam learning rate at start")
    agent.add_argument(
        "--lr-end",
        type=float,
        default=1e-5,
        help="learning rate reached linearly at the end of training",
    )
    agent.add_argument("--batch-size", type=int, default=64, help="transitions per update")
    agent.add_argument("--gamma", type=float, default=0.99, help="discount factor")
    agent.add_argument("--memory", type=int, default=100_000, help="replay memory size")
    agent.add_argument(
        "--warmup", type=int, default=1_000, help="steps of exploration before learning starts"
    )
    agent.add_argument("--train-interval", type=int, default=256, help="learn every N steps")
    agent.add_argument(
        "--gradient-steps", type=int, default=128, help="gradient steps each time the agent learns"
    )
    agent.add_argument("--n-step", type=int, default=5, help="n-step returns")
    agent.add_argument(
        "--target-update",
        type=float,
        default=10,
        help="below 1: soft update tau; 1 or more: hard copy every N steps",
    )
    agent.add_argument("--eps-start", type=float, default=1.0, help="initial exploration")
    agent.add_argument("--eps-end", type=float, default=0.04, help="final exploration")
    agent.add_argument(
        "--eps-fraction",
        type=float,
        default=0.16,
        help="fraction of --steps over which exploration anneals",
    )
    agent.add_argument(
        "--double", action=argparse.BooleanOptionalAction, default=True, help="Double DQN"
    )
    agent.add_argument(
        "--delta-clip", type=float, default=1.0, help="Huber loss threshold (inf: squared error)"
    )
    return agent


def agent_settings(args: argparse.Namespace | None = None) -> argparse.Namespace:
    """Everything ``build_agent`` reads: the agent arguments, --steps and --seed, taken from
    ``args`` where it has them and at their defaults otherwise."""
    parser = argparse.ArgumentParser(add_help=False)
    add_agent_arguments(parser)
    settings = parser.parse_args([])
    settings.steps, settings.seed = DEFAULT_STEPS, 0
    settings.__dict__.update(vars(args or argparse.Namespace()))
    return settings


# --------------------------------------------------------------------------- agent


def build_model(env: gymnasium.Env, hidden: Sequence[int] = (256, 256)) -> keras.Model:
    """The Q network: a glorot-normal MLP from a window of one observation to one Q value per
    action, ``hidden`` giving the widths of its ReLU layers.

    A Box observation enters as it is (flattened). A Discrete observation (a state index, as
    in FrozenLake or Taxi) is one-hot encoded first by a ``CategoryEncoding`` layer, which has
    no weights: the weights file holds the Dense layers only.
    """
    nb_actions = int(env.action_space.n)
    space = env.observation_space
    if isinstance(space, gymnasium.spaces.Box):
        return build_mlp((1,) + space.shape, nb_actions, hidden)
    if isinstance(space, gymnasium.spaces.Discrete) and int(space.start) == 0:
        hidden = [check_int("hidden", units, minimum=1) for units in hidden]
        layers = [
            keras.Input(shape=(1,)),
            keras.layers.CategoryEncoding(int(space.n), output_mode="one_hot", name="one_hot"),
        ]
        layers += [glorot_dense(units, "relu") for units in hidden]
        layers.append(glorot_dense(nb_actions, name="q_values"))
        return keras.Sequential(layers)
    raise ValueError(
        f"env: build_model handles Box observations and Discrete ones counted from 0, got "
        f"{space!r}; build the network yourself"
    )


def build_agent(
    env: gymnasium.Env, args: argparse.Namespace | None = None, model: keras.Model | None = None
) -> DQNAgent:
    """The compiled DQN agent with the hyperparameters in ``args`` (see ``agent_settings``),
    on ``model`` or else ``build_model(env, args.hidden)``: epsilon anneals linearly from
    --eps-start to --eps-end over the first --eps-fraction of --steps, and Adam's learning rate
    follows ``learning_rate_schedule``."""
    args = agent_settings(args)
    if model is None:
        model = build_model(env, args.hidden)
    policy = LinearAnnealedPolicy(
        EpsGreedyQPolicy(),
        attr="eps",
        value_max=args.eps_start,
        value_min=args.eps_end,
        value_test=0.0,
        nb_steps=max(1, int(args.eps_fraction * args.steps)),
    )
    agent = DQNAgent(
        model=model,
        nb_actions=int(env.action_space.n),
        policy=policy,
        memory=SequentialMemory(limit=args.memory, window_length=1),
        gamma=args.gamma,
        batch_size=args.batch_size,
        nb_steps_warmup=args.warmup,
        train_interval=args.train_interval,
        gradient_steps=args.gradient_steps,
        n_step=args.n_step,
        target_model_update=args.target_update,
        delta_clip=args.delta_clip,
        enable_double_dqn=args.double,
        enable_dueling_network=args.dueling,
        seed=args.seed,
    )
    agent.compile(keras.optimizers.Adam(learning_rate=learning_rate_schedule(args)))
    return agent


def learning_rate_schedule(args: argparse.Namespace) -> keras.optimizers.schedules.PolynomialDecay:
    """Linear decay from --lr to --lr-end over the run's gradient steps."""
    updates = max(1, (args.steps - args.warmup) // args.train_interval * args.gradient_steps)
    return keras.optimizers.schedules.PolynomialDecay(args.lr, updates, args.lr_end)


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


# --------------------------------------------------------------------------- environments


def make_env(env_id: str, seed: int, render_mode: str | None = None) -> gymnasium.Env:
    """The gymnasium environment ``env_id``, reset with ``seed``, its action space seeded too.

    Raises ``UsageError`` for an unknown id, an action space DQN cannot use, or a render mode
    the environment does not offer.
    """
    try:
        env = gymnasium.make(env_id)
        if render_mode is not None:
            _check_render_mode(env, env_id, render_mode)
            env.close()
            env = gymnasium.make(env_id, render_mode=render_mode)
    except gymnasium.error.Error as error:
        raise UsageError(f"cannot make environment {env_id!r}: {error}") from None
    if not isinstance(env.action_space, gymnasium.spaces.Discrete):
        env.close()
        raise UsageError(
            f"{env_id} has the action space {env.action_space}; DQN needs a Discrete one"
        )
    env.reset(seed=seed)
    env.action_space.seed(seed)
    return env


def _check_render_mode(env: gymnasium.Env, env_id: str, render_mode: str) -> None:
    modes = env.metadata.get("render_modes", [])
    if render_mode not in modes:
        env.close()
        raise UsageError(
            f"{env_id} cannot render {render_mode!r} (it offers {list(modes) or 'no modes'})"
        )


def display_available() -> bool:
    """Whether a window can be opened (a display on Linux; always on macOS and Windows)."""
    return bool(
        os.environ.get("DISPLAY")
        or os.environ.get("WAYLAND_DISPLAY")
        or sys.platform in ("darwin", "win32")
    )


def record_video(env: gymnasium.Env, video_folder: str, name_prefix: str) -> gymnasium.Env:
    """``env`` (made with ``render_mode='rgb_array'``) wrapped to save every episode as
    ``<video_folder>/<name_prefix>-episode-<i>.mp4``; the last one is written on ``close``.

    Raises ``UsageError`` if moviepy (the ``video`` extra) or the environment's renderer is
    missing.
    """
    try:
        import moviepy  # noqa: F401  (RecordVideo writes MP4s with it)
    except ImportError:
        raise UsageError(
            "recording videos needs moviepy: pip install -e '.[video]' (in a clone of "
            "kerasdqn) or pip install moviepy"
        ) from None
    try:
        frame = env.render()
    except gymnasium.error.DependencyNotInstalled as error:
        raise UsageError(f"the environment cannot render frames: {error}") from None
    if not isinstance(frame, np.ndarray):
        raise UsageError(f"the environment renders {type(frame).__name__}, not video frames")
    return gymnasium.wrappers.RecordVideo(
        env, video_folder, episode_trigger=lambda episode: True, name_prefix=name_prefix
    )


def file_name(env_id: str) -> str:
    """``env_id`` usable as a file name: namespaced ids such as ``ALE/Pong-v5`` lose the slash."""
    return env_id.replace("/", "_")


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


def train(env_id: str, args: argparse.Namespace) -> TrainingResult:
    """Train on ``env_id`` for --steps steps with TensorBoard logs under --logdir, save the
    weights to --weights, then play --episodes greedy episodes on a fresh environment."""
    keras.utils.set_random_seed(args.seed)
    env = make_env(env_id, seed=args.seed)
    agent = _build_agent(env, args)
    if os.path.isdir(args.weights):
        raise UsageError(f"--weights {args.weights!r} is a directory; expected a file path")
    os.makedirs(os.path.dirname(os.path.abspath(args.weights)), exist_ok=True)
    tensorboard = TensorBoard(log_dir=args.logdir)
    start = time.perf_counter()
    agent.fit(
        env, nb_steps=args.steps, callbacks=[tensorboard], verbose=args.verbose, log_interval=10_000
    )
    seconds = time.perf_counter() - start
    tensorboard.close()
    env.close()
    agent.save_weights(args.weights, overwrite=True)

    eval_env = make_env(env_id, seed=args.seed + 1_000)
    rewards = evaluate(agent, eval_env, args.episodes)
    eval_env.close()
    return TrainingResult(args.steps, seconds, args.weights, args.logdir, rewards)


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
    render_mode = None
    if video_folder is not None:
        render_mode = "rgb_array"
    elif args.render and display_available():
        render_mode = "human"
    elif args.render:
        logger.warning("--render: no display found (DISPLAY is not set); playing without a window.")
    keras.utils.set_random_seed(args.seed)
    env = make_env(env_id, seed=args.seed, render_mode=render_mode)
    try:
        if video_folder is not None:
            env = record_video(env, video_folder, name_prefix=file_name(env_id))
        agent = _build_agent(env, args)
        try:
            agent.load_weights(args.weights)
        except ValueError as error:
            raise UsageError(
                f"{error}; build the network with the --hidden and --dueling it was trained with"
            ) from None
        return evaluate(agent, env, args.episodes, verbose=1, visualize=render_mode == "human")
    finally:
        env.close()


def _build_agent(env: gymnasium.Env, args: argparse.Namespace) -> DQNAgent:
    """``build_agent``, a bad setting (its ValueError, naming the argument) reported as a
    UsageError."""
    try:
        return build_agent(env, args)
    except ValueError as error:
        raise UsageError(str(error)) from None
