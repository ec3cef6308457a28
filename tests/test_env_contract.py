"""An environment that breaks gymnasium's contract is stopped where it breaks it.

``fit`` and ``test`` check the environment once before touching it (an observation space the
agent cannot take) and then each value where it enters the loop (``reset``'s pair, ``step``'s
five values, each observation and reward). The error names the environment (its ``spec.id``,
else its class), the method, the step, what came and what was expected.

How steps are counted in the messages: in ``fit``, "step N" is the agent's step counter, from
0, so an environment that breaks at its 5th ``step`` call of the first ``fit`` is reported "at
step 4". In ``test``, "step N of test episode E" counts the ``step`` calls since that episode's
reset, from 0: the same 5th call of the first episode is "at step 4 of test episode 0".

One table: each case is a small real environment that breaks the contract one way, run under
``fit`` and under ``test``. Then the cases that must keep working.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple

import gymnasium
import keras
import numpy as np
import pytest

from kerasdqn import DQNAgent, EpsGreedyQPolicy, Processor, SequentialMemory, build_mlp
from kerasdqn.core import Agent

# --------------------------------------------------------------------------- environments


class FourFloats(gymnasium.Env):
    """Observations of four float32 zeros, reward 1 a step, episodes of ``length`` steps.

    Subclasses break the contract at the ``breaks_at``-th ``step`` call of an episode (from 1),
    in its ``breaks_in``-th episode (from 1), through ``broken_step``; or in ``reset``.
    """

    observation_space = gymnasium.spaces.Box(-10.0, 10.0, (4,), np.float32)
    action_space = gymnasium.spaces.Discrete(2)
    length = 20
    breaks_at = 5
    breaks_in = 1

    def __init__(self) -> None:
        self.episode = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.episode += 1
        return np.zeros(4, np.float32), {}

    def step(self, action):
        self.t += 1
        result = (np.zeros(4, np.float32), 1.0, self.t == self.length, False, {})
        if self.t == self.breaks_at and self.episode == self.breaks_in:
            return self.broken_step(*result)
        return result

    def broken_step(self, observation, reward, terminated, truncated, info):
        return observation, reward, terminated, truncated, info


class OldGymReset(FourFloats):
    """gym < 0.26: ``reset`` returns the observation alone."""

    def reset(self, *, seed=None, options=None):
        observation, _ = super().reset(seed=seed)
        return observation


class NanAtReset(FourFloats):
    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.array([0.0, np.nan, 0.0, 0.0], np.float32), {}


class ThreeFloatsAtReset(FourFloats):
    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(3, np.float32), {}


class ObjectsAtReset(FourFloats):
    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.array([0.0, None, 0.0, 0.0], dtype=object), {}


class ShrinksAtItsFifthStep(FourFloats):
    def broken_step(self, observation, *rest):
        return (np.zeros(3, np.float32), *rest)


class GrowsInItsSecondEpisode(FourFloats):
    """Episodes of 3 steps; its 2nd episode's 2nd step (the 5th step overall) breaks."""

    length = 3
    breaks_at = 2
    breaks_in = 2

    def broken_step(self, observation, *rest):
        return (np.zeros((4, 1), np.float32), *rest)


class StringsAtItsFifthStep(FourFloats):
    def broken_step(self, observation, *rest):
        return (np.array(["0", "0", "0", "0"]), *rest)


class NanAtItsFifthStep(FourFloats):
    def broken_step(self, observation, *rest):
        return (np.full(4, np.nan, np.float32), *rest)


class NoneRewardAtItsFifthStep(FourFloats):
    def broken_step(self, observation, reward, *rest):
        return (observation, None, *rest)


class StringRewardAtItsFifthStep(FourFloats):
    def broken_step(self, observation, reward, *rest):
        return (observation, "1.0", *rest)


class ArrayRewardAtItsFifthStep(FourFloats):
    def broken_step(self, observation, reward, *rest):
        return (observation, np.ones(2), *rest)


class InfiniteRewardAtItsFifthStep(FourFloats):
    def broken_step(self, observation, reward, *rest):
        return (observation, float("inf"), *rest)


class OldGymStepAtItsFifthStep(FourFloats):
    """gym < 0.26: ``step`` returns four values, ``done`` for terminated and truncated."""

    def broken_step(self, observation, reward, terminated, truncated, info):
        return observation, reward, terminated or truncated, info


class DictObservations(gymnasium.Env):
    """Observations ``{"position": (2,), "velocity": (2,)}``; episodes of 10 steps."""

    observation_space = gymnasium.spaces.Dict(
        {
            "position": gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32),
            "velocity": gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32),
        }
    )
    action_space = gymnasium.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._observation(), {}

    def step(self, action):
        self.t += 1
        return self._observation(), float(action), self.t == 10, False, {}

    def _observation(self):
        position = np.full(2, self.t / 10, np.float32)
        return {"position": position, "velocity": np.zeros(2, np.float32)}


class CallCounter(gymnasium.Wrapper):
    """Counts the calls to ``reset`` and ``step`` of the environment it wraps."""

    def __init__(self, env) -> None:
        super().__init__(env)
        self.resets = 0
        self.steps = 0

    def reset(self, **kwargs):
        self.resets += 1
        return self.env.reset(**kwargs)

    def step(self, action):
        self.steps += 1
        return self.env.step(action)


# --------------------------------------------------------------------------- agents


class FlattenDict(Processor):
    """Concatenates a dict observation's arrays, keys in sorted order."""

    def process_observation(self, observation):
        return np.concatenate([observation[key] for key in sorted(observation)])


class PassesDictsThrough(Processor):
    """A processor that forgets to turn dict observations into arrays."""


def tiny_agent(processor=None, nb_steps_warmup=1000) -> DQNAgent:
    agent = DQNAgent(
        build_mlp((1, 4), 2, (8,)),
        nb_actions=2,
        memory=SequentialMemory(limit=1000),
        nb_steps_warmup=nb_steps_warmup,
        batch_size=8,
        target_model_update=0.01,
        processor=processor,
        seed=0,
    )
    agent.compile(keras.optimizers.Adam(1e-3))
    return agent


def play(agent: DQNAgent, env, run: str, steps: int = 30):
    if run == "fit":
        return agent.fit(env, nb_steps=steps, verbose=0)
    return agent.test(env, nb_episodes=3, visualize=False, verbose=0)


# --------------------------------------------------------------------------- the table

FIT_STEP_4 = (r"at step 4 ", r"steps: the agent's step counter, from 0")
TEST_STEP_4 = (r"at step 4 of test episode 0", r"steps: env\.step calls since its reset, from 0")
FIT_RESET = (r"before step 0 ", r"steps: the agent's step counter, from 0")
TEST_RESET = (r"at the start of test episode 0",)
AT_THE_START = ()  # refused before the first reset: no step to name


class Case(NamedTuple):
    id: str
    env: Callable[[], gymnasium.Env]
    error: type[Exception]
    name: str  # the environment as the message names it
    method: str | None  # 'reset()' or 'step()'; None for the checks before the first reset
    came: str  # a regular expression for what came
    expected: str  # a regular expression for what was expected
    where: dict[str, tuple[str, ...]]  # regular expressions placing the error, per run
    calls: tuple[int, int]  # (resets, steps) the environment saw, the last one the breach
    processor: Processor | None = None


CASES = [
    Case(
        "reset-in-the-old-gym-style-returns-the-observation-alone",
        OldGymReset,
        TypeError,
        "OldGymReset",
        "reset",
        r"the value returned .* is an array of shape \(4,\) and dtype float32, "
        r"not an \(observation, info\) pair",
        r"expected gymnasium's \(observation, info\).*old gym API",
        {"fit": FIT_RESET, "test": TEST_RESET},
        (1, 0),
    ),
    Case(
        "reset-gives-a-nan-observation",
        NanAtReset,
        FloatingPointError,
        "NanAtReset",
        "reset",
        r"the observation .* is an array of shape \(4,\) and dtype float32 holding non-finite "
        r"values \(\[ 0\. nan  0\.  0\.\]\)",
        r"expected finite numbers; (training|testing) stopped",
        {"fit": FIT_RESET, "test": TEST_RESET},
        (1, 0),
    ),
    Case(
        "reset-gives-an-observation-of-another-shape",
        ThreeFloatsAtReset,
        ValueError,
        "ThreeFloatsAtReset",
        "reset",
        r"the observation .* is an array of shape \(3,\) and dtype float32",
        r"expected a numeric array .* of shape \(4,\), the shape the agent takes",
        {"fit": FIT_RESET, "test": TEST_RESET},
        (1, 0),
    ),
    Case(
        "reset-gives-an-object-array",
        ObjectsAtReset,
        ValueError,
        "ObjectsAtReset",
        "reset",
        r"the observation .* is an array of shape \(4,\) and dtype object",
        r"expected a numeric array \(bool, int, uint or float\)",
        {"fit": FIT_RESET, "test": TEST_RESET},
        (1, 0),
    ),
    Case(
        "step-gives-an-observation-of-another-shape-mid-episode",
        ShrinksAtItsFifthStep,
        ValueError,
        "ShrinksAtItsFifthStep",
        "step",
        r"the observation .* is an array of shape \(3,\) and dtype float32",
        r"expected a numeric array .* of shape \(4,\), the shape the agent takes",
        {"fit": FIT_STEP_4, "test": TEST_STEP_4},
        (1, 5),
    ),
    Case(
        "step-breaks-in-the-second-episode-fit-counts-the-agent's-steps",
        GrowsInItsSecondEpisode,
        ValueError,
        "GrowsInItsSecondEpisode",
        "step",
        r"the observation .* is an array of shape \(4, 1\)",
        r"of shape \(4,\)",
        {"fit": FIT_STEP_4, "test": (r"at step 1 of test episode 1",)},
        (2, 5),
    ),
    Case(
        "step-gives-a-string-observation",
        StringsAtItsFifthStep,
        ValueError,
        "StringsAtItsFifthStep",
        "step",
        r"the observation .* is an array of shape \(4,\) and dtype <U1",
        r"expected a numeric array \(bool, int, uint or float\)",
        {"fit": FIT_STEP_4, "test": TEST_STEP_4},
        (1, 5),
    ),
    Case(
        "step-gives-a-nan-observation",
        NanAtItsFifthStep,
        FloatingPointError,
        "NanAtItsFifthStep",
        "step",
        r"the observation .* holding non-finite values \(\[nan nan nan nan\]\)",
        r"expected finite numbers",
        {"fit": FIT_STEP_4, "test": TEST_STEP_4},
        (1, 5),
    ),
    Case(
        "step-gives-a-none-reward",
        NoneRewardAtItsFifthStep,
        TypeError,
        "NoneRewardAtItsFifthStep",
        "step",
        r"the reward .* is None \(NoneType\)",
        r"expected a real number",
        {"fit": FIT_STEP_4, "test": TEST_STEP_4},
        (1, 5),
    ),
    Case(
        "step-gives-a-string-reward",
        StringRewardAtItsFifthStep,
        TypeError,
        "StringRewardAtItsFifthStep",
        "step",
        r"the reward .* is '1\.0' \(str\)",
        r"expected a real number",
        {"fit": FIT_STEP_4, "test": TEST_STEP_4},
        (1, 5),
    ),
    Case(
        "step-gives-a-reward-of-two-numbers",
        ArrayRewardAtItsFifthStep,
        TypeError,
        "ArrayRewardAtItsFifthStep",
        "step",
        r"the reward .* is an array of shape \(2,\) and dtype float64",
        r"expected a real number",
        {"fit": FIT_STEP_4, "test": TEST_STEP_4},
        (1, 5),
    ),
    Case(
        "step-gives-an-infinite-reward",
        InfiniteRewardAtItsFifthStep,
        FloatingPointError,
        "InfiniteRewardAtItsFifthStep",
        "step",
        r"the reward at step 4 .*is inf",
        r"expected a finite number; (training|testing) stopped",
        {"fit": FIT_STEP_4, "test": TEST_STEP_4},
        (1, 5),
    ),
    Case(
        "step-in-the-old-gym-style-returns-four-values",
        OldGymStepAtItsFifthStep,
        TypeError,
        "OldGymStepAtItsFifthStep",
        "step",
        r"the value returned .* is a tuple of 4 values",
        r"expected gymnasium's five values \(observation, reward, terminated, truncated, info\)",
        {"fit": FIT_STEP_4, "test": TEST_STEP_4},
        (1, 5),
    ),
    Case(
        "dict-observation-space-without-a-processor",
        DictObservations,
        ValueError,
        "DictObservations",
        None,
        r"its observation space Dict\('position': Box.* has no single array shape",
        r"flatten them with gymnasium\.wrappers\.FlattenObservation\(env\), or pass a Processor",
        {"fit": AT_THE_START, "test": AT_THE_START},
        (0, 0),
    ),
    Case(
        "tuple-observation-space-without-a-processor",
        lambda: gymnasium.make("Blackjack-v1"),
        ValueError,
        "Blackjack-v1",
        None,
        r"its observation space Tuple\(Discrete\(32\), Discrete\(11\), Discrete\(2\)\) has no "
        r"single array shape",
        r"flatten them with gymnasium\.wrappers\.FlattenObservation\(env\), or pass a Processor",
        {"fit": AT_THE_START, "test": AT_THE_START},
        (0, 0),
    ),
    Case(
        "dict-observations-a-processor-passes-through-unchanged",
        DictObservations,
        ValueError,
        "DictObservations",
        "reset",
        r"the observation after the Processor .* is a dict with keys \['position', 'velocity'\]",
        r"expected numbers \(bool, int, uint or float\) from the Processor",
        {"fit": FIT_RESET, "test": TEST_RESET},
        (1, 0),
        PassesDictsThrough(),
    ),
]


@pytest.mark.parametrize("run", ["fit", "test"])
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_an_environment_breaking_its_contract_is_stopped_where_it_breaks_naming_it(case, run):
    env = CallCounter(case.env())
    agent = tiny_agent(processor=case.processor)

    with pytest.raises(case.error) as excinfo:
        play(agent, env, run)

    message = str(excinfo.value)
    method = rf", {case.method}\(\): " if case.method else ": "
    name = rf"{re.escape(case.name)}( \(wrapped in CallCounter\))?"
    assert re.match(rf"env {name}{method}", message), message
    for pattern in (case.came, case.expected, *case.where[run]):
        assert re.search(pattern, message), f"{pattern!r} not in {message!r}"
    assert "tensorflow" not in message.lower()
    # The error came at the call that broke the contract, not later, and none came after it.
    assert (env.resets, env.steps) == case.calls
    if case.calls == (0, 0):
        assert agent.step == 0 and agent.memory.nb_entries == 0


# --------------------------------------------------------------------------- what still works


def test_a_processor_that_flattens_dict_observations_lets_the_agent_train_and_test():
    agent = tiny_agent(processor=FlattenDict(), nb_steps_warmup=10)
    history = agent.fit(DictObservations(), nb_steps=60, verbose=0)
    assert agent.step == 60
    assert np.isfinite(history.history["loss"][-1])  # it learned: warm-up ended at step 10
    history = agent.test(DictObservations(), nb_episodes=2, visualize=False, verbose=0)
    assert history.history["nb_episode_steps"] == [10, 10]


def test_float64_observations_from_a_float32_space_are_accepted_and_cast():
    class Float64Observations(FourFloats):
        length = 10

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            return np.zeros(4, np.float64), {}

        def step(self, action):
            observation, *rest = super().step(action)
            return (observation.astype(np.float64), *rest)

    agent = tiny_agent(nb_steps_warmup=10)
    agent.fit(Float64Observations(), nb_steps=30, verbose=0)
    history = agent.test(Float64Observations(), nb_episodes=1, visualize=False, verbose=0)
    assert agent.step == 30
    assert history.history["nb_episode_steps"] == [10]


def test_integer_observations_feed_a_model_with_an_integer_input():
    env = gymnasium.make("FrozenLake-v1", is_slippery=False)
    model = keras.Sequential(
        [
            keras.Input((1,), dtype="int32"),
            keras.layers.Embedding(16, 4),
            keras.layers.Flatten(),
            keras.layers.Dense(4),
        ]
    )
    agent = DQNAgent(
        model,
        nb_actions=4,
        memory=SequentialMemory(1000),
        policy=EpsGreedyQPolicy(0.5),
        nb_steps_warmup=20,
        batch_size=8,
        target_model_update=0.05,
        seed=0,
    )
    agent.compile(keras.optimizers.Adam(0.01))
    agent.fit(env, nb_steps=60, verbose=0)
    history = agent.test(env, nb_episodes=1, nb_max_episode_steps=20, visualize=False, verbose=0)
    assert agent.step == 60
    assert len(history.history["episode_reward"]) == 1


def test_numpy_scalar_and_bool_rewards_are_real_numbers():
    class MixedRewards(FourFloats):
        length = 4
        rewards = [np.float32(0.5), np.int64(2), True, np.array(1.5)]

        def step(self, action):
            observation, _, *rest = super().step(action)
            return (observation, self.rewards[self.t - 1], *rest)

    history = tiny_agent().fit(MixedRewards(), nb_steps=4, verbose=0)
    assert history.history["episode_reward"] == [5.0]


def test_an_agent_can_declare_the_observation_shape_it_takes():
    class TabularAgent(Agent):
        """Takes one integer state; acts 0."""

        def __init__(self) -> None:
            super().__init__(seed=0)
            self.compiled = True

        def expected_observation_shape(self):
            return ()

        def forward(self, observation):
            return 0

        def backward(self, reward, terminal, truncated=False):
            return np.array([])

    TabularAgent().fit(gymnasium.make("FrozenLake-v1"), nb_steps=10, verbose=0)
    env = CallCounter(FourFloats())
    with pytest.raises(ValueError, match=r"env FourFloats.*shape \(4,\).*shape \(\)"):
        TabularAgent().fit(env, nb_steps=10, verbose=0)
    assert (env.resets, env.steps) == (0, 0)
