"""A model of an MDP estimated from experience: ``TransitionModel``, by counting.

The entry ``(s, a)`` holds ``{s1: c1, s2: c2, ...}``, from which ``P(s' | s, a)`` and the
rewards follow. The estimate reads as a toy-text ``P`` or a ``DenseModel``, so value iteration
on it (``kerasdqn.tabular.planning``) is model-based reinforcement learning from samples.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np

from kerasdqn._checks import check_int
from kerasdqn.memory import SequentialMemory
from kerasdqn.tabular.planning import DenseModel, _discrete_sizes


class TransitionModel:
    """A model of an MDP estimated from experience, by counting.

    Every transition ``(s, a, r, s', terminated)`` seen adds one to the count of ``(s, a, s',
    terminated)`` and ``r`` to its reward sum. The estimate of ``P(s', terminated | s, a)`` is
    the count over the visits of ``(s, a)``, and its reward the mean reward seen, so it tends
    to the true model as the counts grow (the sampling error of a probability ``p`` after ``n``
    visits is ``sqrt(p (1 - p) / n)``). A pair never tried is modelled as ending the episode
    with reward 0, as toy-text models write terminal states, so it adds no value either way.

    Feed it with ``add`` (one transition), ``add_batch`` (arrays), ``add_memory`` (a kerasdqn
    ``SequentialMemory``) or ``add_random_rollout``; read ``P`` (toy-text format) or give it to
    ``value_iteration`` / ``policy_iteration`` directly. The counts take ``nb_states^2 *
    nb_actions * 32`` bytes (0.5 MB for FrozenLake 8x8, 48 MB for Taxi).
    """

    def __init__(self, nb_states: int, nb_actions: int) -> None:
        self.nb_states = check_int("nb_states", nb_states, minimum=1)
        self.nb_actions = check_int("nb_actions", nb_actions, minimum=1)
        shape = (self.nb_states, self.nb_actions, self.nb_states, 2)  # last axis: terminated
        self._counts = np.zeros(shape, dtype=np.int64)
        self._reward_sums = np.zeros(shape)

    @classmethod
    def for_env(cls, env: gymnasium.Env) -> TransitionModel:
        """An empty model sized for ``env`` (Discrete observation and action spaces)."""
        return cls(*_discrete_sizes(env))

    # ----------------------------------------------------------------- adding experience

    def add(
        self, state: int, action: int, reward: float, next_state: int, terminated: bool
    ) -> None:
        """Count one transition: in ``state``, ``action`` gave ``reward`` and led to
        ``next_state``, terminating the episode if ``terminated`` (not for a time limit)."""
        self.add_batch([state], [action], [reward], [next_state], [terminated])

    def add_batch(self, states, actions, rewards, next_states, terminated) -> None:
        """Count many transitions at once (equal-length arrays, one entry per transition)."""
        columns = [np.asarray(column) for column in (states, actions, rewards, next_states)]
        flags = np.asarray(terminated)
        if len({column.shape for column in columns + [flags]}) != 1 or flags.ndim != 1:
            raise ValueError(
                "states, actions, rewards, next_states, terminated: expected 1-D arrays of one "
                f"length, got shapes {[column.shape for column in columns + [flags]]}"
            )
        states, actions, rewards, next_states = columns
        _check_indices("states", states, self.nb_states)
        _check_indices("actions", actions, self.nb_actions)
        _check_indices("next_states", next_states, self.nb_states)
        rewards = rewards.astype(np.float64)
        if not np.isfinite(rewards).all():
            raise ValueError("rewards: expected finite numbers")
        if flags.dtype != np.bool_:
            raise TypeError(f"terminated: expected booleans, got {flags.dtype}")
        index = (states, actions, next_states, flags.astype(np.int64))
        np.add.at(self._counts, index, 1)
        np.add.at(self._reward_sums, index, rewards)

    def add_memory(self, memory: SequentialMemory) -> None:
        """Count every complete transition a kerasdqn ``SequentialMemory`` holds (states are
        the newest frame of each window). Transitions cut off by a time limit count as not
        terminated, as the memory stores them."""
        if not isinstance(memory, SequentialMemory):
            raise TypeError(f"memory: expected a kerasdqn SequentialMemory, got {memory!r}")
        starts = memory.transition_positions()
        if not len(starts):
            return
        batch = memory.batch_at(starts)
        self.add_batch(
            _state_column(batch.state0, "memory"),
            batch.action,
            batch.reward,
            _state_column(batch.state1, "memory"),
            batch.terminal1.astype(np.bool_),
        )

    def add_random_rollout(
        self, env: gymnasium.Env, nb_steps: int, seed: int | None = None
    ) -> None:
        """Play ``nb_steps`` uniformly random actions in ``env`` (resetting whenever an episode
        ends) and count every transition. ``seed`` seeds the first reset and the actions."""
        nb_steps = check_int("nb_steps", nb_steps, minimum=1)
        if _discrete_sizes(env) != (self.nb_states, self.nb_actions):
            raise ValueError(
                f"env: its spaces have sizes {_discrete_sizes(env)}, the model "
                f"({self.nb_states}, {self.nb_actions})"
            )
        rng = np.random.default_rng(seed)
        actions = rng.integers(self.nb_actions, size=nb_steps)
        states, next_states = np.zeros((2, nb_steps), dtype=np.int64)
        rewards, flags = np.zeros(nb_steps), np.zeros(nb_steps, dtype=np.bool_)
        observation, _ = env.reset(seed=seed)
        for step, action in enumerate(actions.tolist()):
            states[step] = observation
            observation, rewards[step], flags[step], truncated, _ = env.step(action)
            next_states[step] = observation
            if flags[step] or truncated:
                observation, _ = env.reset()
        self.add_batch(states, actions, rewards, next_states, flags)

    # ----------------------------------------------------------------- reading

    @property
    def counts(self) -> np.ndarray:
        """How often each ``(s, a, s')`` was seen, shape ``(nb_states, nb_actions, nb_states)``."""
        return self._counts.sum(axis=3)

    @property
    def visits(self) -> np.ndarray:
        """How often each action was tried in each state, shape ``(nb_states, nb_actions)``."""
        return self._counts.sum(axis=(2, 3))

    @property
    def nb_transitions(self) -> int:
        """How many transitions were counted."""
        return int(self._counts.sum())

    def successor_counts(self, state: int, action: int) -> dict[int, int]:
        """``{next_state: count}`` for the pair ``(state, action)``: the table of counts."""
        state = _check_index("state", state, self.nb_states)
        action = _check_index("action", action, self.nb_actions)
        counts = self.counts[state, action]
        return {int(next_state): int(counts[next_state]) for next_state in np.flatnonzero(counts)}

    @property
    def P(self) -> dict[int, dict[int, list[tuple[float, int, float, bool]]]]:
        """The estimated model in gymnasium's toy-text format (like ``env.unwrapped.P``)."""
        visits = self.visits
        table: dict[int, dict[int, list[tuple[float, int, float, bool]]]] = {}
        for state in range(self.nb_states):
            table[state] = {}
            for action in range(self.nb_actions):
                table[state][action] = self._outcomes(state, action, int(visits[state, action]))
        return table

    def _outcomes(self, state: int, action: int, visits: int) -> list:
        if visits == 0:
            return [(1.0, state, 0.0, True)]
        counts, sums = self._counts[state, action], self._reward_sums[state, action]
        return [
            (counts[s, flag] / visits, int(s), sums[s, flag] / counts[s, flag], bool(flag))
            for s, flag in np.argwhere(counts > 0)
        ]

    def to_dense(self) -> DenseModel:
        """The estimate as a ``DenseModel`` (what ``dense_model(self.P)`` gives, faster)."""
        visits = self.visits
        seen = np.maximum(visits, 1)[:, :, np.newaxis]
        transitions = self._counts.sum(axis=3) / seen
        continuing = self._counts[..., 0] / seen
        rewards = self._reward_sums.sum(axis=(2, 3)) / seen[..., 0]
        unseen_states, unseen_actions = np.nonzero(visits == 0)
        transitions[unseen_states, unseen_actions, unseen_states] = 1.0
        return DenseModel(transitions, rewards, continuing)


def _check_index(name: str, value: Any, size: int) -> int:
    value = check_int(name, value, minimum=0)
    if value >= size:
        raise ValueError(f"{name}: expected an index below {size}, got {value}")
    return value


def _check_indices(name: str, values: np.ndarray, size: int) -> None:
    if values.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integer indices, got {values.dtype}")
    if values.size and (values.min() < 0 or values.max() >= size):
        raise ValueError(
            f"{name}: expected indices in [0, {size}), got {values.min()} .. {values.max()}"
        )


def _state_column(states: np.ndarray, name: str) -> np.ndarray:
    """The state index of each row of a batch of windows (the newest frame)."""
    column = states.reshape(len(states), -1)[:, -1]
    if column.dtype.kind == "f":
        if not np.all(column == np.round(column)):
            raise ValueError(f"{name}: observations must be state indices (integers)")
        column = column.astype(np.int64)
    return column
