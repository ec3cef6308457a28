"""build_mlp (initialization, shapes, forward pass, argument checks) and DuelingCombine."""

import keras
import numpy as np
import pytest

from kerasdqn import build_mlp
from kerasdqn.layers import DuelingCombine


def dense_layers(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]


def as_numpy(x):
    return keras.ops.convert_to_numpy(x)


# ------------------------------------------------------------------ build_mlp


def test_build_mlp_layers_and_output_shape():
    model = build_mlp((4, 3), 5, hidden_units=(16, 8))
    assert isinstance(model, keras.Sequential)
    assert model.input_shape == (None, 4, 3)
    assert model.output_shape == (None, 5)
    assert [layer.units for layer in dense_layers(model)] == [16, 8, 5]
    assert dense_layers(model)[-1].name == "q_values"
    assert model(np.zeros((7, 4, 3), np.float32)).shape == (7, 5)


def test_build_mlp_without_hidden_layers_is_linear():
    model = build_mlp((1, 4), 2, hidden_units=())
    assert [layer.units for layer in dense_layers(model)] == [2]


def test_kernels_start_glorot_normal():
    """Var(W) = 2 / (fan_in + fan_out), checked on layers with many weights.

    The sample variance of n draws has relative standard deviation sqrt(2 / n) for a normal
    distribution (less for Keras's rescaled truncated normal), so a relative tolerance of 5x
    that is safe: 1.4% for the 512 x 512 kernel, 2.0% for the 512 x 256 one. The kurtosis
    tells normal from uniform (glorot_uniform has the same variance): 3 for a normal (about
    2.37 after Keras truncates it at two standard deviations), 1.8 for a uniform.
    """
    keras.utils.set_random_seed(0)
    model = build_mlp((1, 512), 256, hidden_units=(512,))
    for layer in dense_layers(model):
        kernel = as_numpy(layer.kernel).astype(np.float64)
        fan_in, fan_out = kernel.shape
        expected = 2.0 / (fan_in + fan_out)
        n = kernel.size
        assert abs(kernel.var() / expected - 1) < 5 * np.sqrt(2 / n)
        assert abs(kernel.mean()) < 5 * np.sqrt(expected / n)
        kurtosis = np.mean((kernel - kernel.mean()) ** 4) / kernel.var() ** 2
        assert 2.1 < kurtosis < 3.2


def test_kernels_are_drawn_from_the_keras_seed():
    kernels = []
    for seed in (1, 1, 2):
        keras.utils.set_random_seed(seed)
        kernels.append(as_numpy(dense_layers(build_mlp((1, 8), 2))[0].kernel))
    np.testing.assert_array_equal(kernels[0], kernels[1])
    assert not np.array_equal(kernels[0], kernels[2])


def test_biases_start_exactly_zero():
    model = build_mlp((2, 4), 3, hidden_units=(32, 16))
    for layer in dense_layers(model):
        assert np.all(as_numpy(layer.bias) == 0.0)


@pytest.mark.parametrize(
    ("activation", "function"),
    [("relu", lambda x: np.maximum(x, 0)), ("tanh", np.tanh)],
    ids=["relu", "tanh"],
)
def test_forward_pass_flattens_applies_hidden_activation_and_a_linear_output(activation, function):
    keras.utils.set_random_seed(0)
    model = build_mlp((2, 3), 4, hidden_units=(8, 5), activation=activation)
    rng = np.random.default_rng(0)
    for layer in dense_layers(model):  # nonzero biases, so that they are exercised too
        layer.bias.assign(rng.normal(size=layer.bias.shape).astype(np.float32))
    x = rng.normal(size=(6, 2, 3)).astype(np.float32)
    weights = [(as_numpy(layer.kernel), as_numpy(layer.bias)) for layer in dense_layers(model)]
    h = x.reshape(6, -1)
    for kernel, bias in weights[:-1]:
        h = function(h @ kernel + bias)
    expected = h @ weights[-1][0] + weights[-1][1]
    np.testing.assert_allclose(as_numpy(model(x)), expected, rtol=1e-5, atol=1e-5)
    assert expected.min() < 0  # the output is linear: negative Q values pass through


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"nb_actions": 0}, ValueError, "nb_actions"),
        ({"nb_actions": 2.0}, TypeError, "nb_actions"),
        ({"nb_actions": True}, TypeError, "nb_actions"),
        ({"input_shape": (0, 4)}, ValueError, "input_shape"),
        ({"input_shape": (1, 4.0)}, TypeError, "input_shape"),
        ({"hidden_units": (64, 0)}, ValueError, "hidden_units"),
        ({"hidden_units": (64, 2.5)}, TypeError, "hidden_units"),
    ],
)
def test_build_mlp_invalid_arguments_raise_naming_the_argument(kwargs, error, name):
    arguments = {"input_shape": (1, 4), "nb_actions": 2, **kwargs}
    with pytest.raises(error, match=f"^{name}:"):
        build_mlp(**arguments)


# ------------------------------------------------------------------ DuelingCombine

ROW = [1.0, 2.0, 4.0, 9.0]  # V = 1, A = (2, 4, 9): mean 5, max 9


@pytest.mark.parametrize(
    ("dueling_type", "expected"),
    [
        ("avg", [1 + 2 - 5, 1 + 4 - 5, 1 + 9 - 5]),
        ("max", [1 + 2 - 9, 1 + 4 - 9, 1 + 9 - 9]),
        ("naive", [1 + 2, 1 + 4, 1 + 9]),
    ],
)
def test_dueling_combine_aggregates_value_and_advantages(dueling_type, expected):
    output = as_numpy(DuelingCombine(dueling_type)(np.array([ROW], np.float32)))
    np.testing.assert_allclose(output, [expected], rtol=1e-6)


@pytest.mark.parametrize("dueling_type", ["avg", "max", "naive"])
def test_dueling_combine_rows_do_not_depend_on_the_rest_of_the_batch(dueling_type):
    layer = DuelingCombine(dueling_type)
    batch = np.array([[100.0, -50.0, 3.0, 70.0], ROW, [-3.0, 0.0, 0.0, 1.0]], np.float32)
    together = as_numpy(layer(batch))
    for row, output in zip(batch, together):
        np.testing.assert_allclose(as_numpy(layer(row[np.newaxis]))[0], output, rtol=1e-6)


def test_dueling_combine_default_is_avg_and_output_drops_the_value_column():
    layer = DuelingCombine()
    assert layer.dueling_type == "avg"
    assert layer.compute_output_shape((None, 4)) == (None, 3)
    model = keras.Sequential([keras.Input((5,)), DuelingCombine("max")])
    assert model.output_shape == (None, 4)


def test_dueling_combine_config_round_trips():
    layer = DuelingCombine("max", name="dueling")
    rebuilt = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(rebuilt, DuelingCombine)
    assert (rebuilt.dueling_type, rebuilt.name) == ("max", "dueling")


@pytest.mark.parametrize("dueling_type", ["mean", "AVG", None, 1])
def test_dueling_combine_rejects_unknown_types(dueling_type):
    with pytest.raises(ValueError, match="^dueling_type:"):
        DuelingCombine(dueling_type)
