"""Sample efficiency on CartPole-v1: kerasdqn's tuned defaults against SB3's tuned settings.

For each seed, runs ``scripts/train_cartpole.py`` with its defaults (50,000 steps, then a
greedy evaluation over --episodes episodes with the final weights), and SB3's DQN with the
rl-zoo hyperparameters for CartPole-v1 (benchmarks/common.py, setting rl-zoo: exactly rl-zoo's,
nothing else), whose final policy is then evaluated greedily (``deterministic=True``) over as
many episodes on an environment seeded with seed + 1000, as the script does. A seed is solved
when the greedy mean is at least 475. Each run is its own single-threaded process; --jobs of
them run at once (a kerasdqn and an SB3 run of the same seed side by side).

    python benchmarks/bench_cartpole_seeds.py                 # seeds 0-4, about 3 minutes
    python benchmarks/bench_cartpole_seeds.py --seeds 0 1 --jobs 1
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import common

SOLVED = 475.0
TRAIN_SCRIPT = os.path.join(common.REPO_ROOT, "scripts", "train_cartpole.py")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="seeds")
    parser.add_argument("--episodes", type=int, default=100, help="greedy evaluation episodes")
    parser.add_argument(
        "--jobs", type=int, default=2, choices=[1, 2], help="runs at once (the machine has 2 cores)"
    )
    parser.add_argument("--worker", type=int, help="internal: train SB3 with this seed here")
    return parser.parse_args()


# --------------------------------------------------------------------------- SB3 worker


def sb3_worker(seed: int, episodes: int) -> dict:
    """Train SB3 with rl-zoo's CartPole-v1 settings; evaluate the final policy greedily."""
    common.single_threaded_torch()
    setting = common.SETTINGS["rl-zoo"]
    model = common.sb3_model(setting, common.make_env(seed), seed)
    start = time.perf_counter()
    model.learn(total_timesteps=setting.steps)
    seconds = time.perf_counter() - start
    return {"mean": greedy_mean(model, seed + 1_000, episodes), "train_seconds": seconds}


def greedy_mean(model, seed: int, episodes: int) -> float:
    """Mean return of ``model``'s deterministic policy over ``episodes`` episodes."""
    import gymnasium

    env = gymnasium.make(common.ENV_ID)
    observation, _ = env.reset(seed=seed)
    total = 0.0
    for _ in range(episodes):
        done = False
        while not done:
            action, _ = model.predict(observation, deterministic=True)
            observation, reward, terminated, truncated, _ = env.step(int(action))
            total += float(reward)
            done = terminated or truncated
        observation, _ = env.reset()
    return total / episodes


# --------------------------------------------------------------------------- jobs


def run_kerasdqn(seed: int, episodes: int) -> dict:
    """``scripts/train_cartpole.py`` with its defaults and ``seed``; its greedy mean."""
    with tempfile.TemporaryDirectory() as directory:
        command = [sys.executable, TRAIN_SCRIPT, "--seed", str(seed), "--verbose", "0"]
        command += ["--episodes", str(episodes), "--weights", os.path.join(directory, "w.h5")]
        command += ["--logdir", os.path.join(directory, "logs")]
        output, wall = run(command)
    mean = re.search(r"Greedy evaluation over \d+ episodes: mean ([-\d.]+)", output)
    trained = re.search(r"Trained \d+ steps in ([\d.]+) s", output)
    if mean is None or trained is None:
        raise RuntimeError(f"unexpected output of train_cartpole.py:\n{output}")
    return {"mean": float(mean.group(1)), "train_seconds": float(trained.group(1)), "wall": wall}


def run_sb3(seed: int, episodes: int) -> dict:
    """This script as an SB3 worker for ``seed``."""
    command = [sys.executable, __file__, "--worker", str(seed), "--episodes", str(episodes)]
    output, wall = run(command)
    return {**json.loads(output.strip().splitlines()[-1]), "wall": wall}


def run(command: list[str]) -> tuple[str, float]:
    """Run ``command`` quietly; its standard output and wall-clock seconds."""
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return done.stdout, wall


def run_all(args: argparse.Namespace) -> dict[int, dict[str, dict]]:
    """Every seed's kerasdqn and SB3 runs, at most ``args.jobs`` at once."""
    jobs = [(seed, library) for seed in args.seeds for library in ("kerasdqn", "sb3")]
    runners = {"kerasdqn": run_kerasdqn, "sb3": run_sb3}
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {job: pool.submit(runners[job[1]], job[0], args.episodes) for job in jobs}
        results: dict[int, dict[str, dict]] = {}
        for (seed, library), future in futures.items():
            results.setdefault(seed, {})[library] = result = future.result()
            print(f"  seed {seed} {library:8s}: greedy mean {result['mean']:6.1f}", flush=True)
    return results


def print_table(results: dict[int, dict[str, dict]], jobs: int) -> None:
    print(
        "\n| seed | kerasdqn mean | solved | train s | wall s | SB3 mean | solved | train s "
        "| wall s |"
    )
    print("|---:|---:|---|---:|---:|---:|---|---:|---:|")
    solved = {"kerasdqn": 0, "sb3": 0}
    for seed, row in results.items():
        cells = [str(seed)]
        for library in ("kerasdqn", "sb3"):
            run = row[library]
            ok = run["mean"] >= SOLVED
            solved[library] += ok
            cells += [f"{run['mean']:.1f}", "yes" if ok else "no"]
            cells += [f"{run['train_seconds']:.0f}", f"{run['wall']:.0f}"]
        print("| " + " | ".join(cells) + " |")
    count = len(results)
    print(f"| solved | {solved['kerasdqn']} of {count} | | | | {solved['sb3']} of {count} | | | |")
    print(
        f"\nSolved: greedy mean >= {SOLVED:g} over the evaluation episodes. train s: the "
        f"training call alone; wall s: the whole process ({jobs} run(s) at a time)."
    )


def main() -> None:
    args = parse_args()
    if args.worker is not None:
        common.report(sb3_worker(args.worker, args.episodes))
        return
    print_table(run_all(args), args.jobs)


if __name__ == "__main__":
    main()
