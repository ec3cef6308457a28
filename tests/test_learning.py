"""A short training run in which CartPole clearly improves (the long runs live in benchmarks/)."""

import gymnasium
import keras
import numpy as np

from kerasdqn import DQNAgent, EpsGreedyQPolicy, LinearAnnealedPolicy, SequentialMemory, build_mlp


def greedy_mean_reward(agent, episodes: int, seed: int) -> float:
    env = gymnasium.make("CartPole-v1")
    env.reset(seed=seed)
    history = agent.test(env, nb_episodes=episodes, visualize=False, verbose=0)
    return float(np.mean(history.history["episode_reward"]))


def test_cartpole_clearly_improves_within_15000_steps():
    env = gymnasium.make("CartPole-v1")
    env.reset(seed=0)
    policy = LinearAnnealedPolicy(EpsGreedyQPolicy(), "eps", 1.0, 0.04, 0.0, nb_steps=2400)
    agent = DQNAgent(
        build_mlp((1, 4), 2, (64, 64)),
        nb_actions=2,
        policy=policy,
        memory=SequentialMemory(limit=20_000),
        nb_steps_warmup=1000,
        batch_size=64,
        train_interval=256,
        gradient_steps=128,
        n_step=5,
        target_model_update=10,
        enable_double_dqn=True,
        delta_clip=1.0,
        seed=0,
    )
    updates = (15_000 - 1000) // 256 * 128
    learning_rate = keras.optimizers.schedules.PolynomialDecay(2.3e-3, updates, 1e-5)
    agent.compile(keras.optimizers.Adam(learning_rate=learning_rate))
    before = greedy_mean_reward(agent, episodes=10, seed=100)

    history = agent.fit(env, nb_steps=15_000, verbose=0)

    after = greedy_mean_reward(agent, episodes=10, seed=100)
    rewards = history.history["episode_reward"]
    assert after >= 200 and after >= 2 * before, f"greedy mean {after} (before: {before})"
    assert np.mean(rewards[-10:]) > 3 * np.mean(rewards[:10])
