"""Rainbow composed from the pieces: ``DQNConfig`` selects prioritized replay, noisy networks
and a distributional head besides Double, Dueling and n-step; ``build_agent`` composes them; a
noisy last layer gets a noisy dueling head that files round-trip; C51 hands the KL divergence
to a prioritized memory; the ``rainbow`` preset loads, validates and trains on Pong."""

import math

import gymnasium
import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasdqn.agents.categorical import CategoricalDQNAgent, entropy, loss_and_kl
from kerasdqn.agents.distributional import DistributionalDuelingCombine
from kerasdqn.agents.dqn import DQNAgent
from kerasdqn.agents.quantile import QuantileDQNAgent
from kerasdqn.cli import build_parser, with_preset
from kerasdqn.config import DQNConfig, config_from_flags, rainbow_config
from kerasdqn.envs import make_atari
from kerasdqn.errors import UsageError
from kerasdqn.layers import DuelingCombine, NoisyDense
from kerasdqn.memory import PrioritizedMemory, SequentialMemory
from kerasdqn.policy import GreedyQPolicy, LinearAnnealedPolicy
from kerasdqn.presets import available_presets, named_preset_path, named_presets, read_preset
from kerasdqn.training import build_agent

SMALL = {"steps": 400, "hidden": (16,), "warmup": 64, "train_interval": 16, "gradient_steps": 2}


def small_rainbow(env, **changes) -> CategoricalDQNAgent:
    return build_agent(env, rainbow_config(**{**SMALL, "v_min": 0.0, "v_max": 100.0, **changes}))


def noisy_layers(model: keras.Model) -> list[NoisyDense]:
    return [layer for layer in model.layers if isinstance(layer, NoisyDense)]


# --------------------------------------------------------------------------- composition


def test_the_rainbow_agent_has_all_six_pieces(cartpole):
    agent = small_rainbow(cartpole)
    assert type(agent) is CategoricalDQNAgent and agent.nb_atoms == 51
    assert type(agent.memory) is PrioritizedMemory
    assert (agent.memory.alpha, agent.memory.beta, agent.memory.beta_steps) == (0.5, 0.4, 400)
    assert agent.n_step == 3 and agent.enable_double_dqn and agent.enable_dueling_network
    assert isinstance(agent.model.layers[-1], DistributionalDuelingCombine)
    head = agent.model.layers[-2]
    assert isinstance(head, NoisyDense) and head.units == (2 + 1) * 51
    assert len(noisy_layers(agent.model)) == 2  # the hidden layer and the dueling head
    assert isinstance(agent.policy, GreedyQPolicy)  # noise explores, no epsilon


def test_the_default_config_builds_the_plain_agent_as_before(cartpole):
    agent = build_agent(cartpole, DQNConfig(**SMALL))
    assert type(agent) is DQNAgent and type(agent.memory) is SequentialMemory
    assert not noisy_layers(agent.model)
    assert isinstance(agent.policy, LinearAnnealedPolicy)
    assert (agent.n_step, agent.enable_double_dqn, agent.delta_clip) == (5, True, 1.0)


def test_a_replay_too_large_for_the_machine_is_refused_before_the_agent_is_built(cartpole):
    with pytest.raises(MemoryError, match=r"^memory: 10000000000000 observations of shape"):
        build_agent(cartpole, DQNConfig(**{**SMALL, "memory": 10**13}))


@pytest.mark.parametrize(
    ("changes", "agent_class", "memory_class", "noisy"),
    [
        ({"prioritized": True}, DQNAgent, PrioritizedMemory, False),
        ({"noisy": True}, DQNAgent, SequentialMemory, True),
        ({"distributional": "c51"}, CategoricalDQNAgent, SequentialMemory, False),
        ({"distributional": "qr", "quantiles": 8}, QuantileDQNAgent, SequentialMemory, False),
    ],
    ids=["per", "noisy", "c51", "qr"],
)
def test_each_piece_can_be_added_alone(cartpole, changes, agent_class, memory_class, noisy):
    agent = build_agent(cartpole, DQNConfig(**SMALL, **changes))
    assert type(agent) is agent_class and type(agent.memory) is memory_class
    assert bool(noisy_layers(agent.model)) is noisy
    size = getattr(agent, "distribution_size", 1)
    assert tuple(agent.model.outputs[0].shape) == (None, 2 * size)


def test_noisy_dueling_head_keeps_the_sigma_and_seed_of_the_users_layer():
    model = keras.Sequential(
        [keras.Input((1, 4)), keras.layers.Flatten(), NoisyDense(2, sigma0=0.3, seed=7)]
    )
    agent = DQNAgent(model, enable_dueling_network=True, nb_actions=2, memory=SequentialMemory(50))
    head = agent.model.layers[-2]
    assert isinstance(agent.model.layers[-1], DuelingCombine)
    assert isinstance(head, NoisyDense) and (head.units, head.sigma0, head.seed) == (3, 0.3, 7)
    state = np.ones((1, 4), np.float32)
    assert not np.allclose(agent.compute_q_values(state), agent.compute_q_values(state))


# --------------------------------------------------------------------------- training and files


@pytest.fixture
def trained(cartpole):
    agent = small_rainbow(cartpole)
    history = agent.fit(cartpole, nb_steps=300, verbose=0)
    return agent, history


def test_rainbow_trains_on_cartpole_and_hands_priorities_back(trained):
    agent, history = trained
    assert sum(history.history["nb_episode_steps"]) > 0
    priorities = agent.memory.priorities[: agent.memory.nb_entries]
    assert len(np.unique(priorities[priorities > 0])) > 2  # learned priorities, not all the max
    assert 0.4 < agent.memory.beta_at(agent.step) <= 1.0


def q_values_with_noise(agent, states: np.ndarray, noise_states: list) -> np.ndarray:
    """The agent's Q values with its noisy layers' generators set to ``noise_states``."""
    for layer, state in zip(noisy_layers(agent.model), noise_states, strict=True):
        layer.seed_generator.state.assign(state)
    return agent.compute_batch_q_values(states)


def assert_acts_the_same(agent, other, cartpole) -> None:
    """Same weights, and the same Q values (so the same actions) under the same noise."""
    for a, b in zip(agent.model.get_weights(), other.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    states = np.stack([cartpole.observation_space.sample() for _ in range(5)])[:, None]
    noise = [layer.seed_generator.state.numpy() for layer in noisy_layers(agent.model)]
    expected = q_values_with_noise(agent, states, noise)
    np.testing.assert_allclose(q_values_with_noise(other, states, noise), expected, rtol=1e-5)


def test_weights_files_whole_agent_files_and_checkpoints_round_trip(trained, cartpole, tmp_path):
    agent, _ = trained
    agent.save_weights(tmp_path / "rainbow.h5")
    from_weights = small_rainbow(cartpole, seed=3)
    from_weights.load_weights(tmp_path / "rainbow.h5")
    assert_acts_the_same(agent, from_weights, cartpole)

    agent.save(tmp_path / "agent.h5")
    loaded = CategoricalDQNAgent.load(tmp_path / "agent.h5")
    assert isinstance(loaded.model.layers[-2], NoisyDense)
    assert isinstance(loaded.memory, PrioritizedMemory)
    assert_acts_the_same(agent, loaded, cartpole)

    agent.save_checkpoint(tmp_path / "checkpoint.h5")
    resumed = small_rainbow(cartpole, seed=3)
    resumed.load_checkpoint(tmp_path / "checkpoint.h5")
    np.testing.assert_array_equal(resumed.memory.priorities, agent.memory.priorities)
    assert resumed.step == agent.step
    assert_acts_the_same(agent, resumed, cartpole)


# --------------------------------------------------------------------------- C51 priorities


def test_c51_priorities_are_the_kl_divergence_and_the_loss_the_cross_entropy():
    target = tf.constant([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]])
    logits = tf.math.log(tf.constant([[0.25, 0.25, 0.5], [0.5, 0.5, 1e-12]]))
    loss, kl = loss_and_kl(target, logits)
    # KL = 0.5 log(0.5 / 0.25) * 2 = log 2; an exact prediction has KL 0 (its cross-entropy
    # is the target's entropy, log 2). The loss is the mean cross-entropy: (log 4 + log 2) / 2.
    np.testing.assert_allclose(kl.numpy(), [math.log(2), 0.0], atol=1e-6)
    np.testing.assert_allclose(loss.numpy(), (math.log(4) + math.log(2)) / 2, rtol=1e-6)
    np.testing.assert_allclose(entropy(target).numpy(), [math.log(2)] * 2, rtol=1e-6)


def test_the_c51_agent_hands_the_kl_to_the_memory(cartpole):
    agent = small_rainbow(cartpole)
    target = tf.constant([[0.5, 0.5] + [0.0] * 49])
    uniform = tf.zeros((1, 51))
    loss, priorities = agent._loss(target, uniform, None)
    # KL(m || uniform) = log 51 - H(m) = log 51 - log 2; the cross-entropy is log 51.
    np.testing.assert_allclose(priorities.numpy(), [math.log(51) - math.log(2)], rtol=1e-5)
    np.testing.assert_allclose(loss.numpy(), math.log(51), rtol=1e-5)


# --------------------------------------------------------------------------- config and preset


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"distributional": "c52"}, ValueError, "distributional: expected one of 'none'"),
        ({"v_min": 5.0, "v_max": 5.0}, ValueError, "v_max: expected a number above v_min"),
        ({"priority_beta": 1.5}, ValueError, r"priority_beta: expected a number in \[0.0, 1.0\]"),
        ({"priority_alpha": -1.0}, ValueError, "priority_alpha: expected a number in"),
        ({"atoms": 1}, ValueError, "atoms: expected an integer >= 2"),
        ({"quantiles": 0}, ValueError, "quantiles: expected an integer >= 1"),
        ({"noisy": "yes"}, TypeError, "noisy: expected True or False"),
        ({"noisy_sigma0": -0.1}, ValueError, "noisy_sigma0: expected a number in"),
    ],
)
def test_bad_piece_settings_are_refused_naming_the_field(changes, error, message):
    with pytest.raises(error, match=message):
        DQNConfig(**changes)


def test_a_bad_flag_is_reported_naming_the_flag():
    args = build_parser().parse_args(["train", "CartPole-v1", "--priority-beta", "2"])
    with pytest.raises(UsageError, match="--priority-beta: expected a number in"):
        config_from_flags(args)


def test_the_rainbow_preset_is_named_and_holds_all_six_pieces():
    assert named_presets() == ["rainbow"] and "rainbow" not in available_presets()
    config = DQNConfig(**read_preset("rainbow"))
    assert config == DQNConfig(**{**read_preset(named_preset_path("rainbow"))})
    assert (config.double, config.dueling, config.prioritized, config.noisy) == (True,) * 4
    assert (config.distributional, config.atoms, config.v_min, config.v_max) == ("c51", 51, -10, 10)
    assert (config.n_step, config.lr, config.adam_epsilon, config.target_update) == (
        3,
        6.25e-5,
        1.5e-4,
        8000,
    )
    assert 'measured = "not measured at full scale"' in named_preset_path("rainbow").read_text()


def test_train_takes_the_rainbow_preset_by_name_and_flags_still_win():
    argv = ["train", "ALE/Pong-v5", "--preset", "rainbow", "--memory", "5000"]
    parser = build_parser()
    args = with_preset(parser, argv, parser.parse_args(argv))
    config = DQNConfig.from_args(args)
    assert (config.distributional, config.noisy, config.memory) == ("c51", True, 5000)


def test_the_rainbow_preset_builds_the_noisy_nature_cnn_and_trains_on_pong():
    gymnasium.register_envs(pytest.importorskip("ale_py"))
    env = make_atari("ALE/Pong-v5", seed=0)
    changes = {"memory": 2_000, "warmup": 64, "steps": 160, "batch_size": 8}
    agent = build_agent(env, DQNConfig(**{**read_preset("rainbow"), **changes}))
    names = [layer.name for layer in noisy_layers(agent.model)]
    assert names == ["dense_512", "dueling_value_advantage"]
    agent.fit(env, nb_steps=160, verbose=0)
    assert agent.step == 160
    priorities = agent.memory.priorities
    assert len(np.unique(priorities[priorities > 0])) > 2  # 24 gradient steps handed them back
    env.close()
