"""Train DQN on gymnasium's CartPole-v1, or play saved weights with --test.

    python scripts/train_cartpole.py                      # train with the defaults
    python scripts/train_cartpole.py --checkpoint-dir checkpoints   # Ctrl-C, then --resume
    python scripts/train_cartpole.py --test --weights weights/dqn_CartPole-v1.h5
    python scripts/train_cartpole.py --test --weights weights/pretrained_cartpole.h5

Training shows its progress, evaluates the greedy policy on a separate environment every
--eval-interval steps (keeping the best weights beside --weights as *_best.h5), writes TensorBoard
logs under --logdir and the final weights to --weights, then evaluates the greedy policy. The
hyperparameters and their defaults are the fields of ``kerasdqn.config.DQNConfig`` (chosen by
measurement, benchmarks/README.md: they solve CartPole-v1 within 50,000 steps); ``kerasdqn train
CartPole-v1`` runs the same experiment and writes to the same places.

Other code can rebuild the exact network whose weights this script saves:

    from train_cartpole import build_model      # run from scripts/
"""

from __future__ import annotations

import argparse
import sys
import time

import gymnasium as gym

from kerasdqn.cli import quiet_tensorflow
from kerasdqn.config import DQNConfig, add_config_arguments, add_run_arguments, config_from_flags
from kerasdqn.errors import UsageError

ENV_ID = "CartPole-v1"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    run = add_run_arguments(parser, logdir=f"runs/{ENV_ID}", weights=f"weights/dqn_{ENV_ID}.h5")
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
    run.add_argument("--tf-log", action="store_true", help="show TensorFlow's own log messages")
    add_config_arguments(parser.add_argument_group("experiment"))
    return parser.parse_args(argv)


def build_model(env: gym.Env, hidden: list[int] | tuple[int, ...] = (256, 256)):
    """The Q network: glorot-normal MLP from a window of one observation to 2 Q values."""
    from kerasdqn import networks

    return networks.build_model(env, hidden)


def build_agent(env: gym.Env, config: DQNConfig | None = None, model=None):
    """The compiled DQN agent with this script's hyperparameters (defaults unless ``config``)."""
    from kerasdqn import training

    return training.build_agent(env, config or DQNConfig(), model)


def train(args: argparse.Namespace) -> int:
    """The experiment; returns the exit status (130 or 143 if Ctrl-C or SIGTERM stopped it)."""
    import keras

    from kerasdqn import training
    from kerasdqn.callbacks import TensorBoard
    from kerasdqn.envs import make_env

    config = config_from_flags(args)
    keras.utils.set_random_seed(config.seed)
    env = make_env(ENV_ID, seed=config.seed)
    agent = build_agent(env, config, build_model(env, config.hidden))
    env = training.training_envs(env, ENV_ID, config.seed, args.n_envs)  # --n-envs: a VectorEnv
    checkpoint = training.resume(agent, args)  # with --resume, continue where it stopped
    training.prepare_weights_path(args.weights)

    tensorboard, outcome = TensorBoard(log_dir=args.logdir), training.Outcome()
    evaluation = training.evaluation_during_training(ENV_ID, config, args)  # every --eval-interval
    planned, first_step, start = max(0, config.steps - agent.step), agent.step, time.perf_counter()
    try:
        agent.fit(
            env,
            nb_steps=planned,
            callbacks=[tensorboard, outcome] + ([evaluation] if evaluation else []),
            verbose=args.verbose,
            **training.checkpoint_options(args),
        )
    finally:
        training.close_evaluation(evaluation)
    seconds = time.perf_counter() - start
    tensorboard.close()
    env.close()
    agent.save_weights(args.weights, overwrite=True)

    interrupted = outcome.interrupted_by is not None
    rewards = [] if interrupted else training.evaluate_on_new_env(agent, ENV_ID, config, args)
    result = training.TrainingResult(
        agent.step - first_step,
        seconds,
        args.weights,
        args.logdir,
        rewards,
        planned_steps=planned,
        interrupted_by=outcome.interrupted_by,
        checkpoint=checkpoint,
        best=training.best_evaluation(evaluation),
    )
    print(result.summary())
    return result.exit_code


def main(argv: list[str] | None = None) -> int:
    """Run the script; return the exit status."""
    args = parse_args(argv)
    if not args.tf_log:
        quiet_tensorflow()
    from kerasdqn import training

    training.configure_threads(args.threads)
    try:
        if args.test:
            print(training.mean_reward(training.play(ENV_ID, args)))
            return 0
        return train(args)
    except UsageError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    sys.exit(main())
