"""The acting window: the state the agent acts on, made of the live episode's last observations.

With ``window_length = w`` a state is the current observation stacked after the ``w - 1`` before
it (frame stacking, as in DQN on Atari). Frames from before the episode's start are zeros, as in
keras-rl, unless episode boundaries are ignored, in which case the window reaches back into the
previous episode, its last observation included.
"""

from __future__ import annotations

import collections

import numpy as np

from kerasdqn._checks import check_bool, check_int


class StateWindow:
    """The last ``window_length - 1`` observations of the episode being played.

    Args:
        window_length: how many consecutive observations make one state.
        ignore_episode_boundaries: keep the window across episodes instead of starting each
            episode from zeros.
    """

    def __init__(self, window_length: int = 1, ignore_episode_boundaries: bool = False) -> None:
        self.window_length = check_int("window_length", window_length, minimum=1)
        self.ignore_episode_boundaries = check_bool(
            "ignore_episode_boundaries", ignore_episode_boundaries
        )
        self._recent: collections.deque = collections.deque(maxlen=self.window_length - 1)

    def state(self, observation) -> np.ndarray:
        """``observation`` stacked after the remembered ones: shape ``(window_length,) +
        observation.shape``. Nothing is remembered."""
        current = np.asarray(observation)
        if self.window_length == 1:
            return current[np.newaxis]
        stacked = np.zeros((self.window_length,) + current.shape, dtype=current.dtype)
        stacked[-1] = current
        for offset, previous in enumerate(reversed(self._recent), start=2):
            stacked[-offset] = previous
        return stacked

    def observe(self, observation) -> np.ndarray:
        """The state for ``observation``, which is then remembered for the next states."""
        stacked = self.state(observation)
        self.append(observation)
        return stacked

    def append(self, observation) -> None:
        """Remember ``observation`` as the newest of the episode."""
        if self.window_length > 1:
            self._recent.append(np.array(observation, copy=True))

    def end_episode(self, last_observation) -> None:
        """The episode ended on ``last_observation``: the next one starts from zeros, or
        (ignoring boundaries) from a window that ends with ``last_observation``."""
        if self.ignore_episode_boundaries:
            self.append(last_observation)
        else:
            self._recent.clear()

    def reset(self) -> None:
        """A new episode begins: forget the window, unless episode boundaries are ignored."""
        if not self.ignore_episode_boundaries:
            self._recent.clear()


class StateWindows:
    """One ``StateWindow`` per environment of a vector environment: the states of all of them
    as one batch, each environment's window starting (and reset) with its own episodes.

    Args:
        nb_envs: how many environments.
        window_length: how many consecutive observations make one state.
        ignore_episode_boundaries: as for ``StateWindow``.
    """

    def __init__(
        self, nb_envs: int, window_length: int = 1, ignore_episode_boundaries: bool = False
    ) -> None:
        check_int("nb_envs", nb_envs, minimum=1)
        self.window_length = check_int("window_length", window_length, minimum=1)
        self.windows = [
            StateWindow(window_length, ignore_episode_boundaries) for _ in range(nb_envs)
        ]

    def observe(self, observations: np.ndarray, acting: np.ndarray) -> np.ndarray:
        """The states ``(nb_envs, window_length) + observation_shape`` for ``observations``
        (one row per environment). Only the rows where ``acting`` is True are remembered:
        the others belong to environments whose next step is a reset, not an action."""
        observations = np.asarray(observations)
        if self.window_length == 1:
            return observations[:, np.newaxis]
        return np.stack(
            [
                window.observe(observation) if act else window.state(observation)
                for window, observation, act in zip(self.windows, observations, acting)
            ]
        )

    def end_episode(self, index: int, last_observation) -> None:
        """Environment ``index``'s episode ended on ``last_observation``."""
        self.windows[index].end_episode(last_observation)

    def reset(self, index: int) -> None:
        """Environment ``index`` begins a new episode."""
        self.windows[index].reset()
