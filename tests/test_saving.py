"""Whole-agent files: save and load round trips, safe loading, and the side-effect-free predict."""

import json
import shutil

import gymnasium
import h5py
import keras
import numpy as np
import pytest

from kerasdqn import (
    Callback,
    DQNAgent,
    EpsGreedyQPolicy,
    LinearAnnealedPolicy,
    Processor,
    SequentialMemory,
    build_mlp,
)
from kerasdqn.saving import policy_spec
from kerasdqn.state import StateWindow


def make_agent(dueling=False, window_length=1, seed=1, model=None, **kwargs):
    agent = DQNAgent(
        model or build_mlp((window_length, 4), 2, (16,)),
        LinearAnnealedPolicy(EpsGreedyQPolicy(), "eps", 1.0, 0.1, 0.0, 1000),
        enable_dueling_network=dueling,
        dueling_type="max",
        nb_actions=2,
        memory=SequentialMemory(500, window_length=window_length),
        nb_steps_warmup=50,
        target_model_update=100,
        seed=seed,
        jit_compile=False,
        **kwargs,
    )
    agent.compile(keras.optimizers.Adam(1e-3), metrics=["mae"])
    return agent


def seeded_cartpole():
    env = gymnasium.make("CartPole-v1")
    env.reset(seed=0)
    env.action_space.seed(0)
    return env


def random_states(agent, count=16):
    shape = (count,) + tuple(agent.model.inputs[0].shape[1:])
    return np.random.default_rng(3).normal(size=shape).astype(np.float32)


def assert_same_memory(a, b):
    state_a, state_b = a.memory.get_state(), b.memory.get_state()
    assert sorted(state_a) == sorted(state_b)
    for name in state_a:
        np.testing.assert_array_equal(state_a[name], state_b[name], err_msg=name)


@pytest.mark.parametrize("dueling", [False, True], ids=["mlp", "dueling"])
def test_round_trip_gives_the_same_agent(tmp_path, cartpole, dueling):
    agent = make_agent(dueling)
    agent.fit(cartpole, nb_steps=150, verbose=0)
    path = tmp_path / "agent.h5"
    agent.save(path, include_memory=True)
    loaded = DQNAgent.load(path)

    assert loaded.get_config() == agent.get_config()
    assert loaded.model.to_json() == agent.model.to_json()
    assert policy_spec(loaded.policy, "policy") == policy_spec(agent.policy, "policy")
    assert policy_spec(loaded.test_policy, "t") == policy_spec(agent.test_policy, "t")
    states = random_states(agent)
    np.testing.assert_array_equal(
        loaded.compute_batch_q_values(states), agent.compute_batch_q_values(states)
    )
    for state in states:
        assert loaded.predict(state) == agent.predict(state)
    np.testing.assert_array_equal(
        loaded.target_model.predict(states, verbose=0), loaded.model.predict(states, verbose=0)
    )
    assert_same_memory(agent, loaded)
    assert loaded.compiled
    assert float(loaded.optimizer.learning_rate) == pytest.approx(1e-3)
    assert loaded.metrics_names == agent.metrics_names


def test_without_memory_the_loaded_memory_is_empty(tmp_path, cartpole):
    agent = make_agent()
    agent.fit(cartpole, nb_steps=60, verbose=0)
    agent.save(tmp_path / "agent.h5")
    with h5py.File(tmp_path / "agent.h5", "r") as handle:
        assert "memory" not in handle
    loaded = DQNAgent.load(tmp_path / "agent.h5")
    assert loaded.memory.nb_entries == 0
    assert loaded.step == 0


def test_the_loaded_agent_trains_further_and_tests(tmp_path):
    agent = make_agent(dueling=True)
    env = seeded_cartpole()
    agent.fit(env, nb_steps=120, verbose=0)
    agent.save(tmp_path / "agent.h5", include_memory=True)
    loaded = DQNAgent.load(tmp_path / "agent.h5", seed=5)
    before = [w.copy() for w in loaded.model.get_weights()]
    loaded.fit(env, nb_steps=100, verbose=0)
    assert loaded.step == 100
    assert any(not np.array_equal(a, b) for a, b in zip(before, loaded.model.get_weights()))
    history = loaded.test(env, nb_episodes=2, visualize=False, verbose=0)
    assert len(history.history["episode_reward"]) == 2
    env.close()


def test_an_agent_saved_uncompiled_loads_uncompiled_and_acts(tmp_path, cartpole):
    agent = DQNAgent(build_mlp((1, 4), 2, (8,)), nb_actions=2, memory=SequentialMemory(100))
    agent.save(tmp_path / "agent.h5")
    loaded = DQNAgent.load(tmp_path / "agent.h5")
    assert not loaded.compiled
    assert loaded.predict(np.zeros(4, np.float32)) == agent.predict(np.zeros(4, np.float32))
    with pytest.raises(RuntimeError, match="compile"):
        loaded.fit(cartpole, nb_steps=10, verbose=0)
    loaded.compile("adam")
    loaded.fit(cartpole, nb_steps=10, verbose=0)

    compiled = make_agent()
    compiled.save(tmp_path / "compiled.h5")
    assert not DQNAgent.load(tmp_path / "compiled.h5", compile=False).compiled


# ------------------------------------------------------------------------------- predict


def window_snapshot(agent):
    return agent.window.state(np.full(4, 7.0, np.float32)).copy()


def test_predict_is_the_greedy_action_and_changes_nothing(cartpole):
    agent = make_agent(window_length=3)
    agent.fit(cartpole, nb_steps=80, verbose=0)
    agent.training = True
    observation = np.asarray([0.01, -0.02, 0.03, 0.04], np.float32)
    agent.forward(observation)  # an episode in progress: the window holds a frame
    window = window_snapshot(agent)
    recent = (agent.recent_observation.copy(), agent.recent_action)
    memory = agent.memory.get_state()
    rng_state = agent.rng.bit_generator.state

    for state in random_states(agent, 8):
        assert agent.predict(state) == int(np.argmax(agent.compute_q_values(state)))
        single = state[-1]
        padded = StateWindow(3).state(single)
        assert agent.predict(single) == int(np.argmax(agent.compute_q_values(padded)))

    np.testing.assert_array_equal(window_snapshot(agent), window)
    np.testing.assert_array_equal(agent.recent_observation, recent[0])
    assert agent.recent_action == recent[1]
    assert_same_memory_state(agent.memory.get_state(), memory)
    assert agent.rng.bit_generator.state == rng_state


def assert_same_memory_state(state, expected):
    assert sorted(state) == sorted(expected)
    for name in state:
        np.testing.assert_array_equal(state[name], expected[name], err_msg=name)


def test_predict_goes_through_the_processor_and_refuses_other_shapes():
    class Doubling(Processor):
        def process_observation(self, observation):
            return np.asarray(observation, np.float32) * 2

    agent = make_agent(processor=Doubling())
    observation = np.asarray([0.3, -1.0, 0.2, 0.5], np.float32)
    expected = int(np.argmax(agent.compute_q_values((observation * 2)[np.newaxis])))
    assert agent.predict(observation) == expected
    with pytest.raises(ValueError, match=r"observation: expected shape \(4,\)"):
        agent.predict(np.zeros(5))


class PredictingCallback(Callback):
    def on_step_end(self, step, logs=None):
        self.agent.predict(np.asarray([0.1, 0.2, -0.1, 0.3], np.float32))


def train_weights(callbacks):
    keras.utils.set_random_seed(0)
    agent = make_agent(window_length=2, seed=4)
    env = seeded_cartpole()
    agent.fit(env, nb_steps=200, verbose=0, callbacks=callbacks)
    env.close()
    return agent.model.get_weights()


def test_predict_during_fit_does_not_change_the_training_run():
    plain = train_weights([])
    with_predict = train_weights([PredictingCallback()])
    assert len(plain) == len(with_predict) > 0
    for a, b in zip(plain, with_predict):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------- refusals


def test_a_lambda_layer_is_refused(tmp_path):
    # Keras itself cannot clone such a network in safe mode, so no agent holds one: the
    # file is written by hand, as someone could.
    path = tmp_path / "lambda.h5"
    make_agent().save(path)
    inputs = keras.Input((1, 4))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Lambda(lambda t: t * 2.0)(x)
    x = keras.layers.Dense(16, activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    rewrite_attribute(path, "architecture", model.to_json())
    with pytest.raises(ValueError, match="lambda") as error:
        DQNAgent.load(path)
    assert str(path) in str(error.value) and "architecture" in str(error.value)


def test_keras_safe_mode_refuses_a_lambda_too():
    inputs = keras.Input((4,))
    outputs = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    config = json.loads(keras.Model(inputs, outputs).to_json())
    with pytest.raises(ValueError, match="lambda"):
        keras.saving.deserialize_keras_object(config, safe_mode=True)


def rewrite_attribute(path, name, value):
    with h5py.File(path, "r+") as handle:
        handle.attrs[name] = value


@pytest.mark.parametrize("class_name", ["Popen", "subprocess.Popen", "Policy", "dict"])
def test_a_policy_outside_kerasdqn_is_refused(tmp_path, class_name):
    path = tmp_path / "agent.h5"
    make_agent().save(path)
    rewrite_attribute(path, "policy", json.dumps({"class_name": class_name, "config": {}}))
    with pytest.raises(ValueError, match="not one of kerasdqn's policies") as error:
        DQNAgent.load(path)
    assert str(path) in str(error.value)


def test_a_nested_policy_outside_kerasdqn_is_refused(tmp_path):
    path = tmp_path / "agent.h5"
    make_agent().save(path)
    with h5py.File(path, "r") as handle:
        spec = json.loads(handle.attrs["policy"])
    spec["config"]["inner_policy"]["class_name"] = "os.system"
    rewrite_attribute(path, "policy", json.dumps(spec))
    with pytest.raises(ValueError, match=r"policy\.inner_policy: 'os.system' is not one of"):
        DQNAgent.load(path)


def test_saving_a_custom_policy_is_refused(tmp_path):
    class MyPolicy(EpsGreedyQPolicy):
        pass

    agent = make_agent()
    agent.test_policy = MyPolicy()
    with pytest.raises(ValueError, match="test_policy: a MyPolicy cannot be saved"):
        agent.save(tmp_path / "agent.h5")
    assert not (tmp_path / "agent.h5").exists()


def test_a_truncated_file_is_refused(tmp_path, cartpole):
    agent = make_agent()
    agent.fit(cartpole, nb_steps=60, verbose=0)
    path = tmp_path / "agent.h5"
    agent.save(path, include_memory=True)
    data = path.read_bytes()
    for size in (len(data) // 2, len(data) - 200, 100):
        cut = tmp_path / f"cut{size}.h5"
        cut.write_bytes(data[:size])
        with pytest.raises(ValueError) as error:
            DQNAgent.load(cut)
        assert str(cut) in str(error.value)


def test_not_an_agent_file_and_bad_parts_are_refused(tmp_path):
    path = tmp_path / "weights.h5"
    agent = make_agent()
    agent.save_weights(path)
    with pytest.raises(ValueError, match="is not a kerasdqn agent file"):
        DQNAgent.load(path)
    with pytest.raises(FileNotFoundError):
        DQNAgent.load(tmp_path / "missing.h5")

    saved = tmp_path / "agent.h5"
    agent.save(saved)
    for name, value, message in [
        ("config", "{not json", "config is not valid JSON"),
        ("config", json.dumps({"nb_actions": 2}), "config: expected a JSON object"),
        ("architecture", json.dumps({"class_name": "Nope"}), "architecture: expected a Keras"),
        (
            "architecture",
            json.dumps({"class_name": "Nope", "config": {}}),
            "architecture: cannot be rebuilt",
        ),
        ("version", 99, "newer kerasdqn"),
    ]:
        copy = tmp_path / f"bad_{name}_{len(message)}.h5"
        shutil.copy(saved, copy)
        rewrite_attribute(copy, name, value)
        with pytest.raises(ValueError, match=message) as error:
            DQNAgent.load(copy)
        assert str(copy) in str(error.value)


def text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def test_bad_weights_and_memory_are_refused(tmp_path, cartpole):
    agent = make_agent()
    agent.fit(cartpole, nb_steps=60, verbose=0)
    path = tmp_path / "agent.h5"
    agent.save(path, include_memory=True)

    weights = tmp_path / "weights.h5"
    shutil.copy(path, weights)
    with h5py.File(weights, "r+") as handle:
        group = handle["weights"]
        layer = text(group.attrs["layer_names"][-1])
        group[layer][text(group[layer].attrs["weight_names"][0])][...] = np.nan
    with pytest.raises(ValueError, match="NaN") as error:
        DQNAgent.load(weights)
    assert str(weights) in str(error.value)

    memory = tmp_path / "memory.h5"
    shutil.copy(path, memory)
    with h5py.File(memory, "r+") as handle:
        handle["memory"]["actions"][0] = 7
    with pytest.raises(ValueError, match="memory: actions") as error:
        DQNAgent.load(memory)
    assert str(memory) in str(error.value)


def test_overwrite_is_refused_unless_asked_and_nan_weights_are_not_written(tmp_path):
    agent = make_agent()
    path = tmp_path / "agent.h5"
    agent.save(path)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        agent.save(path)
    agent.save(path, overwrite=True)
    before = path.read_bytes()
    agent.model.layers[-1].kernel.assign(np.full(agent.model.layers[-1].kernel.shape, np.nan))
    with pytest.raises(FloatingPointError, match="NaN"):
        agent.save(path, overwrite=True)
    assert path.read_bytes() == before


def test_an_agent_saved_with_a_processor_needs_one(tmp_path):
    class Identity(Processor):
        pass

    path = tmp_path / "agent.h5"
    make_agent(processor=Identity()).save(path)
    with pytest.raises(
        ValueError, match=r"saved with a processor \(Identity\); .* pass processor="
    ):
        DQNAgent.load(path)
    assert isinstance(DQNAgent.load(path, processor=Identity()).processor, Identity)
