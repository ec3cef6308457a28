"""Train DQN on gymnasium's CartPole-v1, or play saved weights with --test.

    python scripts/train_cartpole.py                      # train with the defaults
    python scripts/train_cartpole.py --test --weights weights/dqn_cartpole.h5
    python scripts/train_cartpole.py --test --weights weights/pretrained_cartpole.h5

Training shows a progress bar, writes TensorBoard logs under --logdir and the final weights
to --weights, then evaluates the greedy policy. The hyperparameters and their defaults are the
fields of ``kerasdqn.config.DQNConfig`` (chosen by measurement, benchmarks/README.md: they solve
CartPole-v1 within 50,000 steps); ``kerasdqn train CartPole-v1`` runs the same experiment.

Other code can rebuild the exact network whose weights this script saves:

    from train_cartpole import build_model      # run from scripts/
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gymnasium as gym
import keras

from kerasdqn import DQNAgent, networks, training
from kerasdqn.callbacks import TensorBoard
from kerasdqn.config import DQNConfig, add_config_arguments
from kerasdqn.envs import make_env
from kerasdqn.errors import UsageError

ENV_ID = "CartPole-v1"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    run = training.add_run_arguments(
        parser, logdir="runs/cartpole", weights="weights/dqn_cartpole.h5"
    )
    run.add_argument(
        "--test",
        action="store_true",
        help="load --weights and play --episodes greedy episodes instead of training",
    )
    run.add_argument(
        "--render",
        action="store_true",
        help="with --test: show the episodes in a window (needs a display)",
    )
    add_config_arguments(parser.add_argument_group("experiment"))
    return parser.parse_args(argv)


def build_model(env: gym.Env, hidden: list[int] | tuple[int, ...] = (256, 256)) -> keras.Model:
    """The Q network: glorot-normal MLP from a window of one observation to 2 Q values."""
    return networks.build_model(env, hidden)


def build_agent(
    env: gym.Env, config: DQNConfig | None = None, model: keras.Model | None = None
) -> DQNAgent:
    """The compiled DQN agent with this script's hyperparameters (defaults unless ``config``)."""
    return training.build_agent(env, config or DQNConfig(), model)


def train(args: argparse.Namespace) -> None:
    config = DQNConfig.from_args(args)
    keras.utils.set_random_seed(config.seed)
    env = make_env(ENV_ID, seed=config.seed)
    agent = build_agent(env, config, build_model(env, config.hidden))
    training.prepare_weights_path(args.weights)

    tensorboard = TensorBoard(log_dir=args.logdir)
    start = time.perf_counter()
    agent.fit(env, nb_steps=config.steps, callbacks=[tensorboard], verbose=args.verbose)
    seconds = time.perf_counter() - start
    tensorboard.close()
    agent.save_weights(args.weights, overwrite=True)

    eval_env = make_env(ENV_ID, seed=config.seed + 1_000)
    rewards = training.evaluate(agent, eval_env, args.episodes)
    print(
        training.TrainingResult(config.steps, seconds, args.weights, args.logdir, rewards).summary()
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    training.configure_threads(args.threads)
    try:
        if args.test:
            print(training.mean_reward(training.play(ENV_ID, args)))
        else:
            train(args)
    except UsageError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
