"""Acting's Q evaluation: NumPy where the network allows, exactly what Keras computes."""

import keras
import numpy as np
import pytest

from kerasdqn.agents.dqn import DQNAgent
from kerasdqn.inference import (
    CompiledQFunction,
    NumpyQFunction,
    SmallBatchNumpyQFunction,
    make_q_function,
)
from kerasdqn.layers import DuelingCombine
from kerasdqn.memory import SequentialMemory
from kerasdqn.networks import nature_cnn


def states(shape, n=16, seed=0):
    return np.random.default_rng(seed).normal(size=(n,) + shape).astype(np.float32)


def frames(shape, n=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n,) + shape, dtype=np.uint8)


def keras_q(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "elu", "silu", "softplus"])
def test_numpy_evaluation_of_a_plain_mlp_matches_keras(activation):
    model = keras.Sequential(
        [
            keras.Input((1, 4)),
            keras.layers.Flatten(),
            keras.layers.Dense(32, activation=activation),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(3),
        ]
    )
    q_function = make_q_function(model)
    assert isinstance(q_function, NumpyQFunction)
    x = states((1, 4))
    np.testing.assert_allclose(q_function(x), keras_q(model, x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dueling_type", ["avg", "max", "naive"])
def test_numpy_evaluation_of_a_dueling_head_matches_keras(dueling_type):
    model = keras.Sequential(
        [
            keras.Input((1, 4)),
            keras.layers.Flatten(),
            keras.layers.Dense(4),
            DuelingCombine(dueling_type),
        ]
    )
    q_function = make_q_function(model)
    assert isinstance(q_function, NumpyQFunction)
    x = states((1, 4))
    np.testing.assert_allclose(q_function(x), keras_q(model, x), rtol=1e-5, atol=1e-6)


def test_a_network_numpy_cannot_evaluate_falls_back_to_a_compiled_call():
    model = keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ]
    )
    q_function = make_q_function(model)
    assert isinstance(q_function, CompiledQFunction)
    x = states((6, 6, 2))
    np.testing.assert_allclose(q_function(x), keras_q(model, x), rtol=1e-5, atol=1e-6)


def small_convolutional_network(padding, strides):
    """uint8 frames ``(window, height, width)`` scaled and moved channels-last, then two
    convolutions of odd sizes: what NumPy's patches must get exactly right."""
    return keras.Sequential(
        [
            keras.Input((3, 11, 9), dtype="uint8"),
            keras.layers.Rescaling(1 / 255.0, offset=-0.5),
            keras.layers.Permute((2, 3, 1)),
            keras.layers.Conv2D(4, (3, 2), strides=strides, padding=padding, activation="relu"),
            keras.layers.Conv2D(5, 2, padding=padding, use_bias=False, activation="tanh"),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ]
    )


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("strides", [1, 2, (2, 3)])
def test_numpy_evaluation_of_convolutions_matches_keras(padding, strides):
    model = small_convolutional_network(padding, strides)
    x = frames((3, 11, 9))
    np.testing.assert_allclose(NumpyQFunction(model)(x), keras_q(model, x), rtol=1e-5, atol=1e-6)


def test_a_convolutional_network_acts_on_numpy_one_state_at_a_time_and_compiled_beyond():
    model = nature_cnn(nb_actions=4)
    q_function = make_q_function(model)
    assert isinstance(q_function, SmallBatchNumpyQFunction)
    one, several = frames((4, 84, 84), n=1), frames((4, 84, 84), n=3, seed=1)
    np.testing.assert_allclose(q_function(one), keras_q(model, one), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(q_function(several), keras_q(model, several), rtol=1e-4, atol=1e-6)
    assert q_function.variables == []  # the training call hands nothing back for it


def test_the_convolutional_numpy_copy_is_read_again_after_a_refresh():
    model = small_convolutional_network("valid", 1)
    q_function = make_q_function(model)
    x = frames((3, 11, 9), n=1)
    before = q_function(x)
    model.set_weights([weight * 2 for weight in model.get_weights()])
    np.testing.assert_array_equal(q_function(x), before)
    q_function.refresh()
    np.testing.assert_allclose(q_function(x), keras_q(model, x), rtol=1e-5, atol=1e-6)
    assert not np.allclose(q_function(x), before)


def one_variable_network():
    return keras.Sequential(
        [keras.Input((1, 3)), keras.layers.Flatten(), keras.layers.Dense(2, use_bias=False)]
    )


@pytest.mark.parametrize(
    "network, x",
    [
        (lambda: small_convolutional_network("valid", 1), frames((3, 11, 9), n=2)),
        (one_variable_network, states((1, 3))),
    ],
    ids=["several variables", "one variable"],
)
def test_the_numpy_copy_is_a_snapshot_that_updates_in_place_do_not_reach(network, x):
    model = network()
    q_function = NumpyQFunction(model)
    before = q_function(x)
    for variable in model.weights:  # as an optimizer step updates them: in place
        variable.assign_add(np.ones(variable.shape, np.float32))
    np.testing.assert_array_equal(q_function(x), before)
    q_function.refresh()
    np.testing.assert_allclose(q_function(x), keras_q(model, x), rtol=1e-5, atol=1e-5)


def test_numpy_copies_of_several_networks_log_no_retracing_warning(caplog):
    # An agent's NumPy copy reads its weights through a TensorFlow function; built per agent,
    # a run that builds several agents must not look like one function traced over and over.
    with caplog.at_level("WARNING", logger="tensorflow"):
        for _ in range(8):
            NumpyQFunction(one_variable_network()).refresh()
    assert not [record for record in caplog.records if "retracing" in record.getMessage()]


def test_a_layer_numpy_would_get_wrong_is_refused():
    dilated = keras.Sequential(
        [keras.Input((7, 7, 1)), keras.layers.Conv2D(2, 2, dilation_rate=2), keras.layers.Flatten()]
    )
    assert isinstance(make_q_function(dilated), CompiledQFunction)


def test_the_numpy_copy_changes_only_when_refreshed():
    model = keras.Sequential([keras.Input((1, 2)), keras.layers.Flatten(), keras.layers.Dense(2)])
    q_function = make_q_function(model)
    x = states((1, 2))
    before = q_function(x)
    model.set_weights([np.ones((2, 2), np.float32), np.zeros(2, np.float32)])
    np.testing.assert_array_equal(q_function(x), before)
    q_function.refresh()
    np.testing.assert_allclose(q_function(x), keras_q(model, x), rtol=1e-6)


def test_prefer_numpy_false_always_compiles():
    model = keras.Sequential([keras.Input((1, 2)), keras.layers.Flatten(), keras.layers.Dense(2)])
    assert isinstance(make_q_function(model, prefer_numpy=False), CompiledQFunction)


def test_channels_first_convolutions_act_when_compiled_with_xla():
    # On a CPU, TensorFlow runs them only under XLA; without it the agent refuses the model.
    from test_bad_input import channels_first_model

    agent = DQNAgent(
        channels_first_model(),
        nb_actions=2,
        memory=SequentialMemory(100, window_length=4),
        jit_compile=True,
    )
    assert agent.compute_q_values(np.zeros((4, 12, 12), np.float32)).shape == (2,)
