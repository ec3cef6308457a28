"""nature_cnn (Mnih et al., 2015): layer shapes, parameter count, uint8 frames scaled inside
(checked against a NumPy forward pass), glorot init, the dueling streams and DQNAgent's dueling
head, and build_model choosing it for image observations."""

import gymnasium
import keras
import numpy as np
import pytest

from kerasdqn import DQNAgent, SequentialMemory
from kerasdqn.networks import (
    MIN_FRAME_SIDE,
    build_model,
    frame_stack,
    is_image_space,
    nature_cnn,
)


def as_numpy(x):
    return keras.ops.convert_to_numpy(x)


def conv_layers(model):
    return [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]


def random_frames(batch=3, shape=(4, 84, 84), seed=0):
    return np.random.default_rng(seed).integers(0, 256, (batch,) + shape, dtype=np.uint8)


# ------------------------------------------------------------------ the architecture


def test_layers_have_the_nature_networks_shapes():
    model = nature_cnn(nb_actions=6)
    assert isinstance(model, keras.Sequential)
    shapes = [tuple(layer.output.shape) for layer in model.layers]
    assert shapes == [
        (None, 4, 84, 84),  # scaled to [0, 1]
        (None, 84, 84, 4),  # the 4 frames as channels
        (None, 20, 20, 32),  # (84 - 8) / 4 + 1 = 20
        (None, 9, 9, 64),  # (20 - 4) / 2 + 1 = 9
        (None, 7, 7, 64),  # (9 - 3) / 1 + 1 = 7
        (None, 3136),  # 7 * 7 * 64
        (None, 512),
        (None, 6),
    ]
    assert [(c.filters, c.kernel_size, c.strides) for c in conv_layers(model)] == [
        (32, (8, 8), (4, 4)),
        (64, (4, 4), (2, 2)),
        (64, (3, 3), (1, 1)),
    ]
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    assert [layer.activation.__name__ for layer in conv_layers(model) + dense] == [
        "relu",
        "relu",
        "relu",
        "relu",
        "linear",
    ]


def nature_parameters(nb_actions: int) -> int:
    """The count by hand: each layer's weights (kernel area x inputs x outputs) plus biases."""
    conv1 = 8 * 8 * 4 * 32 + 32  # 8,224
    conv2 = 4 * 4 * 32 * 64 + 64  # 32,832
    conv3 = 3 * 3 * 64 * 64 + 64  # 36,928
    dense = 7 * 7 * 64 * 512 + 512  # 1,606,144
    return conv1 + conv2 + conv3 + dense + 512 * nb_actions + nb_actions


@pytest.mark.parametrize(("nb_actions", "expected"), [(4, 1_686_180), (6, 1_687_206)])
def test_parameter_count_is_the_hand_computed_one(nb_actions, expected):
    assert nature_parameters(nb_actions) == expected
    assert nature_cnn(nb_actions=nb_actions).count_params() == expected


def numpy_conv(x, kernel, bias, stride):
    """A valid, strided, ReLU convolution of ``x`` (batch, h, w, c) in NumPy."""
    size = kernel.shape[0]
    windows = np.lib.stride_tricks.sliding_window_view(x, (size, size), axis=(1, 2))
    windows = windows[:, ::stride, ::stride]  # (batch, h', w', c, size, size)
    return np.maximum(np.einsum("bhwcij,ijco->bhwo", windows, kernel) + bias, 0)


def numpy_nature_cnn(model, frames):
    """The network's forward pass written out in NumPy, from the uint8 frames."""
    x = np.transpose(frames.astype(np.float64) / 255.0, (0, 2, 3, 1))
    for layer in conv_layers(model):
        kernel, bias = (as_numpy(w).astype(np.float64) for w in layer.weights)
        x = numpy_conv(x, kernel, bias, layer.strides[0])
    x = x.reshape(len(x), -1)
    hidden, output = model.get_layer("dense_512"), model.get_layer("q_values")
    x = np.maximum(x @ as_numpy(hidden.kernel) + as_numpy(hidden.bias), 0)
    return x @ as_numpy(output.kernel) + as_numpy(output.bias)


def test_uint8_frames_are_scaled_by_1_over_255_inside_the_network():
    model = nature_cnn(nb_actions=6)
    assert model.inputs[0].dtype == "uint8"
    frames = random_frames()
    scaled = as_numpy(model.get_layer("scale_to_unit")(frames))
    np.testing.assert_allclose(scaled, frames / 255.0, rtol=1e-6)
    expected = numpy_nature_cnn(model, frames)
    np.testing.assert_allclose(as_numpy(model(frames)), expected, rtol=1e-4, atol=1e-5)


def test_kernels_start_glorot_normal_and_biases_zero():
    """Var(W) = 2 / (fan_in + fan_out), with a convolution's fans counted over its kernel
    area (fan_in = kh * kw * in, fan_out = kh * kw * out); 5 relative standard deviations of
    the sample variance as the tolerance, as in test_networks.py."""
    model = nature_cnn(nb_actions=6)
    layers = conv_layers(model) + [model.get_layer("dense_512")]
    for layer in layers:
        kernel = as_numpy(layer.kernel).astype(np.float64)
        area = int(np.prod(kernel.shape[:-2])) if kernel.ndim == 4 else 1
        fan_in, fan_out = area * kernel.shape[-2], area * kernel.shape[-1]
        expected = 2.0 / (fan_in + fan_out)
        assert abs(kernel.var() / expected - 1) < 5 * np.sqrt(2 / kernel.size), layer.name
        kurtosis = np.mean((kernel - kernel.mean()) ** 4) / kernel.var() ** 2
        assert 2.1 < kurtosis < 3.2, layer.name  # normal (truncated), not uniform (1.8)
        assert np.all(as_numpy(layer.bias) == 0.0)


def test_colour_frames_become_window_times_colour_channels():
    model = nature_cnn((4, 84, 84, 3), nb_actions=2)
    assert tuple(model.get_layer("frames_as_channels").output.shape) == (None, 84, 84, 12)
    frames = random_frames(2, (4, 84, 84, 3))
    as_channels = keras.Model(model.inputs[0], model.get_layer("frames_as_channels").output)
    channels = as_numpy(as_channels(frames))
    # channel k * 3 + c is colour c of frame k
    np.testing.assert_allclose(channels[..., 2 * 3 + 1], frames[:, 2, :, :, 1] / 255, rtol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"input_shape": (84, 84), "nb_actions": 6}, ValueError, "input_shape: expected"),
        ({"input_shape": (4, 0, 84), "nb_actions": 6}, ValueError, "input_shape: expected an"),
        ({"nb_actions": 0}, ValueError, "nb_actions: expected an integer >= 1"),
        ({"nb_actions": 6, "dueling": "yes"}, TypeError, "dueling: expected True or False"),
        ({"input_shape": None, "nb_actions": 6}, TypeError, "input_shape: expected a tuple"),
        ({"input_shape": 84, "nb_actions": 6}, TypeError, "input_shape: expected a tuple"),
        ({"input_shape": (4, 32, 32), "nb_actions": 6}, ValueError, "at least 36x36 pixels"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(kwargs, error, message):
    with pytest.raises(error, match=message):
        nature_cnn(**kwargs)


def test_the_smallest_frames_are_36_pixels_a_side_as_the_three_convolutions_need():
    # back from one pixel: 3x3 stride 1 needs 3, 4x4 stride 2 needs (3 - 1) * 2 + 4 = 8,
    # 8x8 stride 4 needs (8 - 1) * 4 + 8 = 36
    assert MIN_FRAME_SIDE == 36
    model = nature_cnn((4, 36, 36), nb_actions=6)
    assert model.get_layer("features").output.shape == (None, 64)  # one pixel of 64 filters
    for height, width in [(35, 84), (84, 35)]:
        with pytest.raises(ValueError, match=f"input_shape: .* at least 36x36 .* {height}x{width}"):
            nature_cnn((4, height, width), nb_actions=6)


def test_channels_last_frames_are_refused_with_the_window_first_shape():
    with pytest.raises(ValueError, match=r"window axis comes first.*e\.g\. \(4, 84, 84\)"):
        nature_cnn((84, 84, 4), nb_actions=6)


# ------------------------------------------------------------------ dueling


def test_dueling_streams_combine_value_and_mean_centred_advantages():
    model = nature_cnn(nb_actions=6, dueling=True)
    assert model.output_shape == (None, 6)
    body = nature_parameters(6) - (3136 * 512 + 512) - (512 * 6 + 6)
    stream = 3136 * 512 + 512  # each stream's 512-unit layer
    assert model.count_params() == body + 2 * stream + (512 + 1) + (512 * 6 + 6)
    frames = random_frames()
    parts = keras.Model(
        model.inputs[0], [model.get_layer("value").output, model.get_layer("advantage").output]
    )
    value, advantage = (as_numpy(part) for part in parts(frames))
    expected = value + advantage - advantage.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(as_numpy(model(frames)), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("two_streams", "dueling_network"),
    [(False, False), (False, True), (True, False)],
    ids=["plain", "agents_dueling_head", "two_stream_dueling"],
)
def test_dqn_agent_learns_on_uint8_states_with_each_kind_of_network(two_streams, dueling_network):
    memory = SequentialMemory(limit=100, window_length=4)
    agent = DQNAgent(
        nature_cnn(nb_actions=3, dueling=two_streams),
        nb_actions=3,
        memory=memory,
        batch_size=4,
        enable_dueling_network=dueling_network,
        jit_compile=False,
        seed=0,
    )
    agent.compile(keras.optimizers.Adam(1e-3))
    if dueling_network:
        head = agent.model.get_layer("dueling_value_advantage")
        assert head.units == 4 and tuple(head.input.shape) == (None, 512)
    frames = random_frames(20, (84, 84))
    for step, frame in enumerate(frames):
        memory.append(frame, step % 3, 1.0, terminal=step == 19)
    memory.append_final(frames[0])
    batch = memory.sample_batch(4)
    inputs = agent._training_inputs(batch)
    assert inputs[0].dtype == np.uint8  # states (s and s') stay uint8
    before = [as_numpy(w).copy() for w in agent.model.weights]
    loss = agent.learn(batch)[0]
    assert np.isfinite(loss)
    assert any(not np.array_equal(a, as_numpy(b)) for a, b in zip(before, agent.model.weights))
    assert agent.compute_q_values(np.stack(frames[:4])).shape == (3,)


# ------------------------------------------------------------------ choosing the network


@pytest.mark.parametrize(
    ("space", "image"),
    [
        (gymnasium.spaces.Box(0, 255, (84, 84), np.uint8), True),
        (gymnasium.spaces.Box(0, 255, (210, 160, 3), np.uint8), True),
        (gymnasium.spaces.Box(0.0, 1.0, (84, 84), np.float32), False),
        (gymnasium.spaces.Box(0, 255, (128,), np.uint8), False),  # Atari RAM
        (gymnasium.spaces.Discrete(16), False),
    ],
)
def test_images_are_uint8_boxes_of_rank_2_or_3(space, image):
    assert is_image_space(space) is image


def test_build_model_picks_the_cnn_for_raw_atari_screens_and_the_mlp_for_vectors(cartpole):
    import ale_py

    gymnasium.register_envs(ale_py)
    pong = gymnasium.make("ALE/Pong-v5")
    try:
        model = build_model(pong)
        assert model.input_shape == (None, 4, 210, 160, 3) and model.inputs[0].dtype == "uint8"
        assert len(conv_layers(model)) == 3 and model.output_shape == (None, 6)
        assert frame_stack(pong) == 4
    finally:
        pong.close()
    mlp = build_model(cartpole, hidden=(8,))
    assert mlp.input_shape == (None, 1, 4) and conv_layers(mlp) == []
    assert frame_stack(cartpole) == 1


class FramesEnv(gymnasium.Env):
    """An environment of ``side`` x ``side`` grey frames, for the network built for it."""

    action_space = gymnasium.spaces.Discrete(6)

    def __init__(self, side: int) -> None:
        self.observation_space = gymnasium.spaces.Box(0, 255, (side, side), np.uint8)


def test_build_model_refuses_frames_too_small_naming_their_size_and_the_minimum():
    with pytest.raises(ValueError, match=r"env: its frames are 35x35 pixels, .* the 36x36"):
        build_model(FramesEnv(35))
    assert build_model(FramesEnv(36)).input_shape == (None, 4, 36, 36)


@pytest.mark.parametrize("dueling", [False, True], ids=["plain", "two_stream_dueling"])
def test_a_saved_agent_comes_back_with_its_uint8_cnn(tmp_path, dueling):
    agent = DQNAgent(
        nature_cnn(nb_actions=3, dueling=dueling),
        nb_actions=3,
        memory=SequentialMemory(limit=100, window_length=4),
        seed=0,
    )
    agent.compile("adam")
    agent.save(tmp_path / "agent.h5")
    loaded = DQNAgent.load(tmp_path / "agent.h5")
    assert loaded.model.inputs[0].dtype == "uint8"
    state = random_frames(1)[0]
    np.testing.assert_allclose(loaded.compute_q_values(state), agent.compute_q_values(state))


@pytest.mark.parametrize("xla", [True, False], ids=["xla", "no_xla"])
def test_cnn_acting_agrees_with_keras_with_xla_on_or_off(xla):
    model = nature_cnn(nb_actions=4)
    agent = DQNAgent(model, nb_actions=4, memory=SequentialMemory(100, window_length=4),
                     jit_compile=xla)  # fmt: skip
    states = random_frames(3, (4, 84, 84))
    expected = keras.ops.convert_to_numpy(model(states, training=False))
    np.testing.assert_allclose(agent.compute_batch_q_values(states), expected, rtol=1e-4, atol=1e-5)


def test_config_xla_reaches_the_agent_and_the_flag():
    from kerasdqn.config import DQNConfig
    from kerasdqn.training import build_agent

    env = gymnasium.make("CartPole-v1")
    assert build_agent(env, DQNConfig(hidden=(8,))).jit_compile is True
    assert build_agent(env, DQNConfig(hidden=(8,), xla=False)).jit_compile is False
    with pytest.raises(TypeError, match="xla"):
        DQNConfig(xla="no")
