"""Ape-X on Ray against one process, on CartPole-v1.

Measures, side by side in one run:
  1. acting: environment steps/s reaching the learner with 1, 2 and 4 actors (the learner
     only stores, it does not train), and one actor's cost per step without Ray;
  2. the learner's costs: storing one transition, one gradient step (updates/s);
  3. a training run with 2 actors, taking chunks as they arrive and in turn (``ordered``),
     against plain ``fit`` in one process, same settings: env steps/s, and the
     weight-publishing lag (gradient steps and seconds from a publication to the first chunk
     acting on it);
then extrapolates from the measured per-actor and per-update costs to a 64-core cluster.

    nice -n 5 python benchmarks/bench_distributed.py
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gymnasium  # noqa: E402
import keras  # noqa: E402
import ray  # noqa: E402

from kerasdqn.config import DQNConfig  # noqa: E402
from kerasdqn.distributed import ActorSettings, ActorWorker, ApeX, build_apex_agent  # noqa: E402

ENV = "CartPole-v1"


def config(steps: int, warmup: int) -> DQNConfig:
    """The preset's learning settings on a 64x64 network."""
    return DQNConfig(steps=steps, hidden=(64, 64), warmup=warmup, memory=100_000)


def apex_for(nb_actors: int, settings: DQNConfig, ordered: bool = False) -> ApeX:
    keras.utils.set_random_seed(0)
    agent = build_apex_agent(gymnasium.make(ENV), settings)
    return ApeX(agent, ENV, nb_actors=nb_actors, ordered=ordered)


def acting_rate(nb_actors: int, steps: int) -> float:
    """Env steps/s stored by the learner with ``nb_actors`` actors and no training."""
    apex = apex_for(nb_actors, config(10**9, warmup=10**9))
    try:
        apex.fit(2_000)  # the actors' processes start and warm up
        start, first = time.perf_counter(), apex.agent.step
        apex.fit(steps)
        return (apex.agent.step - first) / (time.perf_counter() - start)
    finally:
        apex.close()


def actor_step_cost(steps: int) -> float:
    """Seconds per environment step of one actor in this process (acting + priorities)."""
    agent = build_apex_agent(gymnasium.make(ENV), config(1, 0))
    weights = (agent.model.get_weights(), agent.target_model.get_weights())
    settings = ActorSettings(index=0, epsilon=0.1, chunk_steps=50, n_step=5, double=True)
    actor = ActorWorker(ENV, agent.model.to_json(), settings, weights)
    actor.run_chunk(0)
    start, taken = time.perf_counter(), 0
    while taken < steps:
        taken += actor.run_chunk(0).env_steps
    return (time.perf_counter() - start) / taken


def learner_costs(transitions: int, updates: int) -> tuple[float, float]:
    """Seconds to store one transition and to take one gradient step."""
    agent = build_apex_agent(gymnasium.make(ENV), config(10**6, 0))
    weights = (agent.model.get_weights(), agent.target_model.get_weights())
    settings = ActorSettings(index=0, epsilon=1.0, chunk_steps=transitions, n_step=5)
    chunk = ActorWorker(ENV, agent.model.to_json(), settings, weights).run_chunk(0)
    apex = ApeX(agent, ENV, nb_actors=1)
    start = time.perf_counter()
    apex.learner.ingest(chunk)
    ingest = (time.perf_counter() - start) / len(chunk)
    apex.learner.train(agent.gradient_steps)  # traces the training call
    start = time.perf_counter()
    apex.learner.train(updates)
    return ingest, (time.perf_counter() - start) / updates


def apex_training(settings: DQNConfig, ordered: bool) -> tuple[float, ApeX]:
    """Env steps/s of a training run with 2 actors, and its ``ApeX``."""
    apex = apex_for(2, settings, ordered)
    try:
        apex.start_actors()
        start = time.perf_counter()
        apex.fit(settings.steps)
        return apex.agent.step / (time.perf_counter() - start), apex
    finally:
        apex.close()


def training_runs(steps: int) -> dict:
    """Env steps/s of a training run with 2 actors (chunks as they arrive, and in turn) and
    of ``fit`` in one process."""
    settings = config(steps, warmup=1_000)
    apex_rate, apex = apex_training(settings, ordered=False)
    ordered_rate, _ = apex_training(settings, ordered=True)
    keras.utils.set_random_seed(0)
    env = gymnasium.make(ENV)
    agent = build_apex_agent(env, settings)
    start = time.perf_counter()
    agent.fit(env, nb_steps=steps, verbose=0)
    fit_rate = steps / (time.perf_counter() - start)
    return {
        "apex": apex_rate,
        "ordered": ordered_rate,
        "fit": fit_rate,
        "stats": apex.stats,
        "ratio": apex.learner.ratio,
    }


def extrapolate(actor_cost: float, ingest: float, update: float, ratio: float) -> None:
    """What N actors would feed and where one learner saturates."""
    learner_per_step = ingest + ratio * update
    print("\nExtrapolation (one core per actor, one learner core):")
    print(f"  actor: {actor_cost * 1e6:.0f} us/step -> {1 / actor_cost:.0f} steps/s per actor")
    print(
        f"  learner: {ingest * 1e6:.0f} us to store a step + {ratio:g} x {update * 1e3:.2f} ms "
        f"per gradient step = {learner_per_step * 1e6:.0f} us per env step -> saturates at "
        f"{1 / learner_per_step:.0f} env steps/s"
    )
    saturating = (1 / learner_per_step) * actor_cost
    print(f"  the learner keeps up with about {saturating:.2f} actors")
    for cores in (8, 16, 64):
        supply = (cores - 1) / actor_cost
        print(
            f"  {cores} cores: {cores - 1} actors would act {supply:.0f} steps/s; the learner "
            f"takes {min(supply, 1 / learner_per_step):.0f} steps/s at ratio {ratio:g}"
        )
    store_only = 1 / ingest
    print(
        f"  without training (ratio 0), storing alone caps the learner at {store_only:.0f} "
        f"steps/s, i.e. {store_only * actor_cost:.0f} actors"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--acting-steps", type=int, default=10_000)
    parser.add_argument("--train-steps", type=int, default=10_000)
    args = parser.parse_args()
    print(f"CPU cores on this machine: {os.cpu_count()} (4 actors oversubscribe them)")
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    rates = {n: acting_rate(n, args.acting_steps) for n in (1, 2, 4)}
    print("\nActing, learner storing only (env steps/s):")
    for n, rate in rates.items():
        print(f"  {n} actor(s): {rate:8.0f}   ({rate / rates[1]:.2f}x one actor)")
    actor_cost = actor_step_cost(5_000)
    ingest, update = learner_costs(2_000, 512)
    print(f"\nOne actor without Ray: {1 / actor_cost:.0f} env steps/s")
    print(f"Learner: {ingest * 1e6:.1f} us to store a transition, {1 / update:.0f} updates/s")
    runs = training_runs(args.train_steps)
    stats = runs["stats"]
    print(f"\nTraining {args.train_steps} steps, ratio {runs['ratio']:g} gradient steps/env step:")
    print(f"  Ape-X, 2 actors: {runs['apex']:.0f} env steps/s")
    print(
        f"  Ape-X, 2 actors, ordered: {runs['ordered']:.0f} env steps/s "
        f"({runs['ordered'] / runs['apex']:.2f}x as they arrive)"
    )
    print(f"  fit, one process: {runs['fit']:.0f} env steps/s")
    print(f"  ratio Ape-X / fit: {runs['apex'] / runs['fit']:.2f}")
    print(
        f"  weight-publishing lag: {stats['mean_lag_updates']:.1f} gradient steps, "
        f"{stats['mean_lag_seconds'] * 1e3:.0f} ms from publication to the first chunk on it"
    )
    extrapolate(actor_cost, ingest, update, runs["ratio"])
    ray.shutdown()


if __name__ == "__main__":
    main()
