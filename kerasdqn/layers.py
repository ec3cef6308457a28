"""Keras layers used to build Q networks."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import keras
from keras import ops

from kerasdqn._checks import check_choice, check_float, check_int

DUELING_TYPES = ("avg", "max", "naive")


def combine_dueling(head, dueling_type: str, xp):
    """``Q = V + A - mean_a A`` (``'avg'``), ``V + A - max_a A`` (``'max'``) or ``V + A``
    (``'naive'``) from ``head = [V, A_1, ..., A_n]`` per row. ``xp`` is the array module:
    ``keras.ops`` inside the network, NumPy for acting; both offer ``mean`` and ``max``."""
    value, advantage = head[:, :1], head[:, 1:]
    if dueling_type == "avg":
        advantage = advantage - xp.mean(advantage, axis=1, keepdims=True)
    elif dueling_type == "max":
        advantage = advantage - xp.max(advantage, axis=1, keepdims=True)
    return value + advantage


@keras.saving.register_keras_serializable(package="kerasdqn")
class DuelingCombine(keras.layers.Layer):
    """Turns ``[V(s), A(s, a_1), ..., A(s, a_n)]`` into ``Q(s, a)`` (Wang et al., 2016).

    ``dueling_type`` chooses the aggregation, as in keras-rl:

    - ``'avg'``:   ``Q = V + A - mean_a A``
    - ``'max'``:   ``Q = V + A - max_a A``
    - ``'naive'``: ``Q = V + A``

    The mean and max run over the actions of each state (keras-rl's ``'avg'`` averaged over
    the whole batch as well, which made a state's Q values depend on the rest of its batch).
    """

    def __init__(self, dueling_type: str = "avg", **kwargs) -> None:
        super().__init__(**kwargs)
        self.dueling_type = check_choice("dueling_type", dueling_type, DUELING_TYPES)

    def call(self, inputs):
        return combine_dueling(inputs, self.dueling_type, ops)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1] - 1)

    def get_config(self) -> dict:
        return {**super().get_config(), "dueling_type": self.dueling_type}


def factorized_noise(x):
    """``f(x) = sign(x) sqrt(|x|)``, the map Fortunato et al. (2018) apply to each factor of
    factorized Gaussian noise."""
    return ops.sign(x) * ops.sqrt(ops.abs(x))


@keras.saving.register_keras_serializable(package="kerasdqn")
class NoisyDense(keras.layers.Layer):
    """A fully connected layer with learned, factorized Gaussian weight noise: NoisyNet
    (Fortunato et al., 2018, "Noisy Networks for Exploration").

    Each call computes ``y = activation(x (mu_w + sigma_w * eps_w) + mu_b + sigma_b * eps_b)``
    with fresh noise ``eps_w[i, j] = f(eps_i) f(eps_j)`` and ``eps_b[j] = f(eps_j)``, where
    ``eps_i`` (one per input) and ``eps_j`` (one per unit) are standard normal and
    ``f(x) = sign(x) sqrt(|x|)``. ``mu`` starts uniform in ``[-1/sqrt(p), 1/sqrt(p)]`` and
    ``sigma`` at ``sigma0 / sqrt(p)``, for ``p`` inputs, as in the paper; both are trained, so
    the network learns how much to explore, state by state. A DQN agent with noisy layers needs
    no epsilon: act greedily, ``policy=GreedyQPolicy()``.

    Noise is drawn on every call, in training and inference alike (``training`` is ignored):
    each gradient step, each acting step, ``test`` and ``predict`` included, and the target
    network (a clone of the layer) draws its own. One draw serves the whole batch, as in the
    paper's DQN. The draws come from a ``keras.random.SeedGenerator``, so they run inside
    compiled (XLA) functions and repeat under ``keras.utils.set_random_seed``; the generator's
    state is not a weight, so weight files hold ``mu`` and ``sigma`` only. There is no switch
    to act on ``mu`` alone: the learned ``sigma`` is part of the policy being evaluated.

    Acting evaluates a network with noisy layers through a compiled TensorFlow call, not the
    NumPy copy plain networks use (see ``kerasdqn.inference``), so each acting step costs a few
    hundred microseconds more. ``enable_dueling_network`` replaces a final ``NoisyDense`` by a
    noisy dueling head of the same ``sigma0`` and ``seed`` (Rainbow's noisy value and
    advantage streams), a final ``Dense`` by a plain one.

    Args:
        units: number of outputs.
        activation: a Keras activation or its name (default: linear).
        sigma0: the initial noise scale ``sigma0``, at least 0 (0.5 in the paper).
        seed: seeds the noise. ``None`` (the default) takes a seed from Python's ``random``,
            which ``keras.utils.set_random_seed`` seeds, and gives every clone (the target
            network) its own; an integer is copied into clones, which then repeat this
            layer's noise.
    """

    def __init__(
        self,
        units: int,
        activation=None,
        sigma0: float = 0.5,
        seed: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.units = check_int("units", units, minimum=1)
        self.activation = keras.activations.get(activation)
        self.sigma0 = check_float("sigma0", sigma0, 0.0)
        self.seed = None if seed is None else check_int("seed", seed, minimum=0)
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        self.input_spec = keras.layers.InputSpec(min_ndim=2)

    def build(self, input_shape) -> None:
        inputs = input_shape[-1]
        if inputs is None:
            raise ValueError(
                f"{self.name}: the last axis of the input must be known, got shape {input_shape}"
            )
        bound = 1.0 / math.sqrt(inputs)
        uniform = keras.initializers.RandomUniform(-bound, bound)
        constant = keras.initializers.Constant(self.sigma0 * bound)
        self.kernel_mu = self.add_weight(
            name="kernel_mu", shape=(inputs, self.units), initializer=uniform
        )
        self.kernel_sigma = self.add_weight(
            name="kernel_sigma", shape=(inputs, self.units), initializer=constant
        )
        self.bias_mu = self.add_weight(name="bias_mu", shape=(self.units,), initializer=uniform)
        self.bias_sigma = self.add_weight(
            name="bias_sigma", shape=(self.units,), initializer=constant
        )
        self.input_spec = keras.layers.InputSpec(min_ndim=2, axes={-1: inputs})

    def call(self, inputs):
        inputs_size = self.kernel_mu.shape[0]
        noise = keras.random.normal(
            (inputs_size + self.units,), dtype=self.compute_dtype, seed=self.seed_generator
        )
        # p + q normals, not p * q: the input factors eps_i, then the unit factors eps_j.
        noise = factorized_noise(noise)
        noise_in, noise_out = noise[:inputs_size], noise[inputs_size:]
        kernel = self.kernel_mu + self.kernel_sigma * ops.outer(noise_in, noise_out)
        bias = self.bias_mu + self.bias_sigma * noise_out
        return self.activation(ops.matmul(inputs, kernel) + bias)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "units": self.units,
            "activation": keras.activations.serialize(self.activation),
            "sigma0": self.sigma0,
            "seed": self.seed,
        }


def dense_like(layer: keras.layers.Layer, units: int, name: str) -> keras.layers.Layer:
    """A new linear layer of ``units`` outputs of ``layer``'s kind, for a head that replaces
    ``layer``: a ``NoisyDense`` with its ``sigma0`` and ``seed`` for a ``NoisyDense``, else a
    ``Dense`` with glorot-normal kernel and zero bias."""
    if isinstance(layer, NoisyDense):
        return NoisyDense(units, sigma0=layer.sigma0, seed=layer.seed, name=name)
    return keras.layers.Dense(units, kernel_initializer="glorot_normal", name=name)


def noise_variables(model: keras.Model) -> list:
    """The random-number states of ``model``'s ``NoisyDense`` layers (their seed
    generators' variables, which are the model's variables that are not weights)."""
    weights = {id(weight) for weight in model.weights}
    return [variable for variable in model.variables if id(variable) not in weights]


@contextlib.contextmanager
def noise_kept(model: keras.Model) -> Iterator[None]:
    """Run the block, then put ``model``'s noise generators back as they were before it:
    acting on a noisy network for an evaluation or a ``predict`` then leaves the noise of
    training, and so the training run, exactly as without it."""
    variables = noise_variables(model)
    saved = [variable.numpy() for variable in variables]
    try:
        yield
    finally:
        for variable, value in zip(variables, saved):
            variable.assign(value)
