"""Fast Q-value evaluation for acting: one state at a time, thousands of times a second.

Calling a Keras model costs far more than the arithmetic of a small network: ``model.predict``
takes tens of milliseconds a call and even a compiled ``tf.function`` a few hundred
microseconds, while a NumPy forward pass of a 64x64 perceptron takes a few. So when a network is
a plain chain of layers that NumPy can evaluate exactly (``Dense``, ``Conv2D``, ``Rescaling``,
``Permute``, ``Flatten``, ``Reshape``, ``Activation``, ``Dropout``, ``DuelingCombine``), acting
runs on a NumPy copy of its weights, refreshed after each training call. Any other network is
evaluated by a compiled TensorFlow function. The NumPy copy is checked against the Keras model
when it is built.

Convolutions are one matrix product each over the patches of the input (a strided view, copied
once by the product's reshape). For one state this beats a compiled call, whose fixed cost is
most of an Atari network's: for the Nature CNN on two cores about 0.4 against 0.8 ms alone, and
0.7 against 0.9-1.1 ms per action in ``benchmarks/bench_atari.py``. For batches of states a
compiled call wins, so a convolutional network's NumPy evaluator hands batches larger than
``NUMPY_CONV_BATCH`` to the compiled function.

A network with a ``NoisyDense`` layer always takes the compiled function: the layer draws fresh
noise from its seed generator at every call, which a copy of its weights would not.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf
from threadpoolctl import ThreadpoolController

from kerasdqn.layers import DuelingCombine, NoisyDense, combine_dueling, noise_kept

#: The largest batch a convolutional network's NumPy evaluator takes; larger batches (a vector
#: environment's) go through the compiled function.
NUMPY_CONV_BATCH = 1


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
        self.convolutional = False
        self._steps: list[Callable[[np.ndarray], np.ndarray]] = []
        self._values: list[np.ndarray] = []
        if model.inputs[0].dtype not in ("float32", "uint8"):
            raise _Unsupported("a network whose input is neither float32 nor uint8")
        for layer in _chain_of_layers(model):
            self._steps.append(self._compile_layer(layer))
        self._layout = flat_layout(self.variables)
        self._read_flat = _flat_reader(self.variables)
        self.refresh()

    def _compile_layer(self, layer) -> Callable[[np.ndarray], np.ndarray]:
        if isinstance(layer, NoisyDense):
            raise _Unsupported("a NoisyDense layer, which draws fresh noise at every call")
        if isinstance(layer, keras.layers.Conv2D):
            self.convolutional = True
            return self._conv2d(layer)
        if isinstance(layer, keras.layers.Dense):
            return self._dense(layer)
        return _weightless_step(layer)

    def _dense(self, layer) -> Callable[[np.ndarray], np.ndarray]:
        if layer.dtype_policy.compute_dtype != "float32" or layer.lora_enabled:
            raise _Unsupported("a Dense layer that is not plain float32")
        activation = _activation(layer.activation)
        kernel_slot, bias_slot = self._add_weights(layer)
        values = self._values

        def dense(x):
            y = x @ values[kernel_slot]
            if bias_slot is not None:
                y += values[bias_slot]
            return activation(y)

        return dense

    def _conv2d(self, layer) -> Callable[[np.ndarray], np.ndarray]:
        """A channels-last ``Conv2D`` (``valid`` or ``same`` padding, no dilation or groups)
        as one matrix product of its input's patches with the kernel."""
        if (
            type(layer) is not keras.layers.Conv2D
            or layer.data_format != "channels_last"
            or tuple(layer.dilation_rate) != (1, 1)
            or layer.groups != 1
            or layer.padding not in ("valid", "same")
            or layer.dtype_policy.compute_dtype != "float32"
        ):
            raise _Unsupported("a Conv2D layer that is not a plain channels-last float32 one")
        activation = _activation(layer.activation)
        kernel_size, strides = tuple(layer.kernel_size), tuple(layer.strides)
        padding = layer.padding
        kernel_slot, bias_slot = self._add_weights(layer)
        values = self._values

        def conv2d(x):
            patches = _patches(_pad(x, kernel_size, strides, padding), kernel_size, strides)
            kernel = values[kernel_slot]
            y = patches.reshape(-1, kernel[..., 0].size) @ kernel.reshape(-1, kernel.shape[-1])
            if bias_slot is not None:
                y += values[bias_slot]
            return activation(y).reshape(patches.shape[:3] + (kernel.shape[-1],))

        return conv2d

    def _add_weights(self, layer) -> tuple[int, int | None]:
        """Register ``layer``'s kernel (and bias) for copying; their slots in the copy."""
        kernel_slot = len(self.variables)
        self.variables.append(layer.kernel)
        if not layer.use_bias:
            return kernel_slot, None
        self.variables.append(layer.bias)
        return kernel_slot, kernel_slot + 1

    def refresh(self, values: list | None = None) -> None:
        """Copy the weights in: from ``values`` (arrays or tensors, in ``variables`` order),
        or read from the variables themselves."""
        source = self._read_variables() if values is None else values
        self._values[:] = [np.asarray(v) for v in source]

    def _read_variables(self) -> list[np.ndarray]:
        """The variables' values, read in one TensorFlow call as one flat vector. Reading
        each variable on its own costs a dispatch and a copy apiece: for the Nature CNN's ten
        that is about 2 ms after every training call, against 0.5-1 ms for the one call."""
        if not self.variables:
            return []
        return views_of_flat(self._read_flat(), self._layout)

    def __call__(self, state_batch: np.ndarray) -> np.ndarray:
        x = np.asarray(state_batch, dtype=np.float32)
        for step in self._steps:
            x = step(x)
        return x


def _flat_reader(variables: list) -> Callable[[], tf.Tensor]:
    """A TensorFlow function returning ``variables`` flattened and concatenated in order,
    traced here: as a concrete function, the readers of several agents in one process do
    not count as retracings of one function (TensorFlow warns about those)."""

    def read_flat():
        return tf.concat([tf.reshape(variable, [-1]) for variable in variables], 0)

    return tf.function(read_flat, autograph=False).get_concrete_function()


def flat_layout(variables: list) -> list[tuple[tuple[int, ...], int, int]]:
    """``(shape, start, stop)`` of each variable in the vector of all of them flattened and
    concatenated in order."""
    layout, start = [], 0
    for variable in variables:
        size = int(np.prod(variable.shape))
        layout.append((tuple(variable.shape), start, start + size))
        start += size
    return layout


def views_of_flat(flat: tf.Tensor, layout: list[tuple[tuple[int, ...], int, int]]) -> list:
    """The variables' values out of ``flat``, their concatenation in one TensorFlow call, as
    NumPy views shaped by ``layout`` (``flat_layout``'s), without copying. TensorFlow never
    changes a tensor once made (an update of a variable whose buffer a tensor still holds
    copies it first), so the views are a snapshot that later updates do not reach."""
    values = np.asarray(memoryview(flat))
    return [values[start:stop].reshape(shape) for shape, start, stop in layout]


def _weightless_step(layer) -> Callable[[np.ndarray], np.ndarray]:
    """NumPy's version of a layer without weights, or ``_Unsupported``."""
    if isinstance(layer, keras.layers.InputLayer | keras.layers.Dropout):
        return lambda x: x
    if isinstance(layer, keras.layers.Flatten):
        return lambda x: x.reshape(x.shape[0], -1)
    if isinstance(layer, keras.layers.Reshape):
        target = tuple(layer.target_shape)
        return lambda x: x.reshape((x.shape[0],) + target)
    if isinstance(layer, keras.layers.Permute):
        axes = (0,) + tuple(layer.dims)
        # A contiguous copy: convolution patches of a transposed view are slow to gather.
        return lambda x: np.ascontiguousarray(x.transpose(axes))
    if isinstance(layer, keras.layers.Activation):
        return _activation(layer.activation)
    if isinstance(layer, keras.layers.Rescaling):
        return _rescaling(layer)
    if isinstance(layer, DuelingCombine):
        return functools.partial(combine_dueling, dueling_type=layer.dueling_type, xp=np)
    raise _Unsupported(f"layer {type(layer).__name__}")


def _rescaling(layer) -> Callable[[np.ndarray], np.ndarray]:
    """Keras's ``Rescaling``: ``x * scale + offset`` in float32."""
    if layer.dtype_policy.compute_dtype != "float32":
        raise _Unsupported("a Rescaling layer that is not float32")
    scale = np.asarray(layer.scale, dtype=np.float32)
    offset = np.asarray(layer.offset, dtype=np.float32)
    return lambda x: x * scale + offset


def _pad(x: np.ndarray, kernel_size, strides, padding: str) -> np.ndarray:
    """``x`` (batch, height, width, channels) zero-padded as TensorFlow's ``same`` padding
    pads it (the odd row or column at the end); unchanged for ``valid``."""
    if padding == "valid":
        return x
    pads = [(0, 0)]
    for size, kernel, stride in zip(x.shape[1:3], kernel_size, strides):
        total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, pads + [(0, 0)])


def _patches(x: np.ndarray, kernel_size, strides) -> np.ndarray:
    """The valid convolution windows of ``x`` as a strided view ``(batch, out_height,
    out_width, kernel_height, kernel_width, channels)``, without copying."""
    batch, height, width, channels = x.shape
    (kernel_height, kernel_width), (stride_y, stride_x) = kernel_size, strides
    shape = (
        batch,
        (height - kernel_height) // stride_y + 1,
        (width - kernel_width) // stride_x + 1,
        kernel_height,
        kernel_width,
        channels,
    )
    s_batch, s_y, s_x, s_channel = x.strides
    view_strides = (s_batch, s_y * stride_y, s_x * stride_x, s_y, s_x, s_channel)
    return np.lib.stride_tricks.as_strided(x, shape, view_strides, writeable=False)


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


class SmallBatchNumpyQFunction:
    """A convolutional network's evaluator: NumPy for batches of up to ``NUMPY_CONV_BATCH``
    states (acting in one environment), the compiled function for larger ones (a vector
    environment's), each the faster at its size.

    The NumPy copy of the weights (megabytes for a CNN) is read from the variables when
    NumPy next evaluates after a ``refresh``, rather than handed back by every training call.
    NumPy's BLAS runs on one thread here: its idle threads would otherwise spin for a while
    after each product and take cores from TensorFlow's training step that follows.
    """

    variables: list = []  # nothing for the training call to hand back: see refresh

    def __init__(self, numpy_function: NumpyQFunction, compiled: CompiledQFunction) -> None:
        self.numpy_function = numpy_function
        self.compiled = compiled
        self._blas = ThreadpoolController().select(user_api="blas")
        self._stale = False

    def refresh(self, values: list | None = None) -> None:
        """Mark the NumPy copy out of date: it is read again before its next use."""
        self._stale = True

    def __call__(self, state_batch: np.ndarray) -> np.ndarray:
        if len(state_batch) > NUMPY_CONV_BATCH:
            return self.compiled(state_batch)
        if self._stale:
            self.numpy_function.refresh()
            self._stale = False
        with self._blas.limit(limits=1):
            return self.numpy_function(state_batch)


def make_q_function(model: keras.Model, prefer_numpy: bool = True, jit_compile: bool = False):
    """The fastest exact evaluator of ``model``: NumPy when possible (for a convolutional
    network, at batches of one state), else compiled TensorFlow (with XLA if
    ``jit_compile``)."""
    numpy_function = _numpy_function(model) if prefer_numpy else None
    if numpy_function is None:
        return CompiledQFunction(model, jit_compile)
    if numpy_function.convolutional:
        return SmallBatchNumpyQFunction(numpy_function, CompiledQFunction(model, jit_compile))
    return numpy_function


def _numpy_function(model: keras.Model) -> NumpyQFunction | None:
    """A NumPy evaluator of ``model`` that agrees with Keras, or None where there is none."""
    try:
        numpy_function = NumpyQFunction(model)
    except _Unsupported:
        return None
    return numpy_function if _agrees_with_keras(numpy_function, model) else None


def _agrees_with_keras(numpy_function: NumpyQFunction, model: keras.Model) -> bool:
    """Whether the NumPy evaluation matches Keras on random states (random frames for a
    ``uint8`` input)."""
    shape = (8,) + tuple(model.inputs[0].shape[1:])
    rng = np.random.default_rng(0)
    if model.inputs[0].dtype == "uint8":
        states = rng.integers(0, 256, size=shape, dtype=np.uint8)
    else:
        states = rng.normal(size=shape).astype(np.float32)
    try:
        expected = keras.ops.convert_to_numpy(model(states, training=False))
    except _EVALUATION_ERRORS:
        return False  # Keras cannot run it as it is either: checked_evaluator says why
    return bool(np.allclose(numpy_function(states), expected, rtol=1e-4, atol=1e-5))


#: What Keras and TensorFlow raise for a network that cannot run on its input.
_EVALUATION_ERRORS = (TypeError, ValueError, NotImplementedError, tf.errors.OpError)


def checked_evaluator(make: Callable[[], Callable], model: keras.Model) -> Callable:
    """The evaluator ``make()`` builds for ``model``, evaluated once on a state of zeros shaped
    as the model's input: a network that cannot run on its own input (a ``uint8`` input
    straight into a convolution, channels-first convolutions on a CPU without XLA) is refused
    here with a ``ValueError`` naming ``model``, instead of at the first action, deep inside
    TensorFlow. The noise this draws from noisy layers is put back."""
    spec = model.inputs[0]
    state = np.zeros((1,) + tuple(spec.shape[1:]), dtype=spec.dtype)
    try:
        q_function = make()
        with noise_kept(model):
            q_function(state)
    except _EVALUATION_ERRORS as error:
        raise ValueError(
            f"model: it cannot be evaluated on a state of its own input ({spec.dtype}, shape "
            f"{tuple(spec.shape)}): {_what_went_wrong(error)}{_evaluation_hint(error, spec.dtype)}"
        ) from None
    return q_function


def _what_went_wrong(error: Exception) -> str:
    """The line of ``error``'s message that says what went wrong, without the traced code,
    Keras's "Exception encountered when calling ..." preamble or terminal colours."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    preamble = text.rfind("Exception encountered when calling")
    if preamble >= 0:
        text = text[preamble:].partition("\n")[2]
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith(("in user code", "File "))]
    line = re.sub(r"^\{\{[^}]*\}\}\s*", "", lines[0] if lines else "")  # TF's node tag
    return line if len(line) <= 300 else line[:300] + "..."


def _evaluation_hint(error: Exception, dtype) -> str:
    if "NHWC" in str(error):
        return (
            "; channels-first convolutions run on a CPU only compiled with XLA "
            "(jit_compile=True): put Permute((2, 3, 1)) before channels-last ones instead"
        )
    if dtype == "uint8":
        return (
            "; a uint8 input needs a layer that makes it float before the first Conv2D or "
            "Dense, e.g. keras.layers.Rescaling(1 / 255), as kerasdqn.networks.nature_cnn has"
        )
    return ""
