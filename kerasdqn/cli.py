"""The ``kerasdqn`` command: train, test and plot DQN agents on gymnasium environments.

``train`` takes the options of scripts/train_cartpole.py and works on any environment with a
Discrete action space; ``test`` builds the network from --hidden and --dueling, which must be
those used for training. The work is done by ``kerasdqn.training`` and ``kerasdqn.plotting``.
"""

from __future__ import annotations

import argparse
import sys

from kerasdqn import plotting, training
from kerasdqn.config import NETWORK_FIELDS, add_config_arguments, whole_number
from kerasdqn.envs import file_name
from kerasdqn.errors import UsageError

ENV_ID = "<ENV_ID>"  # stands for the environment id in default paths

EXAMPLES = """examples:
  kerasdqn train CartPole-v1                   # weights/dqn_CartPole-v1.h5, runs/CartPole-v1
  kerasdqn test CartPole-v1 --episodes 10      # greedy episodes with those weights
  kerasdqn test CartPole-v1 --record-video videos/
  kerasdqn plot runs/CartPole-v1 -o curve.png

test must be given the --hidden and --dueling used for training."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kerasdqn",
        description="Train, test and plot DQN agents on gymnasium environments.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXAMPLES,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    formatter = argparse.ArgumentDefaultsHelpFormatter

    train = commands.add_parser(
        "train", help="train an agent and save its weights", formatter_class=formatter
    )
    train.add_argument("env_id", metavar="ENV_ID", help="gymnasium environment id")
    training.add_run_arguments(train, logdir=f"runs/{ENV_ID}", weights=f"weights/dqn_{ENV_ID}.h5")
    add_config_arguments(train.add_argument_group("experiment"))
    train.set_defaults(run=run_train)

    test = commands.add_parser(
        "test", help="play greedy episodes with saved weights", formatter_class=formatter
    )
    test.add_argument("env_id", metavar="ENV_ID", help="gymnasium environment id")
    test.add_argument("--weights", default=f"weights/dqn_{ENV_ID}.h5", help="HDF5 weights file")
    test.add_argument("--episodes", type=whole_number, default=10, help="episodes to play")
    test.add_argument("--seed", type=whole_number, default=0, help="seed of the episodes")
    shown = test.add_mutually_exclusive_group()
    shown.add_argument(
        "--render", action="store_true", help="show the episodes in a window (needs a display)"
    )
    shown.add_argument(
        "--record-video",
        metavar="DIR",
        help="save each episode as an MP4 in DIR (needs the video extra: moviepy)",
    )
    training.add_threads_argument(test)
    network = test.add_argument_group("network (as trained)")
    add_config_arguments(network, only=NETWORK_FIELDS)
    test.set_defaults(run=run_test)

    plot = commands.add_parser(
        "plot", help="draw training curves from TensorBoard logs", formatter_class=formatter
    )
    plot.add_argument("logdir", metavar="LOGDIR", help="a run's TensorBoard log directory")
    plot.add_argument("-o", "--output", default="curve.png", help="image file to write")
    plot.add_argument(
        "--window", type=int, default=20, help="episodes in the reward's moving average"
    )
    plot.set_defaults(run=run_plot)
    return parser


def run_train(args: argparse.Namespace) -> None:
    args.logdir = args.logdir.replace(ENV_ID, file_name(args.env_id))
    args.weights = args.weights.replace(ENV_ID, file_name(args.env_id))
    training.configure_threads(args.threads)
    print(training.train(args.env_id, args).summary())
    print(f"Curves:      kerasdqn plot {args.logdir} -o curve.png")


def run_test(args: argparse.Namespace) -> None:
    args.weights = args.weights.replace(ENV_ID, file_name(args.env_id))
    training.configure_threads(args.threads)
    rewards = training.play(args.env_id, args, video_folder=args.record_video)
    print(training.mean_reward(rewards))
    if args.record_video:
        print(f"Videos:      {args.record_video}")


def run_plot(args: argparse.Namespace) -> None:
    try:
        output = plotting.plot_training(args.logdir, args.output, window=args.window)
    except (OSError, ValueError) as error:
        raise UsageError(error) from None
    print(f"Wrote {output}")


def main(argv: list[str] | None = None) -> None:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); exit with status 2 and a
    one-line message on bad input."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except UsageError as error:
        parser.exit(2, f"kerasdqn {args.command}: error: {error}\n")


if __name__ == "__main__":
    sys.exit(main())
