"""Training throughput of kerasdqn against Stable-Baselines3 on CartPole-v1, and kerasdqn's
acting speed and replay-memory cost.

For each setting in benchmarks/common.py (tutorial, 64x64, rl-zoo), runs kerasdqn's ``fit`` and
SB3's ``learn`` for the same number of environment steps, each in its own single-threaded
subprocess, in alternating pairs, and prints environment steps per second measured around the
training call alone (imports and set-up excluded; kerasdqn's one-off XLA compilation included).
Then it measures kerasdqn's warm-up phase (acting and storing only), ``test()`` and the bytes
the replay memory spends per transition.

    python benchmarks/bench_throughput.py               # 3 pairs per setting, about 5 minutes
    python benchmarks/bench_throughput.py --quick       # steps / 10, 1 pair: a smoke run
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

import common

GOAL_RATIO = 1.5
TRAINED_WEIGHTS = os.path.join(common.REPO_ROOT, "weights", "pretrained_cartpole.h5")
ACTING_NETWORKS = [(16,), (64, 64), (256, 256)]
# What one CartPole transition needs: float32 observation of 4, int32 action, float32
# reward, terminal and final flags of one byte each.
MINIMAL_BYTES = 4 * 4 + 4 + 4 + 1 + 1


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="kerasdqn/SB3 pairs per setting (and acting runs)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: a tenth of the steps, one repeat"
    )
    parser.add_argument(
        "--settings",
        nargs="+",
        choices=list(common.SETTINGS),
        default=list(common.SETTINGS),
        help="which settings to measure",
    )
    parser.add_argument(
        "--warmup-steps", type=int, default=50_000, help="steps of the warm-up-only fit"
    )
    parser.add_argument(
        "--test-episodes",
        type=int,
        default=100,
        help="greedy test() episodes with the trained weights (ten times as many, much "
        "shorter, with each untrained network)",
    )
    parser.add_argument(
        "--worker",
        choices=["kerasdqn", "sb3", "acting"],
        help="internal: run one measurement in this process and print it as JSON",
    )
    parser.add_argument("--setting", choices=list(common.SETTINGS), help="internal: with --worker")
    parser.add_argument("--steps", type=int, help="internal: with --worker, steps to train")
    parser.add_argument("--seed", type=int, default=0, help="internal: with --worker")
    return parser.parse_args()


# --------------------------------------------------------------------------- workers


def kerasdqn_worker(setting: common.Setting, seed: int) -> dict:
    """Steps/s of kerasdqn's ``fit`` for ``setting``."""
    common.single_threaded_tensorflow()
    env = common.make_env(seed)
    agent = common.kerasdqn_agent(setting, seed)
    start = time.perf_counter()
    agent.fit(env, nb_steps=setting.steps, verbose=0)
    seconds = time.perf_counter() - start
    return {"steps": agent.step, "seconds": seconds, "rate": agent.step / seconds}


def sb3_worker(setting: common.Setting, seed: int) -> dict:
    """Steps/s of SB3's ``learn`` for ``setting``, and its replay buffer's bytes per entry."""
    common.single_threaded_torch()
    model = common.sb3_model(setting, common.make_env(seed), seed)
    start = time.perf_counter()
    model.learn(total_timesteps=setting.steps)
    seconds = time.perf_counter() - start
    buffer = model.replay_buffer
    arrays = [buffer.observations, buffer.next_observations, buffer.actions]
    arrays += [buffer.rewards, buffer.dones, buffer.timeouts]
    return {
        "steps": model.num_timesteps,
        "seconds": seconds,
        "rate": model.num_timesteps / seconds,
        "bytes_per_entry": sum(array.nbytes for array in arrays) / buffer.buffer_size,
    }


def acting_worker(warmup_steps: int, test_episodes: int, seed: int) -> dict:
    """kerasdqn's warm-up and ``test()`` steps/s per network, and the replay memory's bytes."""
    common.single_threaded_tensorflow()
    result = {"warmup": {}, "test_untrained": {}}
    for hidden in ACTING_NETWORKS:
        # Warm-up only: learning would start after the run ends. Uniformly random actions,
        # as SB3 takes before learning_starts (kerasdqn still evaluates the network).
        setting = replace(
            common.SETTINGS["tutorial"],
            hidden=hidden,
            learning_starts=warmup_steps + 1,
            eps_start=1.0,
            eps_end=1.0,
        )
        agent = common.kerasdqn_agent(setting, seed)
        name = "x".join(map(str, hidden))
        result["warmup"][name] = timed_fit(agent, warmup_steps, seed)
        result["test_untrained"][name] = timed_test(agent, 10 * test_episodes, seed)
        if hidden == ACTING_NETWORKS[0]:
            result["memory"] = memory_cost(agent.memory)
    if os.path.isfile(TRAINED_WEIGHTS):
        agent = common.kerasdqn_agent(common.SETTINGS["rl-zoo"], seed)  # 256x256
        agent.load_weights(TRAINED_WEIGHTS)
        result["test_trained"] = timed_test(agent, test_episodes, seed)
    return result


def timed_fit(agent, steps: int, seed: int) -> float:
    """Steps/s of ``agent.fit`` for ``steps`` steps."""
    env = common.make_env(seed)
    start = time.perf_counter()
    agent.fit(env, nb_steps=steps, verbose=0)
    return steps / (time.perf_counter() - start)


def timed_test(agent, episodes: int, seed: int) -> dict:
    """Steps/s of ``agent.test`` over ``episodes`` greedy episodes, and their mean length."""
    env = common.make_env(seed + 1_000)
    start = time.perf_counter()
    history = agent.test(env, nb_episodes=episodes, visualize=False, verbose=0)
    seconds = time.perf_counter() - start
    steps = sum(history.history["nb_episode_steps"])
    return {"rate": steps / seconds, "mean_length": steps / episodes}


def memory_cost(memory) -> dict:
    """Bytes per entry (of its limit) and the entries and transitions a ``SequentialMemory``
    holds."""
    return {
        "bytes_per_entry": memory.nbytes / memory.limit,
        "limit": memory.limit,
        "entries": memory.nb_entries,
        "transitions": memory.nb_transitions,
    }


def run_as_worker(args: argparse.Namespace) -> dict:
    if args.worker == "acting":
        return acting_worker(args.warmup_steps, args.test_episodes, args.seed)
    setting = replace(common.SETTINGS[args.setting], steps=args.steps)
    worker = kerasdqn_worker if args.worker == "kerasdqn" else sb3_worker
    return worker(setting, args.seed)


# --------------------------------------------------------------------------- parent


def measure_setting(setting: common.Setting, repeats: int) -> dict:
    """``repeats`` kerasdqn/SB3 pairs, the order alternating within pairs (KS SK KS ...)."""
    rates = {"kerasdqn": [], "sb3": []}
    sb3_bytes = None
    for repeat in range(repeats):
        order = ["kerasdqn", "sb3"] if repeat % 2 == 0 else ["sb3", "kerasdqn"]
        for library in order:
            arguments = ["--worker", library, "--setting", setting.name]
            arguments += ["--steps", str(setting.steps), "--seed", str(repeat)]
            result = common.run_worker(__file__, arguments)
            rates[library].append(result["rate"])
            sb3_bytes = result.get("bytes_per_entry", sb3_bytes)
            print(f"  {setting.name:8s} {library:8s} run {repeat}: {result['rate']:7.0f} steps/s")
    ratios = [k / s for k, s in zip(rates["kerasdqn"], rates["sb3"])]
    return {
        "kerasdqn": common.median(rates["kerasdqn"]),
        "sb3": common.median(rates["sb3"]),
        "ratio": common.median(ratios),
        "ratios": ratios,
        "sb3_bytes_per_entry": sb3_bytes,
    }


def print_throughput(results: dict) -> None:
    print("\n| setting | kerasdqn steps/s | SB3 steps/s | ratio (per pair) | goal | met |")
    print("|---|---:|---:|---|---:|---|")
    for name, row in results.items():
        pairs = ", ".join(f"{ratio:.2f}" for ratio in row["ratios"])
        met = "yes" if row["ratio"] >= GOAL_RATIO else "no"
        print(
            f"| {name} | {row['kerasdqn']:,.0f} | {row['sb3']:,.0f} | "
            f"**{row['ratio']:.2f}x** ({pairs}) | {GOAL_RATIO}x | {met} |"
        )


def measure_acting(args: argparse.Namespace, repeats: int) -> list[dict]:
    arguments = ["--worker", "acting", "--warmup-steps", str(args.warmup_steps)]
    arguments += ["--test-episodes", str(args.test_episodes)]
    return [
        common.run_worker(__file__, arguments + ["--seed", str(repeat)])
        for repeat in range(repeats)
    ]


def print_acting(runs: list[dict]) -> None:
    print("\n| network | warm-up steps/s | test() steps/s, untrained (mean episode length) |")
    print("|---|---:|---:|")
    for name in runs[0]["warmup"]:
        warmup = common.median([run["warmup"][name] for run in runs])
        test = common.median([run["test_untrained"][name]["rate"] for run in runs])
        length = common.median([run["test_untrained"][name]["mean_length"] for run in runs])
        print(f"| {name} | {warmup:,.0f} | {test:,.0f} ({length:.1f}) |")
    if "test_trained" in runs[0]:
        test = common.median([run["test_trained"]["rate"] for run in runs])
        length = common.median([run["test_trained"]["mean_length"] for run in runs])
        print(f"\ntest() with {os.path.relpath(TRAINED_WEIGHTS, common.REPO_ROOT)} (256x256):")
        print(f"{test:,.0f} steps/s (mean episode length {length:.1f})")
    else:
        print(f"\n{TRAINED_WEIGHTS} not found: no test() run with trained weights")


def print_memory(memory: dict, sb3_bytes: float | None) -> None:
    per_transition = memory["bytes_per_entry"] * memory["entries"] / memory["transitions"]
    print(
        f"\nReplay memory (CartPole, random play, {memory['entries']} of {memory['limit']} "
        "entries used): "
        f"{memory['bytes_per_entry']:.1f} bytes per entry; "
        f"{memory['transitions']} transitions "
        f"({memory['entries'] / memory['transitions']:.3f} entries per transition: one final "
        f"observation per episode); {per_transition:.1f} bytes per transition = "
        f"{per_transition / MINIMAL_BYTES:.3f}x the {MINIMAL_BYTES} bytes of observation, "
        "action, reward and two flags."
    )
    if sb3_bytes is not None:
        print(f"SB3's ReplayBuffer: {sb3_bytes:.1f} bytes per transition.")


def main() -> None:
    args = parse_args()
    if args.worker:
        common.report(run_as_worker(args))
        return
    repeats = 1 if args.quick else args.repeats
    shrink = 10 if args.quick else 1
    if args.quick:
        args.warmup_steps //= shrink
        args.test_episodes //= shrink
    results = {}
    for name in args.settings:
        setting = common.SETTINGS[name]
        setting = replace(setting, steps=setting.steps // shrink)
        results[name] = measure_setting(setting, repeats)
    print_throughput(results)
    acting = measure_acting(args, repeats)
    print_acting(acting)
    sb3_bytes = next(
        (row["sb3_bytes_per_entry"] for row in results.values() if row["sb3_bytes_per_entry"]),
        None,
    )
    print_memory(acting[0]["memory"], sb3_bytes)


if __name__ == "__main__":
    main()
