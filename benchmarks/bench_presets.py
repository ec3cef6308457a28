"""What each shipped preset reaches: ``kerasdqn train ENV_ID`` with its preset, per seed.

Runs the command as a user would (a fresh process per run, the preset's step budget, one
TensorFlow thread), reads the greedy evaluation it prints (100 episodes on an evaluation
environment seeded apart from training), and prints a table and writes benchmarks/presets.csv.

    python benchmarks/bench_presets.py                          # every preset, seeds 0 and 1
    python benchmarks/bench_presets.py Acrobot-v1 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULT = re.compile(r"Greedy evaluation over (\d+) episodes: mean (-?[\d.]+)")


def parse_args() -> argparse.Namespace:
    from kerasdqn.presets import available_presets

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    # Atari presets train for millions of steps: name them to run them.
    small = [env_id for env_id in available_presets() if not env_id.startswith("ALE/")]
    parser.add_argument("env_ids", nargs="*", default=small, help="presets to run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds per preset")
    parser.add_argument("--csv", default=os.path.join(HERE, "presets.csv"), help="CSV to write")
    return parser.parse_args()


def run(env_id: str, seed: int, directory: str) -> tuple[float, float]:
    """One training run's greedy mean reward and wall seconds."""
    command = [sys.executable, "-m", "kerasdqn.cli", "train", env_id, "--seed", str(seed)]
    command += ["--verbose", "0", "--logdir", os.path.join(directory, "runs")]
    command += ["--weights", os.path.join(directory, "weights.h5")]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    found = RESULT.search(done.stdout)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    return float(found.group(2)), seconds


def write_rows(path: str, rows: list[dict]) -> None:
    """Write ``rows`` to the CSV, keeping the rows of presets this run did not measure."""
    measured = {row["env_id"] for row in rows}
    kept = []
    if os.path.isfile(path):
        with open(path, newline="") as handle:
            kept = [row for row in csv.DictReader(handle) if row["env_id"] not in measured]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["env_id", "seed", "reward", "seconds"])
        writer.writeheader()
        writer.writerows(sorted(kept + rows, key=lambda row: (row["env_id"], int(row["seed"]))))


def main() -> None:
    args = parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for env_id in args.env_ids:
            for seed in args.seeds:
                reward, seconds = run(env_id, seed, directory)
                rows.append({"env_id": env_id, "seed": seed, "reward": reward, "seconds": seconds})
                print(f"{env_id:16s} seed {seed}: greedy mean {reward:8.2f}  ({seconds:.0f} s)")
    write_rows(args.csv, rows)
    print("\n| preset | seeds | greedy mean per seed | mean |\n|---|---|---|---|")
    for env_id in args.env_ids:
        rewards = [row["reward"] for row in rows if row["env_id"] == env_id]
        per_seed = ", ".join(f"{reward:.1f}" for reward in rewards)
        print(f"| {env_id} | {len(rewards)} | {per_seed} | {statistics.mean(rewards):.1f} |")


if __name__ == "__main__":
    main()
