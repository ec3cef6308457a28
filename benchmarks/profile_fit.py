"""Where kerasdqn's ``fit`` spends its time: cProfile of training in the benchmark settings.

For each setting (default: tutorial and 64x64 from benchmarks/common.py), trains past the
warm-up once so the XLA compilation is out of the way, times ``--steps`` more steps without the
profiler, then profiles ``--steps`` more. Prints the top functions by own time and a breakdown
of each step in microseconds: the TensorFlow training call, NumPy replay sampling, acting,
storing, the environment, and the rest (the loop and callbacks). cProfile adds overhead to
every Python call, so the profiled step is slower than the unprofiled one; compare the parts
with each other.

    python benchmarks/profile_fit.py
    python benchmarks/profile_fit.py --settings rl-zoo --steps 20000
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time
import timeit
from dataclasses import replace

import common

# (label, [(file name ending, function name), ...]): the cumulative times of the functions
# are summed. None of them calls another of the list, so the parts do not overlap.
PARTS = [
    ("TensorFlow training call", [("kerasdqn/_compiled.py", "__call__")]),
    (
        "NumPy replay sampling and batch preparation",
        [("kerasdqn/memory.py", "sample_batch"), ("kerasdqn/agents/dqn.py", "_training_inputs")],
    ),
    ("copying weights for acting", [("kerasdqn/inference.py", "refresh")]),
    ("acting (forward: NumPy Q values, policy)", [("kerasdqn/agents/dqn.py", "forward")]),
    (
        "storing (memory.append)",
        [("kerasdqn/memory.py", "append"), ("kerasdqn/memory.py", "append_final")],
    ),
    (
        "environment (env.step and env.reset, with kerasdqn's checks)",
        [("kerasdqn/core.py", "_env_step"), ("kerasdqn/core.py", "_reset")],
    ),
]
# Shown under the TensorFlow training call, whose time they are part of.
TENSORFLOW_DETAILS = [
    ("of which converting the arrays to tensors", [("framework/constant_op.py", "constant")]),
    (
        "of which executing the compiled graph",
        [("~", "<built-in method tensorflow.python._pywrap_tfe.TFE_Py_Execute>")],
    ),
]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--settings",
        nargs="+",
        choices=list(common.SETTINGS),
        default=["tutorial", "64x64"],
        help="settings to profile",
    )
    parser.add_argument("--steps", type=int, default=10_000, help="steps timed, then profiled")
    parser.add_argument("--top", type=int, default=15, help="functions listed by own time")
    return parser.parse_args()


def profile_setting(agent, env, steps: int) -> tuple[float, pstats.Stats]:
    """Unprofiled microseconds per step of ``steps`` steps, and the profile of as many more."""
    start = time.perf_counter()
    agent.fit(env, nb_steps=steps, verbose=0)
    unprofiled = (time.perf_counter() - start) / steps * 1e6
    profiler = cProfile.Profile()
    profiler.enable()
    agent.fit(env, nb_steps=steps, verbose=0)
    profiler.disable()
    return unprofiled, pstats.Stats(profiler)


def piece_costs(agent, env, setting: common.Setting, calls: int) -> dict[str, float]:
    """Unprofiled microseconds per call of the pieces of a step, each timed alone."""
    needed = setting.batch_size * setting.gradient_steps
    batch = agent.memory.sample_batch(needed)
    unclipped = common.kerasdqn_agent(setting, seed=0, clip_gradients=False)
    observation, _ = env.reset()
    agent.training = True

    def env_step() -> None:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()

    pieces = {
        f"memory.sample_batch({needed})": lambda: agent.memory.sample_batch(needed),
        "agent.learn(batch): to tensors, compiled call, weights for acting": lambda: agent.learn(
            batch
        ),
        "the same without gradient clipping (not part of the step)": lambda: unclipped.learn(batch),
        "agent.forward(observation): NumPy Q values and policy": lambda: agent.forward(observation),
        "env.step (gymnasium CartPole-v1 with its wrappers)": env_step,
    }
    costs = {}
    for name, piece in pieces.items():
        learning = name.startswith(("agent.learn", "the same"))
        rounds = max(1, calls // 10) if learning else calls
        piece()  # the first call of a learn function compiles it
        costs[name] = min(timeit.repeat(piece, number=rounds, repeat=3)) / rounds * 1e6
    agent.training = False
    return costs


def print_pieces(costs: dict[str, float], setting: common.Setting, unprofiled: float) -> None:
    per_step = 1 / setting.train_freq
    print("\nUnprofiled cost of the pieces, timed alone:")
    print("| piece | us/call | calls/step | us/step |")
    print("|---|---:|---:|---:|")
    total = 0.0
    for name, cost in costs.items():
        share = per_step if name.startswith(("memory", "agent.learn", "the same")) else 1.0
        if not name.startswith("the same"):
            total += cost * share
        print(f"| `{name}` | {cost:.1f} | {share:g} | {cost * share:.1f} |")
    print(
        f"Together {total:.1f} us/step, against {unprofiled:.1f} us/step in fit: the rest is the "
        "loop, storing, callbacks, and the pieces slowing each other down when interleaved."
    )


def short_name(key: tuple) -> str:
    """``file:line(function)`` with the path cut to its last two parts."""
    filename, line, function = key
    if filename == "~":
        return function
    parts = filename.replace(os.sep, "/").split("/")
    return f"{'/'.join(parts[-2:])}:{line}({function})"


def print_top(stats: pstats.Stats, steps: int, top: int) -> None:
    rows = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)[:top]
    print(f"\nTop {top} functions by own time:")
    print("| own s | own us/step | cumulative us/step | calls | function |")
    print("|---:|---:|---:|---:|---|")
    for key, (_, calls, own, cumulative, _) in rows:
        print(
            f"| {own:.2f} | {own / steps * 1e6:.1f} | {cumulative / steps * 1e6:.1f} | "
            f"{calls} | `{short_name(key)}` |"
        )


def cumulative_time(stats: pstats.Stats, targets: list[tuple[str, str]]) -> float:
    """Summed cumulative seconds of the functions named by (file ending, function) pairs."""
    total = 0.0
    for (filename, _, function), (_, _, _, cumulative, _) in stats.stats.items():
        path = filename.replace(os.sep, "/")
        if any(path.endswith(end) and function == name for end, name in targets):
            total += cumulative
    return total


def print_breakdown(stats: pstats.Stats, steps: int, unprofiled: float) -> None:
    fit = cumulative_time(stats, [("kerasdqn/core.py", "fit")])
    print(f"\nPer step (profiled: {fit / steps * 1e6:.1f} us; unprofiled: {unprofiled:.1f} us):")
    print("| part | us/step | share |")
    print("|---|---:|---:|")
    accounted = 0.0
    for label, targets in PARTS:
        seconds = cumulative_time(stats, targets)
        accounted += seconds
        print_part(label, seconds, steps, fit)
        if label == PARTS[0][0]:
            for detail, detail_targets in TENSORFLOW_DETAILS:
                print_part(f"- {detail}", cumulative_time(stats, detail_targets), steps, fit)
    print_part("loop, callbacks, rest of learn and backward", fit - accounted, steps, fit)


def print_part(label: str, seconds: float, steps: int, total: float) -> None:
    print(f"| {label} | {seconds / steps * 1e6:.1f} | {seconds / total:.0%} |")


def main() -> None:
    args = parse_args()
    common.single_threaded_tensorflow()
    for name in args.settings:
        setting = replace(common.SETTINGS[name], steps=args.steps)
        print(f"\n## Setting {name}: {setting}")
        env = common.make_env(0)
        agent = common.kerasdqn_agent(setting, seed=0)
        # Past the warm-up and the first training calls, which compile the training function.
        agent.fit(env, nb_steps=setting.learning_starts + 2 * setting.train_freq + 1, verbose=0)
        unprofiled, stats = profile_setting(agent, env, args.steps)
        print_top(stats, args.steps, args.top)
        print_breakdown(stats, args.steps, unprofiled)
        print_pieces(piece_costs(agent, env, setting, args.steps), setting, unprofiled)


if __name__ == "__main__":
    main()
