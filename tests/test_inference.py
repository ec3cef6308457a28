"""Acting's Q evaluation: NumPy where the network allows, exactly what Keras computes."""

import keras
import numpy as np
import pytest

from kerasdqn.inference import CompiledQFunction, NumpyQFunction, make_q_function
from kerasdqn.layers import DuelingCombine


def states(shape, n=16, seed=0):
    return np.random.default_rng(seed).normal(size=(n,) + shape).astype(np.float32)


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
            keras.Input((2, 6, 6)),
            keras.layers.Permute((2, 3, 1)),
            keras.layers.Conv2D(4, 3),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ]
    )
    q_function = make_q_function(model)
    assert isinstance(q_function, CompiledQFunction)
    x = states((2, 6, 6))
    np.testing.assert_allclose(q_function(x), keras_q(model, x), rtol=1e-5, atol=1e-6)


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
