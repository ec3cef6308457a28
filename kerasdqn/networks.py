"""Builders for Q networks: Keras ``Sequential`` models.

Kernels start glorot-normal (Xavier normal: variance ``2 / (fan_in + fan_out)``) and biases at
zero, the initialization the DQN literature uses for fully connected layers.

``build_mlp`` maps vector observations to Q values; ``nature_cnn`` is the convolutional network
of Mnih et al. (2015) for stacks of Atari frames; ``build_model`` picks the right one for an
environment.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium
import keras
import numpy as np

from kerasdqn._checks import check_bool, check_int
from kerasdqn.layers import DuelingCombine, NoisyDense

#: Frames stacked into one state for image observations: Mnih et al. (2015)'s "agent history
#: length", which lets the network see motion.
FRAME_STACK = 4

#: The Nature CNN's convolutions, first to last: (filters, kernel side, stride), valid padding.
NATURE_CONVOLUTIONS = ((32, 8, 4), (64, 4, 2), (64, 3, 1))


def _smallest_frame_side(convolutions: Sequence[tuple[int, int, int]]) -> int:
    """The smallest frame side from which valid ``convolutions`` leave one pixel: working back
    from that pixel, a layer of kernel ``k`` and stride ``s`` needs ``(side - 1) * s + k``."""
    side = 1
    for _, kernel, stride in reversed(convolutions):
        side = (side - 1) * stride + kernel
    return side


#: The smallest height and width of the frames ``nature_cnn`` takes: 36 pixels.
MIN_FRAME_SIDE = _smallest_frame_side(NATURE_CONVOLUTIONS)


def glorot_dense(units: int, activation: str | None = None, name: str | None = None):
    """A ``Dense`` layer with glorot-normal kernel and zero bias."""
    return keras.layers.Dense(
        units,
        activation=activation,
        kernel_initializer="glorot_normal",
        bias_initializer="zeros",
        name=name,
    )


def fully_connected(
    units: int,
    activation: str | None = None,
    name: str | None = None,
    noisy_sigma0: float | None = None,
):
    """``glorot_dense``, or with ``noisy_sigma0`` set a ``NoisyDense`` of that initial noise
    scale (Fortunato et al.'s initialization instead of glorot's)."""
    if noisy_sigma0 is None:
        return glorot_dense(units, activation, name=name)
    return NoisyDense(units, activation=activation, sigma0=noisy_sigma0, name=name)


def build_mlp(
    input_shape: Sequence[int],
    nb_actions: int,
    hidden_units: Sequence[int] = (64, 64),
    activation: str = "relu",
    *,
    noisy_sigma0: float | None = None,
) -> keras.Sequential:
    """A multilayer perceptron from a state to one Q value per action.

    Args:
        input_shape: shape of one state without the batch axis, i.e.
            ``(window_length,) + observation_shape`` as the agent feeds it.
        nb_actions: number of outputs, one per discrete action (a distributional agent's
            ``nb_actions * size``).
        hidden_units: width of each hidden layer, first to last.
        activation: activation of the hidden layers (the output is linear).
        noisy_sigma0: if set, every layer is a ``NoisyDense`` of that ``sigma0`` (a noisy
            network, Fortunato et al., 2018); default None: plain ``Dense`` layers.
    """
    input_shape = tuple(check_int("input_shape", dim, minimum=1) for dim in input_shape)
    nb_actions = check_int("nb_actions", nb_actions, minimum=1)
    layers = [keras.Input(shape=input_shape), keras.layers.Flatten()]
    layers += _dense_layers(hidden_units, nb_actions, activation, noisy_sigma0)
    return keras.Sequential(layers)


def _dense_layers(
    hidden_units: Sequence[int], outputs: int, activation: str, noisy_sigma0: float | None
) -> list:
    """The hidden layers, then the linear output layer ``q_values``."""
    hidden_units = [check_int("hidden_units", units, minimum=1) for units in hidden_units]
    layers = [
        fully_connected(units, activation, noisy_sigma0=noisy_sigma0) for units in hidden_units
    ]
    layers.append(fully_connected(outputs, name="q_values", noisy_sigma0=noisy_sigma0))
    return layers


def glorot_conv(filters: int, kernel_size: int, strides: int, name: str):
    """A ReLU ``Conv2D`` layer (valid padding) with glorot-normal kernel and zero bias."""
    return keras.layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        activation="relu",
        kernel_initializer="glorot_normal",
        bias_initializer="zeros",
        name=name,
    )


def nature_cnn(
    input_shape: Sequence[int] = (FRAME_STACK, 84, 84),
    *,
    nb_actions: int,
    dueling: bool = False,
    noisy_sigma0: float | None = None,
) -> keras.Model:
    """The Q network of Mnih et al. (2015), "Human-level control through deep reinforcement
    learning": three ReLU convolutions (32 filters 8x8 stride 4, 64 4x4 stride 2, 64 3x3
    stride 1), a ReLU Dense layer of 512 units and a linear output of one Q value per action.

    It takes the frames as the replay memory stores them, ``uint8`` of shape ``(batch,
    window_length, height, width)``, and scales them by 1/255 inside (so replay stays four
    times smaller than float32 and no ``Processor`` is needed), then moves the window axis
    last (``Permute``): the convolutions see the stacked frames as channels. Colour frames
    ``(window_length, height, width, colours)`` work too: their window and colour axes become
    the ``window_length * colours`` channels.

    Args:
        input_shape: one state without the batch axis: ``(window_length, height, width)``
            (default 4 frames of 84x84, as ``make_atari`` gives them) or ``(window_length,
            height, width, colours)``, the window axis first (not Keras's channels-last
            ``(84, 84, 4)``); frames of at least ``MIN_FRAME_SIDE`` (36) pixels a side, the
            smallest the convolutions take.
        nb_actions: number of outputs, one per discrete action.
        dueling: the dueling architecture of Wang et al. (2016) instead: after the
            convolutions, a value stream and an advantage stream of 512 ReLU units each,
            combined as ``Q = V + A - mean_a A``. That network has two branches, so it is a
            functional ``keras.Model``; without ``dueling`` it is a ``keras.Sequential``, to
            which ``DQNAgent(enable_dueling_network=True)`` can add keras-rl's dueling head
            (both streams from the one 512-unit layer) instead.
        noisy_sigma0: if set, the fully connected layers (not the convolutions) are
            ``NoisyDense`` layers of that ``sigma0``, as in Rainbow (Hessel et al., 2018).
    """
    input_shape = _checked_frames_shape(input_shape)
    nb_actions = check_int("nb_actions", nb_actions, minimum=1)
    layers = [
        keras.Input(shape=input_shape, dtype="uint8", name="frames"),
        keras.layers.Rescaling(1.0 / 255.0, name="scale_to_unit"),
    ] + _frames_as_channels(input_shape)
    layers += [
        glorot_conv(filters, kernel, stride, f"conv_{kernel}x{kernel}")
        for filters, kernel, stride in NATURE_CONVOLUTIONS
    ]
    layers.append(keras.layers.Flatten(name="features"))
    if check_bool("dueling", dueling):
        body = keras.Sequential(layers, name="nature_cnn_body")
        return _dueling_streams(body, nb_actions, noisy_sigma0)
    layers += [
        fully_connected(512, "relu", name="dense_512", noisy_sigma0=noisy_sigma0),
        fully_connected(nb_actions, name="q_values", noisy_sigma0=noisy_sigma0),
    ]
    return keras.Sequential(layers, name="nature_cnn")


_FRAME_SHAPES = "(window_length, height, width) or (window_length, height, width, colours)"


def _checked_frames_shape(input_shape) -> tuple[int, ...]:
    """``input_shape`` as a tuple of ints, if it is one of ``_FRAME_SHAPES`` with frames of
    at least ``MIN_FRAME_SIDE`` pixels a side: smaller ones would fail deep inside Keras."""
    if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence):
        raise TypeError(f"input_shape: expected a tuple {_FRAME_SHAPES}, got {input_shape!r}")
    input_shape = tuple(check_int("input_shape", dim, minimum=1) for dim in input_shape)
    if len(input_shape) not in (3, 4):
        raise ValueError(f"input_shape: expected {_FRAME_SHAPES}, got {input_shape}")
    height, width = input_shape[1:3]
    if min(height, width) < MIN_FRAME_SIDE:
        convolutions = ", ".join(f"{k}x{k} stride {s}" for _, k, s in NATURE_CONVOLUTIONS)
        raise ValueError(
            f"input_shape: expected frames of at least {MIN_FRAME_SIDE}x{MIN_FRAME_SIDE} pixels "
            f"(the smallest that the valid convolutions {convolutions} take), got "
            f"{height}x{width} in {input_shape}{_window_first_hint(input_shape)}"
        )
    return input_shape


def _window_first_hint(input_shape: tuple[int, ...]) -> str:
    """For a channels-last shape such as ``(84, 84, 4)``, the reminder that the window axis
    comes first; '' for other shapes."""
    if input_shape[0] < MIN_FRAME_SIDE:
        return ""
    suggestion = input_shape[-1:] + input_shape[:-1] if len(input_shape) == 3 else None
    return (
        f"; the window axis comes first: {_FRAME_SHAPES}"
        + (f", e.g. {suggestion}" if suggestion else "")
        + " (the network moves it last itself)"
    )


def _frames_as_channels(input_shape: tuple[int, ...]) -> list:
    """Layers moving the window axis (and any colour axis) last, as the convolutions'
    channels: ``(window, h, w)`` -> ``(h, w, window)``, ``(window, h, w, c)`` -> ``(h, w,
    window * c)``."""
    if len(input_shape) == 3:
        return [keras.layers.Permute((2, 3, 1), name="frames_last")]
    window, height, width, colours = input_shape
    return [
        keras.layers.Permute((2, 3, 1, 4), name="frames_last"),
        keras.layers.Reshape((height, width, window * colours), name="frames_as_channels"),
    ]


def _dueling_streams(
    body: keras.Sequential, nb_actions: int, noisy_sigma0: float | None
) -> keras.Model:
    """Wang et al. (2016)'s head on ``body``: ``V`` and ``A`` from 512 ReLU units each."""
    features = body.outputs[0]
    value = fully_connected(512, "relu", "value_512", noisy_sigma0)(features)
    value = fully_connected(1, None, "value", noisy_sigma0)(value)
    advantage = fully_connected(512, "relu", "advantage_512", noisy_sigma0)(features)
    advantage = fully_connected(nb_actions, None, "advantage", noisy_sigma0)(advantage)
    head = keras.layers.Concatenate(name="value_advantage")([value, advantage])
    q_values = DuelingCombine("avg", name="q_values")(head)
    return keras.Model(body.inputs[0], q_values, name="nature_cnn_dueling")


def is_image_space(space: gymnasium.Space) -> bool:
    """Whether observations are images: a ``uint8`` Box of rank 2 (grey frames, as
    ``make_atari`` gives) or 3 (height, width, channels)."""
    return (
        isinstance(space, gymnasium.spaces.Box)
        and space.dtype == np.uint8
        and len(space.shape) in (2, 3)
    )


def frame_stack(env: gymnasium.Env) -> int:
    """The ``window_length`` the agent's states need on ``env``: ``FRAME_STACK`` frames for
    image observations (see ``is_image_space``), one observation otherwise."""
    return FRAME_STACK if is_image_space(env.observation_space) else 1


def _check_frame_size(space: gymnasium.spaces.Box) -> None:
    """Refuse image observations too small for the Nature CNN, naming the env's frame size
    (the ``input_shape`` that ``nature_cnn`` would name is not one the user wrote)."""
    height, width = space.shape[:2]
    if min(height, width) < MIN_FRAME_SIDE:
        raise ValueError(
            f"env: its frames are {height}x{width} pixels, smaller than the "
            f"{MIN_FRAME_SIDE}x{MIN_FRAME_SIDE} the Nature CNN needs; make them larger "
            "(make_atari's screen_size, 84 by default) or pass a model of your own"
        )


def build_model(
    env: gymnasium.Env,
    hidden: Sequence[int] = (256, 256),
    *,
    outputs_per_action: int = 1,
    noisy_sigma0: float | None = None,
) -> keras.Model:
    """The Q network for ``env``: for image observations (see ``is_image_space``) the Nature
    CNN on stacks of ``FRAME_STACK`` frames (``hidden`` is not used), otherwise a
    glorot-normal MLP from a window of one observation to one Q value per action, ``hidden``
    giving the widths of its ReLU layers.

    A Box observation enters the MLP as it is (flattened). A Discrete observation (a state
    index, as in FrozenLake or Taxi) is one-hot encoded first by a ``CategoryEncoding`` layer,
    which has no weights: the weights file holds the Dense layers only. Colour images (rank
    3, such as the raw 210x160x3 Atari screen) enter the CNN too, the window of frames and
    their colours as its channels, but ``make_atari``'s 84x84 grey frames are what the
    Nature network was made for, and 14 times smaller in replay.

    Frames smaller than ``MIN_FRAME_SIDE`` (36) pixels a side raise ``ValueError`` naming
    their size: the Nature CNN cannot take them.

    ``outputs_per_action``: numbers the network outputs per action, 1 for Q values (a
    distributional agent's ``nb_atoms`` or ``nb_quantiles``). ``noisy_sigma0``: if set, the
    fully connected layers are ``NoisyDense`` layers of that initial noise scale.
    """
    outputs = int(env.action_space.n) * check_int("outputs_per_action", outputs_per_action, 1)
    space = env.observation_space
    if is_image_space(space):
        _check_frame_size(space)
        shape = (FRAME_STACK,) + tuple(space.shape)
        return nature_cnn(shape, nb_actions=outputs, noisy_sigma0=noisy_sigma0)
    if isinstance(space, gymnasium.spaces.Box):
        return build_mlp((1,) + space.shape, outputs, hidden, noisy_sigma0=noisy_sigma0)
    if isinstance(space, gymnasium.spaces.Discrete) and int(space.start) == 0:
        layers = [
            keras.Input(shape=(1,)),
            keras.layers.CategoryEncoding(int(space.n), output_mode="one_hot", name="one_hot"),
        ]
        layers += _dense_layers(hidden, outputs, "relu", noisy_sigma0)
        return keras.Sequential(layers)
    raise ValueError(
        f"env: build_model handles Box observations and Discrete ones counted from 0, got "
        f"{space!r}; build the network yourself"
    )
