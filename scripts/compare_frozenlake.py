"""Compare five ways to solve slippery FrozenLake: planning, a counted model, Q-learning, DQN.

    python scripts/compare_frozenlake.py                  # 4x4 and 8x8, the budgets below
    python scripts/compare_frozenlake.py --maps 4x4 --budget-scale 0.1 --episodes 200

On gymnasium's FrozenLake-v1 (``is_slippery=True``, both maps with the 100-step time limit of
``FrozenLake-v1``), with gamma 0.99 for every method:

- value iteration and policy iteration on the true model (``env.unwrapped.P``): no samples;
- model-based: a ``TransitionModel`` counted from N uniformly random steps, then value
  iteration on the estimate;
- tabular Q-learning (``QLearningAgent``): alpha 0.05, epsilon-greedy with epsilon falling
  linearly from 1 to 0.05 over the first half of training, then 0.05;
- DQN on one-hot states (``kerasdqn.training.build_model`` one-hot encodes the state index):
  ``build_agent``'s tuned CartPole settings except where FrozenLake wants otherwise: two ReLU
  layers of 64, 1-step returns (n-step returns over epsilon-greedy moves on the slippery ice
  learned much worse in trial runs), epsilon 1 -> 0.04 over the first 20% of training; kept
  from the defaults: Adam 2.3e-3 falling linearly to 1e-5, batch 64, replay 100,000, 1,000
  warm-up steps, 128 gradient steps every 256 steps, hard target copy every 10 steps, Double
  DQN, Huber loss.

Each method's greedy policy (argmax of its Q values) then plays ``--episodes`` episodes on one
evaluation environment seeded alike for all methods; the table gives the share that reached
the goal, and beside it the exact chance of that policy reaching it within the time limit,
computed from the true model (``horizon_values``), which has no sampling noise. Samples are the
environment steps a method learned from; seconds are the wall time of learning or planning,
evaluation excluded. Writes ``<out>/frozenlake.csv`` and ``<out>/frozenlake.png``, and prints
the table in Markdown.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import csv
import time
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium
import keras
import matplotlib
import numpy as np
import tensorflow as tf

from kerasdqn.policy import EpsGreedyQPolicy, LinearAnnealedPolicy
from kerasdqn.tabular import (
    QLearningAgent,
    TransitionModel,
    evaluate_policy,
    horizon_values,
    policy_iteration,
    value_iteration,
)
from kerasdqn.training import build_agent

# Before TensorFlow runs anything: one thread, which small networks run fastest on.
tf.config.threading.set_inter_op_parallelism_threads(1)
tf.config.threading.set_intra_op_parallelism_threads(1)

GAMMA = 0.99
TIME_LIMIT = 100  # FrozenLake-v1's, for both maps
# Environment steps per map: (model-based random steps, Q-learning steps, DQN steps).
BUDGETS = {"4x4": (50_000, 200_000, 30_000), "8x8": (200_000, 1_000_000, 100_000)}
METHODS = ("value iteration", "policy iteration", "model-based", "Q-learning", "DQN")


@dataclass(frozen=True)
class Row:
    """One method's result on one map."""

    map_name: str
    method: str
    success_rate: float
    exact_success: float
    episodes: int
    samples: int
    seconds: float


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--maps", nargs="+", default=["4x4", "8x8"], choices=sorted(BUDGETS))
    parser.add_argument("--episodes", type=int, default=1000, help="greedy evaluation episodes")
    parser.add_argument(
        "--budget-scale",
        type=float,
        default=1.0,
        help="multiply every method's step budget (below 1 for a quick look)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every learner")
    parser.add_argument("--out", default="benchmarks", help="directory of the CSV and PNG")
    return parser.parse_args(argv)


def make_env(map_name: str, seed: int) -> gymnasium.Env:
    env = gymnasium.make("FrozenLake-v1", map_name=map_name)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    return env


def timed(learn: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    """``learn()``'s policy and the seconds it took."""
    start = time.perf_counter()
    policy = learn()
    return policy, time.perf_counter() - start


def model_based(env: gymnasium.Env, steps: int, seed: int) -> np.ndarray:
    model = TransitionModel.for_env(env)
    model.add_random_rollout(env, steps, seed=seed)
    return value_iteration(model, GAMMA).policy


def q_learning(env: gymnasium.Env, steps: int, seed: int) -> np.ndarray:
    schedule = LinearAnnealedPolicy(
        EpsGreedyQPolicy(), "eps", 1.0, 0.05, 0.0, nb_steps=max(1, steps // 2)
    )
    agent = QLearningAgent(
        int(env.observation_space.n),
        int(env.action_space.n),
        alpha=0.05,
        gamma=GAMMA,
        policy=schedule,
        seed=seed,
    )
    agent.fit(env, nb_steps=steps, verbose=0)
    return np.argmax(agent.q_table, axis=1)


def dqn(env: gymnasium.Env, steps: int, seed: int) -> np.ndarray:
    keras.utils.set_random_seed(seed)
    settings = argparse.Namespace(
        steps=steps, seed=seed, gamma=GAMMA, hidden=[64, 64], n_step=1, eps_fraction=0.2
    )
    agent = build_agent(env, settings)
    agent.fit(env, nb_steps=steps, verbose=0)
    states = np.arange(int(env.observation_space.n)).reshape(-1, 1)
    return np.argmax(agent.compute_batch_q_values(states), axis=1)


def compare(map_name: str, args: argparse.Namespace) -> list[Row]:
    """Every method on one map, each judged on the same evaluation episodes."""
    model_steps, q_steps, dqn_steps = (
        max(1, int(budget * args.budget_scale)) for budget in BUDGETS[map_name]
    )
    true_model = make_env(map_name, args.seed).unwrapped.P
    learners = {
        "value iteration": (0, lambda: value_iteration(true_model, GAMMA).policy),
        "policy iteration": (0, lambda: policy_iteration(true_model, GAMMA).policy),
        "model-based": (
            model_steps,
            lambda: model_based(make_env(map_name, args.seed), model_steps, args.seed),
        ),
        "Q-learning": (
            q_steps,
            lambda: q_learning(make_env(map_name, args.seed), q_steps, args.seed),
        ),
        "DQN": (dqn_steps, lambda: dqn(make_env(map_name, args.seed), dqn_steps, args.seed)),
    }
    rows = []
    for method in METHODS:
        samples, learn = learners[method]
        policy, seconds = timed(learn)
        evaluation = make_env(map_name, seed=10_000 + args.seed)
        rate = evaluate_policy(evaluation, policy, args.episodes, seed=10_000 + args.seed).mean()
        exact = horizon_values(true_model, policy, TIME_LIMIT)[0]
        rows.append(Row(map_name, method, rate, exact, args.episodes, samples, seconds))
        print(
            f"{map_name} {method:16s} {rate:6.1%}  exact {exact:6.1%}  {samples:>9,d} "
            f"samples  {seconds:7.2f} s",
            flush=True,
        )
    return rows


def markdown_table(rows: list[Row]) -> str:
    episodes = rows[0].episodes
    lines = [
        f"| map | method | success over {episodes:,} greedy episodes | exact success chance "
        "| samples (env steps) | seconds |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        samples = f"{row.samples:,}" if row.samples else "0 (true model)"
        lines.append(
            f"| {row.map_name} | {row.method} | {row.success_rate:.1%} | {row.exact_success:.1%} "
            f"| {samples} | {row.seconds:.2f} |"
        )
    return "\n".join(lines)


def write_csv(rows: list[Row], path: str) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["map", "method", "success_rate", "exact_success", "episodes", "samples", "seconds"]
        )
        for row in rows:
            writer.writerow(
                [
                    row.map_name,
                    row.method,
                    f"{row.success_rate:.4f}",
                    f"{row.exact_success:.4f}",
                    row.episodes,
                    row.samples,
                    f"{row.seconds:.3f}",
                ]
            )


def plot(rows: list[Row], path: str) -> None:
    """One panel per map: each method's success rate, the exact chance marked on its bar."""
    matplotlib.use("Agg")
    from matplotlib import pyplot

    maps = sorted({row.map_name for row in rows})
    figure, axes = pyplot.subplots(1, len(maps), figsize=(6.5 * len(maps), 4), squeeze=False)
    for axis, map_name in zip(axes[0], maps):
        chosen = [row for row in rows if row.map_name == map_name]
        positions = np.arange(len(chosen))
        axis.barh(positions, [row.success_rate for row in chosen], color="tab:blue")
        axis.scatter(
            [row.exact_success for row in chosen], positions, color="black", marker="|", s=300
        )
        for position, row in zip(positions, chosen):
            samples = f"{row.samples:,} steps" if row.samples else "true model"
            axis.text(
                row.success_rate + 0.01,
                position,
                f"{row.success_rate:.1%}: {samples}, {row.seconds:.1f} s",
                va="center",
                fontsize=8,
            )
        axis.set_yticks(positions, [row.method for row in chosen])
        axis.invert_yaxis()
        axis.set_xlim(0, 1)
        axis.set_xlabel(
            f"success over {chosen[0].episodes:,} greedy episodes (bars); exact chance (|)"
        )
        axis.set_title(f"FrozenLake {map_name}, slippery, {TIME_LIMIT}-step limit")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.episodes < 1 or args.budget_scale <= 0:
        raise SystemExit("--episodes must be at least 1 and --budget-scale above 0")
    os.makedirs(args.out, exist_ok=True)
    rows = [row for map_name in args.maps for row in compare(map_name, args)]
    write_csv(rows, os.path.join(args.out, "frozenlake.csv"))
    plot(rows, os.path.join(args.out, "frozenlake.png"))
    print()
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
