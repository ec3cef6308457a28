"""Builders for Q networks: Keras ``Sequential`` models.

Kernels start glorot-normal (Xavier normal: variance ``2 / (fan_in + fan_out)``) and biases at
zero, the initialization the DQN literature uses for fully connected layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium
import keras

from kerasdqn._checks import check_int


def glorot_dense(units: int, activation: str | None = None, name: str | None = None):
    """A ``Dense`` layer with glorot-normal kernel and zero bias."""
    return keras.layers.Dense(
        units,
        activation=activation,
        kernel_initializer="glorot_normal",
        bias_initializer="zeros",
        name=name,
    )


def build_mlp(
    input_shape: Sequence[int],
    nb_actions: int,
    hidden_units: Sequence[int] = (64, 64),
    activation: str = "relu",
) -> keras.Sequential:
    """A multilayer perceptron from a state to one Q value per action.

    Args:
        input_shape: shape of one state without the batch axis, i.e.
            ``(window_length,) + observation_shape`` as the agent feeds it.
        nb_actions: number of outputs, one per discrete action.
        hidden_units: width of each hidden layer, first to last.
        activation: activation of the hidden layers (the output is linear).
    """
    input_shape = tuple(check_int("input_shape", dim, minimum=1) for dim in input_shape)
    nb_actions = check_int("nb_actions", nb_actions, minimum=1)
    hidden_units = [check_int("hidden_units", units, minimum=1) for units in hidden_units]
    layers = [keras.Input(shape=input_shape), keras.layers.Flatten()]
    layers += [glorot_dense(units, activation) for units in hidden_units]
    layers.append(glorot_dense(nb_actions, name="q_values"))
    return keras.Sequential(layers)


def build_model(env: gymnasium.Env, hidden: Sequence[int] = (256, 256)) -> keras.Model:
    """The Q network: a glorot-normal MLP from a window of one observation to one Q value per
    action, ``hidden`` giving the widths of its ReLU layers.

    A Box observation enters as it is (flattened). A Discrete observation (a state index, as
    in FrozenLake or Taxi) is one-hot encoded first by a ``CategoryEncoding`` layer, which has
    no weights: the weights file holds the Dense layers only.
    """
    nb_actions = int(env.action_space.n)
    space = env.observation_space
    if isinstance(space, gymnasium.spaces.Box):
        return build_mlp((1,) + space.shape, nb_actions, hidden)
    if isinstance(space, gymnasium.spaces.Discrete) and int(space.start) == 0:
        hidden = [check_int("hidden", units, minimum=1) for units in hidden]
        layers = [
            keras.Input(shape=(1,)),
            keras.layers.CategoryEncoding(int(space.n), output_mode="one_hot", name="one_hot"),
        ]
        layers += [glorot_dense(units, "relu") for units in hidden]
        layers.append(glorot_dense(nb_actions, name="q_values"))
        return keras.Sequential(layers)
    raise ValueError(
        f"env: build_model handles Box observations and Discrete ones counted from 0, got "
        f"{space!r}; build the network yourself"
    )
