"""Experiments: build the agent a ``DQNConfig`` describes, train it, and play saved weights.

This is what the ``kerasdqn`` command runs (scripts/train_cartpole.py spells the same experiment
out step by step):

    parser = argparse.ArgumentParser()
    add_run_arguments(parser, logdir="runs/CartPole-v1", weights="weights/dqn_CartPole-v1.h5")
    add_config_arguments(parser)
    args = parser.parse_args()
    configure_threads(args.threads)
    print(train("CartPole-v1", args).summary())

Problems the user can fix (an unknown environment id, a missing weights file, a bad setting)
raise ``UsageError`` with a message saying what to do.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium
import keras
import numpy as np
import tensorflow as tf

from kerasdqn.agents.categorical import CategoricalDQNAgent
from kerasdqn.agents.dqn import DQNAgent
from kerasdqn.agents.quantile import QuantileDQNAgent
from kerasdqn.callbacks import Callback, GameScoreLogger, TensorBoard
from kerasdqn.config import (
    DQNConfig,
    add_run_arguments,
    add_threads_argument,
    config_from_flags,
    flag_for,
)
from kerasdqn.envs import (
    display_available,
    file_name,
    is_atari_id,
    make_atari,
    make_env,
    record_video,
)
from kerasdqn.errors import ArchitectureMismatch, UsageError
from kerasdqn.evaluation import EvalCallback
from kerasdqn.memory import PrioritizedMemory, SequentialMemory, check_fits_in_memory
from kerasdqn.networks import build_model, frame_stack
from kerasdqn.policy import EpsGreedyQPolicy, GreedyQPolicy, LinearAnnealedPolicy, Policy

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

# --------------------------------------------------------------------------- threads


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
    """The compiled agent ``config`` describes (default ``DQNConfig()``; parsed arguments
    work too), on ``model`` or else the network ``build_model`` makes for ``env``.

    Image observations (Atari frames: see ``kerasdqn.networks.is_image_space``) get the
    Nature CNN and a memory whose states stack the last ``FRAME_STACK`` (4) frames, each
    frame stored once as ``uint8``; other observations get the MLP and states of one
    observation. A ``model`` given must take states of that window length (and, for a
    distributional agent, output ``nb_actions * atoms`` or ``* quantiles`` numbers).

    The pieces config selects compose: ``distributional`` picks the agent class (``DQNAgent``,
    ``CategoricalDQNAgent`` or ``QuantileDQNAgent``), ``prioritized`` a ``PrioritizedMemory``
    whose beta anneals to 1 over ``steps``, ``noisy`` NoisyDense layers and greedy acting;
    with all six on (``kerasdqn.config.rainbow_config``) this is Rainbow.

    Epsilon anneals linearly from ``eps_start`` to ``eps_end`` over the first ``eps_fraction``
    of ``steps`` (noisy networks act greedily instead), and Adam's learning rate follows
    ``learning_rate_schedule``.
    """
    if config is None or isinstance(config, argparse.Namespace):
        config = DQNConfig.from_args(config or argparse.Namespace())
    _check_replay_fits(config, env)
    if model is None:
        model = build_model(
            env,
            config.hidden,
            outputs_per_action=outputs_per_action(config),
            noisy_sigma0=config.noisy_sigma0 if config.noisy else None,
        )
    cls, head_arguments = agent_class(config)
    agent = cls(
        model=model,
        nb_actions=int(env.action_space.n),
        policy=exploration_policy(config),
        memory=replay_memory(config, frame_stack(env)),
        gamma=config.gamma,
        batch_size=config.batch_size,
        nb_steps_warmup=config.warmup,
        train_interval=config.train_interval,
        gradient_steps=config.gradient_steps,
        n_step=config.n_step,
        target_model_update=config.target_update,
        enable_double_dqn=config.double,
        enable_dueling_network=config.dueling,
        seed=config.seed,
        jit_compile=config.xla,
        **head_arguments,
    )
    optimizer = keras.optimizers.Adam(
        learning_rate=learning_rate_schedule(config),
        epsilon=config.adam_epsilon,
        global_clipnorm=config.max_grad_norm,
    )
    agent.compile(optimizer)
    return agent


def _check_replay_fits(config: DQNConfig, env: gymnasium.Env) -> None:
    """Raise ``MemoryError`` naming ``memory`` before anything is built, if ``config.memory``
    of ``env``'s observations cannot fit in this machine's memory."""
    space = env.observation_space
    if space.shape is not None and space.dtype is not None:
        check_fits_in_memory(config.memory, space.shape, space.dtype, name="memory")


def agent_class(config: DQNConfig) -> tuple[type[DQNAgent], dict]:
    """The agent class ``config.distributional`` names, and its own arguments from ``config``
    (DQN's Huber threshold ``delta_clip``; C51's support; QR-DQN's quantiles)."""
    if config.distributional == "c51":
        support = {"nb_atoms": config.atoms, "v_min": config.v_min, "v_max": config.v_max}
        return CategoricalDQNAgent, support
    if config.distributional == "qr":
        return QuantileDQNAgent, {"nb_quantiles": config.quantiles}
    return DQNAgent, {"delta_clip": config.delta_clip}


def outputs_per_action(config: DQNConfig) -> int:
    """The numbers the network outputs per action: 1 Q value, or C51's atoms or QR-DQN's
    quantiles."""
    return {"none": 1, "c51": config.atoms, "qr": config.quantiles}[config.distributional]


def replay_memory(config: DQNConfig, window_length: int) -> SequentialMemory:
    """A uniform ``SequentialMemory``, or with ``prioritized`` a ``PrioritizedMemory`` whose
    beta anneals from ``priority_beta`` to 1 over the run's ``steps``."""
    if not config.prioritized:
        return SequentialMemory(limit=config.memory, window_length=window_length)
    return PrioritizedMemory(
        limit=config.memory,
        window_length=window_length,
        alpha=config.priority_alpha,
        beta=config.priority_beta,
        beta_steps=max(1, config.steps),
    )


def exploration_policy(config: DQNConfig) -> Policy:
    """Greedy for noisy networks (their noise explores); else epsilon-greedy, annealed from
    ``eps_start`` to ``eps_end`` unless they are equal."""
    if config.noisy:
        return GreedyQPolicy()
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
    if ``lr_end`` is None or equal to it)."""
    if config.lr_end is None or config.lr_end == config.lr:
        return config.lr
    updates = (config.steps - config.warmup) // config.train_interval * config.gradient_steps
    return keras.optimizers.schedules.PolynomialDecay(config.lr, max(1, updates), config.lr_end)


# --------------------------------------------------------------------------- runs


def evaluate(
    agent: DQNAgent, env: gymnasium.Env, episodes: int, verbose: int = 0, visualize: bool = False
) -> list[float]:
    """Greedy episode rewards."""
    history = agent.test(env, nb_episodes=episodes, visualize=visualize, verbose=verbose)
    return history.history.get("episode_reward", [])


@dataclass
class TrainingResult:
    """What ``train`` did: the steps trained (in this run) out of those asked for, wall-clock
    seconds, where it wrote, the greedy rewards after, the signal that interrupted it (None if
    it ran to the end) and the best evaluation during training (see ``best_evaluation``)."""

    steps: int
    seconds: float
    weights: str
    logdir: str
    rewards: list[float]
    planned_steps: int | None = None
    interrupted_by: str | None = None
    checkpoint: str | None = None
    best: dict | None = None

    @property
    def exit_code(self) -> int:
        """The conventional exit status: 128 + the signal's number if interrupted, else 0."""
        if self.interrupted_by is None:
            return 0
        return 128 + int(getattr(signal, self.interrupted_by))

    def summary(self) -> str:
        """The report printed at the end of a run."""
        rate = self.steps / max(self.seconds, 1e-9)
        if self.interrupted_by is None:
            head = f"\nTrained {self.steps} steps in {self.seconds:.1f} s ({rate:.0f} steps/s)."
        else:
            head = (
                f"\nInterrupted by {self.interrupted_by} after {self.steps} of "
                f"{self.planned_steps} steps ({self.seconds:.1f} s, {rate:.0f} steps/s); "
                "no greedy evaluation."
            )
        lines = [
            head,
            f"Weights:     {self.weights}",
            f"TensorBoard: tensorboard --logdir {self.logdir}",
        ]
        if self.checkpoint is not None:
            lines.append(f"Checkpoint:  {self.checkpoint} (continue with --resume)")
        if self.best is not None:
            lines.append(
                f"Best evaluation during training: mean {self.best['mean_reward']:.1f} at step "
                f"{self.best['step']} (weights: {self.best['weights']})"
            )
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


class Outcome(Callback):
    """Remembers how ``fit`` ended: the signal that interrupted it, if one did."""

    interrupted_by: str | None = None

    def on_train_end(self, logs=None):
        self.interrupted_by = (logs or {}).get("interrupted_by")


def train(env_id: str, args: argparse.Namespace) -> TrainingResult:
    """Train on ``env_id`` with the config in ``args`` up to ``steps`` steps in all (with
    --resume, continuing --checkpoint-dir's checkpoint), TensorBoard logs under --logdir; save
    the weights to --weights, then play --episodes greedy episodes on a fresh environment.
    Ctrl-C or SIGTERM stops at the next step: the weights and the checkpoint are still
    written, the evaluation is skipped, and the result says so."""
    config = config_from_flags(args)
    keras.utils.set_random_seed(config.seed)
    env = make_env(env_id, seed=config.seed)
    agent = checked_build_agent(env, config)
    env = training_envs(env, env_id, config.seed, getattr(args, "n_envs", 1))
    checkpoint = resume(agent, args)
    prepare_weights_path(args.weights)
    planned = max(0, config.steps - agent.step)
    tensorboard, outcome = TensorBoard(log_dir=args.logdir), Outcome()
    game_scores = GameScoreLogger(log_dir=args.logdir)  # Atari's unclipped scores; else idle
    evaluation = evaluation_during_training(env_id, config, args)
    start_step, start = agent.step, time.perf_counter()
    try:
        agent.fit(
            env,
            nb_steps=planned,
            callbacks=[game_scores, tensorboard, outcome] + ([evaluation] if evaluation else []),
            verbose=args.verbose,
            log_interval=10_000,
            **checkpoint_options(args),
        )
    finally:
        close_evaluation(evaluation)
        game_scores.close()
    seconds = time.perf_counter() - start
    tensorboard.close()
    env.close()
    run = (agent.step - start_step, seconds, planned, checkpoint)
    return finish_run(agent, env_id, config, args, run, outcome, best_evaluation(evaluation))


def finish_run(
    agent: DQNAgent,
    env_id: str,
    config: DQNConfig,
    args: argparse.Namespace,
    run: tuple[int, float, int, str | None],
    outcome: Outcome,
    best: dict | None = None,
) -> TrainingResult:
    """The end of a ``train`` command: save --weights, play the greedy evaluation unless
    the run was interrupted, and report. ``run``: the steps trained, their seconds, the
    steps planned and the checkpoint written (or None)."""
    steps, seconds, planned, checkpoint = run
    agent.save_weights(args.weights, overwrite=True)
    rewards = [] if outcome.interrupted_by else evaluate_on_new_env(agent, env_id, config, args)
    return TrainingResult(
        steps,
        seconds,
        args.weights,
        args.logdir,
        rewards,
        planned_steps=planned,
        interrupted_by=outcome.interrupted_by,
        checkpoint=checkpoint,
        best=best,
    )


def training_envs(
    env: gymnasium.Env,
    env_id: str,
    seed: int,
    n_envs: int,
    make: Callable[[int], gymnasium.Env] | None = None,
) -> gymnasium.Env:
    """``env`` itself for one environment; for ``n_envs`` > 1, a ``SyncVectorEnv`` of ``env``
    and ``n_envs - 1`` more made like it, environment ``i`` seeded with ``seed + i``: by
    ``make(seed)`` if given, else ``make_env(env_id, seed)``."""
    if n_envs == 1:
        return env
    if make is None:
        make = functools.partial(make_env, env_id)
    makers = [lambda: env] + [functools.partial(make, seed + index) for index in range(1, n_envs)]
    return gymnasium.vector.SyncVectorEnv(makers)


def best_weights_path(weights: str) -> str:
    """Where evaluation during training keeps the best weights: beside ``weights``, with
    ``_best`` before the extension (``weights/dqn_CartPole-v1_best.h5``)."""
    stem, extension = os.path.splitext(weights)
    return f"{stem}_best{extension or '.h5'}"


def evaluation_during_training(env_id: str, config: DQNConfig, args) -> EvalCallback | None:
    """The ``EvalCallback`` that --eval-interval and --eval-episodes ask for (None with
    --eval-interval 0): greedy episodes on a fresh ``env_id`` seeded apart from training's,
    scalars under --logdir, the best weights beside --weights."""
    interval = getattr(args, "eval_interval", 0)
    if not interval:
        return None
    return EvalCallback(
        make_evaluation_env(env_id, seed=config.seed + 2_000),
        eval_interval=interval,
        nb_episodes=getattr(args, "eval_episodes", 10),
        best_weights_path=best_weights_path(args.weights),
        verbose=1 if args.verbose else 0,
        log_dir=args.logdir,
    )


def make_evaluation_env(
    env_id: str, seed: int | None, render_mode: str | None = None
) -> gymnasium.Env:
    """``make_env``'s environment for scoring an agent: an Atari game's rewards are not
    clipped, so that greedy episodes, evaluations and the best weights count the real game
    scores, not the clipped rewards the agent trains on."""
    if is_atari_id(env_id):
        return make_atari(env_id, seed, clip_rewards=False, render_mode=render_mode)
    return make_env(env_id, seed, render_mode=render_mode)


def close_evaluation(evaluation: EvalCallback | None) -> None:
    """Close the evaluation's environment and event file."""
    if evaluation is not None:
        evaluation.close()
        evaluation.eval_env.close()


def best_evaluation(evaluation: EvalCallback | None) -> dict | None:
    """The evaluation with the highest mean reward, with the best-weights path (None if none
    was made)."""
    if evaluation is None or not evaluation.evaluations:
        return None
    best = max(evaluation.evaluations, key=lambda result: result["mean_reward"])
    return dict(best, weights=evaluation.best_weights_path)


def evaluate_on_new_env(agent: DQNAgent, env_id: str, config: DQNConfig, args) -> list[float]:
    """--episodes greedy episodes on a fresh ``env_id`` seeded apart from training's."""
    eval_env = make_evaluation_env(env_id, seed=config.seed + 1_000)
    try:
        return evaluate(agent, eval_env, args.episodes)
    finally:
        eval_env.close()


def checkpoint_options(args: argparse.Namespace) -> dict:
    """``fit``'s checkpoint arguments from --checkpoint-dir and --checkpoint-interval."""
    options = {}
    if getattr(args, "checkpoint_dir", None):
        options["checkpoint_dir"] = args.checkpoint_dir
        options["checkpoint_interval"] = args.checkpoint_interval
    elif getattr(args, "checkpoint_interval", None) is not None:
        raise UsageError("--checkpoint-interval: set --checkpoint-dir too")
    return options


def resume(agent: DQNAgent, args: argparse.Namespace) -> str | None:
    """Load --checkpoint-dir's checkpoint with --resume; return where checkpoints go."""
    directory = getattr(args, "checkpoint_dir", None)
    if not getattr(args, "resume", False):
        return None if directory is None else os.path.join(directory, "checkpoint.h5")
    if directory is None:
        raise UsageError("--resume: set --checkpoint-dir to the run's checkpoint directory")
    path = os.path.join(directory, "checkpoint.h5")
    if not os.path.isfile(path):
        raise UsageError(f"--resume: no checkpoint at {path!r} to resume from")
    try:
        agent.load_checkpoint(path)
    except ValueError as error:
        raise UsageError(
            f"--resume: {error}; resume with the settings the run was started with"
        ) from None
    return path


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
    config = config_from_flags(args)
    keras.utils.set_random_seed(config.seed)
    env = make_evaluation_env(env_id, seed=config.seed, render_mode=render_mode)
    try:
        if video_folder is not None:
            env = record_video(env, video_folder, name_prefix=file_name(env_id))
        agent = checked_build_agent(env, config)
        try:
            agent.load_weights(args.weights)
        except ValueError as error:
            raise UsageError(f"{error}{_architecture_hint(error, agent)}") from None
        return evaluate(agent, env, args.episodes, verbose=1, visualize=render_mode == "human")
    finally:
        env.close()


def _architecture_hint(error: ValueError, agent: DQNAgent) -> str:
    """For weights of another network, what must match; '' for other problems (a file that is
    not weights, or a damaged one), whose messages say what they are."""
    if not isinstance(error, ArchitectureMismatch):
        return ""
    return (
        "; the weights must come from the same network: the same --hidden and --dueling "
        f"flags, and an environment with the same observations and {agent.nb_actions} actions"
    )


def _render_mode(render: bool, video_folder: str | None) -> str | None:
    """``rgb_array`` to record videos, ``human`` to show a window (if there is a display)."""
    if video_folder is not None:
        return "rgb_array"
    if render and display_available():
        return "human"
    if render:
        logger.warning("--render: no display found (DISPLAY is not set); playing without a window.")
    return None


def checked_build_agent(
    env: gymnasium.Env, config: DQNConfig, build: Callable[..., DQNAgent] = build_agent
) -> DQNAgent:
    """``build(env, config)`` (``build_agent`` by default), a bad setting (its ValueError,
    naming the argument) or a replay memory too large for this machine (naming --memory)
    reported as a UsageError."""
    try:
        return build(env, config)
    except ValueError as error:
        raise UsageError(str(error)) from None
    except MemoryError as error:  # "memory: ..." names the config field
        name, _, problem = str(error).partition(": ")
        raise UsageError(f"{flag_for(name)}: {problem}") from None
