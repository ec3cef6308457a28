"""Bad input is refused early, with the right exception and a message naming the argument.

One table: each case calls the public API with one wrong argument. The test checks the
exception type, that the message names the argument, and that the error came from kerasdqn's
own checks before any real work: no TensorFlow in the message, every traceback frame in this
file or in kerasdqn, and no environment touched.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import gymnasium
import keras
import numpy as np
import pytest

import kerasdqn
from kerasdqn import (
    BoltzmannQPolicy,
    DQNAgent,
    EpsGreedyQPolicy,
    FileLogger,
    GreedyQPolicy,
    History,
    LinearAnnealedPolicy,
    MaxBoltzmannQPolicy,
    ModelIntervalCheckpoint,
    SequentialMemory,
    build_mlp,
)

KERASDQN_DIR = Path(kerasdqn.__file__).resolve().parent
THIS_FILE = Path(__file__).resolve()


class CountingEnv(gymnasium.Wrapper):
    """A gymnasium environment that counts the calls to ``reset`` and ``step``."""

    def __init__(self, env) -> None:
        super().__init__(env)
        self.calls = 0

    def reset(self, **kwargs):
        self.calls += 1
        return self.env.reset(**kwargs)

    def step(self, action):
        self.calls += 1
        return self.env.step(action)


class Probe:
    """Builds the objects a case needs and remembers them, to check nothing was run."""

    def __init__(self) -> None:
        self.envs: list[CountingEnv] = []
        self.agents: list[DQNAgent] = []

    def env(self, name: str = "CartPole-v1") -> CountingEnv:
        env = CountingEnv(gymnasium.make(name))
        self.envs.append(env)
        return env

    def agent(self, model=None, nb_actions: int = 2, memory=None, **kwargs) -> DQNAgent:
        model = build_mlp((1, 4), nb_actions, (8,)) if model is None else model
        memory = SequentialMemory(limit=100, window_length=1) if memory is None else memory
        agent = DQNAgent(model=model, nb_actions=nb_actions, memory=memory, **kwargs)
        self.agents.append(agent)
        return agent

    def compiled(self, **kwargs) -> DQNAgent:
        agent = self.agent(**kwargs)
        agent.compile(keras.optimizers.Adam(1e-3))
        return agent

    def assert_nothing_ran(self) -> None:
        for env in self.envs:
            assert env.calls == 0, "the environment was reset or stepped before the error"
        for agent in self.agents:
            assert agent.step == 0
            assert agent.memory.nb_entries == 0


def unbuilt_sequential():
    return keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(2)])


def model_ending_with_tanh():
    return keras.Sequential(
        [
            keras.Input(shape=(1, 4)),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
            keras.layers.Activation("tanh"),
        ]
    )


def model_with_two_outputs():
    inputs = keras.Input(shape=(1, 4))
    features = keras.layers.Flatten()(inputs)
    return keras.Model(inputs, [keras.layers.Dense(2)(features), keras.layers.Dense(2)(features)])


def frames_model_without_float_layer():
    """keras-rl's Atari network on uint8 frames, without the cast or scaling it needs."""
    return keras.Sequential(
        [
            keras.Input((4, 84, 84), dtype="uint8"),
            keras.layers.Permute((2, 3, 1)),
            keras.layers.Conv2D(16, 8, strides=4, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(6),
        ]
    )


def channels_first_model():
    """keras-rl's Atari network in its Theano ordering: channels-first convolutions."""
    return keras.Sequential(
        [
            keras.Input((4, 12, 12)),
            keras.layers.Conv2D(8, 4, strides=2, data_format="channels_first"),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ]
    )


def memory_with_one_observation():
    memory = SequentialMemory(limit=10)
    memory.append(np.zeros(4, dtype=np.float32), 0, 0.0, False)
    return memory


def memory_with_transitions():
    memory = memory_with_one_observation()
    memory.append(np.ones(4, dtype=np.float32), 1, 1.0, False)
    memory.append(np.ones(4, dtype=np.float32), 1, 1.0, False)
    return memory


class Case(NamedTuple):
    id: str
    call: Callable[[Probe], Any]
    error: type[Exception]
    match: str  # a regular expression the message must contain: it names the argument


CASES = [
    # ----------------------------------------------------------------- DQNAgent: the model
    Case(
        "uint8-frames-into-a-convolution",
        lambda p: p.agent(
            model=frames_model_without_float_layer(),
            nb_actions=6,
            memory=SequentialMemory(limit=100, window_length=4),
        ),
        ValueError,
        r"\bmodel\b.*uint8.*Rescaling",
    ),
    Case(
        "channels-first-convolutions-without-xla",
        lambda p: p.agent(
            model=channels_first_model(),
            memory=SequentialMemory(limit=100, window_length=4),
            jit_compile=False,
        ),
        ValueError,
        r"\bmodel\b.*NCHW.*Permute",
    ),
    Case(
        "model-output-size-differs-from-nb_actions",
        lambda p: p.agent(model=build_mlp((1, 4), 3, (8,)), nb_actions=2),
        ValueError,
        r"\bmodel\b.*nb_actions=2",
    ),
    Case(
        "model-unbuilt-sequential-without-input-shape",
        lambda p: p.agent(model=unbuilt_sequential()),
        ValueError,
        r"\bmodel\b.*input shape",
    ),
    Case(
        "model-not-a-keras-model",
        lambda p: p.agent(model=lambda states: states),
        TypeError,
        r"\bmodel\b",
    ),
    Case(
        "model-input-window-differs-from-memory-window_length",
        lambda p: p.agent(memory=SequentialMemory(limit=100, window_length=4)),
        ValueError,
        r"\bmodel\b.*window_length=4",
    ),
    Case(
        "model-with-two-outputs",
        lambda p: p.agent(model=model_with_two_outputs()),
        ValueError,
        r"\bmodel\b.*outputs",
    ),
    Case(
        "enable_dueling_network-model-not-ending-with-dense",
        lambda p: p.agent(model=model_ending_with_tanh(), enable_dueling_network=True),
        ValueError,
        r"\benable_dueling_network\b",
    ),
    # ----------------------------------------------------------------- DQNAgent: numbers
    Case("nb_actions-zero", lambda p: p.agent(nb_actions=0), ValueError, r"\bnb_actions\b"),
    Case("nb_actions-float", lambda p: p.agent(nb_actions=2.0), TypeError, r"\bnb_actions\b"),
    Case("gamma-negative", lambda p: p.agent(gamma=-0.1), ValueError, r"\bgamma\b"),
    Case("gamma-above-one", lambda p: p.agent(gamma=1.5), ValueError, r"\bgamma\b"),
    Case("gamma-nan", lambda p: p.agent(gamma=float("nan")), ValueError, r"\bgamma\b"),
    Case("batch_size-zero", lambda p: p.agent(batch_size=0), ValueError, r"\bbatch_size\b"),
    Case(
        "nb_steps_warmup-negative",
        lambda p: p.agent(nb_steps_warmup=-1),
        ValueError,
        r"\bnb_steps_warmup\b",
    ),
    Case(
        "train_interval-zero",
        lambda p: p.agent(train_interval=0),
        ValueError,
        r"\btrain_interval\b",
    ),
    Case(
        "memory_interval-two-unsupported",
        lambda p: p.agent(memory_interval=2),
        ValueError,
        r"\bmemory_interval\b",
    ),
    Case(
        "target_model_update-zero",
        lambda p: p.agent(target_model_update=0),
        ValueError,
        r"\btarget_model_update\b",
    ),
    Case(
        "target_model_update-negative",
        lambda p: p.agent(target_model_update=-1),
        ValueError,
        r"\btarget_model_update\b",
    ),
    Case("delta_clip-zero", lambda p: p.agent(delta_clip=0), ValueError, r"\bdelta_clip\b"),
    Case(
        "dueling_type-sum",
        lambda p: p.agent(enable_dueling_network=True, dueling_type="sum"),
        ValueError,
        r"\bdueling_type\b",
    ),
    Case(
        "gradient_steps-zero",
        lambda p: p.agent(gradient_steps=0),
        ValueError,
        r"\bgradient_steps\b",
    ),
    Case("seed-negative", lambda p: p.agent(seed=-1), ValueError, r"\bseed\b"),
    Case(
        "enable_double_dqn-string",
        lambda p: p.agent(enable_double_dqn="yes"),
        TypeError,
        r"\benable_double_dqn\b",
    ),
    # ----------------------------------------------------------------- DQNAgent: objects
    Case("policy-a-string", lambda p: p.agent(policy="eps-greedy"), TypeError, r"\bpolicy\b"),
    Case(
        "policy-the-class-not-an-instance",
        lambda p: p.agent(policy=EpsGreedyQPolicy),
        TypeError,
        r"\bpolicy\b",
    ),
    Case(
        "test_policy-not-a-policy",
        lambda p: p.agent(test_policy=object()),
        TypeError,
        r"\btest_policy\b",
    ),
    Case("memory-a-list", lambda p: p.agent(memory=[]), TypeError, r"\bmemory\b"),
    Case(
        "processor-not-a-processor",
        lambda p: p.agent(processor=object()),
        TypeError,
        r"\bprocessor\b",
    ),
    Case(
        "custom_model_objects-not-a-mapping",
        lambda p: p.agent(custom_model_objects=[keras.layers.Dense]),
        TypeError,
        r"\bcustom_model_objects\b",
    ),
    # ----------------------------------------------------------------- compile
    Case(
        "compile-unknown-optimizer-name",
        lambda p: p.agent().compile("adamz"),
        ValueError,
        r"\boptimizer\b.*adamz",
    ),
    Case(
        "compile-optimizer-not-an-optimizer",
        lambda p: p.agent().compile(object()),
        TypeError,
        r"\boptimizer\b",
    ),
    Case(
        "compile-optimizer-class-not-instance",
        lambda p: p.agent().compile(keras.optimizers.Adam),
        TypeError,
        r"\boptimizer\b",
    ),
    Case(
        "compile-unknown-metric-name",
        lambda p: p.agent().compile("adam", metrics=["not_a_metric"]),
        ValueError,
        r"\bmetrics\b.*not_a_metric",
    ),
    Case(
        "compile-metrics-not-a-list",
        lambda p: p.agent().compile("adam", metrics="mae"),
        TypeError,
        r"\bmetrics\b",
    ),
    # ----------------------------------------------------------------- fit and test
    Case(
        "fit-before-compile",
        lambda p: p.agent().fit(p.env(), nb_steps=10, verbose=0),
        RuntimeError,
        r"\bfit\b.*compile",
    ),
    Case(
        "test-before-compile",
        lambda p: p.agent().test(p.env(), nb_episodes=1, visualize=False, verbose=0),
        RuntimeError,
        r"\btest\b.*compile",
    ),
    Case(
        "fit-env-with-box-action-space",
        lambda p: p.compiled().fit(p.env("Pendulum-v1"), nb_steps=10, verbose=0),
        ValueError,
        r"\benv\b.*Discrete",
    ),
    Case(
        "test-env-with-box-action-space",
        lambda p: p.compiled().test(p.env("Pendulum-v1"), visualize=False, verbose=0),
        ValueError,
        r"\benv\b.*Discrete",
    ),
    Case(
        "fit-env-action-count-differs-from-nb_actions",
        lambda p: p.compiled(nb_actions=3).fit(p.env(), nb_steps=10, verbose=0),
        ValueError,
        r"\benv\b.*nb_actions=3",
    ),
    Case(
        "fit-env-observation-shape-differs-from-model",
        lambda p: p.compiled(model=build_mlp((1, 3), 2, (8,))).fit(p.env(), 10, verbose=0),
        ValueError,
        r"\benv\b.*observations have shape \(4,\)",
    ),
    Case(
        "fit-env-not-an-environment",
        lambda p: p.compiled().fit("CartPole-v1", nb_steps=10, verbose=0),
        TypeError,
        r"\benv\b",
    ),
    Case(
        "fit-nb_steps-negative",
        lambda p: p.compiled().fit(p.env(), nb_steps=-1, verbose=0),
        ValueError,
        r"\bnb_steps\b",
    ),
    Case(
        "fit-nb_steps-float",
        lambda p: p.compiled().fit(p.env(), nb_steps=1e3, verbose=0),
        TypeError,
        r"\bnb_steps\b",
    ),
    Case(
        "fit-action_repetition-zero",
        lambda p: p.compiled().fit(p.env(), nb_steps=10, action_repetition=0, verbose=0),
        ValueError,
        r"\baction_repetition\b",
    ),
    Case(
        "fit-nb_max_episode_steps-zero",
        lambda p: p.compiled().fit(p.env(), nb_steps=10, nb_max_episode_steps=0, verbose=0),
        ValueError,
        r"\bnb_max_episode_steps\b",
    ),
    Case(
        "fit-nb_max_start_steps-negative",
        lambda p: p.compiled().fit(p.env(), nb_steps=10, nb_max_start_steps=-1, verbose=0),
        ValueError,
        r"\bnb_max_start_steps\b",
    ),
    Case(
        "fit-start_step_policy-not-callable",
        lambda p: p.compiled(seed=0).fit(
            p.env(), nb_steps=50, nb_max_start_steps=5, start_step_policy=1, verbose=0
        ),
        TypeError,
        r"\bstart_step_policy\b",
    ),
    Case(
        "fit-log_interval-zero",
        lambda p: p.compiled().fit(p.env(), nb_steps=10, log_interval=0, verbose=0),
        ValueError,
        r"\blog_interval\b",
    ),
    Case(
        "fit-verbose-negative",
        lambda p: p.compiled().fit(p.env(), nb_steps=10, verbose=-1),
        ValueError,
        r"\bverbose\b",
    ),
    Case(
        "test-verbose-not-an-int",
        lambda p: p.compiled().test(p.env(), visualize=False, verbose="loud"),
        TypeError,
        r"\bverbose\b",
    ),
    Case(
        "fit-checkpoint_interval-zero",
        lambda p: p.compiled().fit(
            p.env(), nb_steps=10, verbose=0, checkpoint_dir="checkpoints", checkpoint_interval=0
        ),
        ValueError,
        r"\bcheckpoint_interval\b",
    ),
    Case(
        "fit-checkpoint_interval-without-checkpoint_dir",
        lambda p: p.compiled().fit(p.env(), nb_steps=10, verbose=0, checkpoint_interval=5),
        ValueError,
        r"\bcheckpoint_interval\b",
    ),
    Case(
        "fit-checkpoint_dir-not-a-path",
        lambda p: p.compiled().fit(p.env(), nb_steps=10, verbose=0, checkpoint_dir=7),
        TypeError,
        r"\bcheckpoint_dir\b",
    ),
    Case(
        "fit-callbacks-not-a-list",
        lambda p: p.compiled().fit(p.env(), nb_steps=10, callbacks=History(), verbose=0),
        TypeError,
        r"\bcallbacks\b",
    ),
    Case(
        "test-callbacks-not-a-list",
        lambda p: p.compiled().test(p.env(), callbacks=History(), visualize=False, verbose=0),
        TypeError,
        r"\bcallbacks\b",
    ),
    Case(
        "test-nb_episodes-negative",
        lambda p: p.compiled().test(p.env(), nb_episodes=-1, visualize=False, verbose=0),
        ValueError,
        r"\bnb_episodes\b",
    ),
    Case(
        "test-action_repetition-zero",
        lambda p: p.compiled().test(p.env(), action_repetition=0, visualize=False, verbose=0),
        ValueError,
        r"\baction_repetition\b",
    ),
    Case(
        "test-nb_max_episode_steps-zero",
        lambda p: p.compiled().test(p.env(), nb_max_episode_steps=0, visualize=False, verbose=0),
        ValueError,
        r"\bnb_max_episode_steps\b",
    ),
    # ----------------------------------------------------------------- weights files
    Case(
        "save_weights-overwrite-not-a-bool",
        lambda p: p.agent().save_weights("unused.h5f", overwrite="yes"),
        TypeError,
        r"\boverwrite\b",
    ),
    Case(
        "save_weights-filepath-none",
        lambda p: p.agent().save_weights(None),
        TypeError,
        r"\bfilepath\b",
    ),
    Case(
        "load_weights-filepath-none",
        lambda p: p.agent().load_weights(None),
        TypeError,
        r"\bfilepath\b",
    ),
    # ----------------------------------------------------------------- SequentialMemory
    Case("memory-limit-zero", lambda p: SequentialMemory(limit=0), ValueError, r"\blimit\b"),
    Case("memory-limit-one", lambda p: SequentialMemory(limit=1), ValueError, r"\blimit\b"),
    Case("memory-limit-float", lambda p: SequentialMemory(limit=1e5), TypeError, r"\blimit\b"),
    Case(
        "memory-window_length-zero",
        lambda p: SequentialMemory(limit=100, window_length=0),
        ValueError,
        r"\bwindow_length\b",
    ),
    Case(
        "memory-ignore_episode_boundaries-string",
        lambda p: SequentialMemory(limit=100, ignore_episode_boundaries="no"),
        TypeError,
        r"\bignore_episode_boundaries\b",
    ),
    Case(
        "memory-append-observation-of-another-shape",
        lambda p: memory_with_one_observation().append(np.zeros(3), 0, 0.0, False),
        ValueError,
        r"\bobservation\b.*\(4,\).*\(3,\)",
    ),
    Case(
        "memory-sample-batch_size-negative",
        lambda p: memory_with_transitions().sample(batch_size=-1),
        ValueError,
        r"\bbatch_size\b",
    ),
    # ----------------------------------------------------------------- policies
    Case("eps-greedy-eps-above-one", lambda p: EpsGreedyQPolicy(eps=1.5), ValueError, r"\beps\b"),
    Case("eps-greedy-eps-negative", lambda p: EpsGreedyQPolicy(eps=-0.1), ValueError, r"\beps\b"),
    Case("eps-greedy-eps-string", lambda p: EpsGreedyQPolicy(eps="0.1"), TypeError, r"\beps\b"),
    Case("boltzmann-tau-zero", lambda p: BoltzmannQPolicy(tau=0), ValueError, r"\btau\b"),
    Case(
        "boltzmann-clip-reversed",
        lambda p: BoltzmannQPolicy(clip=(500.0, -500.0)),
        ValueError,
        r"\bclip\b",
    ),
    Case(
        "max-boltzmann-eps-above-one",
        lambda p: MaxBoltzmannQPolicy(eps=2.0),
        ValueError,
        r"\beps\b",
    ),
    Case(
        "max-boltzmann-tau-negative",
        lambda p: MaxBoltzmannQPolicy(tau=-1.0),
        ValueError,
        r"\btau\b",
    ),
    Case(
        "linear-annealed-inner_policy-not-a-policy",
        lambda p: LinearAnnealedPolicy("eps-greedy", "eps", 1.0, 0.1, 0.05, 1000),
        TypeError,
        r"\binner_policy\b",
    ),
    Case(
        "linear-annealed-attr-missing-on-inner-policy",
        lambda p: LinearAnnealedPolicy(EpsGreedyQPolicy(), "tau", 1.0, 0.1, 0.05, 1000),
        ValueError,
        r"\battr\b.*'tau'",
    ),
    Case(
        "linear-annealed-nb_steps-zero",
        lambda p: LinearAnnealedPolicy(EpsGreedyQPolicy(), "eps", 1.0, 0.1, 0.05, 0),
        ValueError,
        r"\bnb_steps\b",
    ),
    Case(
        "greedy-select_action-empty-q_values",
        lambda p: GreedyQPolicy().select_action(np.array([])),
        ValueError,
        r"\bq_values\b",
    ),
    Case(
        "greedy-select_action-2d-q_values",
        lambda p: GreedyQPolicy().select_action(np.zeros((2, 2))),
        ValueError,
        r"\bq_values\b",
    ),
    # ----------------------------------------------------------------- callbacks
    Case(
        "checkpoint-interval-zero",
        lambda p: ModelIntervalCheckpoint("weights_{step}.h5f", interval=0),
        ValueError,
        r"\binterval\b",
    ),
    Case(
        "checkpoint-interval-float",
        lambda p: ModelIntervalCheckpoint("weights_{step}.h5f", interval=1e4),
        TypeError,
        r"\binterval\b",
    ),
    Case(
        "checkpoint-filepath-none",
        lambda p: ModelIntervalCheckpoint(None, interval=100),
        TypeError,
        r"\bfilepath\b",
    ),
    Case(
        "checkpoint-filepath-unknown-field",
        lambda p: ModelIntervalCheckpoint("weights_{stepp}.h5f", interval=100),
        ValueError,
        r"\bfilepath\b.*\{stepp\}.*\{step\}",
    ),
    Case(
        "checkpoint-filepath-unbalanced-brace",
        lambda p: ModelIntervalCheckpoint("weights_{step.h5f", interval=100),
        ValueError,
        r"\bfilepath\b.*not a valid format string",
    ),
    Case(
        "file-logger-filepath-none",
        lambda p: FileLogger(None),
        TypeError,
        r"\bfilepath\b",
    ),
    Case(
        "file-logger-interval-zero",
        lambda p: FileLogger("log.json", interval=0),
        ValueError,
        r"\binterval\b",
    ),
]


def _frame_path(entry) -> Path:
    return Path(str(entry.path)).resolve()


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_refused_early_with_a_message_naming_the_argument(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a case that wrongly writes a file writes it here
    probe = Probe()

    with pytest.raises(case.error, match=case.match) as excinfo:
        case.call(probe)

    message = str(excinfo.value)
    assert "tensorflow" not in message.lower()
    frames = [_frame_path(entry) for entry in excinfo.traceback]
    foreign = [path for path in frames if path != THIS_FILE and KERASDQN_DIR not in path.parents]
    assert not foreign, f"raised from inside a dependency, not by kerasdqn's checks: {foreign}"
    assert KERASDQN_DIR in frames[-1].parents, f"raised in {frames[-1]}, not in kerasdqn"
    probe.assert_nothing_ran()
    assert list(tmp_path.iterdir()) == []
