"""Train DQN on gymnasium's CartPole-v1, or play saved weights with --test.

    python scripts/train_cartpole.py                      # train with the defaults below
    python scripts/train_cartpole.py --test --weights weights/dqn_cartpole.h5
    python scripts/train_cartpole.py --test --weights weights/pretrained_cartpole.h5

Training shows a progress bar, writes TensorBoard logs under --logdir and the final weights
to --weights, then evaluates the greedy policy. The defaults were chosen by measurement
(benchmarks/README.md): they solve CartPole-v1 within 50,000 steps. The hyperparameters and
the runs themselves live in kerasdqn/training.py, shared with the ``kerasdqn`` command
(``kerasdqn train CartPole-v1`` runs the same experiment).

Other code can rebuild the exact network whose weights this script saves:

    from train_cartpole import build_model      # run from scripts/
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gymnasium as gym
import keras

from kerasdqn import DQNAgent, training

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
    training.add_agent_arguments(parser)
    return parser.parse_args(argv)


def build_model(env: gym.Env, hidden: list[int] | tuple[int, ...] = (256, 256)) -> keras.Model:
    """The Q network: glorot-normal MLP from a window of one observation to 2 Q values."""
    return training.build_model(env, hidden)


def build_agent(
    env: gym.Env, args: argparse.Namespace | None = None, model: keras.Model | None = None
) -> DQNAgent:
    """The DQN agent with this script's hyperparameters (defaults unless ``args``)."""
    return training.build_agent(env, args or parse_args([]), model)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    training.configure_threads(args.threads)
    try:
        if args.test:
            print(training.mean_reward(training.play(ENV_ID, args)))
        else:
            print(training.train(ENV_ID, args).summary())
    except training.UsageError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
