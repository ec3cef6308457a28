"""Export: the SavedModel serves the agent's greedy actions with TensorFlow alone.

The exports are loaded in a separate, isolated Python process (``-I``, run from a temporary
directory) where kerasdqn cannot be imported, which proves they need neither kerasdqn nor its
custom layers (the dueling head).
"""

import json
import os
import subprocess
import sys

import gymnasium
import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasdqn
from kerasdqn.export import export_agent, export_greedy_policy, remove_stale_exports

# Runs in the isolated process: argv[1] is a JSON list of {"directory", "states"} (a .npy
# file); the last line printed is a JSON list of what each export serves for its states.
SERVE_SCRIPT = r"""
import json
import sys

# kerasdqn is not installed here: drop its (editable) install's finders and block the name.
sys.meta_path = [f for f in sys.meta_path if "kerasdqn" not in getattr(f, "__module__", "")]
sys.path_hooks = [h for h in sys.path_hooks if "kerasdqn" not in getattr(h, "__module__", "")]
sys.path_importer_cache.clear()
sys.modules["kerasdqn"] = None
try:
    import kerasdqn  # noqa: F401
    kerasdqn_importable = True
except ImportError:
    kerasdqn_importable = False

import numpy as np
import tensorflow as tf

results = []
for entry in json.loads(sys.argv[1]):
    served = tf.saved_model.load(entry["directory"])
    states = np.load(entry["states"])
    actions = served.greedy_action(states)
    default = served.signatures["serving_default"](states=tf.constant(states))
    results.append({
        "kerasdqn_importable": kerasdqn_importable,
        "q_values": served.q_values(states).numpy().tolist(),
        "actions": actions.numpy().tolist(),
        "action_dtype": actions.dtype.name,
        "default_actions": default["output_0"].numpy().tolist(),
        "signatures": sorted(served.signatures),
        "input_shape": served.signatures["q_values"].structured_input_signature[1][
            "states"].shape.as_list(),
    })
print(json.dumps(results))
"""


def serve_in_plain_tensorflow(workdir, exports):
    """What each ``(directory, states)`` export serves, from a process without kerasdqn."""
    manifest = []
    for index, (directory, states) in enumerate(exports):
        path = os.path.join(workdir, f"states_{index}.npy")
        np.save(path, states)
        manifest.append({"directory": os.fspath(directory), "states": path})
    script = os.path.join(workdir, "serve.py")
    with open(script, "w") as handle:
        handle.write(SERVE_SCRIPT)
    completed = subprocess.run(
        [sys.executable, "-I", script, json.dumps(manifest)],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def check_serves_the_agents_greedy_policy(served, agent, states):
    expected_q = agent.compute_batch_q_values(states)
    assert served["kerasdqn_importable"] is False
    assert served["signatures"] == ["greedy_action", "q_values", "serving_default"]
    assert served["input_shape"] == [None] + list(states.shape[1:])
    assert served["action_dtype"] == "int64"
    np.testing.assert_allclose(served["q_values"], expected_q, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(served["actions"], expected_q.argmax(axis=1))
    np.testing.assert_array_equal(served["default_actions"], served["actions"])


def random_states(n=64, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 1, 4)).astype(np.float32)


def make_agent(dueling=False, **kwargs):
    return kerasdqn.DQNAgent(
        model=kerasdqn.build_mlp((1, 4), 2, (16,)),
        nb_actions=2,
        memory=kerasdqn.SequentialMemory(100),
        enable_dueling_network=dueling,
        **kwargs,
    )


def q_values_of(directory, states):
    """Q values served by ``directory``, loaded in this process."""
    served = tf.saved_model.load(os.fspath(directory))  # kept alive: it owns the variables
    return served.q_values(states).numpy()


def keras_q_values(model, states):
    return keras.ops.convert_to_numpy(model(states, training=False))


# --------------------------------------------------------------------------- serving


@pytest.fixture(scope="module")
def served_networks(tmp_path_factory):
    """A plain MLP and a dueling network, exported and served in one plain-TF process."""
    workdir = tmp_path_factory.mktemp("networks")
    keras.utils.set_random_seed(0)
    agents = {"plain": make_agent(), "dueling": make_agent(dueling=True)}
    states = random_states()
    exports = []
    for name, agent in agents.items():
        path = export_greedy_policy(agent.model, workdir / name)
        assert path == os.fspath(workdir / name)
        exports.append((path, states))
    served = serve_in_plain_tensorflow(workdir, exports)
    return {name: (agent, result) for (name, agent), result in zip(agents.items(), served)}


@pytest.mark.parametrize("network", ["plain", "dueling"])
def test_the_export_serves_the_agents_greedy_actions_without_kerasdqn(served_networks, network):
    agent, served = served_networks[network]
    assert any(isinstance(layer, kerasdqn.layers.DuelingCombine) for layer in agent.layers) == (
        network == "dueling"
    )
    check_serves_the_agents_greedy_policy(served, agent, random_states())


def cartpole_states(agent, nb_episodes=4, seed=1):
    """States (window of one observation) of real CartPole episodes played greedily."""
    env = gymnasium.make("CartPole-v1")
    states = []
    for episode in range(nb_episodes):
        observation, _ = env.reset(seed=seed + episode)
        done = False
        while not done and len(states) < 400 * (episode + 1):
            states.append(np.asarray(observation, np.float32)[np.newaxis])
            action = int(agent.compute_q_values(states[-1]).argmax())
            observation, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
    env.close()
    return np.stack(states)


def test_a_trained_agent_exports_its_greedy_policy(tmp_path):
    env = gymnasium.make("CartPole-v1")
    env.reset(seed=0)
    agent = make_agent(nb_steps_warmup=32, target_model_update=1e-2, seed=0)
    agent.compile(keras.optimizers.Adam(learning_rate=1e-3))
    before = agent.model.get_weights()
    agent.fit(env, nb_steps=300, verbose=0)
    env.close()
    assert agent.step == 300
    assert any(not np.array_equal(a, b) for a, b in zip(before, agent.model.get_weights()))
    states = cartpole_states(agent)
    path = export_agent(agent, tmp_path / "cartpole")
    (served,) = serve_in_plain_tensorflow(tmp_path, [(path, states)])
    check_serves_the_agents_greedy_policy(served, agent, states)


@pytest.mark.parametrize(
    "agent_class, options, size",
    [
        (kerasdqn.CategoricalDQNAgent, {"nb_atoms": 11, "v_min": 0.0, "v_max": 100.0}, 11),
        (kerasdqn.QuantileDQNAgent, {"nb_quantiles": 8}, 8),
    ],
)
def test_a_distributional_agent_serves_the_means_of_its_distributions(
    tmp_path, agent_class, options, size
):
    """The network outputs nb_actions * size numbers; the export serves the Q values the
    agent acts on, (batch, nb_actions), and their argmax, not an argmax over atoms."""
    keras.utils.set_random_seed(0)
    agent = agent_class(
        model=kerasdqn.build_mlp((1, 4), 2 * size, (16,)),
        nb_actions=2,
        memory=kerasdqn.SequentialMemory(100),
        **options,
    )
    states = random_states()
    (served,) = serve_in_plain_tensorflow(tmp_path, [(export_agent(agent, tmp_path / "z"), states)])
    assert np.asarray(served["q_values"]).shape == (len(states), 2)
    check_serves_the_agents_greedy_policy(served, agent, states)


# --------------------------------------------------------------------------- the directory


def test_an_existing_directory_is_refused_without_overwrite(tmp_path):
    model = kerasdqn.build_mlp((1, 4), 2, (16,))
    export_greedy_policy(model, tmp_path / "policy")
    with pytest.raises(FileExistsError, match=r"directory: .* already exists; pass overwrite=True"):
        export_greedy_policy(model, tmp_path / "policy")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileExistsError, match="directory: "):
        export_greedy_policy(model, tmp_path / "empty")


def test_overwrite_replaces_the_saved_model(tmp_path):
    first, second = (kerasdqn.build_mlp((1, 4), 2, (16,)) for _ in range(2))
    export_greedy_policy(first, tmp_path / "policy")
    export_greedy_policy(second, tmp_path / "policy", overwrite=True)
    states = random_states()
    np.testing.assert_allclose(
        q_values_of(tmp_path / "policy", states), keras_q_values(second, states), rtol=1e-6
    )
    assert sorted(os.listdir(tmp_path)) == ["policy"]


def test_overwrite_fills_an_empty_directory_but_never_deletes_other_files(tmp_path):
    model = kerasdqn.build_mlp((1, 4), 2, (16,))
    (tmp_path / "empty").mkdir()
    export_greedy_policy(model, tmp_path / "empty", overwrite=True)
    assert (tmp_path / "empty" / "saved_model.pb").is_file()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="directory: .* does not hold a SavedModel"):
        export_greedy_policy(model, tmp_path / "notes", overwrite=True)
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="directory: .* is not a directory"):
        export_greedy_policy(model, tmp_path / "file", overwrite=True)


def test_missing_parent_directories_are_created(tmp_path):
    model = kerasdqn.build_mlp((1, 4), 2, (16,))
    export_greedy_policy(model, tmp_path / "exports" / "cartpole")
    assert (tmp_path / "exports" / "cartpole" / "saved_model.pb").is_file()


@keras.saving.register_keras_serializable(package="test_export")
class FailOnDemand(keras.layers.Layer):
    """The identity, until ``fail`` is set: then tracing the network raises."""

    fail = False

    def call(self, inputs):
        if self.fail:
            raise RuntimeError("this layer cannot be traced")
        return inputs


def failing_model():
    layer = FailOnDemand()
    model = keras.Sequential([keras.Input((1, 4)), keras.layers.Flatten(), layer])
    layer.fail = True
    return model


def test_a_failed_export_leaves_the_old_one_intact_and_nothing_behind(tmp_path, monkeypatch):
    model = kerasdqn.build_mlp((1, 4), 2, (16,))
    export_greedy_policy(model, tmp_path / "policy")
    with pytest.raises(RuntimeError, match="cannot be traced"):
        export_greedy_policy(failing_model(), tmp_path / "policy", overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["policy"]

    def write_then_fail(*args, **kwargs):
        real_save(*args, **kwargs)  # a complete SavedModel in the temporary directory
        raise OSError("disk full")

    real_save = tf.saved_model.save
    monkeypatch.setattr(tf.saved_model, "save", write_then_fail)
    with pytest.raises(OSError, match="disk full"):
        export_greedy_policy(kerasdqn.build_mlp((1, 4), 2, (8,)), tmp_path / "policy", True)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["policy"]
    states = random_states()
    np.testing.assert_allclose(
        q_values_of(tmp_path / "policy", states), keras_q_values(model, states), rtol=1e-6
    )


def test_a_failed_rename_into_place_puts_the_old_one_back(tmp_path, monkeypatch):
    model = kerasdqn.build_mlp((1, 4), 2, (16,))
    target = os.fspath(tmp_path / "policy")
    export_greedy_policy(model, target)
    real_rename = os.rename

    def rename(source, destination):
        if destination == target and source.endswith(".tmp"):
            raise PermissionError("rename refused")
        real_rename(source, destination)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(PermissionError, match="rename refused"):
        export_greedy_policy(kerasdqn.build_mlp((1, 4), 2, (8,)), target, overwrite=True)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["policy"]
    states = random_states()
    np.testing.assert_allclose(q_values_of(target, states), keras_q_values(model, states))


def test_temporary_directories_of_killed_exports_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # its pid now names no running process
    stale = tmp_path / f".policy.{dead.pid}.abc.tmp"
    live = tmp_path / f".policy.{os.getpid()}.abc.tmp"
    for path in (stale, live):
        (path / "variables").mkdir(parents=True)
    export_greedy_policy(kerasdqn.build_mlp((1, 4), 2, (16,)), tmp_path / "policy")
    assert sorted(os.listdir(tmp_path)) == sorted([live.name, "policy"])
    assert remove_stale_exports(tmp_path / "policy") == []


# --------------------------------------------------------------------------- bad input


def test_bad_arguments_are_named(tmp_path):
    model = kerasdqn.build_mlp((1, 4), 2, (16,))
    with pytest.raises(TypeError, match=r"model: expected a Keras model \(keras.Model\)"):
        export_greedy_policy(keras.layers.Dense(2), tmp_path / "a")
    with pytest.raises(TypeError, match="model: expected a Keras model"):
        export_greedy_policy(lambda states: states, tmp_path / "a")
    with pytest.raises(TypeError, match="directory: expected a file path"):
        export_greedy_policy(model, 3)
    with pytest.raises(TypeError, match="overwrite: expected True or False"):
        export_greedy_policy(model, tmp_path / "a", overwrite="yes")
    with pytest.raises(TypeError, match="agent: expected a DQNAgent"):
        export_agent(model, tmp_path / "a")
    assert os.listdir(tmp_path) == []


def test_a_model_with_several_inputs_or_no_q_value_rows_is_refused(tmp_path):
    first, second = keras.Input((4,)), keras.Input((4,))
    two_inputs = keras.Model(
        [first, second], keras.layers.Dense(2)(keras.layers.Concatenate()([first, second]))
    )
    with pytest.raises(ValueError, match="model: .* this model has 2 inputs and 1 outputs"):
        export_greedy_policy(two_inputs, tmp_path / "a")
    states = keras.Input((3, 4))
    per_step = keras.Model(states, keras.layers.Dense(2)(states))
    with pytest.raises(ValueError, match=r"model: its output shape is \(None, 3, 2\)"):
        export_greedy_policy(per_step, tmp_path / "a")

    class Unbuilt(keras.Model):
        def call(self, states):
            return states

    with pytest.raises(ValueError, match="model: expected a built model"):
        export_greedy_policy(Unbuilt(), tmp_path / "a")
    assert os.listdir(tmp_path) == []
