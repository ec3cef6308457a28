"""What prioritized replay costs per minibatch: PrioritizedMemory against SequentialMemory.

For each memory size, fills a SequentialMemory and a PrioritizedMemory with the same episodes of
CartPole-size observations (4 float32), gives every prioritized transition a random TD error,
then times, per minibatch of --batch transitions, what one gradient step asks of the memory:
``sample_batch`` followed by ``update_priorities`` (a no-op for the uniform memory). Prints
microseconds per batch for both and their ratio, the cost of one ``append`` for both, and the
sum tree's share (``sample_indices`` and ``update_priorities`` alone). With --atari it adds a
100,000-entry memory of 84x84 uint8 frames stacked 4 deep (about 0.7 GB each).

    python benchmarks/bench_per_sampling.py              # 100k and 1M entries, about 1 minute
    python benchmarks/bench_per_sampling.py --sizes 100000 --batches 500 --atari
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from kerasdqn.memory import PrioritizedMemory, SequentialMemory

EPISODE_LENGTH = 200  # CartPole's typical episode once learning goes well


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="memory limits"
    )
    parser.add_argument("--batch", type=int, default=32, help="transitions per minibatch")
    parser.add_argument("--batches", type=int, default=2000, help="minibatches timed per memory")
    parser.add_argument("--repeats", type=int, default=3, help="timings per memory (best kept)")
    parser.add_argument("--atari", action="store_true", help="also 84x84 uint8 frames at 100k")
    return parser.parse_args()


def fill(memory, limit: int, observation: np.ndarray) -> float:
    """Write ``limit`` entries (episodes of EPISODE_LENGTH steps, each with its final
    observation), so the ring is exactly full; returns microseconds per write."""
    start = time.perf_counter()
    written = 0
    while written < limit:
        steps = min(EPISODE_LENGTH, limit - written - 1)
        for step in range(steps):
            memory.append(observation, step % 2, 1.0, terminal=step == steps - 1)
        memory.append_final(observation)
        written += steps + 1
    return (time.perf_counter() - start) / limit * 1e6


def randomize_priorities(memory: PrioritizedMemory, rng: np.random.Generator) -> None:
    """Random TD errors for every transition (the ring has not wrapped: serial = position)."""
    positions = memory.transition_positions()
    memory.update_priorities(positions, rng.standard_normal(len(positions)))


def time_batches(memory, args, rng: np.random.Generator) -> float:
    """Best microseconds per ``sample_batch`` + ``update_priorities`` over the repeats."""
    td_errors = rng.standard_normal(args.batch)
    best = np.inf
    for _ in range(args.repeats):
        start = time.perf_counter()
        for step in range(args.batches):
            batch = memory.sample_batch(args.batch, step=step)
            memory.update_priorities(batch.indices, td_errors)
        best = min(best, (time.perf_counter() - start) / args.batches * 1e6)
    return best


def time_tree(memory: PrioritizedMemory, args, rng: np.random.Generator) -> float:
    """Best microseconds per ``sample_indices`` + ``update_priorities`` (no batch built)."""
    td_errors = rng.standard_normal(args.batch)
    best = np.inf
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.batches):
            memory.update_priorities(memory.sample_indices(args.batch), td_errors)
        best = min(best, (time.perf_counter() - start) / args.batches * 1e6)
    return best


def measure(name: str, limit: int, observation: np.ndarray, args, window_length: int) -> None:
    rng = np.random.default_rng(0)
    uniform = SequentialMemory(limit, window_length=window_length)
    prioritized = PrioritizedMemory(limit, window_length=window_length, beta_steps=args.batches)
    uniform.rng, prioritized.rng = np.random.default_rng(1), np.random.default_rng(1)
    write_uniform = fill(uniform, limit, observation)
    write_prioritized = fill(prioritized, limit, observation)
    randomize_priorities(prioritized, rng)
    uniform_us = time_batches(uniform, args, rng)
    prioritized_us = time_batches(prioritized, args, rng)
    tree_us = time_tree(prioritized, args, rng)
    print(
        f"| {name} | {limit:,} | {uniform_us:.0f} | {prioritized_us:.0f} | "
        f"{prioritized_us / uniform_us:.1f} | {tree_us:.0f} | "
        f"{write_uniform:.1f} | {write_prioritized:.1f} |",
        flush=True,
    )


def main() -> None:
    args = parse_args()
    print(f"batch {args.batch}, {args.batches} batches per timing, best of {args.repeats}")
    print(
        "| observations | entries | uniform us/batch | prioritized us/batch | ratio "
        "| sum tree us/batch | uniform us/append | prioritized us/append |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for limit in args.sizes:
        measure("4 float32", limit, np.zeros(4, np.float32), args, window_length=1)
    if args.atari:
        frame = np.zeros((84, 84), np.uint8)
        measure("84x84 uint8, window 4", 100_000, frame, args, window_length=4)


if __name__ == "__main__":
    main()
