"""DQNAgent: the TD target and gradient step against NumPy, and known-answer MDPs."""

import gymnasium
import keras
import numpy as np
import pytest

from kerasdqn import DQNAgent, EpsGreedyQPolicy, SequentialMemory
from kerasdqn.inference import SmallBatchNumpyQFunction
from kerasdqn.targets import soft_update

GAMMA = 0.5


def linear_model(nb_inputs: int, nb_actions: int = 2, use_bias: bool = True) -> keras.Model:
    """Q = x W + b: small enough to differentiate by hand."""
    return keras.Sequential(
        [
            keras.Input((1, nb_inputs)),
            keras.layers.Flatten(),
            keras.layers.Dense(nb_actions, use_bias=use_bias, kernel_initializer="zeros"),
        ]
    )


def hand_built_memory() -> SequentialMemory:
    """Four transitions: one terminated, one truncated, two ordinary.

    Positions: 0 -> 1 terminated (1 final); 2 -> 3 truncated (3 final); 4 -> 5 -> 6.
    """
    rng = np.random.default_rng(1)
    obs = [rng.normal(size=3).astype(np.float32) for _ in range(7)]
    memory = SequentialMemory(limit=20, window_length=1)
    memory.append(obs[0], 1, 1.0, terminal=True)
    memory.append_final(obs[1])
    memory.append(obs[2], 0, -2.0, terminal=False, truncated=True)
    memory.append_final(obs[3])
    memory.append(obs[4], 1, 0.5, terminal=False)
    memory.append(obs[5], 0, 3.0, terminal=False)
    memory.append(obs[6], 0, 0.0, terminal=False)
    return memory


def numpy_gradient_step(weights, target_weights, batch, lr, double, delta_clip):
    """One SGD step on mean Huber(y - Q(s, a)), computed by hand. Returns (W, b, loss)."""
    W, b = weights
    Wt, bt = target_weights
    s0, s1 = batch.state0[:, 0], batch.state1[:, 0]
    next_target = s1 @ Wt + bt
    if double:
        best = np.argmax(s1 @ W + b, axis=1)
        next_value = next_target[np.arange(len(best)), best]
    else:
        next_value = next_target.max(axis=1)
    y = batch.reward + GAMMA * (1.0 - batch.terminal1) * next_value
    q = s0 @ W + b
    rows = np.arange(len(y))
    error = y - q[rows, batch.action]
    small = np.abs(error) < delta_clip
    loss = np.where(small, 0.5 * error**2, delta_clip * (np.abs(error) - 0.5 * delta_clip))
    dloss_dq = -np.where(small, error, delta_clip * np.sign(error)) / len(y)
    grad_W = np.zeros_like(W)
    grad_b = np.zeros_like(b)
    for i, action in enumerate(batch.action):
        grad_W[:, action] += s0[i] * dloss_dq[i]
        grad_b[action] += dloss_dq[i]
    return W - lr * grad_W, b - lr * grad_b, loss.mean(), q.max(axis=1).mean()


@pytest.mark.parametrize("double", [False, True], ids=["dqn", "double_dqn"])
@pytest.mark.parametrize("delta_clip", [np.inf, 0.5], ids=["squared", "huber"])
def test_gradient_step_matches_numpy_reference(double, delta_clip):
    memory = hand_built_memory()
    agent = DQNAgent(
        linear_model(3),
        nb_actions=2,
        memory=memory,
        gamma=GAMMA,
        batch_size=4,
        enable_double_dqn=double,
        delta_clip=delta_clip,
        target_model_update=10_000,
    )
    agent.compile(keras.optimizers.SGD(learning_rate=0.1))
    rng = np.random.default_rng(2)
    online = [rng.normal(size=(3, 2)).astype(np.float32), rng.normal(size=2).astype(np.float32)]
    target = [rng.normal(size=(3, 2)).astype(np.float32), rng.normal(size=2).astype(np.float32)]
    agent.model.set_weights(online)
    agent.target_model.set_weights(target)
    batch = memory.batch_at(np.array([0, 2, 4, 5]))

    stats = agent.learn(batch)

    W, b, loss, mean_q = numpy_gradient_step(online, target, batch, 0.1, double, delta_clip)
    new_W, new_b = agent.model.get_weights()
    np.testing.assert_allclose(new_W, W, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new_b, b, rtol=1e-5, atol=1e-6)
    assert agent.metrics_names == ["loss", "mean_q"]
    np.testing.assert_allclose(stats, [loss, mean_q], rtol=1e-5)


def test_terminated_transition_does_not_bootstrap_but_truncated_one_does():
    batch = hand_built_memory().batch_at(np.array([0, 2]))
    assert batch.terminal1.tolist() == [True, False]


def test_learn_rejects_a_batch_of_the_wrong_size():
    memory = hand_built_memory()
    agent = DQNAgent(linear_model(3), nb_actions=2, memory=memory, batch_size=4)
    agent.compile("sgd")
    with pytest.raises(ValueError, match="batch: expected batch_size"):
        agent.learn(memory.batch_at(np.array([0, 2])))


def test_metrics_are_computed_on_targets_and_predictions():
    memory = hand_built_memory()
    agent = DQNAgent(linear_model(3), nb_actions=2, memory=memory, gamma=GAMMA, batch_size=4)
    agent.compile(keras.optimizers.SGD(learning_rate=0.0), metrics=["mae", "mse"])
    rng = np.random.default_rng(3)
    weights = [rng.normal(size=(3, 2)).astype(np.float32), rng.normal(size=2).astype(np.float32)]
    agent.model.set_weights(weights)
    agent.target_model.set_weights(weights)
    batch = memory.batch_at(np.array([0, 2, 4, 5]))

    loss, mae, mse, _ = agent.learn(batch)

    W, b = weights
    next_value = (batch.state1[:, 0] @ W + b).max(axis=1)
    y = batch.reward + GAMMA * (1.0 - batch.terminal1) * next_value
    q_taken = (batch.state0[:, 0] @ W + b)[np.arange(4), batch.action]
    assert agent.metrics_names == ["loss", "mae", "mse", "mean_q"]
    np.testing.assert_allclose(mae, np.abs(y - q_taken).mean(), rtol=1e-5)
    np.testing.assert_allclose(mse, ((y - q_taken) ** 2).mean(), rtol=1e-5)
    np.testing.assert_allclose(loss, 0.5 * mse, rtol=1e-5)


# --------------------------------------------------------------------------- target updates


def test_soft_update_arithmetic_is_exact():
    target = [keras.Variable(np.array([1.0, 2.0, -4.0], dtype=np.float32))]
    online = [keras.Variable(np.array([3.0, -2.0, 4.0], dtype=np.float32))]
    soft_update(target, online, tau=0.25)
    # (1 - tau) * target + tau * online, in dyadic numbers that float32 holds exactly.
    np.testing.assert_array_equal(target[0].numpy(), [1.5, 1.0, -2.0])


@pytest.mark.parametrize("gradient_steps", [1, 2])
def test_soft_target_update_follows_every_gradient_step(gradient_steps):
    memory = hand_built_memory()
    agent = DQNAgent(
        linear_model(3),
        nb_actions=2,
        memory=memory,
        batch_size=2,
        target_model_update=0.25,
        gradient_steps=gradient_steps,
    )
    agent.compile(keras.optimizers.SGD(learning_rate=0.0))
    online = [np.full((3, 2), 4.0, np.float32), np.full(2, -8.0, np.float32)]
    agent.model.set_weights(online)
    agent.target_model.set_weights([np.zeros((3, 2), np.float32), np.zeros(2, np.float32)])

    agent.learn(memory.batch_at(np.array([0, 2, 4, 5])[: 2 * gradient_steps]))

    kept = 0.75**gradient_steps
    expected = [(1 - kept) * weight for weight in online]
    for actual, wanted in zip(agent.target_model.get_weights(), expected):
        np.testing.assert_array_equal(actual, wanted)


@pytest.mark.parametrize("gradient_steps", [1, 2])
@pytest.mark.parametrize("network", ["mlp", "cnn"])
def test_acting_reads_the_weights_the_last_gradient_step_wrote(gradient_steps, network):
    memory = hand_built_memory()
    if network == "mlp":
        layers = [keras.layers.Flatten(), keras.layers.Dense(5, activation="relu")]
    else:  # acting runs this one on NumPy for one state, compiled for several
        layers = [
            keras.layers.Reshape((1, 3, 1)),
            keras.layers.Conv2D(4, (1, 2), activation="relu"),
            keras.layers.Flatten(),
        ]
    model = keras.Sequential([keras.Input((1, 3)), *layers, keras.layers.Dense(2)])
    agent = DQNAgent(
        model, nb_actions=2, memory=memory, batch_size=2, gradient_steps=gradient_steps
    )
    agent.compile(keras.optimizers.SGD(learning_rate=0.5))
    assert isinstance(agent._q_function, SmallBatchNumpyQFunction) == (network == "cnn")
    states = np.random.default_rng(0).normal(size=(6, 1, 3)).astype(np.float32)
    before = agent.compute_batch_q_values(states)
    one_before = agent.compute_q_values(states[0])

    agent.learn(memory.batch_at(np.array([0, 2, 4, 5])[: 2 * gradient_steps]))

    after = agent.compute_batch_q_values(states)
    expected = keras.ops.convert_to_numpy(agent.model(states))
    assert not np.allclose(after, before)
    np.testing.assert_allclose(after, expected, atol=1e-5)
    one_after = agent.compute_q_values(states[0])
    assert not np.allclose(one_after, one_before)
    np.testing.assert_allclose(one_after, expected[0], atol=1e-5)


def test_hard_target_update_copies_when_the_step_is_a_multiple_of_the_interval():
    agent = DQNAgent(
        linear_model(3),
        nb_actions=2,
        memory=SequentialMemory(10),
        target_model_update=3,
        nb_steps_warmup=100,
    )
    agent.compile("sgd")
    new_weights = [np.ones((3, 2), np.float32), np.full(2, 2.0, np.float32)]
    agent.model.set_weights(new_weights)
    agent.training = True

    agent.step = 4
    agent.forward(np.zeros(3, np.float32))
    agent.backward(0.0, terminal=False)
    assert not np.array_equal(agent.target_model.get_weights()[0], new_weights[0])

    agent.step = 6
    agent.forward(np.zeros(3, np.float32))
    agent.backward(0.0, terminal=False)
    for actual, wanted in zip(agent.target_model.get_weights(), new_weights):
        np.testing.assert_array_equal(actual, wanted)


def test_target_model_update_chooses_soft_or_hard():
    soft = DQNAgent(
        linear_model(3), nb_actions=2, memory=hand_built_memory(), target_model_update=1e-2
    )
    hard = DQNAgent(
        linear_model(3), nb_actions=2, memory=hand_built_memory(), target_model_update=500
    )
    assert soft.target_update.tau == 1e-2
    assert hard.target_update.interval == 500


# --------------------------------------------------------------------------- known answers


class OneHotCountdown(gymnasium.Env):
    """Reward 1 a step; terminates after ``length`` steps. The observation is the one-hot
    step index, so Q(t, a) = 1 + gamma + ... + gamma^(length - t - 1) for both actions."""

    def __init__(self, length: int = 3):
        self.length = length
        self.observation_space = gymnasium.spaces.Box(0.0, 1.0, (length + 1,), np.float32)
        self.action_space = gymnasium.spaces.Discrete(2)

    def _observation(self):
        return np.eye(self.length + 1, dtype=np.float32)[self.t]

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._observation(), {}

    def step(self, action):
        self.t += 1
        return self._observation(), 1.0, self.t == self.length, False, {}


class EndlessLoop(gymnasium.Env):
    """One state, reward 1 a step, never terminates: Q = 1 / (1 - gamma) for both actions."""

    observation_space = gymnasium.spaces.Box(1.0, 1.0, (1,), np.float32)
    action_space = gymnasium.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.ones(1, np.float32), {}

    def step(self, action):
        return np.ones(1, np.float32), 1.0, False, False, {}


def train_tabular(env, nb_steps=3000, n_step=1, **fit_kwargs) -> DQNAgent:
    nb_inputs = env.observation_space.shape[0]
    agent = DQNAgent(
        linear_model(nb_inputs, use_bias=False),
        nb_actions=2,
        memory=SequentialMemory(limit=5000),
        policy=EpsGreedyQPolicy(eps=1.0),
        gamma=GAMMA,
        batch_size=32,
        nb_steps_warmup=100,
        target_model_update=0.1,
        n_step=n_step,
        seed=0,
    )
    agent.compile(keras.optimizers.Adam(learning_rate=0.02))
    agent.fit(env, nb_steps=nb_steps, verbose=0, **fit_kwargs)
    return agent


@pytest.mark.parametrize("n_step", [1, 3], ids=["1-step", "3-step"])
def test_q_values_converge_to_the_known_answer_when_episodes_terminate(n_step):
    env = OneHotCountdown(length=3)
    agent = train_tabular(env, n_step=n_step)
    expected = {0: 1.75, 1: 1.5, 2: 1.0}
    for t, value in expected.items():
        q_values = agent.compute_q_values(np.eye(4, dtype=np.float32)[t][np.newaxis])
        np.testing.assert_allclose(q_values, [value, value], atol=0.05)


@pytest.mark.parametrize("n_step", [1, 3], ids=["1-step", "3-step"])
def test_time_limit_truncation_bootstraps_to_the_infinite_horizon_value(n_step):
    env = gymnasium.wrappers.TimeLimit(EndlessLoop(), max_episode_steps=3)
    agent = train_tabular(env, n_step=n_step)
    q_values = agent.compute_q_values(np.ones((1, 1), np.float32))
    # 1 / (1 - gamma) = 2. Treating the time limit as terminal (keras-rl) would give 1.5.
    np.testing.assert_allclose(q_values, [2.0, 2.0], atol=0.05)


def test_nb_max_episode_steps_is_a_truncation_too():
    agent = train_tabular(EndlessLoop(), nb_max_episode_steps=3)
    q_values = agent.compute_q_values(np.ones((1, 1), np.float32))
    np.testing.assert_allclose(q_values, [2.0, 2.0], atol=0.05)


# --------------------------------------------------------------------------- the loop


def test_step_counter_continues_across_fit_calls(cartpole):
    agent = DQNAgent(
        linear_model(4), nb_actions=2, memory=SequentialMemory(1000), nb_steps_warmup=50, seed=0
    )
    agent.compile("adam")
    first = agent.fit(cartpole, nb_steps=120, verbose=0)
    second = agent.fit(cartpole, nb_steps=80, verbose=0)
    assert agent.step == 200
    assert first.history["nb_steps"][-1] <= 120 < second.history["nb_steps"][0] <= 200


def test_no_learning_happens_during_warm_up(cartpole):
    agent = DQNAgent(
        linear_model(4), nb_actions=2, memory=SequentialMemory(1000), nb_steps_warmup=10_000, seed=0
    )
    agent.compile("adam")
    before = agent.model.get_weights()
    history = agent.fit(cartpole, nb_steps=300, verbose=0)
    assert all(np.isnan(loss) for loss in history.history["loss"])
    for old, new in zip(before, agent.model.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_test_leaves_memory_and_step_counter_alone(cartpole):
    agent = DQNAgent(linear_model(4), nb_actions=2, memory=SequentialMemory(1000), seed=0)
    agent.compile("adam")
    agent.fit(cartpole, nb_steps=50, verbose=0)
    entries, step = agent.memory.nb_entries, agent.step
    history = agent.test(cartpole, nb_episodes=3, visualize=False, verbose=0)
    assert (agent.memory.nb_entries, agent.step) == (entries, step)
    assert len(history.history["episode_reward"]) == 3
    assert history.history["nb_steps"] == history.history["nb_episode_steps"]


def test_same_seed_gives_the_same_training_run():
    def run():
        keras.utils.set_random_seed(7)
        env = gymnasium.make("CartPole-v1")
        env.reset(seed=7)
        agent = DQNAgent(
            linear_model(4),
            nb_actions=2,
            memory=SequentialMemory(1000),
            nb_steps_warmup=20,
            target_model_update=0.01,
            seed=7,
        )
        agent.compile("adam")
        history = agent.fit(env, nb_steps=400, verbose=0)
        return history.history["episode_reward"], agent.model.get_weights()

    rewards_a, weights_a = run()
    rewards_b, weights_b = run()
    assert rewards_a == rewards_b
    for a, b in zip(weights_a, weights_b):
        np.testing.assert_array_equal(a, b)


def test_a_non_finite_reward_stops_training_with_a_clear_error():
    class NanReward(EndlessLoop):
        def step(self, action):
            return np.ones(1, np.float32), float("nan"), False, False, {}

    agent = DQNAgent(linear_model(1), nb_actions=2, memory=SequentialMemory(100))
    agent.compile("adam")
    with pytest.raises(FloatingPointError, match="reward at step 0 is nan"):
        agent.fit(NanReward(), nb_steps=10, verbose=0)


def test_integer_observations_of_a_discrete_space_feed_an_embedding_model():
    env = gymnasium.make("FrozenLake-v1", is_slippery=False)
    env.reset(seed=0)
    model = keras.Sequential(
        [
            keras.Input((1,), dtype="int32"),
            keras.layers.Embedding(16, 8),
            keras.layers.Flatten(),
            keras.layers.Dense(4),
        ]
    )
    agent = DQNAgent(
        model,
        nb_actions=4,
        memory=SequentialMemory(5000),
        policy=EpsGreedyQPolicy(0.5),
        gamma=0.9,
        nb_steps_warmup=200,
        target_model_update=0.05,
        seed=0,
    )
    agent.compile(keras.optimizers.Adam(0.01))
    agent.fit(env, nb_steps=4000, verbose=0)

    history = agent.test(env, nb_episodes=2, visualize=False, verbose=0)
    assert history.history["episode_reward"] == [1.0, 1.0]
    assert history.history["nb_episode_steps"] == [6, 6]
    # The goal is six moves away and pays 1: the best start action is worth gamma^5.
    assert max(agent.compute_q_values(np.array([0]))) == pytest.approx(0.9**5, abs=0.03)
