"""Stable-Baselines3's DQN with rl-zoo's tuned settings (hyperparams/dqn.yml), for comparison with
kerasdqn's presets (benchmarks/bench_presets.py): the same environment ids, seeds and greedy
evaluation (episodes on an environment seeded apart from training's).

    python benchmarks/bench_rlzoo_sb3.py Acrobot-v1 --seeds 0 1 --episodes 20

Needs the packages in benchmarks/requirements.txt (stable-baselines3 and the CPU build of torch).
"""

from __future__ import annotations

import argparse
import time

import gymnasium
import numpy as np

# rl-zoo's hyperparams/dqn.yml (LunarLander-v2's entry for LunarLander-v3; gradient_steps -1
# there means as many gradient steps as environment steps collected).
RL_ZOO = {
    "CartPole-v1": dict(
        n_timesteps=200_000, learning_rate=2.5e-4, batch_size=512, buffer_size=100_000,
        learning_starts=0, gamma=0.99, target_update_interval=5000, train_freq=16,
        gradient_steps=4, exploration_fraction=0.06, exploration_final_eps=0.11,
    ),
    "Acrobot-v1": dict(
        n_timesteps=150_000, learning_rate=2.5e-4, batch_size=512, buffer_size=100_000,
        learning_starts=0, gamma=0.99, target_update_interval=5000, train_freq=16,
        gradient_steps=4, exploration_fraction=0.06, exploration_final_eps=0.11,
    ),
    "MountainCar-v0": dict(
        n_timesteps=120_000, learning_rate=4e-3, batch_size=128, buffer_size=10_000,
        learning_starts=1000, gamma=0.98, target_update_interval=5000, train_freq=16,
        gradient_steps=8, exploration_fraction=0.2, exploration_final_eps=0.07,
        net_arch=[256, 256],
    ),
    "LunarLander-v3": dict(
        n_timesteps=150_000, learning_rate=8.8e-4, batch_size=32, buffer_size=1_000_000,
        learning_starts=0, gamma=0.99, target_update_interval=10_000, train_freq=16,
        gradient_steps=-1, exploration_fraction=0.2, exploration_final_eps=0.1,
        net_arch=[256, 256],
    ),
}  # fmt: skip


def run(env_id: str, seed: int, episodes: int) -> tuple[float, float]:
    """One SB3 training run's greedy mean reward and wall seconds."""
    import torch
    from stable_baselines3 import DQN
    from stable_baselines3.common.evaluation import evaluate_policy

    torch.set_num_threads(1)
    settings = dict(RL_ZOO[env_id])
    steps = settings.pop("n_timesteps")
    net_arch = settings.pop("net_arch", None)
    policy_kwargs = {"net_arch": net_arch} if net_arch else None
    start = time.perf_counter()
    model = DQN(
        "MlpPolicy", gymnasium.make(env_id), seed=seed, policy_kwargs=policy_kwargs, **settings
    )
    model.learn(steps)
    eval_env = gymnasium.make(env_id)
    eval_env.reset(seed=seed + 1_000)
    rewards, _ = evaluate_policy(
        model, eval_env, n_eval_episodes=episodes, deterministic=True, return_episode_rewards=True
    )
    return float(np.mean(rewards)), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("env_ids", nargs="+", choices=sorted(RL_ZOO))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--episodes", type=int, default=100, help="greedy evaluation episodes")
    args = parser.parse_args()
    for env_id in args.env_ids:
        for seed in args.seeds:
            reward, seconds = run(env_id, seed, args.episodes)
            print(f"SB3 {env_id:16s} seed {seed}: greedy mean {reward:8.2f}  ({seconds:.0f} s)")


if __name__ == "__main__":
    main()
