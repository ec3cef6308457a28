"""Training throughput on Atari pixels: kerasdqn's ``fit`` beside Stable-Baselines3's
``DQN("CnnPolicy")``, and the cost of one action, on the same pipeline.

Both learn on ``kerasdqn.envs.make_atari``'s game (gymnasium's AtariPreprocessing: no-op starts,
4 frames per step max-pooled, 84x84 grey frames; FIRE on reset, rewards clipped) with states of
4 stacked frames: kerasdqn stacks them in its replay memory (``window_length=4``, each frame
stored once), SB3 gets them from gymnasium's ``FrameStackObservation``. Same network (the Nature
CNN: SB3's ``NatureCNN`` features and a linear Q head), Adam with learning rate 1e-4 and epsilon
1e-8, Huber loss, gradients clipped to norm 10, batch 32, one gradient step every 4 steps, a
target copy every 1,000 steps, gamma 0.99, 1-step targets, no Double DQN.

Each measurement runs in its own subprocess, for each thread count asked for (TensorFlow's intra-
and inter-op threads for kerasdqn, ``torch.set_num_threads`` for SB3), kerasdqn with XLA on and
off (``DQNConfig.xla``: the training step, and acting, since NumPy cannot evaluate a CNN): a
warm-up of --warmup random steps plus 200 learning steps (which also compiles kerasdqn's
training call), then --steps timed learning steps. Acting: microseconds per greedy action on
one state (``DQNAgent.forward`` in test mode, SB3's ``predict(deterministic=True)``), the
median of five blocks of 400.

    python benchmarks/bench_atari.py                       # Pong, 5,000 steps, 1 and 2 threads
    python benchmarks/bench_atari.py --steps 20000 --threads 4 8
"""

from __future__ import annotations

import argparse
import os
import time

import common

ENV_ID = "ALE/Pong-v5"
LEARNING_STEPS_IN_WARMUP = 200
ACTIONS_TIMED = 2_000
SETTINGS = {
    "lr": 1e-4,
    "batch_size": 32,
    "train_freq": 4,
    "target_update": 1_000,
    "gamma": 0.99,
    "eps_end": 0.01,
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--env-id", default=ENV_ID, help="ale-py game")
    parser.add_argument("--steps", type=int, default=5_000, help="timed learning steps")
    parser.add_argument("--warmup", type=int, default=1_000, help="random steps before learning")
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=sorted({1, os.cpu_count() or 1}),
        help="thread counts to measure each library with",
    )
    parser.add_argument("--worker", choices=["kerasdqn", "sb3"], help="internal: one run")
    parser.add_argument("--worker-threads", type=int, default=1, help="internal: with --worker")
    parser.add_argument(
        "--xla",
        nargs="+",
        default=["on", "off"],
        choices=["on", "off"],
        help="kerasdqn with XLA on and/or off (DQNConfig.xla); SB3 runs once per thread count",
    )
    parser.add_argument("--worker-xla", choices=["on", "off"], default="on", help="internal")
    return parser.parse_args()


# --------------------------------------------------------------------------- workers


def microseconds_per_call(function, blocks: int = 5) -> float:
    """The median over ``blocks`` blocks of ``ACTIONS_TIMED / blocks`` calls of ``function``
    of its microseconds per call (the median resists a busy machine's bursts)."""
    calls = ACTIONS_TIMED // blocks
    times = []
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(calls):
            function()
        times.append((time.perf_counter() - start) / calls * 1e6)
    return common.median(times)


def kerasdqn_worker(args: argparse.Namespace) -> dict:
    """kerasdqn: steps/s of ``fit`` after the warm-up, and microseconds per greedy action."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from kerasdqn.config import DQNConfig
    from kerasdqn.envs import make_atari
    from kerasdqn.training import build_agent, configure_threads

    configure_threads(args.worker_threads)
    keras.utils.set_random_seed(0)
    env = make_atari(args.env_id, seed=0)
    total = args.warmup + LEARNING_STEPS_IN_WARMUP + args.steps
    config = DQNConfig(
        steps=total,
        lr=SETTINGS["lr"],
        lr_end=None,
        batch_size=SETTINGS["batch_size"],
        gamma=SETTINGS["gamma"],
        memory=total,
        warmup=args.warmup,
        train_interval=SETTINGS["train_freq"],
        gradient_steps=1,
        n_step=1,
        target_update=SETTINGS["target_update"],
        eps_end=SETTINGS["eps_end"],
        eps_fraction=0.1,
        double=False,
        delta_clip=1.0,
        adam_epsilon=common.ADAM_EPSILON,
        max_grad_norm=common.MAX_GRAD_NORM,
        xla=args.worker_xla == "on",
    )
    agent = build_agent(env, config)
    agent.fit(env, nb_steps=args.warmup + LEARNING_STEPS_IN_WARMUP, verbose=0)
    start = time.perf_counter()
    agent.fit(env, nb_steps=args.steps, verbose=0)
    rate = args.steps / (time.perf_counter() - start)
    observation, _ = env.reset()
    agent.training = False  # act as in test(): the greedy policy, nothing stored
    acting = microseconds_per_call(lambda: agent.forward(observation))
    return {
        "rate": rate,
        "acting_us": acting,
        "threads": args.worker_threads,
        "xla": args.worker_xla,
    }


def sb3_worker(args: argparse.Namespace) -> dict:
    """SB3: steps/s of ``learn`` after the warm-up, and microseconds per ``predict``."""
    import gymnasium
    import torch
    from stable_baselines3 import DQN

    from kerasdqn.envs import make_atari

    torch.set_num_threads(args.worker_threads)
    env = gymnasium.wrappers.FrameStackObservation(make_atari(args.env_id, seed=0), 4)
    total = args.warmup + LEARNING_STEPS_IN_WARMUP + args.steps
    model = DQN(
        "CnnPolicy",
        env,
        learning_rate=SETTINGS["lr"],
        buffer_size=total,
        learning_starts=args.warmup,
        batch_size=SETTINGS["batch_size"],
        gamma=SETTINGS["gamma"],
        train_freq=SETTINGS["train_freq"],
        gradient_steps=1,
        target_update_interval=SETTINGS["target_update"],
        exploration_fraction=0.1,
        exploration_final_eps=SETTINGS["eps_end"],
        max_grad_norm=common.MAX_GRAD_NORM,
        seed=0,
        device="cpu",
        verbose=0,
    )
    model.learn(total_timesteps=args.warmup + LEARNING_STEPS_IN_WARMUP)
    start = time.perf_counter()
    model.learn(total_timesteps=args.steps, reset_num_timesteps=False)
    rate = args.steps / (time.perf_counter() - start)
    observation, _ = env.reset()
    acting = microseconds_per_call(lambda: model.predict(observation, deterministic=True))
    return {"rate": rate, "acting_us": acting, "threads": torch.get_num_threads(), "xla": "-"}


# --------------------------------------------------------------------------- parent


def measure(args: argparse.Namespace) -> dict[str, list[dict]]:
    """Each library at each thread count (kerasdqn with XLA on and off), each run in its own
    subprocess, alternating the order."""
    results: dict[str, list[dict]] = {"kerasdqn": [], "sb3": []}
    for index, threads in enumerate(args.threads):
        runs = [("kerasdqn", xla) for xla in args.xla] + [("sb3", "on")]
        for library, xla in runs if index % 2 == 0 else runs[::-1]:
            arguments = ["--worker", library, "--worker-threads", str(threads)]
            arguments += ["--env-id", args.env_id, "--steps", str(args.steps)]
            arguments += ["--warmup", str(args.warmup), "--worker-xla", xla]
            result = common.run_worker(__file__, arguments)
            results[library].append(result)
            print(
                f"  {library:8s} {threads} thread(s), XLA {result['xla']:3s}: "
                f"{result['rate']:6.1f} steps/s, {result['acting_us']:7.0f} us per action",
                flush=True,
            )
    return results


def print_table(args: argparse.Namespace, results: dict[str, list[dict]]) -> None:
    print(f"\n{args.env_id}, {args.steps} timed learning steps after {args.warmup} random ones")
    print("\n| library | threads | XLA | env steps/s in fit | us per greedy action |")
    print("|---|---:|---|---:|---:|")
    for library, runs in results.items():
        for run in runs:
            print(
                f"| {library} | {run['threads']} | {run['xla']} | {run['rate']:,.1f} "
                f"| {run['acting_us']:,.0f} |"
            )
    best = {library: max(runs, key=lambda run: run["rate"]) for library, runs in results.items()}
    ratio = best["kerasdqn"]["rate"] / best["sb3"]["rate"]
    print(
        f"\nTraining, best of each: kerasdqn {best['kerasdqn']['rate']:.1f} steps/s "
        f"({best['kerasdqn']['threads']} threads, XLA {best['kerasdqn']['xla']}), "
        f"SB3 {best['sb3']['rate']:.1f} steps/s "
        f"({best['sb3']['threads']} torch threads): kerasdqn/SB3 = {ratio:.2f}x"
    )
    fastest = {
        library: min(runs, key=lambda run: run["acting_us"]) for library, runs in results.items()
    }
    speedup = fastest["sb3"]["acting_us"] / fastest["kerasdqn"]["acting_us"]
    print(
        f"Acting, best of each: kerasdqn {fastest['kerasdqn']['acting_us']:.0f} us "
        f"({fastest['kerasdqn']['threads']} threads), SB3 {fastest['sb3']['acting_us']:.0f} us "
        f"({fastest['sb3']['threads']} torch threads): kerasdqn acts {speedup:.2f}x as fast"
    )


def main() -> None:
    args = parse_args()
    if args.worker == "kerasdqn":
        common.report(kerasdqn_worker(args))
    elif args.worker == "sb3":
        common.report(sb3_worker(args))
    else:
        print_table(args, measure(args))


if __name__ == "__main__":
    main()
