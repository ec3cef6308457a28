"""The acting window: the live episode's last observations, zeros before its start."""

import numpy as np

from kerasdqn.state import StateWindow


def test_the_window_stacks_the_episode_and_zeros_before_its_start():
    window = StateWindow(3)
    states = [window.observe(np.array([float(k)])) for k in (1, 2, 3, 4)]
    assert [state[:, 0].tolist() for state in states] == [
        [0, 0, 1],
        [0, 1, 2],
        [1, 2, 3],
        [2, 3, 4],
    ]


def test_a_new_episode_starts_from_zeros():
    window = StateWindow(2)
    window.observe(np.array([1.0]))
    window.end_episode(np.array([2.0]))
    window.reset()
    np.testing.assert_array_equal(window.observe(np.array([3.0])), [[0.0], [3.0]])


def test_ignoring_boundaries_carries_the_previous_episodes_last_observation_over():
    window = StateWindow(2, ignore_episode_boundaries=True)
    window.observe(np.array([1.0]))
    window.end_episode(np.array([2.0]))
    window.reset()
    np.testing.assert_array_equal(window.observe(np.array([3.0])), [[2.0], [3.0]])


def test_state_does_not_remember_the_observation():
    window = StateWindow(2)
    window.state(np.array([7.0]))
    np.testing.assert_array_equal(window.state(np.array([8.0])), [[0.0], [8.0]])


def test_window_length_one_only_adds_the_window_axis():
    state = StateWindow(1).observe(np.arange(4.0))
    assert state.shape == (1, 4)


def test_remembered_observations_are_copies():
    window = StateWindow(2)
    observation = np.array([1.0])
    window.observe(observation)
    observation[0] = 99.0
    np.testing.assert_array_equal(window.state(np.array([2.0])), [[1.0], [2.0]])
