"""DQNAgent.save_weights / load_weights: HDF5 in Keras 2's layout, compatible with keras-rl.

The Keras 2 fixtures in tests/data were written by tests/data/make_keras2_weights.py with
tf_keras; ``pattern_weights`` below recomputes the values that script gave every weight.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest

import kerasdqn.weights
from kerasdqn import DQNAgent, SequentialMemory, build_mlp

pytestmark = pytest.mark.filterwarnings(
    "ignore:Do not pass an `input_shape`/`input_dim` argument to a layer:UserWarning"
)

DATA = Path(__file__).resolve().parent / "data"
KERAS2_TUTORIAL = DATA / "keras2_cartpole_tutorial.h5"
KERAS2_DUELING = DATA / "keras2_cartpole_dueling.h5"


def keras2_python() -> str | None:
    """An interpreter with tf_keras (Keras 2): this one if it has it (the test extra installs
    it), else the one KERASDQN_KERAS2_PYTHON names."""
    if importlib.util.find_spec("tf_keras") is not None:
        return sys.executable
    return os.environ.get("KERASDQN_KERAS2_PYTHON")


# Three CartPole-like states of shape (window_length=1, 4), as the agent feeds them.
STATES = np.array(
    [
        [[-3.0, -2.5, -2.0, -1.5]],
        [[-1.0, -0.5, 0.0, 0.5]],
        [[1.0, 1.5, 2.0, 2.5]],
        [[0.03, -0.2, 0.01, 0.4]],
    ],
    dtype=np.float32,
)
# What tf_keras itself computed for the first three STATES when the fixtures were made (the
# script prints them): the Keras 2 networks' own outputs.
KERAS2_TUTORIAL_Q = [[-2.6953125, -1.2109375], [-1.625, -0.78125], [-0.8125, 0.078125]]
KERAS2_DUELING_Q = [
    [-1.375, 0.63671875],
    [-0.123046875, 0.958984375],
    [-2.31005859375, -3.13525390625],
]


def pattern_weights(shapes):
    """The values make_keras2_weights.py gave the weights: ``(k % 13 - 6) / 8`` in order."""
    arrays, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        values = (np.arange(start, start + size) % 13 - 6) / 8.0
        arrays.append(values.reshape(shape).astype(np.float32))
        start += size
    return arrays


def tutorial_sequential():
    """keras-rl's CartPole tutorial network, written with Keras 3 layers."""
    layers = keras.layers
    return keras.Sequential(
        [
            layers.Flatten(input_shape=(1, 4)),
            layers.Dense(16),
            layers.Activation("relu"),
            layers.Dense(2),
            layers.Activation("linear"),
        ]
    )


def dueling_base_sequential():
    """The network keras-rl users handed to DQNAgent(enable_dueling_network=True)."""
    layers = keras.layers
    return keras.Sequential(
        [
            layers.Flatten(input_shape=(1, 4)),
            layers.Dense(16, activation="relu"),
            layers.Dense(16, activation="relu"),
            layers.Dense(2, activation="linear"),
        ]
    )


def make_agent(model=None, nb_actions=2, **kwargs):
    if model is None:
        model = build_mlp((1, 4), nb_actions, (8,))
    memory = SequentialMemory(limit=100, window_length=1)
    return DQNAgent(model=model, nb_actions=nb_actions, memory=memory, **kwargs)


def make_dueling_agent():
    return make_agent(dueling_base_sequential(), enable_dueling_network=True, dueling_type="avg")


def randomize(agent, seed):
    """Give the online network distinct known weights (and keep acting in step with them)."""
    rng = np.random.default_rng(seed)
    weights = [rng.normal(size=w.shape).astype(np.float32) for w in agent.model.get_weights()]
    agent.model.set_weights(weights)
    agent.update_target_model_hard()
    # The agent acts on a NumPy copy of the weights; load_weights refreshes it, and so must we.
    agent._q_function.refresh()
    return weights


def assert_weights_equal(actual, expected):
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected):
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def keras_q_values(model, states):
    return keras.ops.convert_to_numpy(model(states, training=False))


def numpy_tutorial_q(weights, states):
    kernel0, bias0, kernel1, bias1 = weights
    hidden = np.maximum(states.reshape(len(states), -1) @ kernel0 + bias0, 0.0)
    return hidden @ kernel1 + bias1


def numpy_dueling_q(weights, states):
    kernel0, bias0, kernel1, bias1, head_kernel, head_bias = weights
    hidden = np.maximum(states.reshape(len(states), -1) @ kernel0 + bias0, 0.0)
    hidden = np.maximum(hidden @ kernel1 + bias1, 0.0)
    head = hidden @ head_kernel + head_bias
    value, advantage = head[:, :1], head[:, 1:]
    return value + advantage - advantage.mean(axis=1, keepdims=True)


def _text(value):
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def leftover_files(directory, expected):
    return sorted(set(os.listdir(directory)) - set(expected))


# --------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("kind", ["mlp", "dueling"])
def test_round_trip_restores_weights_and_q_values_in_a_fresh_agent(tmp_path, kind):
    build = make_agent if kind == "mlp" else make_dueling_agent
    source, fresh = build(), build()
    weights = randomize(source, seed=1)
    randomize(fresh, seed=2)
    path = tmp_path / "dqn_weights.h5f"
    source.save_weights(path)

    assert not np.array_equal(
        fresh.compute_batch_q_values(STATES), source.compute_batch_q_values(STATES)
    )
    fresh.load_weights(path)

    assert_weights_equal(fresh.model.get_weights(), weights)
    np.testing.assert_array_equal(
        fresh.compute_batch_q_values(STATES), source.compute_batch_q_values(STATES)
    )
    np.testing.assert_array_equal(
        keras_q_values(fresh.model, STATES), keras_q_values(source.model, STATES)
    )


def test_load_copies_the_weights_into_the_target_network(tmp_path):
    source, fresh = make_agent(), make_agent()
    weights = randomize(source, seed=3)
    randomize(fresh, seed=4)
    path = tmp_path / "weights.h5"
    source.save_weights(path)

    fresh.load_weights(path)

    assert_weights_equal(fresh.target_model.get_weights(), weights)
    np.testing.assert_array_equal(
        keras_q_values(fresh.target_model, STATES), keras_q_values(fresh.model, STATES)
    )


def small_cnn():
    """A convolutional network on the same states, which acts on NumPy one state at a time."""
    return keras.Sequential(
        [
            keras.Input((1, 4)),
            keras.layers.Reshape((1, 4, 1)),
            keras.layers.Conv2D(3, (1, 2), activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ]
    )


@pytest.mark.parametrize("network", ["mlp", "cnn"])
def test_acting_uses_the_loaded_weights_at_once(tmp_path, network):
    model = (lambda: None) if network == "mlp" else small_cnn
    source, fresh = make_agent(model()), make_agent(model())
    randomize(source, seed=5)
    randomize(fresh, seed=6)
    fresh.compute_q_values(STATES[0])  # acting has read the old weights
    path = tmp_path / "weights.h5"
    source.save_weights(path)

    fresh.load_weights(path)

    # compute_q_values may evaluate a NumPy copy of the weights: it must be refreshed by the load.
    for state in STATES:
        np.testing.assert_allclose(
            fresh.compute_q_values(state),
            keras_q_values(fresh.model, state[np.newaxis])[0],
            rtol=1e-5,
            atol=1e-6,
        )


@pytest.mark.parametrize(
    "name", ["weights.h5", "dqn_CartPole-v1_weights.h5f", "weights_without_extension"]
)
def test_any_file_name_gets_a_real_hdf5_file_in_keras2_layout(tmp_path, name):
    source, fresh = make_agent(), make_agent()
    weights = randomize(source, seed=7)
    randomize(fresh, seed=8)
    path = tmp_path / name
    source.save_weights(str(path))

    assert h5py.is_hdf5(path)
    with h5py.File(path, "r") as handle:
        assert "layer_names" in handle.attrs
        layer_names = [_text(layer) for layer in handle.attrs["layer_names"]]
        weighted = [layer for layer in layer_names if len(handle[layer].attrs["weight_names"])]
        assert len(weighted) == 2  # the hidden Dense layer and the output Dense layer
    fresh.load_weights(str(path))
    assert_weights_equal(fresh.model.get_weights(), weights)


# --------------------------------------------------------------------------- overwriting


def test_refuses_to_overwrite_without_overwrite_true(tmp_path):
    agent = make_agent()
    randomize(agent, seed=9)
    path = tmp_path / "weights.h5f"
    agent.save_weights(path)
    before = path.read_bytes()
    randomize(agent, seed=10)

    with pytest.raises(FileExistsError, match=re.escape(str(path))):
        agent.save_weights(path)

    assert path.read_bytes() == before
    assert leftover_files(tmp_path, ["weights.h5f"]) == []


def test_overwrite_true_replaces_the_file(tmp_path):
    agent, fresh = make_agent(), make_agent()
    randomize(agent, seed=11)
    path = tmp_path / "weights.h5f"
    agent.save_weights(path)
    new_weights = randomize(agent, seed=12)

    agent.save_weights(path, overwrite=True)

    fresh.load_weights(path)
    assert_weights_equal(fresh.model.get_weights(), new_weights)


def test_save_leaves_no_temporary_file_behind(tmp_path):
    agent = make_agent()
    agent.save_weights(tmp_path / "weights.h5f")
    agent.save_weights(tmp_path / "weights.h5f", overwrite=True)

    assert sorted(os.listdir(tmp_path)) == ["weights.h5f"]


def test_a_write_failing_halfway_keeps_the_old_file_and_leaves_no_temporary_file(
    tmp_path, monkeypatch
):
    agent = make_agent()
    randomize(agent, seed=20)
    path = tmp_path / "weights.h5f"
    agent.save_weights(path)
    before = path.read_bytes()
    randomize(agent, seed=21)

    def write_half_then_fail(group, model):
        group.attrs["layer_names"] = [b"half"]
        raise OSError("disk full")

    monkeypatch.setattr(kerasdqn.weights, "write_weights_group", write_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        agent.save_weights(path, overwrite=True)

    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["weights.h5f"]


def test_refuses_to_save_weights_holding_nan_and_keeps_the_old_file(tmp_path):
    agent = make_agent()
    randomize(agent, seed=13)
    path = tmp_path / "weights.h5f"
    agent.save_weights(path)
    before = path.read_bytes()
    kernel = agent.model.weights[0]
    poisoned = keras.ops.convert_to_numpy(kernel).copy()
    poisoned[0, 0] = np.nan
    kernel.assign(poisoned)

    with pytest.raises(FloatingPointError, match=re.escape(str(path))):
        agent.save_weights(path, overwrite=True)
    with pytest.raises(FloatingPointError):
        agent.save_weights(tmp_path / "new.h5f")

    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["weights.h5f"]


# --------------------------------------------------------------------------- Keras 2 files


def test_loads_the_keras2_tutorial_file_into_the_same_keras3_model():
    agent = make_agent(tutorial_sequential())
    expected = pattern_weights([(4, 16), (16,), (16, 2), (2,)])

    agent.load_weights(KERAS2_TUTORIAL)

    assert_weights_equal(agent.model.get_weights(), expected)
    assert_weights_equal(agent.target_model.get_weights(), expected)
    q_values = agent.compute_batch_q_values(STATES)
    np.testing.assert_allclose(q_values, numpy_tutorial_q(expected, STATES), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(q_values[:3], KERAS2_TUTORIAL_Q, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        keras_q_values(agent.model, STATES), numpy_tutorial_q(expected, STATES), rtol=1e-6
    )


def test_loads_the_keras2_dueling_file_into_kerasdqns_dueling_network():
    agent = make_dueling_agent()
    expected = pattern_weights([(4, 16), (16,), (16, 16), (16,), (16, 3), (3,)])

    agent.load_weights(KERAS2_DUELING)

    assert_weights_equal(agent.model.get_weights(), expected)
    assert_weights_equal(agent.target_model.get_weights(), expected)
    q_values = agent.compute_batch_q_values(STATES)
    np.testing.assert_allclose(q_values, numpy_dueling_q(expected, STATES), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(q_values[:3], KERAS2_DUELING_Q, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        keras_q_values(agent.model, STATES),
        numpy_dueling_q(expected, STATES),
        rtol=1e-6,
        atol=1e-6,
    )


def test_keras2_dueling_file_does_not_load_into_the_plain_network():
    agent = make_agent(tutorial_sequential())
    before = agent.model.get_weights()

    with pytest.raises(ValueError, match=re.escape(str(KERAS2_DUELING))):
        agent.load_weights(KERAS2_DUELING)

    assert_weights_equal(agent.model.get_weights(), before)


# --------------------------------------------------------------------------- bad files


def _agent_wider_hidden_layer():
    return make_agent(build_mlp((1, 4), 2, (32,)))


def _agent_extra_hidden_layer():
    return make_agent(build_mlp((1, 4), 2, (8, 8)))


def _agent_three_actions():
    # Same first layer as the target model: the mismatch only shows at the last layer.
    return make_agent(build_mlp((1, 4), 3, (8,)), nb_actions=3)


@pytest.mark.parametrize(
    "build_source",
    [_agent_wider_hidden_layer, _agent_extra_hidden_layer, _agent_three_actions],
    ids=["hidden-width-32", "two-hidden-layers", "three-actions-last-layer-only"],
)
def test_file_from_a_different_architecture_raises_and_leaves_the_model_unchanged(
    tmp_path, build_source
):
    path = tmp_path / "other.h5f"
    build_source().save_weights(path)
    agent = make_agent()
    before = randomize(agent, seed=14)
    q_before = agent.compute_batch_q_values(STATES)

    with pytest.raises(ValueError, match=re.escape(str(path))) as excinfo:
        agent.load_weights(path)

    assert "architecture" in str(excinfo.value)
    assert_weights_equal(agent.model.get_weights(), before)
    assert_weights_equal(agent.target_model.get_weights(), before)
    np.testing.assert_array_equal(agent.compute_batch_q_values(STATES), q_before)


def test_missing_file_raises_file_not_found_naming_the_path(tmp_path):
    agent = make_agent()
    before = randomize(agent, seed=15)
    path = tmp_path / "missing.h5f"

    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        agent.load_weights(path)

    assert_weights_equal(agent.model.get_weights(), before)


def test_text_file_raises_value_error_naming_the_path(tmp_path):
    agent = make_agent()
    before = randomize(agent, seed=16)
    path = tmp_path / "weights.h5f"
    path.write_text("these are not weights\n")

    with pytest.raises(ValueError, match=re.escape(str(path))):
        agent.load_weights(path)

    assert_weights_equal(agent.model.get_weights(), before)


def test_hdf5_file_without_keras_weights_raises_value_error_naming_the_path(tmp_path):
    agent = make_agent()
    before = randomize(agent, seed=17)
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("x", data=np.arange(3))

    with pytest.raises(ValueError, match=re.escape(str(path))):
        agent.load_weights(path)

    assert_weights_equal(agent.model.get_weights(), before)


# --------------------------------------------------------------------------- read by Keras 2

KERAS2_READER = """
import json, sys
import numpy as np
import tf_keras
from tf_keras import backend as K
from tf_keras.layers import Activation, Dense, Flatten, Lambda

tutorial = tf_keras.Sequential([
    Flatten(input_shape=(1, 4)), Dense(16), Activation("relu"), Dense(2), Activation("linear"),
])
base = tf_keras.Sequential([
    Flatten(input_shape=(1, 4)), Dense(16, activation="relu"), Dense(16, activation="relu"),
    Dense(2, activation="linear"),
])
y = Dense(3, activation="linear")(base.layers[-2].output)
q = Lambda(
    lambda a: K.expand_dims(a[:, 0], -1) + a[:, 1:] - K.mean(a[:, 1:], axis=1, keepdims=True),
    output_shape=(2,),
)(y)
dueling = tf_keras.Model(inputs=base.input, outputs=q)

states = np.array(json.loads(sys.argv[3]), dtype=np.float32)
result = {}
for name, model, path in [("tutorial", tutorial, sys.argv[1]), ("dueling", dueling, sys.argv[2])]:
    model.load_weights(path)
    result[name] = {
        "weights": [w.tolist() for w in model.get_weights()],
        "q_values": model.predict(states, verbose=0).tolist(),
    }
print("RESULT " + json.dumps(result))
"""


@pytest.fixture(scope="module")
def keras2_reading(tmp_path_factory):
    """Our files for the tutorial and dueling networks, as a tf_keras process reads them."""
    interpreter = keras2_python()
    if interpreter is None:
        pytest.skip("no Keras 2: pip install tf_keras (part of the test extra)")
    directory = tmp_path_factory.mktemp("keras2")
    tutorial, dueling = make_agent(tutorial_sequential()), make_dueling_agent()
    randomize(tutorial, seed=18)
    randomize(dueling, seed=19)
    tutorial.save_weights(directory / "dqn_tutorial_weights.h5f")
    dueling.save_weights(directory / "dqn_dueling_weights.h5f")
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "-1"}
    completed = subprocess.run(
        [
            interpreter,
            "-c",
            KERAS2_READER,
            str(directory / "dqn_tutorial_weights.h5f"),
            str(directory / "dqn_dueling_weights.h5f"),
            json.dumps(STATES.tolist()),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    assert completed.returncode == 0 and lines, completed.stdout + completed.stderr
    result = json.loads(lines[-1][len("RESULT ") :])
    return {"tutorial": (tutorial, result["tutorial"]), "dueling": (dueling, result["dueling"])}


@pytest.mark.parametrize("network", ["tutorial", "dueling"])
def test_keras2_reads_the_weights_kerasdqn_wrote(keras2_reading, network):
    agent, read = keras2_reading[network]

    expected = agent.model.get_weights()
    loaded = [np.asarray(values, dtype=np.float32) for values in read["weights"]]
    assert_weights_equal(loaded, expected)
    np.testing.assert_allclose(
        np.asarray(read["q_values"]), agent.compute_batch_q_values(STATES), rtol=1e-5, atol=1e-5
    )


def test_saved_files_get_ordinary_permissions(tmp_path):
    agent = DQNAgent(build_mlp((1, 4), 2, (8,)), nb_actions=2, memory=SequentialMemory(100))
    path = tmp_path / "w.h5"
    umask = os.umask(0o022)
    try:
        agent.save_weights(path)
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644
