"""Replay memory: a preallocated ring buffer of transitions, sampled in vectorized minibatches.

Layout (as in keras-rl): entry ``i`` holds observation ``o_i``, the action ``a_i`` taken in it,
the reward ``r_i`` that followed, and whether the next observation was *terminal*. The next
observation of entry ``i`` is the observation of entry ``i + 1``, so each observation is stored
once. When an episode ends, its final observation is appended as one more entry marked *final*:
no transition starts from it and no stacked window reaches back across it.

Terminal and final are different things. ``terminal`` means the environment *terminated*: the
next state has no future, so the TD target does not bootstrap. An episode cut off by a time
limit (gymnasium's ``truncated``) is final but not terminal: its last transition bootstraps.
"""

from __future__ import annotations

import collections
from typing import Any, NamedTuple

import numpy as np

from kerasdqn._checks import check_bool, check_int

Experience = collections.namedtuple("Experience", "state0, action, reward, state1, terminal1")
Experience.__doc__ = """One transition as keras-rl returned it: in ``state0``, ``action`` gave
``reward`` and led to ``state1``, which is terminal if ``terminal1``."""


class TransitionBatch(NamedTuple):
    """A minibatch of transitions as arrays, the first axis running over the batch.

    ``state0`` and ``state1`` have shape ``(batch, window_length) + observation_shape``;
    ``steps`` counts the environment steps each transition spans (None: one each).
    """

    state0: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    state1: np.ndarray
    terminal1: np.ndarray
    steps: np.ndarray | None = None


class SequentialMemory:
    """A ring buffer holding the last ``limit`` observations, with keras-rl's window semantics.

    Args:
        limit: how many entries (observations) the buffer holds; the oldest are overwritten.
        window_length: how many consecutive observations make one state (frame stacking).
        ignore_episode_boundaries: let stacked windows reach back into the previous episode,
            as keras-rl's option of that name did. Off by default.

    Memory is allocated on the first ``append``, once, from the observation's shape and dtype:
    it depends on ``limit``, never on how many steps were taken.
    """

    def __init__(
        self,
        limit: int,
        window_length: int = 1,
        ignore_episode_boundaries: bool = False,
    ) -> None:
        self.limit = check_int("limit", limit, minimum=2)
        self.window_length = check_int("window_length", window_length, minimum=1)
        self.ignore_episode_boundaries = check_bool(
            "ignore_episode_boundaries", ignore_episode_boundaries
        )
        self.rng: np.random.Generator | None = None
        self._allocate()

    def _allocate(self) -> None:
        """Start empty (observation storage is allocated at the first append)."""
        self._observations: np.ndarray | None = None
        self._observation_shape: tuple | None = None
        self._actions = np.zeros(self.limit, dtype=np.int32)
        self._rewards = np.zeros(self.limit, dtype=np.float32)
        self._terminals = np.zeros(self.limit, dtype=np.bool_)
        self._finals = np.zeros(self.limit, dtype=np.bool_)
        self._next_index = 0
        self._nb_entries = 0
        self._nb_finals = 0
        self._previous_ended = False

        self._recent: collections.deque = collections.deque(maxlen=self.window_length - 1)
        self._recent_ended = False

    # ------------------------------------------------------------------ writing

    def append(
        self,
        observation: Any,
        action: int,
        reward: float,
        terminal: bool,
        training: bool = True,
        truncated: bool = False,
    ) -> None:
        """Store that in ``observation``, ``action`` was taken and ``reward`` followed.

        ``terminal``: the next observation is terminal (no bootstrapping from it).
        ``truncated``: the episode was cut off after this step (a time limit); the next
        observation still bootstraps. After a terminal or truncated step, the next appended
        observation is taken as the episode's final one (keras-rl's convention), as is any
        observation given to ``append_final``.
        With ``training=False`` only the window used by ``get_recent_state`` is updated.
        """
        observation = self._checked(observation)
        self._remember_recent(observation, ended=bool(terminal) or bool(truncated))
        if not training:
            return
        final = self._previous_ended
        self._write(observation, action, reward, terminal and not final, final=final)
        self._previous_ended = not final and (bool(terminal) or bool(truncated))

    def append_final(self, observation: Any, training: bool = True) -> None:
        """Store the last observation of an episode, from which no transition starts."""
        observation = self._checked(observation)
        self._remember_final(observation)
        if not training:
            return
        self._write(observation, 0, 0.0, False, final=True)
        self._previous_ended = False

    def clear_recent(self) -> None:
        """A new episode begins: forget the observations ``get_recent_state`` stacks (unless
        episode boundaries are ignored)."""
        self._recent_ended = False
        if not self.ignore_episode_boundaries:
            self._recent.clear()

    def _checked(self, observation: Any) -> np.ndarray:
        """``observation`` as an array, if its shape is that of the earlier ones."""
        observation = np.asarray(observation)
        if self._observation_shape is None:
            self._observation_shape = observation.shape
        elif observation.shape != self._observation_shape:
            raise ValueError(
                f"observation: expected shape {self._observation_shape} like the earlier "
                f"observations in this memory, got {observation.shape}"
            )
        return observation

    def _remember_recent(self, observation: np.ndarray, ended: bool) -> None:
        if self._recent_ended:
            # keras-rl's protocol: this is the final observation of the episode that just ended.
            self._remember_final(observation)
            return
        if self.window_length > 1:
            self._recent.append(observation.copy())
        self._recent_ended = ended

    def _remember_final(self, observation: np.ndarray) -> None:
        self._recent_ended = False
        if not self.ignore_episode_boundaries:
            self._recent.clear()
        elif self.window_length > 1:
            self._recent.append(observation.copy())

    def _write(
        self, observation: np.ndarray, action: int, reward: float, terminal: bool, final: bool
    ) -> None:
        if self._observations is None:
            self._observations = np.zeros((self.limit,) + observation.shape, observation.dtype)
        index = self._next_index
        if self._nb_entries == self.limit:
            self._nb_finals -= int(self._finals[index])
        else:
            self._nb_entries += 1
        self._observations[index] = observation
        self._actions[index] = action
        self._rewards[index] = reward
        self._terminals[index] = terminal
        self._finals[index] = final
        self._nb_finals += int(final)
        self._next_index = (index + 1) % self.limit

    # ------------------------------------------------------------------ reading

    @property
    def nb_entries(self) -> int:
        """How many observations are stored (keras-rl's name)."""
        return self._nb_entries

    @property
    def nb_transitions(self) -> int:
        """How many stored transitions can be sampled: those whose next observation is stored."""
        if self._nb_entries < 2:
            return 0
        newest = (self._next_index - 1) % self.limit
        return self._nb_entries - 1 - (self._nb_finals - int(self._finals[newest]))

    @property
    def nbytes(self) -> int:
        """Bytes held by the buffer's arrays."""
        arrays = (self._actions, self._rewards, self._terminals, self._finals)
        total = sum(array.nbytes for array in arrays)
        return total + (0 if self._observations is None else self._observations.nbytes)

    def get_recent_state(self, current_observation: Any) -> np.ndarray:
        """The state to act on: ``current_observation`` stacked after the ones before it.

        Frames from before the episode's start are zeros, as in keras-rl.
        """
        current = np.asarray(current_observation)
        if self.window_length == 1:
            return current[np.newaxis]
        state = np.zeros((self.window_length,) + current.shape, dtype=current.dtype)
        state[-1] = current
        recent = list(self._recent)[-(self.window_length - 1) :]
        for offset, observation in enumerate(reversed(recent), start=2):
            state[-offset] = observation
        return state

    def sample_indices(self, batch_size: int) -> np.ndarray:
        """Buffer positions of ``batch_size`` transitions drawn uniformly, with replacement.

        Only transitions whose next observation is still stored are drawn; final observations
        never start one.
        """
        batch_size = check_int("batch_size", batch_size, minimum=1)
        if self.nb_transitions == 0:
            raise ValueError(
                "the memory holds no complete transition yet; append at least two observations "
                "of one episode before sampling"
            )
        rng = self._rng()
        newest = (self._next_index - 1) % self.limit
        indices = np.empty(batch_size, dtype=np.int64)
        missing = np.arange(batch_size)
        while missing.size:
            ages = rng.integers(1, self._nb_entries, size=missing.size)
            candidates = (newest - ages) % self.limit
            valid = ~self._finals[candidates]
            indices[missing[valid]] = candidates[valid]
            missing = missing[~valid]
        return indices

    def sample_batch(self, batch_size: int, n_step: int = 1, gamma: float = 1.0) -> TransitionBatch:
        """A minibatch of ``batch_size`` transitions as arrays (the fast path).

        With ``n_step > 1`` each transition spans up to ``n_step`` steps (see ``batch_at``).
        """
        return self.batch_at(self.sample_indices(batch_size), n_step, gamma)

    def batch_at(self, indices: np.ndarray, n_step: int = 1, gamma: float = 1.0) -> TransitionBatch:
        """The transitions starting at the given buffer positions, with stacked windows.

        With ``n_step > 1``, a transition runs ``k <= n_step`` steps ahead: ``reward`` is
        ``r_0 + gamma r_1 + ... + gamma^(k-1) r_(k-1)``, ``state1`` the state ``k`` steps on and
        ``steps`` holds ``k``. It stops early where the episode terminated or ended, or where
        the memory holds nothing newer.
        """
        indices = np.asarray(indices, dtype=np.int64)
        steps, reward, terminal1 = self._n_step_returns(indices, n_step, gamma)
        window = self.window_length
        offsets = np.arange(-window + 1, n_step + 1)
        frames = self._observations[(indices[:, np.newaxis] + offsets) % self.limit]
        if window > 1:
            frames[~self._frames_in_episode(indices, n_step)] = 0
        if n_step == 1:
            state1 = frames[:, 1:]
        else:
            rows = np.arange(len(indices))[:, np.newaxis]
            state1 = frames[rows, steps[:, np.newaxis] + np.arange(window)]
        return TransitionBatch(
            state0=frames[:, :window],
            action=self._actions[indices],
            reward=reward,
            state1=state1,
            terminal1=terminal1,
            steps=steps,
        )

    def _n_step_returns(self, indices: np.ndarray, n_step: int, gamma: float):
        """``(steps, discounted reward sum, terminal)`` of transitions of up to ``n_step``."""
        reward = self._rewards[indices]
        terminal = self._terminals[indices]
        steps = np.ones(len(indices), dtype=np.int64)
        newest = (self._next_index - 1) % self.limit
        going_on = ~terminal
        for ahead in range(1, n_step):
            position = (indices + ahead) % self.limit
            # The transition from `position` belongs to this episode and is complete.
            going_on &= ~self._finals[position] & (position != newest)
            reward[going_on] += gamma**ahead * self._rewards[position[going_on]]
            steps[going_on] += 1
            terminal[going_on] = self._terminals[position[going_on]]
            going_on &= ~terminal
        return steps, reward, terminal

    def _frames_in_episode(self, indices: np.ndarray, n_step: int = 1) -> np.ndarray:
        """Mask over the window frames ``indices - w + 1 ... indices + n_step`` to stack.

        A frame ``k`` steps before the transition's start is usable if it is still stored and,
        unless episode boundaries are ignored, no final observation lies between them.
        """
        batch = indices.shape[0]
        usable = np.ones((batch, self.window_length + n_step), dtype=np.bool_)
        newest = (self._next_index - 1) % self.limit
        age = (newest - indices) % self.limit
        still_usable = np.ones(batch, dtype=np.bool_)
        for back in range(1, self.window_length):
            position = (indices - back) % self.limit
            still_usable &= age + back < self._nb_entries
            if not self.ignore_episode_boundaries:
                still_usable &= ~self._finals[position]
            usable[:, self.window_length - 1 - back] = still_usable
        return usable

    def sample(self, batch_size: int, batch_idxs: Any = None) -> list[Experience]:
        """keras-rl's interface: a list of ``Experience`` tuples.

        ``batch_idxs``, if given, are buffer positions of transitions (see ``sample_indices``).
        """
        indices = self.sample_indices(batch_size) if batch_idxs is None else batch_idxs
        batch = self.batch_at(indices)
        return [
            Experience(
                batch.state0[i],
                batch.action[i],
                batch.reward[i],
                batch.state1[i],
                batch.terminal1[i],
            )
            for i in range(len(batch.action))
        ]

    # ------------------------------------------------------------------ checkpoints

    def get_state(self) -> dict[str, Any]:
        """Everything stored, as arrays and plain numbers (for checkpoints; no pickling)."""
        filled = self._nb_entries
        state: dict[str, Any] = {
            "actions": self._actions[:filled],
            "rewards": self._rewards[:filled],
            "terminals": self._terminals[:filled],
            "finals": self._finals[:filled],
            "next_index": self._next_index,
            "previous_ended": self._previous_ended,
        }
        if self._observations is not None:
            state["observations"] = self._observations[:filled]
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what ``get_state`` returned, after checking it fits this memory."""
        filled = len(state["actions"])
        if filled > self.limit or not 0 <= int(state["next_index"]) < self.limit:
            raise ValueError(
                f"state: it holds {filled} entries but this memory's limit is {self.limit}"
            )
        if filled and "observations" not in state:
            raise ValueError("state: entries without observations")
        self._allocate()
        if filled:
            observations = np.asarray(state["observations"])
            self._observations = np.zeros(
                (self.limit,) + observations.shape[1:], observations.dtype
            )
            self._observations[:filled] = observations
            self._observation_shape = observations.shape[1:]
        self._actions[:filled] = state["actions"]
        self._rewards[:filled] = state["rewards"]
        self._terminals[:filled] = state["terminals"]
        self._finals[:filled] = state["finals"]
        self._nb_entries = filled
        self._nb_finals = int(np.count_nonzero(self._finals))
        self._next_index = int(state["next_index"])
        self._previous_ended = bool(state["previous_ended"])

    def _rng(self) -> np.random.Generator:
        if self.rng is None:
            # Seeded from NumPy's global state, so np.random.seed makes runs repeatable.
            self.rng = np.random.default_rng(np.random.randint(2**31))
        return self.rng

    def get_config(self) -> dict:
        return {
            "limit": self.limit,
            "window_length": self.window_length,
            "ignore_episode_boundaries": self.ignore_episode_boundaries,
        }
