"""Fast Q-value evaluation for acting: one state at a time, thousands of times a second.

Calling a Keras model costs far more than the arithmetic of a small network: ``model.predict``
takes tens of milliseconds a call and even a compiled ``tf.function`` a few hundred
microseconds, while a NumPy forward pass of a 64x64 perceptron takes a few. So when a network is
a plain chain of layers that NumPy can evaluate exactly (``Dense``, ``Flatten``, ``Reshape``,
``Activation``, ``Dropout``, ``DuelingCombine``), acting runs on a NumPy copy of its weights,
refreshed after each training call. Any other network is evaluated by a compiled TensorFlow
function. The NumPy copy is checked against the Keras model when it is built.

A network with a ``NoisyDense`` layer always takes the compiled function: the layer draws fresh
noise from its seed generator at every call, which a copy of its weights would not.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from kerasdqn.layers import DuelingCombine, NoisyDense, combine_dueling


def _leaky_relu(x, negative_slope=0.2):
    return np.where(x > 0, x, negative_slope * x)


def _softplus(x):
    return np.logaddexp(0, x)


_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": lambda x: x,
    "relu": lambda x: np.maximum(x, 0),
    "tanh": np.tanh,
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
    "leaky_relu": _leaky_relu,
    "softplus": _softplus,
    "silu": lambda x: x / (1 + np.exp(-x)),
    "swish": lambda x: x / (1 + np.exp(-x)),
}


class _Unsupported(Exception):
    """The network has a layer or topology the NumPy path cannot evaluate."""


def _activation(function) -> Callable[[np.ndarray], np.ndarray]:
    name = getattr(function, "__name__", None)
    if name not in _ACTIVATIONS:
        raise _Unsupported(f"activation {name!r}")
    return _ACTIVATIONS[name]


class NumpyQFunction:
    """Evaluates a chain of simple Keras layers with NumPy, from a copy of their weights."""

    def __init__(self, model: keras.Model) -> None:
        self.variables: list = []
        self._steps: list[Callable[[np.ndarray], np.ndarray]] = []
        self._values: list[np.ndarray] = []
        if model.inputs[0].dtype != "float32":
            raise _Unsupported("a network whose input is not float32")
        for layer in _chain_of_layers(model):
            self._steps.append(self._compile_layer(layer))
        self.refresh()

    def _compile_layer(self, layer) -> Callable[[np.ndarray], np.ndarray]:
        if isinstance(layer, NoisyDense):
            raise _Unsupported("a NoisyDense layer, which draws fresh noise at every call")
        if isinstance(layer, keras.layers.InputLayer | keras.layers.Dropout):
            return lambda x: x
        if isinstance(layer, keras.layers.Flatten):
            return lambda x: x.reshape(x.shape[0], -1)
        if isinstance(layer, keras.layers.Reshape):
            target = tuple(layer.target_shape)
            return lambda x: x.reshape((x.shape[0],) + target)
        if isinstance(layer, keras.layers.Activation):
            return _activation(layer.activation)
        if isinstance(layer, DuelingCombine):
            return functools.partial(combine_dueling, dueling_type=layer.dueling_type, xp=np)
        if isinstance(layer, keras.layers.Dense):
            return self._dense(layer)
        raise _Unsupported(f"layer {type(layer).__name__}")

    def _dense(self, layer) -> Callable[[np.ndarray], np.ndarray]:
        if layer.dtype_policy.compute_dtype != "float32" or layer.lora_enabled:
            raise _Unsupported("a Dense layer that is not plain float32")
        activation = _activation(layer.activation)
        kernel_slot = len(self.variables)
        self.variables.append(layer.kernel)
        bias_slot = None
        if layer.use_bias:
            bias_slot = len(self.variables)
            self.variables.append(layer.bias)
        values = self._values

        def dense(x):
            y = x @ values[kernel_slot]
            if bias_slot is not None:
                y += values[bias_slot]
            return activation(y)

        return dense

    def refresh(self, values: list | None = None) -> None:
        """Copy the weights in: from ``values`` (arrays or tensors, in ``variables`` order),
        or read from the variables themselves."""
        source = self.variables if values is None else values
        self._values[:] = [np.asarray(v) for v in source]

    def __call__(self, state_batch: np.ndarray) -> np.ndarray:
        x = np.asarray(state_batch, dtype=np.float32)
        for step in self._steps:
            x = step(x)
        return x


def _chain_of_layers(model: keras.Model) -> list:
    """The model's layers if each one feeds only the next, else ``_Unsupported``."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise _Unsupported("several inputs or outputs")
    layers = list(model.layers)
    if isinstance(model, keras.Sequential):
        return layers
    for previous, layer in zip(layers, layers[1:]):
        if isinstance(layer, keras.Model) or layer.input is not previous.output:
            raise _Unsupported("a network that is not a simple chain of layers")
    if layers[-1].output is not model.outputs[0]:
        raise _Unsupported("a network whose output is not its last layer's")
    return layers


class CompiledQFunction:
    """Evaluates any Keras model through one traced TensorFlow function, compiled with XLA if
    ``jit_compile`` (for a convolutional network on CPU that is the faster one at one state a
    call: about 0.7 against 1.1 ms for the Nature CNN on two threads)."""

    variables: list = []

    def __init__(self, model: keras.Model, jit_compile: bool = False) -> None:
        spec = tf.TensorSpec((None,) + tuple(model.inputs[0].shape[1:]), model.inputs[0].dtype)
        function = tf.function(lambda x: model(x, training=False), jit_compile=jit_compile)
        self._function = function.get_concrete_function(spec)
        self._dtype = model.inputs[0].dtype

    def refresh(self, values: list | None = None) -> None:
        """Nothing to copy: the function reads the model's variables directly."""

    def __call__(self, state_batch: np.ndarray) -> np.ndarray:
        return self._function(tf.constant(state_batch, dtype=self._dtype)).numpy()


def make_q_function(model: keras.Model, prefer_numpy: bool = True, jit_compile: bool = False):
    """The fastest exact evaluator of ``model``: NumPy when possible, else compiled TensorFlow
    (with XLA if ``jit_compile``)."""
    if prefer_numpy:
        try:
            numpy_function = NumpyQFunction(model)
        except _Unsupported:
            numpy_function = None
        if numpy_function is not None and _agrees_with_keras(numpy_function, model):
            return numpy_function
    return CompiledQFunction(model, jit_compile)


def _agrees_with_keras(numpy_function: NumpyQFunction, model: keras.Model) -> bool:
    """Whether the NumPy evaluation matches Keras on random states."""
    shape = (8,) + tuple(model.inputs[0].shape[1:])
    states = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    expected = keras.ops.convert_to_numpy(model(states, training=False))
    return bool(np.allclose(numpy_function(states), expected, rtol=1e-4, atol=1e-5))
