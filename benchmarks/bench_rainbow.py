"""Rainbow piece by piece: learning curves of plain DQN, each piece added alone, and Rainbow,
beside Stable-Baselines3's DQN and sb3-contrib's QR-DQN at the same step budget.

Every run is its own single-threaded process (one TensorFlow or PyTorch thread) that trains for
the environment's step budget and plays greedy evaluation episodes on a separately seeded
environment at evenly spaced steps: that is the learning curve. Rows go to benchmarks/rainbow.csv
(variant, env, seed, budget, step, eval mean, training steps/s) as each run ends, and runs
already there are skipped, so an interrupted matrix continues where it stopped. At the end it
draws benchmarks/rainbow.png (one panel per environment: mean over seeds and the band between
the lowest and highest seed) and prints, per environment and variant, the final score (last
evaluation), the area under the curve (the mean evaluation score over the run), training
steps/s (evaluation time excluded) and steps/s relative to plain DQN.

    python benchmarks/bench_rainbow.py                         # the whole matrix: hours
    python benchmarks/bench_rainbow.py --envs CartPole-v1 --seeds 0 --steps 3000   # a smoke
    python benchmarks/bench_rainbow.py --jobs 2                # two runs at a time
    python benchmarks/bench_rainbow.py --report                # table and plot of the CSV

The hyperparameters of every kerasdqn variant and of both Stable-Baselines3 learners are the
environment's shipped preset (rl-zoo's, e.g. 128 gradient steps of batch 64 every 256 steps)
with its pieces off: 1-step returns, no Double DQN, no dueling head, uniform replay, and Adam's
epsilon and the gradient clipping of SB3 (1e-8, global norm 10), the learning rate decayed
linearly in both libraries. Each variant then switches on its piece(s) with Rainbow's settings
(kerasdqn.config.RAINBOW: prioritized replay alpha 0.5, beta 0.4 -> 1; 3-step returns; noisy
layers of sigma0 0.5, acting greedily on the noisy network; C51 with 51 atoms on the
environment's return range below; QR-DQN with 200 quantiles, sb3-contrib's default). Noisy
variants evaluate on the noisy network too.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass

import common

HERE = os.path.dirname(os.path.abspath(__file__))


@dataclass(frozen=True)
class EnvSetting:
    """An environment's step budget and the range of its discounted returns (C51's support)."""

    steps: int
    v_min: float
    v_max: float


ENVS = {
    "CartPole-v1": EnvSetting(50_000, 0.0, 100.0),  # +1 a step: at most 1 / (1 - 0.99)
    "Acrobot-v1": EnvSetting(50_000, -100.0, 0.0),  # -1 a step until the goal
    "LunarLander-v3": EnvSetting(150_000, -200.0, 200.0),
}

PLAIN = {"double": False, "dueling": False, "n_step": 1, "prioritized": False}
PIECES = {
    "dqn": {},
    "double": {"double": True},
    "dueling": {"dueling": True},
    "per": {"prioritized": True, "priority_alpha": 0.5, "priority_beta": 0.4},
    # Schaul et al. (2016) cut the step size by 4 for prioritized replay: PER at that rate.
    "per_lr4": {"prioritized": True, "priority_alpha": 0.5, "priority_beta": 0.4, "lr_scale": 0.25},
    "nstep": {"n_step": 3},
    "noisy": {"noisy": True},
    "c51": {"distributional": "c51"},
    "qr": {"distributional": "qr"},
    "rainbow": "all",
}
SB3_VARIANTS = ("sb3_dqn", "sb3_qrdqn")
VARIANTS = tuple(PIECES) + SB3_VARIANTS
FIELDS = ["variant", "env", "seed", "budget", "step", "eval_mean", "steps_per_second"]


# --------------------------------------------------------------------------- settings


def base_settings(env_id: str) -> dict:
    """The environment's shipped preset with every piece off and SB3's Adam epsilon and
    gradient clipping."""
    from kerasdqn.presets import preset_path, read_preset

    values = read_preset(preset_path(env_id))
    return {
        **values,
        **PLAIN,
        "adam_epsilon": common.ADAM_EPSILON,
        "max_grad_norm": common.MAX_GRAD_NORM,
    }


def kerasdqn_config(variant: str, env_id: str, seed: int, steps: int):
    """The ``DQNConfig`` of a kerasdqn variant."""
    from kerasdqn.config import RAINBOW, DQNConfig

    support = {"v_min": ENVS[env_id].v_min, "v_max": ENVS[env_id].v_max}
    pieces = dict(RAINBOW if PIECES[variant] == "all" else PIECES[variant])
    settings = {**base_settings(env_id), **support, "seed": seed, "steps": steps}
    scale = pieces.pop("lr_scale", 1.0)
    settings["lr"] *= scale
    if settings["lr_end"] is not None:
        settings["lr_end"] *= scale
    return DQNConfig(**{**settings, **pieces})


# --------------------------------------------------------------------------- workers


def kerasdqn_curve(variant: str, env_id: str, seed: int, steps: int, evals: int, episodes: int):
    """Train a kerasdqn variant; return its evaluations and training steps/s."""
    common.single_threaded_tensorflow()
    import keras

    from kerasdqn.envs import make_env
    from kerasdqn.evaluation import EvalCallback
    from kerasdqn.training import build_agent

    class TimedEvaluation(EvalCallback):
        seconds = 0.0

        def evaluate(self, step):
            start = time.perf_counter()
            result = super().evaluate(step)
            self.seconds += time.perf_counter() - start
            return result

    keras.utils.set_random_seed(seed)
    env = make_env(env_id, seed=seed)
    agent = build_agent(env, kerasdqn_config(variant, env_id, seed, steps))
    evaluation = TimedEvaluation(
        make_env(env_id, seed=seed + 1_000), max(1, steps // evals), episodes, verbose=0
    )
    start = time.perf_counter()
    agent.fit(env, nb_steps=steps, callbacks=[evaluation], verbose=0)
    seconds = time.perf_counter() - start - evaluation.seconds
    curve = [(result["step"], result["mean_reward"]) for result in evaluation.evaluations]
    return curve, steps / seconds


def sb3_arguments(env_id: str, seed: int, steps: int) -> dict:
    """The base settings in Stable-Baselines3's terms (hard target copies: the presets')."""
    values = {**base_settings(env_id), "steps": steps}
    lr, lr_end = values["lr"], values["lr_end"] if values["lr_end"] is not None else values["lr"]
    return {
        "policy_kwargs": {"net_arch": list(values["hidden"])},
        "learning_rate": lambda remaining: lr_end + (lr - lr_end) * remaining,
        "batch_size": values["batch_size"],
        "buffer_size": values["memory"],
        "learning_starts": values["warmup"],
        "gamma": values["gamma"],
        "train_freq": values["train_interval"],
        "gradient_steps": values["gradient_steps"],
        "target_update_interval": int(values["target_update"]),
        "exploration_initial_eps": values["eps_start"],
        "exploration_final_eps": values["eps_end"],
        "exploration_fraction": values["eps_fraction"],
        "max_grad_norm": common.MAX_GRAD_NORM,
        "seed": seed,
        "device": "cpu",
        "verbose": 0,
    }


def sb3_curve(variant: str, env_id: str, seed: int, steps: int, evals: int, episodes: int):
    """Train SB3's DQN or sb3-contrib's QR-DQN; return its evaluations and training steps/s."""
    common.single_threaded_torch()
    import gymnasium
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.evaluation import evaluate_policy

    if variant == "sb3_dqn":
        from stable_baselines3 import DQN as Learner
    else:
        from sb3_contrib import QRDQN as Learner

    eval_env = gymnasium.make(env_id)
    eval_env.reset(seed=seed + 1_000)

    class Evaluation(BaseCallback):
        """Greedy episodes every ``steps // evals`` steps, timed apart from training."""

        curve: list = []
        seconds = 0.0

        def _on_step(self) -> bool:
            if self.num_timesteps % max(1, steps // evals) == 0:
                start = time.perf_counter()
                rewards, _ = evaluate_policy(self.model, eval_env, episodes, deterministic=True)
                self.curve = self.curve + [(self.num_timesteps, float(rewards))]
                self.seconds += time.perf_counter() - start
            return True

    evaluation = Evaluation()
    model = Learner("MlpPolicy", gymnasium.make(env_id), **sb3_arguments(env_id, seed, steps))
    start = time.perf_counter()
    model.learn(total_timesteps=steps, callback=evaluation)
    seconds = time.perf_counter() - start - evaluation.seconds
    return evaluation.curve, steps / seconds


def worker(arguments: list[str]) -> None:
    """One run (``--worker VARIANT ENV SEED STEPS EVALS EPISODES``), reported as JSON."""
    variant, env_id = arguments[0], arguments[1]
    seed, steps, evals, episodes = (int(value) for value in arguments[2:6])
    learner = sb3_curve if variant in SB3_VARIANTS else kerasdqn_curve
    curve, steps_per_second = learner(variant, env_id, seed, steps, evals, episodes)
    common.report({"curve": curve, "steps_per_second": steps_per_second})


# --------------------------------------------------------------------------- the matrix


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=list(ENVS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument(
        "--steps", type=int, help="step budget of every environment (default: each one's own)"
    )
    parser.add_argument("--evals", type=int, default=10, help="evaluations per run")
    parser.add_argument("--eval-episodes", type=int, default=5, help="greedy episodes each")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (one core each)")
    parser.add_argument(
        "--report", action="store_true", help="run nothing: the table and plot of the CSV"
    )
    parser.add_argument("--csv", default=os.path.join(HERE, "rainbow.csv"))
    parser.add_argument("--png", default=os.path.join(HERE, "rainbow.png"))
    return parser.parse_args()


def read_rows(path: str) -> list[dict]:
    """The CSV's rows, numbers parsed (none if there is no file yet)."""
    if not os.path.isfile(path):
        return []
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        for name in ("seed", "budget", "step"):
            row[name] = int(row[name])
        for name in ("eval_mean", "steps_per_second"):
            row[name] = float(row[name])
    return rows


def append_rows(path: str, rows: list[dict]) -> None:
    """Append ``rows`` to the CSV, with a header if it is new."""
    new = not os.path.isfile(path)
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        writer.writerows(rows)


def pending_runs(args: argparse.Namespace, rows: list[dict]) -> list[tuple]:
    """The (variant, env, seed, budget) runs of the matrix that the CSV does not hold yet."""
    done = {(row["variant"], row["env"], row["seed"], row["budget"]) for row in rows}
    runs = []
    for env_id in args.envs:
        budget = args.steps or ENVS[env_id].steps
        for variant in args.variants:
            runs += [(variant, env_id, seed, budget) for seed in args.seeds]
    return [run for run in runs if run not in done]


def run_one(run: tuple, args: argparse.Namespace) -> list[dict]:
    """One run in its own process, as CSV rows."""
    variant, env_id, seed, budget = run
    arguments = [variant, env_id, str(seed), str(budget), str(args.evals)]
    result = common.run_worker(
        os.path.abspath(__file__), ["--worker", *arguments, str(args.eval_episodes)]
    )
    return [
        dict(zip(FIELDS, [*run, step, mean, result["steps_per_second"]], strict=True))
        for step, mean in result["curve"]
    ]


def run_matrix(args: argparse.Namespace) -> None:
    """Run the pending runs, ``--jobs`` at a time, appending each to the CSV as it ends."""
    runs = pending_runs(args, read_rows(args.csv))
    print(f"{len(runs)} runs to do", flush=True)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {pool.submit(run_one, run, args): run for run in runs}
        for future in as_completed(futures):
            rows = future.result()
            append_rows(args.csv, rows)
            print(f"done {futures[future]}: final {rows[-1]['eval_mean']:.1f}", flush=True)


# --------------------------------------------------------------------------- results


def selected_rows(rows: list[dict], args: argparse.Namespace) -> list[dict]:
    """The rows of this invocation's environments and variants, at its step budgets."""
    return [
        row
        for row in rows
        if row["env"] in args.envs
        and row["variant"] in args.variants
        and row["budget"] == (args.steps or ENVS[row["env"]].steps)
    ]


def summaries(rows: list[dict]) -> dict:
    """Per (env, variant): final scores, AUCs and steps/s, one per seed."""
    by_run: dict[tuple, list[dict]] = {}
    for row in rows:
        by_run.setdefault((row["env"], row["variant"], row["seed"]), []).append(row)
    table: dict[tuple, dict[str, list[float]]] = {}
    order = sorted(by_run, key=lambda key: (key[0], VARIANTS.index(key[1]), key[2]))
    for env_id, variant, seed in order:
        curve = by_run[(env_id, variant, seed)]
        curve.sort(key=lambda row: row["step"])
        entry = table.setdefault((env_id, variant), {"final": [], "auc": [], "speed": []})
        entry["final"].append(curve[-1]["eval_mean"])
        entry["auc"].append(statistics.mean(row["eval_mean"] for row in curve))
        entry["speed"].append(curve[-1]["steps_per_second"])
    return table


def print_table(table: dict) -> None:
    """The final score, AUC, steps/s and steps/s relative to plain DQN of each variant."""
    head = ("env", "variant", "seeds", "final", "AUC", "steps/s", "x dqn")
    print("{:15} {:10} {:>5} {:>16} {:>16} {:>8} {:>6}".format(*head))
    for (env_id, variant), entry in table.items():
        plain = table.get((env_id, "dqn"))
        speed = statistics.mean(entry["speed"])
        ratio = speed / statistics.mean(plain["speed"]) if plain else float("nan")
        print(
            f"{env_id:15} {variant:10} {len(entry['final']):5d} {spread(entry['final']):>16} "
            f"{spread(entry['auc']):>16} {speed:8.0f} {ratio:6.2f}"
        )


def spread(values: list[float]) -> str:
    """``mean +- standard deviation`` (just the mean for one value)."""
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.mean(values):.1f} +- {statistics.stdev(values):.1f}"


def plot(rows: list[dict], table: dict, path: str) -> None:
    """One panel per environment: each variant's mean curve over seeds, and its seeds' band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    env_ids = sorted({env_id for env_id, _ in table})
    figure, axes = plt.subplots(1, len(env_ids), figsize=(6 * len(env_ids), 4.5), squeeze=False)
    for axis, env_id in zip(axes[0], env_ids, strict=True):
        for variant in [v for v in VARIANTS if (env_id, v) in table]:
            color = plt.cm.tab20(VARIANTS.index(variant) / len(VARIANTS))
            curves = {}
            for row in rows:
                if (row["env"], row["variant"]) == (env_id, variant):
                    curves.setdefault(row["step"], []).append(row["eval_mean"])
            steps = sorted(curves)
            values = [curves[step] for step in steps]
            axis.plot(steps, [np.mean(v) for v in values], label=variant, color=color)
            lowest, highest = [min(v) for v in values], [max(v) for v in values]
            axis.fill_between(steps, lowest, highest, color=color, alpha=0.12)
        axis.set(title=env_id, xlabel="environment steps", ylabel="greedy evaluation mean")
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2:])
        return
    args = parse_args()
    if not args.report:
        run_matrix(args)
    rows = selected_rows(read_rows(args.csv), args)
    table = summaries(rows)
    print_table(table)
    plot(rows, table, args.png)
    print(f"Wrote {args.csv} and {args.png}")


if __name__ == "__main__":
    main()
