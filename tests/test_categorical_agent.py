"""CategoricalDQNAgent (C51): the training step against NumPy, a chain whose return
distributions are known, CartPole, and weights, checkpoints and whole-agent files."""

import gymnasium
import keras
import numpy as np
import pytest

from kerasdqn import (
    CategoricalDQNAgent,
    DQNAgent,
    EpsGreedyQPolicy,
    QuantileDQNAgent,
    SequentialMemory,
    build_mlp,
)
from kerasdqn.inference import NumpyQFunction
from kerasdqn.memory import PrioritizedMemory

GAMMA = 0.5
ATOMS = 5
SUPPORT = np.linspace(-2.0, 2.0, ATOMS)  # -2, -1, 0, 1, 2


class CoinFlipChain(gymnasium.Env):
    """State A (observation ``[1, 0]``) leads with reward 0 to state B (``[0, 1]``), whose
    step ends the episode with reward +1 or -1; both actions do the same. So ``Z(B)`` is +-1
    and ``Z(A) = gamma * Z(B)``, each value with probability 1/2.

    The coin is fair exactly: each action's rewards at B alternate +1, -1, +1, ..., so the
    replay memory holds both outcomes equally often. The state does not tell which comes
    next, so to the agent it is a coin flip."""

    observation_space = gymnasium.spaces.Box(0.0, 1.0, (2,), np.float32)
    action_space = gymnasium.spaces.Discrete(2)
    STATE_A = np.array([1.0, 0.0], dtype=np.float32)
    STATE_B = np.array([0.0, 1.0], dtype=np.float32)

    def __init__(self):
        self._flips = [0, 0]  # flips so far after each action

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._at_b = False
        return self.STATE_A, {}

    def step(self, action):
        if not self._at_b:
            self._at_b = True
            return self.STATE_B, 0.0, False, False, {}
        reward = 1.0 if self._flips[action] % 2 == 0 else -1.0
        self._flips[action] += 1
        return np.zeros(2, dtype=np.float32), reward, True, False, {}


def chain_states():
    return np.stack([CoinFlipChain.STATE_A, CoinFlipChain.STATE_B])[:, np.newaxis]


def table_model(outputs: int) -> keras.Model:
    """One free output vector per one-hot state: a Dense layer without bias, from zeros."""
    return keras.Sequential(
        [
            keras.Input((1, 2)),
            keras.layers.Flatten(),
            keras.layers.Dense(outputs, use_bias=False, kernel_initializer="zeros"),
        ]
    )


def linear_model(nb_inputs: int, outputs: int) -> keras.Model:
    return keras.Sequential(
        [keras.Input((1, nb_inputs)), keras.layers.Flatten(), keras.layers.Dense(outputs)]
    )


def fill(memory):
    """Four transitions: 0 -> 1 terminated, 2 -> 3 truncated, 4 -> 5 -> 6 ordinary."""
    rng = np.random.default_rng(1)
    obs = [rng.normal(size=3).astype(np.float32) for _ in range(7)]
    memory.append(obs[0], 1, 1.0, terminal=True)
    memory.append_final(obs[1])
    memory.append(obs[2], 0, -2.0, terminal=False, truncated=True)
    memory.append_final(obs[3])
    memory.append(obs[4], 2, 0.5, terminal=False)
    memory.append(obs[5], 0, 3.0, terminal=False)
    memory.append(obs[6], 0, 0.0, terminal=False)
    return memory


def softmax(logits):
    exponentials = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exponentials / exponentials.sum(axis=-1, keepdims=True)


def reference_projection(next_probs, rewards, discounts):
    projected = np.zeros_like(next_probs, dtype=np.float64)
    for row in range(len(rewards)):
        for z, p in zip(SUPPORT, next_probs[row]):
            position = np.clip(rewards[row] + discounts[row] * z, -2, 2) + 2
            lower, upper = int(np.floor(position)), int(np.ceil(position))
            if lower == upper:
                projected[row, lower] += p
            else:
                projected[row, lower] += p * (upper - position)
                projected[row, upper] += p * (position - lower)
    return projected


def reference_losses(online, target, batch, double):
    """Per-sample C51 cross-entropies, by hand; also whether Double DQN changed a choice."""
    losses, _, changed = reference_losses_and_targets(online, target, batch, double)
    return losses, changed


def reference_losses_and_targets(online, target, batch, double):
    """Per-sample C51 cross-entropies and projected target distributions, by hand; also
    whether Double DQN changed a choice."""
    (W, b), (Wt, bt) = online, target
    rows = np.arange(len(batch.action))
    s0, s1 = batch.state0[:, 0], batch.state1[:, 0]
    next_target = softmax((s1 @ Wt + bt).reshape(-1, 3, ATOMS))
    next_online = softmax((s1 @ W + b).reshape(-1, 3, ATOMS))
    target_choice = np.argmax(next_target @ SUPPORT, axis=1)
    online_choice = np.argmax(next_online @ SUPPORT, axis=1)
    best = online_choice if double else target_choice
    discounts = GAMMA * (1.0 - batch.terminal1)
    m = reference_projection(next_target[rows, best], batch.reward, discounts)
    logits = (s0 @ W + b).reshape(-1, 3, ATOMS)[rows, batch.action]
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return -(m * log_probs).sum(axis=1), m, bool((online_choice != target_choice).any())


def hand_agent(memory, double=False):
    agent = CategoricalDQNAgent(
        linear_model(3, 3 * ATOMS),
        enable_double_dqn=double,
        nb_actions=3,
        memory=memory,
        nb_atoms=ATOMS,
        v_min=-2.0,
        v_max=2.0,
        gamma=GAMMA,
        batch_size=4,
        jit_compile=False,
    )
    agent.compile(keras.optimizers.SGD(learning_rate=0.0))
    rng = np.random.default_rng(5)
    online = [rng.normal(size=(3, 15)).astype(np.float32), rng.normal(size=15).astype(np.float32)]
    target = [rng.normal(size=(3, 15)).astype(np.float32), rng.normal(size=15).astype(np.float32)]
    agent.model.set_weights(online)
    agent.target_model.set_weights(target)
    agent.refresh_acting_weights()
    return agent, online, target


@pytest.mark.parametrize("double", [False, True], ids=["c51", "double_c51"])
def test_the_loss_of_a_training_step_matches_numpy(double):
    memory = fill(SequentialMemory(limit=20))
    agent, online, target = hand_agent(memory, double)
    batch = memory.batch_at(np.array([0, 2, 4, 5]))

    stats = agent.learn(batch)

    losses, choice_changed = reference_losses(online, target, batch, double)
    assert choice_changed  # the online network picks other actions: Double C51 differs
    assert agent.metrics_names == ["loss", "mean_q"]
    assert stats[0] == pytest.approx(losses.mean(), rel=1e-5)


def test_acting_reads_the_mean_of_each_actions_distribution():
    agent, (W, b), _ = hand_agent(fill(SequentialMemory(limit=20)))
    states = np.random.default_rng(2).normal(size=(6, 1, 3)).astype(np.float32)
    probs = softmax((states[:, 0] @ W + b).reshape(-1, 3, ATOMS))
    np.testing.assert_allclose(agent.compute_batch_distributions(states), probs, rtol=1e-5)
    np.testing.assert_allclose(agent.compute_batch_q_values(states), probs @ SUPPORT, rtol=1e-5)
    assert agent.predict(states[0]) == int(np.argmax(probs[0] @ SUPPORT))


def test_a_prioritized_memory_gets_each_samples_kl_divergence_as_priority():
    memory = fill(PrioritizedMemory(limit=20, alpha=0.5, epsilon=1e-6))
    agent, online, target = hand_agent(memory)
    positions = np.array([0, 2, 4, 5])
    batch = memory.batch_at(positions)

    agent.learn(batch)

    losses, m, _ = reference_losses_and_targets(online, target, batch, double=False)
    # KL(m || p) = cross-entropy - entropy of m
    kl = losses + (m * np.log(np.where(m > 0, m, 1.0))).sum(axis=1)
    np.testing.assert_allclose(memory.priorities[positions], (kl + 1e-6) ** 0.5, rtol=1e-5)


def chain_agent(**kwargs):
    return CategoricalDQNAgent(
        table_model(2 * ATOMS),
        EpsGreedyQPolicy(eps=1.0),  # both actions equally often: each learns its distribution
        nb_actions=2,
        memory=SequentialMemory(limit=4000),
        nb_atoms=ATOMS,
        v_min=-2.0,
        v_max=2.0,
        gamma=GAMMA,
        batch_size=128,
        nb_steps_warmup=128,
        target_model_update=50,
        seed=0,
        jit_compile=False,
        **kwargs,
    )


@pytest.mark.parametrize("dueling", [False, True], ids=["plain", "dueling"])
def test_c51_recovers_the_return_distributions_of_a_coin_flip_chain(dueling):
    agent = chain_agent(enable_dueling_network=dueling, enable_double_dqn=dueling)
    agent.compile(keras.optimizers.Adam(0.01))
    agent.fit(CoinFlipChain(), nb_steps=1000, verbose=0)

    probs = agent.compute_batch_distributions(chain_states())
    # Z(B) = +-1: half on atoms -1 and 1. Z(A) = +-0.5, half-way between atoms: 1/4 on -1
    # and 1, 1/2 on 0 (from both sides).
    for action in range(2):
        np.testing.assert_allclose(probs[1, action], [0, 0.5, 0, 0.5, 0], atol=0.05)
        np.testing.assert_allclose(probs[0, action], [0, 0.25, 0.5, 0.25, 0], atol=0.05)
    np.testing.assert_allclose(agent.compute_batch_q_values(chain_states()), 0.0, atol=0.1)


def cartpole_agent(dueling=False, memory=None, **kwargs):
    agent = CategoricalDQNAgent(
        build_mlp((1, 4), 2 * 11, (32,)),
        enable_dueling_network=dueling,
        enable_double_dqn=True,
        nb_actions=2,
        memory=memory or SequentialMemory(limit=1000),
        nb_atoms=11,
        v_min=0.0,
        v_max=50.0,
        nb_steps_warmup=50,
        target_model_update=100,
        n_step=3,
        seed=1,
        jit_compile=False,
        **kwargs,
    )
    agent.compile(keras.optimizers.Adam(1e-3), metrics=["mae"])
    return agent


def random_states(count=16):
    return np.random.default_rng(3).normal(size=(count, 1, 4)).astype(np.float32)


@pytest.mark.parametrize("dueling", [False, True], ids=["mlp", "dueling"])
def test_acting_runs_on_numpy_and_follows_the_trained_network(cartpole, dueling):
    agent = cartpole_agent(dueling)
    agent.fit(cartpole, nb_steps=80, verbose=0)  # acting's weights now come from training
    states = random_states()
    logits = keras.ops.convert_to_numpy(agent.model(states)).reshape(-1, 2, 11)
    np.testing.assert_allclose(
        agent.compute_batch_distributions(states), softmax(logits), rtol=1e-4, atol=1e-6
    )
    assert isinstance(agent._q_function.network_function, NumpyQFunction)


@pytest.mark.parametrize("dueling", [False, True], ids=["mlp", "dueling"])
def test_a_short_cartpole_fit_has_finite_loss(cartpole, dueling):
    agent = cartpole_agent(dueling)
    history = agent.fit(cartpole, nb_steps=300, verbose=0)
    losses = np.asarray(history.history["loss"], dtype=float)
    assert np.isfinite(losses[~np.isnan(losses)]).all() and (~np.isnan(losses)).any()
    assert agent.metrics_names == ["loss", "mae", "mean_q"]
    assert np.isfinite(agent.learn()).all()


def test_a_prioritized_memory_trains_on_cartpole(cartpole):
    memory = PrioritizedMemory(limit=1000, beta_steps=300)
    agent = cartpole_agent(memory=memory)
    agent.fit(cartpole, nb_steps=200, verbose=0)
    priorities = memory.priorities
    assert len(np.unique(priorities[priorities > 0])) > 10  # the losses were handed back


@pytest.mark.parametrize("dueling", [False, True], ids=["mlp", "dueling"])
def test_a_saved_agent_loads_as_c51_with_the_same_q_values(tmp_path, cartpole, dueling):
    agent = cartpole_agent(dueling)
    agent.fit(cartpole, nb_steps=120, verbose=0)
    agent.save(tmp_path / "agent.h5", include_memory=True)

    loaded = DQNAgent.load(tmp_path / "agent.h5")

    assert type(loaded) is CategoricalDQNAgent
    assert loaded.get_config() == agent.get_config()
    np.testing.assert_array_equal(loaded.support, agent.support)
    states = random_states()
    np.testing.assert_array_equal(
        loaded.compute_batch_q_values(states), agent.compute_batch_q_values(states)
    )
    loaded.fit(cartpole, nb_steps=60, verbose=0)  # compiled, with its memory: it trains on


def test_an_agent_with_a_prioritized_memory_round_trips(tmp_path, cartpole):
    agent = cartpole_agent(memory=PrioritizedMemory(limit=1000, alpha=0.5, beta_steps=300))
    agent.fit(cartpole, nb_steps=120, verbose=0)
    agent.save(tmp_path / "agent.h5", include_memory=True)
    loaded = DQNAgent.load(tmp_path / "agent.h5")
    assert type(loaded.memory) is PrioritizedMemory
    assert loaded.memory.get_config() == agent.memory.get_config()
    np.testing.assert_array_equal(loaded.memory.priorities, agent.memory.priorities)


def test_a_c51_file_is_not_loaded_as_another_kind_of_agent(tmp_path):
    cartpole_agent().save(tmp_path / "agent.h5")
    with pytest.raises(ValueError, match="holds a CategoricalDQNAgent"):
        QuantileDQNAgent.load(tmp_path / "agent.h5")


def test_weights_round_trip_into_a_new_agent(tmp_path, cartpole):
    agent = cartpole_agent()
    agent.fit(cartpole, nb_steps=120, verbose=0)
    agent.save_weights(tmp_path / "weights.h5f")
    other = cartpole_agent()
    other.load_weights(tmp_path / "weights.h5f")
    states = random_states()
    np.testing.assert_array_equal(
        other.compute_batch_distributions(states), agent.compute_batch_distributions(states)
    )


def test_a_checkpoint_restores_both_networks_and_the_step(tmp_path, cartpole):
    agent = cartpole_agent()
    agent.fit(cartpole, nb_steps=120, verbose=0)
    agent.save_checkpoint(tmp_path)
    other = cartpole_agent()
    other.load_checkpoint(tmp_path)
    assert other.step == agent.step
    for mine, theirs in zip(agent.target_model.get_weights(), other.target_model.get_weights()):
        np.testing.assert_array_equal(mine, theirs)
    states = random_states()
    np.testing.assert_array_equal(
        other.compute_batch_q_values(states), agent.compute_batch_q_values(states)
    )


def test_a_model_with_one_output_per_action_is_refused_naming_the_shape():
    with pytest.raises(ValueError, match=r"nb_actions \* nb_atoms = 2 \* 51.*\(None, 102\)"):
        CategoricalDQNAgent(build_mlp((1, 4), 2), nb_actions=2, memory=SequentialMemory(100))


@pytest.mark.parametrize(
    "last_layers",
    [
        [keras.layers.Dense(2 * 51, activation="softmax")],
        [keras.layers.Dense(2 * 51), keras.layers.Softmax()],
        [keras.layers.Dense(2 * 51), keras.layers.Activation("softmax")],
    ],
)
def test_a_model_ending_in_a_softmax_is_refused(last_layers):
    """The agent takes the softmax over each action's atoms; a second one would flatten
    every distribution to near-uniform."""
    model = keras.Sequential([keras.Input((1, 4)), keras.layers.Flatten(), *last_layers])
    with pytest.raises(ValueError, match="model: its last layer .* applies a softmax"):
        CategoricalDQNAgent(model, nb_actions=2, memory=SequentialMemory(100))


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"delta_clip": 1.0}, "delta_clip: C51 has no Huber threshold"),
        ({"v_min": 1.0, "v_max": 1.0}, "v_max: expected a number above v_min = 1.0"),
        ({"nb_atoms": 1}, "nb_atoms: expected an integer >= 2"),
        ({"v_min": float("nan")}, "v_min: expected a finite number"),
    ],
)
def test_bad_arguments_are_refused_naming_them(arguments, message):
    nb_atoms = arguments.get("nb_atoms", 51)
    with pytest.raises((TypeError, ValueError), match=message):
        CategoricalDQNAgent(
            build_mlp((1, 4), 2 * nb_atoms),
            nb_actions=2,
            memory=SequentialMemory(100),
            **arguments,
        )
