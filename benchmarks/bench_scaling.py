"""How training throughput scales with network width and batch size, kerasdqn against SB3.

Trains DQN on CartPole-v1 with two hidden layers of --widths units at batch 32, and with
--batches at width 64: one gradient step per environment step, a hard target copy every 500
environment steps, epsilon 0.1, Adam 1e-3, learning from step 1,000 (otherwise as in
benchmarks/common.py). Each measurement runs in its own single-threaded subprocess, kerasdqn
and SB3 alternating: after the warm-up and a first stretch of training (which includes
kerasdqn's XLA compilation) it trains in chunks until --seconds have passed and reports
environment steps per second. Prints a markdown table and draws benchmarks/scaling.png.

    python benchmarks/bench_scaling.py                 # about 5 minutes
    python benchmarks/bench_scaling.py --seconds 1 --repeats 1 --widths 16 64 --batches 32
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

import common

LIBRARIES = ["kerasdqn", "sb3"]
LABELS = {"kerasdqn": "kerasdqn", "sb3": "Stable-Baselines3"}
BASE = replace(
    common.SETTINGS["tutorial"],
    name="scaling",
    learning_starts=1_000,
    target_update=500,
    eps_start=0.1,
    eps_end=0.1,
)
CHUNK = 500  # environment steps per timed training call


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--widths", type=int, nargs="+", default=[16, 64, 256, 1024], help="hidden widths"
    )
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 128, 512], help="batches")
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="least training time timed per measurement"
    )
    parser.add_argument("--repeats", type=int, default=2, help="measurements per library and point")
    parser.add_argument(
        "--png",
        default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "scaling.png"),
        help="where to draw the plot",
    )
    parser.add_argument("--worker", choices=LIBRARIES, help="internal: measure one point here")
    parser.add_argument("--width", type=int, help="internal: with --worker")
    parser.add_argument("--batch", type=int, help="internal: with --worker")
    return parser.parse_args()


# --------------------------------------------------------------------------- workers


def kerasdqn_trainer(setting: common.Setting):
    """A function training kerasdqn for a given number of steps."""
    common.single_threaded_tensorflow()
    env = common.make_env(0)
    agent = common.kerasdqn_agent(setting, seed=0)
    return lambda steps: agent.fit(env, nb_steps=steps, verbose=0)


def sb3_trainer(setting: common.Setting):
    """A function training SB3 for a given number of steps, continuing its counters."""
    common.single_threaded_torch()
    model = common.sb3_model(setting, common.make_env(0), seed=0)
    return lambda steps: model.learn(total_timesteps=steps, reset_num_timesteps=False)


def measure(library: str, width: int, batch: int, seconds: float) -> dict:
    """Steady-state steps/s: train past the warm-up, then in chunks for ``seconds``."""
    setting = replace(BASE, hidden=(width, width), batch_size=batch)
    train = (kerasdqn_trainer if library == "kerasdqn" else sb3_trainer)(setting)
    train(setting.learning_starts + CHUNK)
    steps = 0
    start = time.perf_counter()
    while steps == 0 or time.perf_counter() - start < seconds:
        train(CHUNK)
        steps += CHUNK
    return {"rate": steps / (time.perf_counter() - start)}


# --------------------------------------------------------------------------- parent


def points(args: argparse.Namespace) -> list[tuple[int, int]]:
    """(width, batch) pairs: the widths at batch 32, then the batches at width 64."""
    chosen = [(width, 32) for width in args.widths]
    chosen += [(64, batch) for batch in args.batches if (64, batch) not in chosen]
    return chosen


def measure_all(args: argparse.Namespace) -> dict[tuple[int, int], dict[str, float]]:
    """Per point: each library's median steps/s and the median of the per-pair ratios, the
    libraries alternating which goes first."""
    rates: dict[tuple[int, int], dict[str, list[float]]] = {}
    for turn, (width, batch) in enumerate(points(args) * args.repeats):
        order = LIBRARIES if turn % 2 == 0 else LIBRARIES[::-1]
        for library in order:
            arguments = ["--worker", library, "--width", str(width), "--batch", str(batch)]
            arguments += ["--seconds", str(args.seconds)]
            rate = common.run_worker(__file__, arguments)["rate"]
            rates.setdefault((width, batch), {}).setdefault(library, []).append(rate)
            print(f"  width {width:5d} batch {batch:4d} {library:8s}: {rate:7.0f} steps/s")
    results = {}
    for point, by_library in rates.items():
        ratios = [k / s for k, s in zip(by_library["kerasdqn"], by_library["sb3"])]
        results[point] = {library: common.median(values) for library, values in by_library.items()}
        results[point]["ratio"] = common.median(ratios)
    return results


def print_table(results: dict[tuple[int, int], dict[str, float]]) -> None:
    print("\n| hidden layers | batch | kerasdqn steps/s | SB3 steps/s | ratio |")
    print("|---|---:|---:|---:|---:|")
    for (width, batch), row in results.items():
        print(
            f"| {width}x{width} | {batch} | {row['kerasdqn']:,.0f} | {row['sb3']:,.0f} | "
            f"{row['ratio']:.2f}x |"
        )


def plot(results: dict[tuple[int, int], dict[str, float]], path: str) -> None:
    """Two panels, steps/s against width (batch 32) and against batch (width 64)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4.5), constrained_layout=True)
    panels = [
        (axes[0], 0, 32, "hidden layer width (two layers)", "Steps/s against width (batch 32)"),
        (axes[1], 1, 64, "batch size", "Steps/s against batch size (64x64 network)"),
    ]
    for axis, varying, fixed, xlabel, title in panels:
        chosen = sorted(point for point in results if point[1 - varying] == fixed)
        xs = [point[varying] for point in chosen]
        for library, marker in zip(LIBRARIES, ["o", "s"]):
            ys = [results[point][library] for point in chosen]
            axis.plot(xs, ys, marker=marker, label=LABELS[library])
        for x, point in zip(xs, chosen):
            axis.annotate(
                f"{results[point]['ratio']:.1f}x",
                (x, results[point]["kerasdqn"]),
                textcoords="offset points",
                xytext=(0, 8),
                ha="center",
                fontsize=9,
            )
        axis.set_xscale("log", base=2)
        axis.set_xticks(xs, [str(x) for x in xs])
        label_y_axis(axis, [results[point][library] for point in chosen for library in LIBRARIES])
        axis.set_xlabel(xlabel)
        axis.set_ylabel("environment steps per second")
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    figure.suptitle(
        "DQN training throughput on CartPole-v1: one thread, one gradient step per env step\n"
        "(numbers on the points: kerasdqn steps/s divided by SB3 steps/s, median of pairs)"
    )
    figure.savefig(path, dpi=110)
    print(f"\nPlot: {path}")


def label_y_axis(axis, values: list[float]) -> None:
    """A log axis with plain-number ticks at 1, 2 and 5 times powers of ten if the values
    span more than a factor 5, else a linear axis from 0; room above for the labels."""
    from matplotlib.ticker import NullFormatter

    low, high = min(values), max(values)
    if high / low <= 5:
        axis.set_ylim(0, high * 1.2)
        return
    axis.set_yscale("log")
    axis.set_ylim(low / 1.4, high * 1.6)
    ticks = [m * 10**e for e in range(6) for m in (1, 2, 5) if low / 1.4 <= m * 10**e <= high * 1.6]
    axis.set_yticks(ticks, [f"{tick:,}" for tick in ticks])
    axis.yaxis.set_minor_formatter(NullFormatter())


def main() -> None:
    args = parse_args()
    if args.worker:
        common.report(measure(args.worker, args.width, args.batch, args.seconds))
        return
    results = measure_all(args)
    print_table(results)
    plot(results, args.png)


if __name__ == "__main__":
    main()
