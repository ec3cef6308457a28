"""NoisyDense (Fortunato et al., 2018): the factorized noise, its initialization and gradients,
acting and training with it in a DQNAgent, saving and loading, and seeded repeatability."""

import math

import gymnasium
import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasdqn import DQNAgent, EpsGreedyQPolicy, GreedyQPolicy, NoisyDense, SequentialMemory
from kerasdqn.evaluation import EvalCallback
from kerasdqn.inference import CompiledQFunction, make_q_function
from kerasdqn.layers import noise_variables
from kerasdqn.memory import TransitionBatch

NB_INPUTS = 6
NB_UNITS = 5


def built_layer(units=NB_UNITS, inputs=NB_INPUTS, **kwargs) -> NoisyDense:
    layer = NoisyDense(units, **kwargs)
    layer.build((None, inputs))
    return layer


def set_noise_only(layer: NoisyDense, sigma: float) -> None:
    """mu = 0 and sigma constant, so that an output is the noise itself, scaled."""
    for variable in (layer.kernel_mu, layer.bias_mu):
        variable.assign(np.zeros(variable.shape, np.float32))
    for variable in (layer.kernel_sigma, layer.bias_sigma):
        variable.assign(np.full(variable.shape, sigma, np.float32))


def probe_inputs(inputs=NB_INPUTS) -> np.ndarray:
    """The unit vectors and a zero row: row i of the output is ``W[i] + b``, the last is ``b``."""
    return np.vstack([np.eye(inputs), np.zeros((1, inputs))]).astype(np.float32)


def effective_weights(output: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The kernel and bias one call used, read from its output on ``probe_inputs``."""
    output = np.asarray(output)
    bias = output[-1]
    return output[:-1] - bias, bias


def draw_weights(layer: NoisyDense, draws: int) -> tuple[np.ndarray, np.ndarray]:
    """``draws`` kernels ``(draws, p, q)`` and biases ``(draws, q)``, one per call."""
    probe = probe_inputs(layer.kernel_mu.shape[0])
    call = tf.function(lambda x: layer(x))
    pairs = [effective_weights(call(probe)) for _ in range(draws)]
    return np.stack([kernel for kernel, _ in pairs]), np.stack([bias for _, bias in pairs])


# --------------------------------------------------------------------------- the noise


def test_effective_weights_have_mean_zero_and_variance_sigma_squared_times_two_over_pi():
    # w_ij - mu_ij = sigma f(x_i) f(y_j) with x, y ~ N(0, 1) independent and f(x)^2 = |x|:
    # E = 0 by symmetry, Var = sigma^2 E|x| E|y| = sigma^2 (sqrt(2/pi))^2 = sigma^2 2/pi.
    # The bias noise sigma f(y_j) has variance sigma^2 E|y| = sigma^2 sqrt(2/pi).
    sigma = 0.3
    layer = built_layer()
    set_noise_only(layer, sigma)
    kernels, biases = draw_weights(layer, draws=2000)
    # Over 2000 draws the standard errors are ~0.3% of sigma (mean) and ~1% (variance).
    assert abs(kernels.mean()) < 0.02 * sigma
    assert abs(biases.mean()) < 0.02 * sigma
    np.testing.assert_allclose(np.mean(kernels**2), sigma**2 * 2 / math.pi, rtol=0.05)
    np.testing.assert_allclose(np.mean(biases**2), sigma**2 * math.sqrt(2 / math.pi), rtol=0.05)


def test_weight_noise_is_the_outer_product_of_an_input_factor_and_the_bias_noise():
    layer = built_layer()
    set_noise_only(layer, 1.0)
    kernels, biases = draw_weights(layer, draws=20)
    for kernel, bias in zip(kernels, biases):
        # eps_w[i, j] = f(eps_i) f(eps_j) and eps_b[j] = f(eps_j): one factor per input.
        input_factor = kernel[:, 0] / bias[0]
        np.testing.assert_allclose(kernel, np.outer(input_factor, bias), rtol=1e-4, atol=1e-6)


def test_two_calls_on_the_same_input_differ():
    layer = built_layer()
    x = np.random.default_rng(0).normal(size=(3, NB_INPUTS)).astype(np.float32)
    first, second = np.asarray(layer(x)), np.asarray(layer(x))
    assert not np.allclose(first, second)


def test_with_sigma_zero_the_output_is_the_mean_network():
    layer = built_layer(activation="relu")
    for variable in (layer.kernel_sigma, layer.bias_sigma):
        variable.assign(np.zeros(variable.shape, np.float32))
    x = np.random.default_rng(1).normal(size=(4, NB_INPUTS)).astype(np.float32)
    expected = np.maximum(x @ np.asarray(layer.kernel_mu) + np.asarray(layer.bias_mu), 0)
    np.testing.assert_allclose(layer(x), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer(x), expected, rtol=1e-5, atol=1e-6)


def test_initialization_follows_the_paper():
    inputs, sigma0 = 16, 0.4
    layer = built_layer(units=64, inputs=inputs, sigma0=sigma0)
    bound = 1 / math.sqrt(inputs)
    for mu in (np.asarray(layer.kernel_mu), np.asarray(layer.bias_mu)):
        assert mu.min() >= -bound and mu.max() <= bound
    kernel_mu = np.asarray(layer.kernel_mu)
    # U(-b, b) fills its range: with 1024 draws the extremes lie within 1% of the bounds.
    assert kernel_mu.min() < -0.98 * bound and kernel_mu.max() > 0.98 * bound
    np.testing.assert_allclose(kernel_mu.var(), bound**2 / 3, rtol=0.15)
    np.testing.assert_array_equal(
        layer.kernel_sigma, np.full((inputs, 64), sigma0 * bound, np.float32)
    )
    np.testing.assert_array_equal(layer.bias_sigma, np.full(64, sigma0 * bound, np.float32))


def test_gradients_reach_mu_and_sigma():
    layer = built_layer()
    set_noise_only(layer, 1.0)
    probe = probe_inputs()
    with tf.GradientTape() as tape:
        output = layer(probe)
        loss = tf.reduce_sum(output)
    gradients = tape.gradient(
        loss, [layer.kernel_mu, layer.kernel_sigma, layer.bias_mu, layer.bias_sigma]
    )
    noise_w, noise_b = effective_weights(output)  # mu = 0, sigma = 1: the noise itself
    rows = len(probe)
    # d/d mu_w[i, j] sum_r (x_r W + b)_j = sum_r x_ri; d/d sigma_w[i, j] = sum_r x_ri eps_w[i, j].
    np.testing.assert_allclose(gradients[0], np.ones((NB_INPUTS, NB_UNITS)), rtol=1e-6)
    np.testing.assert_allclose(gradients[1], noise_w, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(gradients[2], np.full(NB_UNITS, rows), rtol=1e-6)
    np.testing.assert_allclose(gradients[3], rows * noise_b, rtol=1e-4, atol=1e-6)


def test_set_random_seed_repeats_the_noise_and_another_seed_changes_it():
    def outputs(seed):
        keras.utils.set_random_seed(seed)
        layer = built_layer()
        set_noise_only(layer, 1.0)
        return [np.asarray(layer(probe_inputs())) for _ in range(3)]

    first, again, other = outputs(3), outputs(3), outputs(4)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_an_integer_seed_fixes_the_noise_whatever_the_global_seed():
    outputs = []
    for global_seed in (5, 6):
        keras.utils.set_random_seed(global_seed)
        layer = built_layer(seed=11)
        set_noise_only(layer, 1.0)
        outputs.append(np.asarray(layer(probe_inputs())))
    np.testing.assert_array_equal(outputs[0], outputs[1])


# --------------------------------------------------------------------------- the layer's contract


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        ({"units": 0}, ValueError, "units: expected an integer >= 1, got 0"),
        ({"units": 2.5}, TypeError, "units: expected an integer"),
        ({"units": 3, "sigma0": -0.1}, ValueError, r"sigma0: expected a number in \[0.0, inf\]"),
        ({"units": 3, "seed": "one"}, TypeError, "seed: expected an integer"),
    ],
)
def test_bad_arguments_name_the_argument_and_the_value(arguments, error, message):
    with pytest.raises(error, match=message):
        NoisyDense(**arguments)


def test_config_round_trip_rebuilds_the_same_layer():
    layer = NoisyDense(7, activation="tanh", sigma0=0.2, seed=3, name="noisy")
    clone = NoisyDense.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert (clone.units, clone.sigma0, clone.seed) == (7, 0.2, 3)
    assert clone.activation is keras.activations.tanh


def test_weights_are_mu_and_sigma_only_not_the_noise_state():
    layer = built_layer()
    assert [weight.name for weight in layer.weights] == [
        "kernel_mu",
        "kernel_sigma",
        "bias_mu",
        "bias_sigma",
    ]
    assert all(weight.trainable for weight in layer.weights)


# --------------------------------------------------------------------------- in a DQNAgent


def noisy_model(nb_actions=2, hidden=16) -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((1, 4)),
            keras.layers.Flatten(),
            keras.layers.Dense(hidden, activation="relu"),
            NoisyDense(hidden, activation="relu"),
            NoisyDense(nb_actions),
        ]
    )


def noisy_agent(model=None, **kwargs) -> DQNAgent:
    options = {
        "nb_actions": 2,
        "memory": SequentialMemory(1000),
        "nb_steps_warmup": 50,
        "target_model_update": 100,
        "seed": 0,
        **kwargs,
    }
    agent = DQNAgent(model or noisy_model(), policy=GreedyQPolicy(), **options)
    agent.compile(keras.optimizers.Adam(1e-3))
    return agent


def some_batch(size=32) -> TransitionBatch:
    rng = np.random.default_rng(2)
    return TransitionBatch(
        state0=rng.normal(size=(size, 1, 4)).astype(np.float32),
        action=rng.integers(2, size=size),
        reward=rng.normal(size=size).astype(np.float32),
        state1=rng.normal(size=(size, 1, 4)).astype(np.float32),
        terminal1=np.zeros(size, np.float32),
    )


def assert_same_weights(model_a: keras.Model, model_b: keras.Model) -> None:
    assert [w.name for w in model_a.weights] == [w.name for w in model_b.weights]
    for a, b in zip(model_a.get_weights(), model_b.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_acting_uses_the_compiled_network_and_draws_fresh_noise_each_call():
    model = noisy_model()
    q_function = make_q_function(model, prefer_numpy=True)
    assert isinstance(q_function, CompiledQFunction)
    state = np.ones((1, 1, 4), np.float32)
    assert not np.allclose(q_function(state), q_function(state))


def test_building_an_agent_leaves_the_noise_as_it_was():
    # The agent evaluates its network once when it is built (to refuse one that cannot run);
    # a noisy network's generators are put back after it.
    model = noisy_model()
    before = [variable.numpy() for variable in noise_variables(model)]
    DQNAgent(model, nb_actions=2, memory=SequentialMemory(100), nb_steps_warmup=10)
    for variable, value in zip(noise_variables(model), before):
        np.testing.assert_array_equal(variable.numpy(), value)


def test_each_gradient_step_draws_fresh_noise():
    agent = DQNAgent(
        noisy_model(), policy=GreedyQPolicy(), nb_actions=2, memory=SequentialMemory(100)
    )
    agent.compile(keras.optimizers.SGD(learning_rate=0.0))
    batch = some_batch()
    weights = agent.model.get_weights()
    losses = [agent.learn(batch)[0] for _ in range(3)]
    assert len(set(losses)) == 3  # the weights stay put (lr = 0), so only the noise moved
    for before, after in zip(weights, agent.model.get_weights()):
        np.testing.assert_array_equal(before, after)


def test_a_noisy_network_acts_greedily_by_default_and_a_plain_one_explores():
    nested = keras.Sequential([keras.Input((1, 4)), keras.Sequential([noisy_model()])])
    for model in (noisy_model(), nested):
        agent = DQNAgent(model, nb_actions=2, memory=SequentialMemory(100))
        assert type(agent.policy) is GreedyQPolicy
    plain = keras.Sequential([keras.Input((1, 4)), keras.layers.Flatten(), keras.layers.Dense(2)])
    agent = DQNAgent(plain, nb_actions=2, memory=SequentialMemory(100))
    assert type(agent.policy) is EpsGreedyQPolicy and agent.policy.eps == 0.1


def test_target_network_draws_its_own_noise():
    agent = noisy_agent()
    state = np.ones((1, 1, 4), np.float32)
    online = np.asarray(agent.model(state, training=False))
    target = np.asarray(agent.target_model(state, training=False))
    for a, b in zip(agent.model.get_weights(), agent.target_model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(online, target)


def train_noisy_cartpole(seed: int, nb_steps: int = 300) -> tuple[DQNAgent, dict, list]:
    """A greedy agent with a noisy network trained on CartPole; also the weights it began with."""
    keras.utils.set_random_seed(seed)
    env = gymnasium.make("CartPole-v1")
    env.reset(seed=seed)
    agent = noisy_agent(seed=seed)
    initial = agent.model.get_weights()
    history = agent.fit(env, nb_steps=nb_steps, verbose=0)
    env.close()
    return agent, history.history, initial


def test_greedy_agent_trains_on_cartpole_and_its_q_values_change_every_step():
    agent, history, initial = train_noisy_cartpole(seed=0)
    losses = [loss for loss in history["loss"] if not np.isnan(loss)]
    assert losses and np.all(np.isfinite(losses))
    trained = dict(zip([w.path for w in agent.model.weights], agent.model.get_weights()))
    started = dict(zip(trained, initial))
    # Every mu and every sigma moved: the gradients of the TD loss reached them all.
    assert all(not np.array_equal(trained[name], started[name]) for name in trained)
    state = np.full((1, 4), 0.1, np.float32)
    q_values = [agent.compute_q_values(state) for _ in range(5)]
    assert all(not np.allclose(a, b) for a, b in zip(q_values, q_values[1:]))
    for before, after in zip(trained.values(), agent.model.get_weights()):
        np.testing.assert_array_equal(before, after)  # the weights stayed fixed while acting


def test_seeded_training_runs_are_identical():
    agent_a, history_a, _ = train_noisy_cartpole(seed=4, nb_steps=200)
    agent_b, history_b, _ = train_noisy_cartpole(seed=4, nb_steps=200)
    assert history_a["episode_reward"] == history_b["episode_reward"]
    for a, b in zip(agent_a.model.get_weights(), agent_b.model.get_weights()):
        np.testing.assert_array_equal(a, b)


def noisy_cartpole_run(between=lambda agent: None, callbacks=()) -> DQNAgent:
    """A noisy agent trained on CartPole in two ``fit`` calls of 120 steps with
    ``between(agent)`` in the middle."""
    keras.utils.set_random_seed(3)
    env = gymnasium.make("CartPole-v1")
    env.reset(seed=3)
    agent = noisy_agent(seed=3)
    agent.fit(env, nb_steps=120, callbacks=list(callbacks), verbose=0)
    between(agent)
    agent.fit(env, nb_steps=120, callbacks=list(callbacks), verbose=0)
    env.close()
    return agent


def test_predict_and_evaluations_leave_a_noisy_training_run_unchanged():
    """Acting on a noisy network draws noise; ``predict`` and ``EvalCallback`` put the
    generators back, so the run ends with the very weights of a run without them."""
    reference = noisy_cartpole_run()
    predicted = noisy_cartpole_run(
        between=lambda agent: [agent.predict(np.zeros(4, np.float32)) for _ in range(3)]
    )
    evaluation = EvalCallback(gymnasium.make("CartPole-v1"), eval_interval=60, verbose=0)
    evaluated = noisy_cartpole_run(callbacks=[evaluation])
    assert [result["step"] for result in evaluation.evaluations] == [60, 120, 180, 240]
    assert_same_weights(reference.model, predicted.model)
    assert_same_weights(reference.model, evaluated.model)


def test_dueling_head_over_noisy_hidden_layers_acts_with_noise_and_saves(tmp_path):
    model = keras.Sequential(
        [
            keras.Input((1, 4)),
            keras.layers.Flatten(),
            NoisyDense(16, activation="relu"),
            keras.layers.Dense(2),
        ]
    )
    agent = noisy_agent(model, enable_dueling_network=True, jit_compile=False)
    agent.learn(some_batch())
    state = np.ones((1, 4), np.float32)
    assert not np.allclose(agent.compute_q_values(state), agent.compute_q_values(state))
    agent.save(tmp_path / "dueling.h5")
    loaded = DQNAgent.load(tmp_path / "dueling.h5")
    assert_same_weights(agent.model, loaded.model)


# --------------------------------------------------------------------------- saving and loading


def trained_agent() -> DQNAgent:
    agent = noisy_agent(jit_compile=False)
    agent.learn(some_batch())
    return agent


def test_weights_round_trip_through_save_weights_and_load_weights(tmp_path):
    agent = trained_agent()
    agent.save_weights(tmp_path / "noisy.h5f")
    other = noisy_agent(jit_compile=False)
    assert not np.array_equal(other.model.get_weights()[2], agent.model.get_weights()[2])
    other.load_weights(tmp_path / "noisy.h5f")
    assert_same_weights(agent.model, other.model)
    assert_same_weights(agent.model, other.target_model)


def test_whole_agent_round_trips_without_custom_objects(tmp_path):
    agent = trained_agent()
    agent.save(tmp_path / "agent.h5")
    loaded = DQNAgent.load(tmp_path / "agent.h5")
    saved = [layer.get_config() for layer in agent.model.layers if isinstance(layer, NoisyDense)]
    rebuilt = [layer for layer in loaded.model.layers if isinstance(layer, NoisyDense)]
    assert [layer.get_config() for layer in rebuilt] == saved and len(saved) == 2
    assert_same_weights(agent.model, loaded.model)
    state = np.ones((1, 4), np.float32)
    assert not np.allclose(loaded.compute_q_values(state), loaded.compute_q_values(state))
    loaded.learn(some_batch())  # the loaded agent trains


def test_checkpoint_round_trips_both_networks(tmp_path):
    agent = trained_agent()
    agent.save_checkpoint(tmp_path / "checkpoint.h5")
    other = noisy_agent(jit_compile=False)
    other.load_checkpoint(tmp_path / "checkpoint.h5")
    assert_same_weights(agent.model, other.model)
    assert_same_weights(agent.target_model, other.target_model)
