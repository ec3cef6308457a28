"""QuantileDQNAgent (QR-DQN): the training step against NumPy, a chain whose return quantiles
are known, CartPole, and weights, checkpoints and whole-agent files."""

import keras
import numpy as np
import pytest
from test_categorical_agent import (
    CoinFlipChain,
    chain_states,
    fill,
    linear_model,
    random_states,
    table_model,
)

from kerasdqn import (
    CategoricalDQNAgent,
    DQNAgent,
    EpsGreedyQPolicy,
    QuantileDQNAgent,
    SequentialMemory,
    build_mlp,
)
from kerasdqn.memory import PrioritizedMemory

GAMMA = 0.5
QUANTILES = 3
LEVELS = np.array([1 / 6, 1 / 2, 5 / 6])


def reference_loss(targets, quantiles, kappa):
    """Dabney et al. (2018) eq. 10, divided by kappa, one pair at a time."""
    total = 0.0
    for tau, theta in zip(LEVELS, quantiles):
        for target in targets:
            u = target - theta
            huber = 0.5 * u * u if abs(u) <= kappa else kappa * (abs(u) - 0.5 * kappa)
            total += abs(tau - (u < 0)) * huber / kappa / len(targets)
    return total


def reference_losses(online, target, batch, double, kappa):
    """Per-sample quantile losses, by hand; also whether Double DQN changed a choice."""
    (W, b), (Wt, bt) = online, target
    rows = np.arange(len(batch.action))
    s0, s1 = batch.state0[:, 0], batch.state1[:, 0]
    next_target = (s1 @ Wt + bt).reshape(-1, 3, QUANTILES)
    next_online = (s1 @ W + b).reshape(-1, 3, QUANTILES)
    target_choice = next_target.mean(axis=2).argmax(axis=1)
    online_choice = next_online.mean(axis=2).argmax(axis=1)
    best = online_choice if double else target_choice
    discounts = GAMMA * (1.0 - batch.terminal1)
    targets = batch.reward[:, None] + discounts[:, None] * next_target[rows, best]
    quantiles = (s0 @ W + b).reshape(-1, 3, QUANTILES)[rows, batch.action]
    losses = [reference_loss(t, q, kappa) for t, q in zip(targets, quantiles)]
    return np.array(losses), bool((online_choice != target_choice).any())


def hand_agent(memory, double=False, kappa=1.0):
    agent = QuantileDQNAgent(
        linear_model(3, 3 * QUANTILES),
        enable_double_dqn=double,
        nb_actions=3,
        memory=memory,
        nb_quantiles=QUANTILES,
        kappa=kappa,
        gamma=GAMMA,
        batch_size=4,
        jit_compile=False,
    )
    agent.compile(keras.optimizers.SGD(learning_rate=0.0))
    rng = np.random.default_rng(6)
    online = [rng.normal(size=(3, 9)).astype(np.float32), rng.normal(size=9).astype(np.float32)]
    target = [rng.normal(size=(3, 9)).astype(np.float32), rng.normal(size=9).astype(np.float32)]
    agent.model.set_weights(online)
    agent.target_model.set_weights(target)
    agent.refresh_acting_weights()
    return agent, online, target


@pytest.mark.parametrize("double", [False, True], ids=["qr", "double_qr"])
@pytest.mark.parametrize("kappa", [1.0, 0.5])
def test_the_loss_of_a_training_step_matches_numpy(double, kappa):
    memory = fill(SequentialMemory(limit=20))
    agent, online, target = hand_agent(memory, double, kappa)
    batch = memory.batch_at(np.array([0, 2, 4, 5]))

    stats = agent.learn(batch)

    losses, choice_changed = reference_losses(online, target, batch, double, kappa)
    assert choice_changed  # the online network picks other actions: Double QR-DQN differs
    assert stats[0] == pytest.approx(losses.mean(), rel=1e-5)


def test_acting_reads_the_mean_of_each_actions_quantiles():
    agent, (W, b), _ = hand_agent(fill(SequentialMemory(limit=20)))
    states = np.random.default_rng(2).normal(size=(6, 1, 3)).astype(np.float32)
    quantiles = (states[:, 0] @ W + b).reshape(-1, 3, QUANTILES)
    np.testing.assert_allclose(agent.compute_batch_distributions(states), quantiles, rtol=1e-5)
    np.testing.assert_allclose(
        agent.compute_batch_q_values(states), quantiles.mean(axis=2), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(agent.quantile_levels, LEVELS, rtol=1e-6)


def test_a_prioritized_memory_gets_each_samples_quantile_loss_as_priority():
    memory = fill(PrioritizedMemory(limit=20, alpha=0.5, epsilon=1e-6))
    agent, online, target = hand_agent(memory)
    positions = np.array([0, 2, 4, 5])
    batch = memory.batch_at(positions)

    agent.learn(batch)

    losses, _ = reference_losses(online, target, batch, double=False, kappa=1.0)
    np.testing.assert_allclose(memory.priorities[positions], (losses + 1e-6) ** 0.5, rtol=1e-5)


def chain_agent(kappa, batch_size=128, **kwargs):
    return QuantileDQNAgent(
        table_model(2 * 4),
        EpsGreedyQPolicy(eps=1.0),  # both actions equally often: each learns its quantiles
        nb_actions=2,
        memory=SequentialMemory(limit=4000),
        nb_quantiles=4,
        kappa=kappa,
        gamma=GAMMA,
        batch_size=batch_size,
        nb_steps_warmup=128,
        target_model_update=50,
        seed=0,
        jit_compile=False,
        **kwargs,
    )


@pytest.mark.parametrize("dueling", [False, True], ids=["plain", "dueling"])
def test_qr_dqn_0_recovers_the_quantiles_of_a_coin_flip_chain(dueling):
    agent = chain_agent(0.0, enable_dueling_network=dueling, enable_double_dqn=dueling)
    agent.compile(keras.optimizers.Adam(0.01))
    agent.fit(CoinFlipChain(), nb_steps=1000, verbose=0)

    quantiles = agent.compute_batch_distributions(chain_states())
    # Z(B) = +-1 with probability 1/2: its quantiles at 1/8, 3/8 are -1, at 5/8, 7/8 are +1.
    # Z(A) = +-0.5 likewise.
    for action in range(2):
        np.testing.assert_allclose(quantiles[1, action], [-1, -1, 1, 1], atol=0.06)
        np.testing.assert_allclose(quantiles[0, action], [-0.5, -0.5, 0.5, 0.5], atol=0.06)


def test_qr_dqn_1_finds_the_huber_quantiles():
    # With kappa = 1 the minimizer at level tau < 1/2 of +-1 outcomes solves
    # (1 - tau) (1 + theta) = tau: theta = -1 + tau / (1 - tau), -6/7 and -2/5 at 1/8 and 3/8.
    # That balance moves with each minibatch's share of +1 and -1: large batches keep it still.
    agent = chain_agent(1.0, batch_size=512)
    agent.compile(keras.optimizers.Adam(0.01))
    agent.fit(CoinFlipChain(), nb_steps=1000, verbose=0)
    quantiles = agent.compute_batch_distributions(chain_states())
    np.testing.assert_allclose(quantiles[1], [[-6 / 7, -2 / 5, 2 / 5, 6 / 7]] * 2, atol=0.06)


def cartpole_agent(dueling=False, memory=None, **kwargs):
    agent = QuantileDQNAgent(
        build_mlp((1, 4), 2 * 16, (32,)),
        enable_dueling_network=dueling,
        enable_double_dqn=True,
        nb_actions=2,
        memory=memory or SequentialMemory(limit=1000),
        nb_quantiles=16,
        nb_steps_warmup=50,
        target_model_update=100,
        n_step=3,
        seed=1,
        jit_compile=False,
        **kwargs,
    )
    agent.compile(keras.optimizers.Adam(1e-3), metrics=["mae"])
    return agent


@pytest.mark.parametrize("dueling", [False, True], ids=["mlp", "dueling"])
def test_a_short_cartpole_fit_has_finite_loss(cartpole, dueling):
    agent = cartpole_agent(dueling)
    history = agent.fit(cartpole, nb_steps=300, verbose=0)
    losses = np.asarray(history.history["loss"], dtype=float)
    assert np.isfinite(losses[~np.isnan(losses)]).all() and (~np.isnan(losses)).any()
    assert np.isfinite(agent.learn()).all()


def test_a_prioritized_memory_trains_on_cartpole(cartpole):
    memory = PrioritizedMemory(limit=1000, beta_steps=300)
    agent = cartpole_agent(memory=memory)
    agent.fit(cartpole, nb_steps=200, verbose=0)
    priorities = memory.priorities
    assert len(np.unique(priorities[priorities > 0])) > 10  # the losses were handed back


@pytest.mark.parametrize("dueling", [False, True], ids=["mlp", "dueling"])
def test_a_saved_agent_loads_as_qr_dqn_with_the_same_q_values(tmp_path, cartpole, dueling):
    agent = cartpole_agent(dueling, kappa=0.5)
    agent.fit(cartpole, nb_steps=120, verbose=0)
    agent.save(tmp_path / "agent.h5", include_memory=True)

    loaded = DQNAgent.load(tmp_path / "agent.h5")

    assert type(loaded) is QuantileDQNAgent
    assert loaded.get_config() == agent.get_config()
    assert loaded.kappa == 0.5
    states = random_states()
    np.testing.assert_array_equal(
        loaded.compute_batch_distributions(states), agent.compute_batch_distributions(states)
    )
    loaded.fit(cartpole, nb_steps=60, verbose=0)


def test_a_qr_file_is_not_loaded_as_c51(tmp_path):
    cartpole_agent().save(tmp_path / "agent.h5")
    with pytest.raises(ValueError, match="holds a QuantileDQNAgent"):
        CategoricalDQNAgent.load(tmp_path / "agent.h5")
    assert type(QuantileDQNAgent.load(tmp_path / "agent.h5")) is QuantileDQNAgent


def test_weights_and_checkpoints_round_trip_into_a_new_agent(tmp_path, cartpole):
    agent = cartpole_agent()
    agent.fit(cartpole, nb_steps=120, verbose=0)
    agent.save_weights(tmp_path / "weights.h5f")
    agent.save_checkpoint(tmp_path)
    from_weights, from_checkpoint = cartpole_agent(), cartpole_agent()
    from_weights.load_weights(tmp_path / "weights.h5f")
    from_checkpoint.load_checkpoint(tmp_path)
    states = random_states()
    expected = agent.compute_batch_q_values(states)
    np.testing.assert_array_equal(from_weights.compute_batch_q_values(states), expected)
    np.testing.assert_array_equal(from_checkpoint.compute_batch_q_values(states), expected)
    assert from_checkpoint.step == agent.step


def test_the_default_is_dabneys_200_quantiles_and_kappa_1():
    agent = QuantileDQNAgent(build_mlp((1, 4), 2 * 200), nb_actions=2, memory=SequentialMemory(100))
    assert (agent.nb_quantiles, agent.kappa) == (200, 1.0)


@pytest.mark.parametrize(
    "arguments, outputs, message",
    [
        ({}, 2, r"nb_actions \* nb_quantiles = 2 \* 200.*\(None, 400\)"),
        ({"delta_clip": 1.0}, 400, "delta_clip: QR-DQN has no Huber threshold"),
        ({"kappa": -1.0}, 400, r"kappa: expected a number in \[0.0, inf\]"),
        ({"nb_quantiles": 0}, 0, "nb_quantiles: expected an integer >= 1"),
    ],
)
def test_bad_arguments_are_refused_naming_them(arguments, outputs, message):
    with pytest.raises((TypeError, ValueError), match=message):
        QuantileDQNAgent(
            build_mlp((1, 4), max(outputs, 1)),
            nb_actions=2,
            memory=SequentialMemory(100),
            **arguments,
        )
