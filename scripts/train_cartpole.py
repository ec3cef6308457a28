"""Train DQN on gymnasium's CartPole-v1, or play saved weights with --test.

    python scripts/train_cartpole.py                      # train with the defaults below
    python scripts/train_cartpole.py --test --weights weights/dqn_cartpole.h5

Training shows a progress bar, writes TensorBoard logs under --logdir and the final weights
to --weights, then evaluates the greedy policy. The defaults were chosen by measurement
(benchmarks/README.md): they solve CartPole-v1 within 50,000 steps.

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
import numpy as np

from kerasdqn import DQNAgent, EpsGreedyQPolicy, LinearAnnealedPolicy, SequentialMemory
from kerasdqn.callbacks import TensorBoard
from kerasdqn.networks import build_mlp

ENV_ID = "CartPole-v1"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    run = parser.add_argument_group("run")
    run.add_argument("--steps", type=int, default=50_000, help="environment steps to train")
    run.add_argument("--seed", type=int, default=0, help="seed of networks, agent and env")
    run.add_argument("--logdir", default="runs/cartpole", help="TensorBoard log directory")
    run.add_argument(
        "--weights",
        default="weights/dqn_cartpole.h5",
        help="HDF5 weights file: written after training, read with --test",
    )
    run.add_argument(
        "--test",
        action="store_true",
        help="load --weights and play greedy episodes instead of training",
    )
    run.add_argument(
        "--episodes",
        type=int,
        default=100,
        help="greedy evaluation episodes (after training, or with --test)",
    )
    run.add_argument(
        "--render",
        action="store_true",
        help="with --test: show the episodes in a window (needs a display)",
    )
    run.add_argument(
        "--verbose",
        type=int,
        default=1,
        choices=[0, 1, 2],
        help="0 quiet, 1 progress bar, 2 one line per episode",
    )
    run.add_argument(
        "--threads",
        type=int,
        default=1,
        help="TensorFlow CPU threads (0: TensorFlow's default); small networks run fastest on one",
    )

    agent = parser.add_argument_group("agent")
    agent.add_argument(
        "--hidden", type=int, nargs="+", default=[256, 256], help="hidden layer widths"
    )
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
        "--dueling",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="dueling network head",
    )
    agent.add_argument(
        "--delta-clip", type=float, default=1.0, help="Huber loss threshold (inf: squared error)"
    )
    return parser.parse_args(argv)


def build_model(env: gym.Env, hidden: list[int] | tuple[int, ...] = (256, 256)) -> keras.Model:
    """The Q network: glorot-normal MLP from a window of one observation to 2 Q values."""
    return build_mlp((1,) + env.observation_space.shape, int(env.action_space.n), hidden)


def build_agent(
    env: gym.Env, args: argparse.Namespace | None = None, model: keras.Model | None = None
) -> DQNAgent:
    """The DQN agent with this script's hyperparameters (defaults unless ``args``)."""
    args = args or parse_args([])
    model = model or build_model(env, args.hidden)
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
    agent.compile(keras.optimizers.Adam(learning_rate=_learning_rate(args)))
    return agent


def _learning_rate(args: argparse.Namespace):
    """Linear decay from --lr to --lr-end over the run's gradient steps."""
    updates = max(1, (args.steps - args.warmup) // args.train_interval * args.gradient_steps)
    return keras.optimizers.schedules.PolynomialDecay(args.lr, updates, args.lr_end)


def evaluate(
    agent: DQNAgent, env: gym.Env, episodes: int, verbose: int = 0, visualize: bool = False
) -> list[float]:
    """Greedy episode rewards."""
    history = agent.test(env, nb_episodes=episodes, visualize=visualize, verbose=verbose)
    return history.history["episode_reward"]


def train(args: argparse.Namespace) -> None:
    env = gym.make(ENV_ID)
    env.reset(seed=args.seed)
    env.action_space.seed(args.seed)
    agent = build_agent(env, args)
    tensorboard = TensorBoard(log_dir=args.logdir)
    start = time.perf_counter()
    agent.fit(
        env, nb_steps=args.steps, callbacks=[tensorboard], verbose=args.verbose, log_interval=10_000
    )
    seconds = time.perf_counter() - start
    tensorboard.close()
    os.makedirs(os.path.dirname(os.path.abspath(args.weights)), exist_ok=True)
    agent.save_weights(args.weights, overwrite=True)

    eval_env = gym.make(ENV_ID)
    eval_env.reset(seed=args.seed + 1_000)
    rewards = evaluate(agent, eval_env, args.episodes)
    print(f"\nTrained {args.steps} steps in {seconds:.1f} s ({args.steps / seconds:.0f} steps/s).")
    print(f"Weights:     {args.weights}")
    print(f"TensorBoard: tensorboard --logdir {args.logdir}")
    print(
        f"Greedy evaluation over {len(rewards)} episodes: mean {np.mean(rewards):.1f}, "
        f"min {np.min(rewards):.0f}, max {np.max(rewards):.0f}"
    )


def play(args: argparse.Namespace) -> None:
    if not os.path.isfile(args.weights):
        sys.exit(
            f"error: --weights {args.weights!r}: no such file (train first, or point "
            "it at weights/dqn_cartpole.h5)"
        )
    render_mode = None
    if args.render:
        if (
            os.environ.get("DISPLAY")
            or os.environ.get("WAYLAND_DISPLAY")
            or sys.platform in ("darwin", "win32")
        ):
            render_mode = "human"
        else:
            print("--render: no display found (DISPLAY is not set); playing without a window.")
    env = gym.make(ENV_ID, render_mode=render_mode)
    env.reset(seed=args.seed)
    agent = build_agent(env, args)
    agent.load_weights(args.weights)
    rewards = evaluate(agent, env, args.episodes, verbose=1, visualize=render_mode is not None)
    print(f"Mean reward over {len(rewards)} episodes: {np.mean(rewards):.1f}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        import tensorflow as tf

        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    keras.utils.set_random_seed(args.seed)
    play(args) if args.test else train(args)


if __name__ == "__main__":
    main()
