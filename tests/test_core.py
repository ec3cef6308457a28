"""The fit/test loop of ``kerasdqn.core.Agent``, driven against real gymnasium environments
by an agent that records what the loop asks of it."""

import gymnasium
import numpy as np
import pytest

from kerasdqn.core import Agent, Processor


class Counter(gymnasium.Env):
    """Observation t (the step index), reward 1 a step; terminates after ``length`` steps."""

    observation_space = gymnasium.spaces.Box(0.0, 100.0, (1,), np.float32)
    action_space = gymnasium.spaces.Discrete(2)

    def __init__(self, length: int = 4):
        self.length = length

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([float(self.t)], np.float32), 1.0, self.t == self.length, False, {}


class RecordingAgent(Agent):
    """Acts 0 and writes down every call the loop makes."""

    def __init__(self, **kwargs):
        super().__init__(seed=0, **kwargs)
        self.compiled = True
        self.calls = []

    def forward(self, observation):
        self.calls.append(("forward", float(observation[0])))
        return 0

    def backward(self, reward, terminal, truncated=False):
        self.calls.append(("backward", reward, terminal, truncated))
        return np.array([])

    def finish_episode(self, observation):
        self.calls.append(("finish", float(observation[0])))

    def reset_states(self):
        self.calls.append(("reset",))


def test_each_step_acts_then_learns_and_each_episode_ends_with_its_last_observation():
    agent = RecordingAgent()
    agent.fit(Counter(length=2), nb_steps=2, verbose=0)
    assert agent.calls == [
        ("reset",),
        ("forward", 0.0),
        ("backward", 1.0, False, False),
        ("forward", 1.0),
        ("backward", 1.0, True, False),
        ("finish", 2.0),
    ]


def test_a_time_limit_reaches_the_agent_as_a_truncation_not_a_termination():
    agent = RecordingAgent()
    agent.fit(gymnasium.wrappers.TimeLimit(Counter(10), max_episode_steps=3), nb_steps=3, verbose=0)
    assert [call[2:] for call in agent.calls if call[0] == "backward"] == [
        (False, False),
        (False, False),
        (False, True),
    ]


def test_nb_max_episode_steps_truncates_too():
    agent = RecordingAgent()
    history = agent.fit(Counter(10), nb_steps=6, nb_max_episode_steps=3, verbose=0)
    assert history.history["nb_episode_steps"] == [3, 3]
    assert [call[3] for call in agent.calls if call[0] == "backward"][2] is True


def test_action_repetition_sums_the_rewards_of_the_repeated_steps():
    agent = RecordingAgent()
    history = agent.fit(Counter(6), nb_steps=3, action_repetition=2, verbose=0)
    assert [call[1] for call in agent.calls if call[0] == "backward"] == [2.0, 2.0, 2.0]
    assert history.history["episode_reward"] == [6.0]


def test_an_episode_unfinished_when_fit_stops_is_closed_with_its_current_observation():
    agent = RecordingAgent()
    history = agent.fit(Counter(10), nb_steps=3, verbose=0)
    assert agent.calls[-1] == ("finish", 3.0)
    assert history.history == {}  # no episode ended inside fit


def test_random_start_steps_are_neither_acted_on_nor_stored():
    agent = RecordingAgent()
    agent.fit(Counter(50), nb_steps=1, nb_max_start_steps=5, verbose=0)
    first_observation = agent.calls[1][1]
    assert agent.calls[1][0] == "forward"
    assert [call[0] for call in agent.calls].count("backward") == 1
    assert 0.0 <= first_observation <= 5.0


def test_the_step_counter_runs_in_fit_only_and_test_counts_its_own_episode_steps():
    agent = RecordingAgent()
    agent.fit(Counter(4), nb_steps=8, verbose=0)
    history = agent.test(Counter(4), nb_episodes=2, visualize=False, verbose=0)
    assert agent.step == 8
    assert history.history["nb_steps"] == [4, 4]


def test_processor_hooks_see_every_observation_reward_and_action():
    class Doubling(Processor):
        def process_observation(self, observation):
            return observation * 2

        def process_reward(self, reward):
            return reward * 10

    agent = RecordingAgent(processor=Doubling())
    agent.fit(Counter(2), nb_steps=2, verbose=0)
    assert ("forward", 2.0) in agent.calls  # observation 1, doubled
    assert [call[1] for call in agent.calls if call[0] == "backward"] == [10.0, 10.0]


def test_fit_refuses_an_uncompiled_agent_before_touching_the_environment():
    agent = RecordingAgent()
    agent.compiled = False
    with pytest.raises(RuntimeError, match="fit: the agent is not compiled"):
        agent.fit(Counter(), nb_steps=1)
    assert agent.calls == []
