"""Soak test: does memory stay flat over a long training run?

Trains DQN on CartPole-v1 for --steps steps (default 200,000) with the TensorBoard callback,
a History and the verbose=2 logger's bookkeeping, recording the process's resident memory
every --every steps. Once the replay memory is full (--memory steps), resident memory should
stay flat: no growth from retraced tf.functions, summaries or histories.

    python benchmarks/bench_soak.py                     # prints the table and the verdict
    python benchmarks/bench_soak.py --png soak.png      # and plots the curve
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gymnasium as gym  # noqa: E402
import keras  # noqa: E402
import psutil  # noqa: E402
import tensorflow as tf  # noqa: E402

from kerasdqn import DQNAgent, EpsGreedyQPolicy, SequentialMemory, build_mlp  # noqa: E402
from kerasdqn.callbacks import Callback, TensorBoard  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200_000, help="training steps")
    parser.add_argument("--every", type=int, default=10_000, help="steps between readings")
    parser.add_argument("--memory", type=int, default=50_000, help="replay memory limit")
    parser.add_argument(
        "--tolerance-mb",
        type=float,
        default=20.0,
        help="largest growth after the memory is full that counts as flat",
    )
    parser.add_argument("--png", help="also plot the curve to this PNG file")
    return parser.parse_args()


class ResidentMemory(Callback):
    """Records (step, resident MiB) every ``every`` agent steps."""

    def __init__(self, every: int) -> None:
        super().__init__()
        self.every = every
        self.readings: list[tuple[int, float]] = []
        self.process = psutil.Process()

    def on_train_begin(self, logs=None):
        self._read(self.model.step)

    def on_step_end(self, step, logs=None):
        if (self.model.step + 1) % self.every == 0:
            self._read(self.model.step + 1)

    def _read(self, step: int) -> None:
        self.readings.append((step, self.process.memory_info().rss / 2**20))


def main() -> None:
    args = parse_args()
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    keras.utils.set_random_seed(0)
    env = gym.make("CartPole-v1")
    env.reset(seed=0)
    agent = DQNAgent(
        build_mlp((1, 4), 2, (64, 64)),
        nb_actions=2,
        policy=EpsGreedyQPolicy(0.1),
        memory=SequentialMemory(args.memory),
        nb_steps_warmup=1000,
        target_model_update=0.01,
        seed=0,
    )
    agent.compile(keras.optimizers.Adam(1e-3), metrics=["mae"])
    meter = ResidentMemory(args.every)
    with tempfile.TemporaryDirectory() as log_dir:
        tensorboard = TensorBoard(log_dir, update_freq=100)
        start = time.perf_counter()
        history = agent.fit(env, nb_steps=args.steps, verbose=0, callbacks=[tensorboard, meter])
        seconds = time.perf_counter() - start
        tensorboard.close()
    report(args, meter.readings, seconds, len(history.episode))


def report(args, readings, seconds: float, episodes: int) -> None:
    print(
        f"{args.steps} steps, {episodes} episodes, {seconds:.0f} s "
        f"({args.steps / seconds:.0f} steps/s)\n"
    )
    print("| step | resident MiB |\n|---:|---:|")
    for step, mib in readings:
        print(f"| {step} | {mib:.1f} |")
    full = [mib for step, mib in readings if step >= args.memory]
    growth = max(full) - min(full)
    verdict = "flat" if growth <= args.tolerance_mb else "GROWING"
    print(
        f"\nAfter the replay memory filled (step {args.memory}): min {min(full):.1f} MiB, "
        f"max {max(full):.1f} MiB, spread {growth:.1f} MiB -> {verdict} "
        f"(tolerance {args.tolerance_mb} MiB)"
    )
    if args.png:
        plot(readings, args.memory, args.png)


def plot(readings, memory_limit: int, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, mib = zip(*readings)
    figure, axes = plt.subplots(figsize=(7, 3.5))
    axes.plot(steps, mib, marker="o")
    axes.axvline(memory_limit, color="gray", linestyle="--", label="replay memory full")
    axes.set(
        xlabel="environment steps",
        ylabel="resident memory (MiB)",
        title="kerasdqn soak test: CartPole-v1, memory over a long run",
    )
    axes.set_ylim(bottom=0)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
