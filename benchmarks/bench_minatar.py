"""Learning on pixels: kerasdqn beside Stable-Baselines3 on a MinAtar game, at the same budget
and settings, with a learning curve.

MinAtar (Young & Tian, 2019) shrinks Atari games to 10x10 frames of boolean channels (Breakout:
4 channels, 3 actions with the minimal action set). Both libraries learn with the network of the
MinAtar paper's DQN, on one frame (no stacking, as there): Conv2D 16 3x3 stride 1 ReLU, Flatten,
Dense 128 ReLU, Dense one Q value per action, on the frame cast to float32. kerasdqn's is a
Keras ``Sequential`` (glorot-normal), SB3's a features extractor of the same layers (PyTorch's
default initialization) with a linear Q head.

Settings (both libraries): MinAtar's DQN schedule with Adam instead of its RMSProp: Adam
learning rate 2.5e-4 (epsilon 1e-8), batch 32, replay 100,000, learning starts at 5,000 steps,
one gradient step every --train-freq steps, a hard target copy every 1,000 steps, epsilon 1 ->
0.1 over the first 100,000 steps, gamma 0.99, Huber loss (threshold 1), gradients clipped to
norm 10, 1-step targets, no Double DQN.

Each library runs in its own single-threaded process, the two in parallel. Every --every steps
each records the wall time and the mean return of its last 20 finished training episodes
(epsilon-greedy, as played); with --minutes a run also stops at the first record past that
wall time, so a busy machine cannot push it past a deadline. The result goes to minatar.csv
and, plotted against steps with the random policy's mean return as a reference, to
minatar.png.

    python benchmarks/bench_minatar.py --steps 10000 --every 5000 --no-files   # throughput
    python benchmarks/bench_minatar.py --steps 200000 --minutes 33              # the curve
    python benchmarks/bench_minatar.py --plot-only                              # redraw
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from collections import deque

import common

GAME = "Breakout"
HERE = os.path.dirname(os.path.abspath(__file__))
CSV_PATH = os.path.join(HERE, "minatar.csv")
PNG_PATH = os.path.join(HERE, "minatar.png")
RECENT_EPISODES = 20
RANDOM_EPISODES = 200
SETTINGS = {
    "lr": 2.5e-4,
    "batch_size": 32,
    "buffer_size": 100_000,
    "learning_starts": 5_000,
    "target_update": 1_000,
    "eps_start": 1.0,
    "eps_end": 0.1,
    "eps_steps": 100_000,
    "gamma": 0.99,
}
FIELDS = ["library", "seed", "step", "wall_seconds", "mean_return", "episodes"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--game", default=GAME, help="MinAtar game (MinAtar/<game>-v1)")
    parser.add_argument("--steps", type=int, default=300_000, help="environment steps per run")
    parser.add_argument("--every", type=int, default=10_000, help="steps between records")
    parser.add_argument("--train-freq", type=int, default=1, help="steps per gradient step")
    parser.add_argument(
        "--minutes", type=float, default=None, help="also stop each run at a record past this"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run pair each")
    parser.add_argument("--csv", default=CSV_PATH, help="the learning curves, as CSV")
    parser.add_argument("--png", default=PNG_PATH, help="the learning curves, plotted")
    parser.add_argument("--no-files", action="store_true", help="print only, write nothing")
    parser.add_argument("--plot-only", action="store_true", help="redraw --png from --csv")
    parser.add_argument("--worker", choices=["kerasdqn", "sb3"], help="internal: one run")
    parser.add_argument("--seed", type=int, default=0, help="internal: with --worker")
    return parser.parse_args()


# --------------------------------------------------------------------------- environment


def make_env(game: str, seed: int):
    """``MinAtar/<game>-v1`` (minimal action set), reset with ``seed``."""
    import gymnasium
    from minatar.gym import register_envs

    if f"MinAtar/{game}-v1" not in gymnasium.registry:
        register_envs()
    env = gymnasium.make(f"MinAtar/{game}-v1")
    env.reset(seed=seed)
    env.action_space.seed(seed)
    return env


def random_return(game: str, episodes: int = RANDOM_EPISODES) -> float:
    """The mean return of the uniformly random policy over ``episodes`` episodes."""
    env = make_env(game, seed=12345)
    total = 0.0
    for _ in range(episodes):
        env.reset()
        done = False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += reward
            done = terminated or truncated
    return total / episodes


class Curve:
    """The learning curve one run records: every ``every`` steps, the wall time since the
    run began and the mean return of the last ``RECENT_EPISODES`` finished episodes.
    ``minutes`` (optional) is a wall-clock budget: ``step_done`` says when it is spent."""

    def __init__(self, every: int, minutes: float | None = None) -> None:
        self.every = every
        self.seconds = None if minutes is None else 60 * minutes
        self.start = time.perf_counter()
        self.returns: deque[float] = deque(maxlen=RECENT_EPISODES)
        self.episodes = 0
        self.rows: list[dict] = []

    def episode_ended(self, episode_return: float) -> None:
        self.returns.append(float(episode_return))
        self.episodes += 1

    def step_done(self, step: int) -> bool:
        """Record at multiples of ``every``; True once the wall-clock budget is spent."""
        if step % self.every:
            return False
        mean = sum(self.returns) / len(self.returns) if self.returns else float("nan")
        wall = time.perf_counter() - self.start
        self.rows.append(
            {"step": step, "wall_seconds": wall, "mean_return": mean, "episodes": self.episodes}
        )
        print(f"step {step}: {wall:7.1f} s, mean return {mean:6.2f}", file=sys.stderr, flush=True)
        return self.seconds is not None and wall >= self.seconds


# --------------------------------------------------------------------------- kerasdqn


def kerasdqn_network(observation_shape: tuple[int, ...], nb_actions: int):
    """The MinAtar paper's DQN network as a Keras ``Sequential`` on ``(1,) + frame`` states
    (window_length 1); the agent casts the boolean frames to the input's float32."""
    import keras
    from keras import layers

    init = "glorot_normal"
    return keras.Sequential(
        [
            keras.Input((1,) + observation_shape),
            layers.Reshape(observation_shape),
            layers.Conv2D(16, 3, strides=1, activation="relu", kernel_initializer=init),
            layers.Flatten(),
            layers.Dense(128, activation="relu", kernel_initializer=init),
            layers.Dense(nb_actions, kernel_initializer=init),
        ]
    )


def kerasdqn_run(args: argparse.Namespace) -> list[dict]:
    """Train kerasdqn's ``DQNAgent`` as a user would; return the recorded curve."""
    import keras

    from kerasdqn.agents.dqn import DQNAgent
    from kerasdqn.callbacks import Callback
    from kerasdqn.memory import SequentialMemory
    from kerasdqn.policy import EpsGreedyQPolicy, LinearAnnealedPolicy

    common.single_threaded_tensorflow()
    keras.utils.set_random_seed(args.seed)
    env = make_env(args.game, args.seed)
    nb_actions = int(env.action_space.n)
    policy = LinearAnnealedPolicy(
        EpsGreedyQPolicy(),
        "eps",
        SETTINGS["eps_start"],
        SETTINGS["eps_end"],
        0.0,
        SETTINGS["eps_steps"],
    )
    agent = DQNAgent(
        kerasdqn_network(env.observation_space.shape, nb_actions),
        nb_actions=nb_actions,
        memory=SequentialMemory(limit=SETTINGS["buffer_size"], window_length=1),
        policy=policy,
        gamma=SETTINGS["gamma"],
        batch_size=SETTINGS["batch_size"],
        nb_steps_warmup=SETTINGS["learning_starts"],
        train_interval=args.train_freq,
        target_model_update=SETTINGS["target_update"],
        delta_clip=1.0,
        seed=args.seed,
    )
    optimizer = keras.optimizers.Adam(
        learning_rate=SETTINGS["lr"], epsilon=common.ADAM_EPSILON, global_clipnorm=10.0
    )
    agent.compile(optimizer)
    curve = Curve(args.every, args.minutes)

    class Recorder(Callback):
        def on_step_end(self, step, logs=None):
            # The agent counts this step after the hook.
            if curve.step_done(self.agent.step + 1):
                self.agent.stop_training = True

        def on_episode_end(self, episode, logs=None):
            curve.episode_ended(logs["episode_reward"])

    agent.fit(env, nb_steps=args.steps, callbacks=[Recorder()], verbose=0)
    return curve.rows


# --------------------------------------------------------------------------- SB3


def sb3_run(args: argparse.Namespace) -> list[dict]:
    """Train Stable-Baselines3's ``DQN`` with the same network and settings."""
    import torch
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    common.single_threaded_torch()

    class MinAtarFeatures(BaseFeaturesExtractor):
        """Conv2D 16 3x3 ReLU, Flatten, Dense 128 ReLU on channels-last boolean frames."""

        def __init__(self, observation_space) -> None:
            super().__init__(observation_space, features_dim=128)
            height, width, channels = observation_space.shape
            self.net = torch.nn.Sequential(
                torch.nn.Conv2d(channels, 16, 3, stride=1),
                torch.nn.ReLU(),
                torch.nn.Flatten(),
                torch.nn.Linear(16 * (height - 2) * (width - 2), 128),
                torch.nn.ReLU(),
            )

        def forward(self, observations):
            return self.net(observations.float().permute(0, 3, 1, 2))

    curve = Curve(args.every, args.minutes)

    class Recorder(BaseCallback):
        def _on_step(self) -> bool:
            for info in self.locals["infos"]:
                if "episode" in info:  # SB3's Monitor wrapper marks finished episodes
                    curve.episode_ended(info["episode"]["r"])
            return not curve.step_done(self.num_timesteps)

    env = make_env(args.game, args.seed)
    model = DQN(
        "MlpPolicy",
        env,
        policy_kwargs={"features_extractor_class": MinAtarFeatures, "net_arch": []},
        learning_rate=SETTINGS["lr"],
        buffer_size=SETTINGS["buffer_size"],
        learning_starts=SETTINGS["learning_starts"],
        batch_size=SETTINGS["batch_size"],
        gamma=SETTINGS["gamma"],
        train_freq=args.train_freq,
        gradient_steps=1,
        target_update_interval=SETTINGS["target_update"],
        exploration_initial_eps=SETTINGS["eps_start"],
        exploration_final_eps=SETTINGS["eps_end"],
        exploration_fraction=SETTINGS["eps_steps"] / args.steps,
        max_grad_norm=common.MAX_GRAD_NORM,
        seed=args.seed,
        device="cpu",
        verbose=0,
    )
    model.learn(total_timesteps=args.steps, callback=Recorder())
    return curve.rows


# --------------------------------------------------------------------------- parent


def worker_command(args: argparse.Namespace, library: str, seed: int) -> list[str]:
    options = ["--worker", library, "--seed", str(seed), "--game", args.game]
    options += ["--steps", str(args.steps), "--every", str(args.every)]
    options += ["--train-freq", str(args.train_freq)]
    if args.minutes is not None:
        options += ["--minutes", str(args.minutes)]
    return ["nice", "-n", "5", sys.executable, __file__, *options]


def run_pair(args: argparse.Namespace, seed: int) -> list[dict]:
    """Both libraries on ``seed`` at once, each in its own process; their rows."""
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [common.REPO_ROOT, environment.get("PYTHONPATH")])
    )
    running = {
        library: subprocess.Popen(
            worker_command(args, library, seed), stdout=subprocess.PIPE, text=True, env=environment
        )
        for library in ("kerasdqn", "sb3")
    }
    rows = []
    for library, process in running.items():
        output, _ = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"the {library} run (seed {seed}) failed")
        for row in json.loads(output.strip().splitlines()[-1]):
            rows.append({"library": library, "seed": seed, **row})
    return rows


def print_summary(rows: list[dict], random_mean: float) -> None:
    print(f"\nrandom policy: mean return {random_mean:.2f} over {RANDOM_EPISODES} episodes")
    print("\n| library | seed | steps | wall s | steps/s | final mean return (last 20 episodes) |")
    print("|---|---:|---:|---:|---:|---:|")
    for library in ("kerasdqn", "sb3"):
        for seed in sorted({row["seed"] for row in rows if row["library"] == library}):
            last = [r for r in rows if r["library"] == library and r["seed"] == seed][-1]
            rate = last["step"] / last["wall_seconds"]
            print(
                f"| {library} | {seed} | {last['step']:,} | {last['wall_seconds']:,.0f} | "
                f"{rate:,.0f} | {last['mean_return']:.2f} |"
            )


def write_csv(rows: list[dict], random_mean: float, path: str) -> None:
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
        writer.writerow({"library": "random", "seed": "", "step": 0, "mean_return": random_mean})


def read_csv(path: str) -> tuple[list[dict], float]:
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    random_mean = next(float(r["mean_return"]) for r in rows if r["library"] == "random")
    curves = [
        {
            **row,
            "seed": int(row["seed"]),
            "step": int(row["step"]),
            "wall_seconds": float(row["wall_seconds"]),
            "mean_return": float(row["mean_return"]),
        }
        for row in rows
        if row["library"] != "random"
    ]
    return curves, random_mean


def plot(rows: list[dict], random_mean: float, game: str, path: str) -> None:
    """Both libraries' curves against steps, the random policy as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2))
    colours = {"kerasdqn": "tab:blue", "sb3": "tab:orange"}
    for (library, seed), points in sorted(group_runs(rows).items()):
        minutes = points[-1]["wall_seconds"] / 60
        axes.plot(
            [p["step"] for p in points],
            [p["mean_return"] for p in points],
            color=colours[library],
            label=f"{library} seed {seed} ({minutes:.0f} min wall)",
        )
    axes.axhline(random_mean, color="grey", linestyle="--", label=f"random ({random_mean:.2f})")
    axes.set_xlabel("environment steps")
    axes.set_ylabel(f"mean return, last {RECENT_EPISODES} training episodes")
    axes.set_title(f"MinAtar {game}: DQN, same network and settings")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def group_runs(rows: list[dict]) -> dict[tuple[str, int], list[dict]]:
    runs: dict[tuple[str, int], list[dict]] = {}
    for row in rows:
        runs.setdefault((row["library"], row["seed"]), []).append(row)
    return runs


def main() -> None:
    args = parse_args()
    if args.worker:
        run = kerasdqn_run if args.worker == "kerasdqn" else sb3_run
        common.report(run(args))
        return
    if args.plot_only:
        plot(*read_csv(args.csv), args.game, args.png)
        return
    random_mean = random_return(args.game)
    rows = [row for seed in args.seeds for row in run_pair(args, seed)]
    print_summary(rows, random_mean)
    if not args.no_files:
        write_csv(rows, random_mean, args.csv)
        plot(rows, random_mean, args.game, args.png)
        print(f"\nwrote {os.path.relpath(args.csv)} and {os.path.relpath(args.png)}")


if __name__ == "__main__":
    main()
