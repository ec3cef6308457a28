"""``kerasdqn train ENV_ID --actors N``: the experiment of ``kerasdqn.training.train`` with the
acting spread over N Ray actors (Ape-X) and a prioritized replay."""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import gymnasium
import keras

from kerasdqn.agents.dqn import DQNAgent
from kerasdqn.callbacks import GameScoreLogger, TensorBoard
from kerasdqn.config import DQNConfig, config_from_flags
from kerasdqn.distributed._ray import init_ray
from kerasdqn.distributed.apex import ApeX
from kerasdqn.envs import make_env
from kerasdqn.errors import UsageError
from kerasdqn.training import (
    Outcome,
    TrainingResult,
    best_evaluation,
    build_agent,
    checked_build_agent,
    close_evaluation,
    evaluation_during_training,
    finish_run,
    prepare_weights_path,
)


def build_apex_agent(
    env: gymnasium.Env, config: DQNConfig | None = None, model: keras.Model | None = None
) -> DQNAgent:
    """``kerasdqn.training.build_agent``'s agent, always on a ``PrioritizedMemory`` (Ape-X's
    replay) of ``config.memory`` entries with ``config``'s ``priority_alpha`` and
    ``priority_beta``, the importance-sampling exponent annealed over ``config.steps``."""
    config = DQNConfig() if config is None else config
    config = replace(config, prioritized=True)
    return build_agent(env, config, model)


def train(env_id: str, args: argparse.Namespace) -> TrainingResult:
    """Train on ``env_id`` with ``args.actors`` Ray actors up to ``steps`` steps in all (with
    --resume, continuing --checkpoint-dir's run), on the Ray cluster at ``args.ray_address``
    (None: a Ray started here); save --weights, then play --episodes greedy episodes. Ctrl-C
    or SIGTERM stops at the next chunk: weights and checkpoint are written, the evaluation is
    skipped and the result says so (exit status 130 for Ctrl-C)."""
    if getattr(args, "n_envs", 1) > 1:
        raise UsageError(
            "--n-envs: with --actors, give each actor environments with --envs-per-actor"
        )
    config = config_from_flags(args)
    keras.utils.set_random_seed(config.seed)
    env = make_env(env_id, seed=config.seed)
    try:
        agent = checked_build_agent(env, config, build=build_apex_agent)
    finally:
        env.close()
    prepare_weights_path(args.weights)
    apex = ApeX(
        agent,
        env_id,
        nb_actors=args.actors,
        envs_per_actor=args.envs_per_actor,
        seed=config.seed,
        ordered=args.ordered,
    )
    if args.resume:
        _resume(apex, args)  # before Ray starts: a wrong checkpoint fails in seconds
    init_ray(args.ray_address)
    planned = max(0, config.steps - agent.step)
    tensorboard, outcome = TensorBoard(log_dir=args.logdir), Outcome()
    game_scores = GameScoreLogger(log_dir=args.logdir)  # Atari's unclipped scores; else idle
    evaluation = evaluation_during_training(env_id, config, args)
    callbacks = [game_scores, tensorboard, outcome] + ([evaluation] if evaluation else [])
    start_step, start = agent.step, time.perf_counter()
    try:
        if planned:
            apex.fit(
                planned,
                callbacks=callbacks,
                verbose=args.verbose,
                checkpoint_dir=args.checkpoint_dir,
                checkpoint_interval=args.checkpoint_interval,
            )
    finally:
        apex.close()
        tensorboard.close()
        game_scores.close()
        close_evaluation(evaluation)
    run = (agent.step - start_step, time.perf_counter() - start, planned, args.checkpoint_dir)
    return finish_run(agent, env_id, config, args, run, outcome, best_evaluation(evaluation))


def _resume(apex: ApeX, args: argparse.Namespace) -> None:
    if not args.checkpoint_dir:
        raise UsageError("--resume: set --checkpoint-dir to the run's checkpoint directory")
    try:
        apex.load_checkpoint(args.checkpoint_dir)
    except ValueError as error:
        raise UsageError(
            f"--resume: {error}; resume with the settings the run was started with"
        ) from None
