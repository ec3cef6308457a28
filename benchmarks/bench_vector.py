"""Training throughput on vector environments: kerasdqn's ``fit`` on a gymnasium ``VectorEnv``
beside Stable-Baselines3's ``DQN.learn`` on a ``VecEnv`` of the same number of environments.

CartPole-v1 with 1, 4, 8 and 16 environments, each stepped in turn in the training process
(gymnasium's ``SyncVectorEnv`` for kerasdqn, SB3's ``DummyVecEnv``), the "64x64" setting of
benchmarks/common.py: one gradient step per 4 environment steps in both libraries. kerasdqn
counts its schedule in environment steps summed over the environments (``train_interval=4``,
``gradient_steps=1`` for every N); SB3 counts ``train_freq`` in vector steps of N environment
steps, so it gets ``train_freq = max(1, 4 // N)`` and ``gradient_steps = max(1, N // 4)``: the
same gradient steps per environment step, 1/4, at every size. Target copies every 500
environment steps (SB3 divides its interval by N itself) and the epsilon schedule over the run.

Atari (``ALE/Pong-v5`` through ``kerasdqn.envs.make_atari``, the Nature CNN, 4 stacked frames,
batch 32) with 4 environments in subprocesses: gymnasium's ``AsyncVectorEnv`` for kerasdqn (the
frames stacked in its replay memory), SB3's ``SubprocVecEnv`` of the same environments with
gymnasium's ``FrameStackObservation``; one gradient step per 4 environment steps again.

Each run is its own process with --threads threads (default one: TensorFlow's inter- and
intra-op threads, torch's threads; the environments' subprocesses aside), kerasdqn and SB3 in
alternating pairs.
A run first trains through the warm-up and 200 learning steps (kerasdqn compiles its training
call there), then times ``--steps`` more environment steps around the training call alone. The
table gives medians and the kerasdqn/SB3 ratio.

    python benchmarks/bench_vector.py                 # 2 pairs per size, about 10 minutes
    python benchmarks/bench_vector.py --quick         # a smoke run
    python benchmarks/bench_vector.py --sizes --threads 2 --atari-pairs 2   # Pong only
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

import common

GOAL_RATIO = 1.5
ATARI_ID = "ALE/Pong-v5"
ATARI_ENVS = 4
LEARNING_STEPS_IN_WARMUP = 200
GRADIENT_STEPS_PER_ENV_STEP = 4  # one gradient step per this many environment steps


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--sizes", type=int, nargs="*", default=[1, 4, 8, 16], help="CartPole env counts"
    )
    parser.add_argument("--pairs", type=int, default=2, help="kerasdqn/SB3 pairs per size")
    parser.add_argument("--atari-pairs", type=int, default=1, help="kerasdqn/SB3 Pong pairs")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="TensorFlow inter- and intra-op threads and torch threads of every run",
    )
    parser.add_argument("--steps", type=int, default=10_000, help="timed CartPole env steps")
    parser.add_argument("--warmup", type=int, default=1_000, help="CartPole warm-up env steps")
    parser.add_argument("--atari-steps", type=int, default=1_000, help="timed Atari env steps")
    parser.add_argument("--atari-warmup", type=int, default=1_000, help="Atari warm-up steps")
    parser.add_argument("--no-atari", action="store_true", help="skip the Atari comparison")
    parser.add_argument("--quick", action="store_true", help="smoke run: few steps, one pair")
    parser.add_argument("--worker", choices=["kerasdqn", "sb3"], help="internal: one run")
    parser.add_argument("--game", choices=["cartpole", "atari"], help="internal: one run")
    parser.add_argument("--envs", type=int, default=1, help="internal: one run's env count")
    args = parser.parse_args()
    if args.quick:
        args.pairs, args.steps, args.atari_steps, args.atari_warmup = 1, 2_000, 300, 300
    return args


# --------------------------------------------------------------------------- workers


def cartpole_setting(args: argparse.Namespace) -> common.Setting:
    """The 64x64 setting, over this run's total steps."""
    total = args.warmup + LEARNING_STEPS_IN_WARMUP + args.steps
    return replace(common.SETTINGS["64x64"], steps=total, learning_starts=args.warmup)


def sb3_schedule(nb_envs: int) -> dict:
    """SB3's ``train_freq`` (in vector steps) and ``gradient_steps`` giving one gradient step
    per ``GRADIENT_STEPS_PER_ENV_STEP`` environment steps with ``nb_envs`` environments."""
    return {
        "train_freq": max(1, GRADIENT_STEPS_PER_ENV_STEP // nb_envs),
        "gradient_steps": max(1, nb_envs // GRADIENT_STEPS_PER_ENV_STEP),
    }


def timed(train, warmup_steps: int, steps: int) -> float:
    """Environment steps per second of ``train(steps)`` after ``train(warmup_steps)``."""
    train(warmup_steps)
    start = time.perf_counter()
    train(steps)
    return steps / (time.perf_counter() - start)


def kerasdqn_cartpole(args: argparse.Namespace) -> float:
    import gymnasium

    common.tensorflow_threads(args.threads)
    setting = cartpole_setting(args)
    agent = common.kerasdqn_agent(setting, seed=0)
    envs = gymnasium.vector.SyncVectorEnv(
        [lambda: gymnasium.make(common.ENV_ID) for _ in range(args.envs)]
    )
    envs.reset(seed=0)
    warmup = args.warmup + LEARNING_STEPS_IN_WARMUP
    return timed(lambda n: agent.fit(envs, nb_steps=n, verbose=0), warmup, args.steps)


def sb3_cartpole(args: argparse.Namespace) -> float:
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv

    common.torch_threads(args.threads)
    setting = cartpole_setting(args)
    setting = replace(setting, **sb3_schedule(args.envs))
    envs = make_vec_env(common.ENV_ID, n_envs=args.envs, seed=0, vec_env_cls=DummyVecEnv)
    model = common.sb3_model(setting, envs, seed=0)
    return timed(
        lambda n: model.learn(total_timesteps=n, reset_num_timesteps=False),
        args.warmup + LEARNING_STEPS_IN_WARMUP,
        args.steps,
    )


def atari_envs(nb_envs: int, frame_stack: bool):
    """``nb_envs`` makers of ``make_atari``'s game (seeds 0, 1, ...), stacked 4 frames deep
    by gymnasium's wrapper if ``frame_stack``."""
    import gymnasium

    from kerasdqn.envs import make_atari

    def maker(seed):
        def make():
            env = make_atari(ATARI_ID, seed=seed)
            return gymnasium.wrappers.FrameStackObservation(env, 4) if frame_stack else env

        return make

    return [maker(seed) for seed in range(nb_envs)]


def atari_config(args: argparse.Namespace):
    from kerasdqn.config import DQNConfig

    total = args.atari_warmup + LEARNING_STEPS_IN_WARMUP + args.atari_steps
    return DQNConfig(
        steps=total,
        lr=1e-4,
        lr_end=None,
        batch_size=32,
        gamma=0.99,
        memory=total,
        warmup=args.atari_warmup,
        train_interval=GRADIENT_STEPS_PER_ENV_STEP,
        gradient_steps=1,
        n_step=1,
        target_update=1_000,
        eps_end=0.01,
        eps_fraction=0.1,
        double=False,
        delta_clip=1.0,
        adam_epsilon=common.ADAM_EPSILON,
        max_grad_norm=common.MAX_GRAD_NORM,
    )


def kerasdqn_atari(args: argparse.Namespace) -> float:
    import gymnasium
    import keras

    from kerasdqn.envs import make_atari
    from kerasdqn.training import build_agent

    common.tensorflow_threads(args.threads)
    keras.utils.set_random_seed(0)
    agent = build_agent(make_atari(ATARI_ID, seed=0), atari_config(args))
    envs = gymnasium.vector.AsyncVectorEnv(atari_envs(args.envs, frame_stack=False))
    warmup = args.atari_warmup + LEARNING_STEPS_IN_WARMUP
    rate = timed(lambda n: agent.fit(envs, nb_steps=n, verbose=0), warmup, args.atari_steps)
    envs.close()
    return rate


def sb3_atari(args: argparse.Namespace) -> float:
    from stable_baselines3 import DQN
    from stable_baselines3.common.vec_env import SubprocVecEnv

    common.torch_threads(args.threads)
    envs = SubprocVecEnv(atari_envs(args.envs, frame_stack=True))
    total = args.atari_warmup + LEARNING_STEPS_IN_WARMUP + args.atari_steps
    model = DQN(
        "CnnPolicy",
        envs,
        learning_rate=1e-4,
        buffer_size=total,
        learning_starts=args.atari_warmup,
        batch_size=32,
        gamma=0.99,
        target_update_interval=1_000,
        exploration_fraction=0.1,
        exploration_final_eps=0.01,
        max_grad_norm=common.MAX_GRAD_NORM,
        optimize_memory_usage=False,
        seed=0,
        device="cpu",
        verbose=0,
        **sb3_schedule(args.envs),
    )
    rate = timed(
        lambda n: model.learn(total_timesteps=n, reset_num_timesteps=False),
        args.atari_warmup + LEARNING_STEPS_IN_WARMUP,
        args.atari_steps,
    )
    envs.close()
    return rate


WORKERS = {
    ("kerasdqn", "cartpole"): kerasdqn_cartpole,
    ("sb3", "cartpole"): sb3_cartpole,
    ("kerasdqn", "atari"): kerasdqn_atari,
    ("sb3", "atari"): sb3_atari,
}


# --------------------------------------------------------------------------- parent


def run_pairs(args: argparse.Namespace, game: str, nb_envs: int, pairs: int) -> dict:
    """Median env steps/s of each library over ``pairs`` alternating pairs of runs."""
    rates: dict[str, list[float]] = {"kerasdqn": [], "sb3": []}
    options = [
        f"--steps={args.steps}",
        f"--warmup={args.warmup}",
        f"--atari-steps={args.atari_steps}",
        f"--atari-warmup={args.atari_warmup}",
        f"--game={game}",
        f"--envs={nb_envs}",
        f"--threads={args.threads}",
    ]
    for index in range(pairs):
        order = ["kerasdqn", "sb3"] if index % 2 == 0 else ["sb3", "kerasdqn"]
        for library in order:
            result = common.run_worker(__file__, [f"--worker={library}", *options])
            rates[library].append(result["rate"])
    return {library: common.median(values) for library, values in rates.items()}


def print_row(label: str, rates: dict) -> bool:
    ratio = rates["kerasdqn"] / rates["sb3"]
    print(
        f"{label:<22} {rates['kerasdqn']:>10.0f} {rates['sb3']:>10.0f} {ratio:>8.2f}x"
        f"  {'met' if ratio >= GOAL_RATIO else 'NOT met'}",
        flush=True,
    )
    return ratio >= GOAL_RATIO


def main() -> None:
    args = parse_args()
    if args.worker is not None:
        rate = WORKERS[(args.worker, args.game)](args)
        common.report({"rate": rate})
        return
    print(
        f"env steps/s of training, median of {args.pairs} alternating pair(s) "
        f"({args.atari_pairs} for Pong), {args.threads} thread(s) each, {os.cpu_count()} CPU "
        f"cores; goal kerasdqn >= {GOAL_RATIO}x SB3"
    )
    print(f"{'run':<22} {'kerasdqn':>10} {'SB3':>10} {'ratio':>9}")
    met = []
    for nb_envs in args.sizes:
        rates = run_pairs(args, "cartpole", nb_envs, args.pairs)
        met.append(print_row(f"CartPole x{nb_envs} (sync)", rates))
    if not args.no_atari:
        rates = run_pairs(args, "atari", ATARI_ENVS, args.atari_pairs)
        met.append(print_row(f"Pong x{ATARI_ENVS} (subprocess)", rates))
    print(f"goal met at every size: {all(met)}")


if __name__ == "__main__":
    main()
