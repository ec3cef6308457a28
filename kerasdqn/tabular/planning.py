"""Tabular reinforcement learning: the ground DQN stands on, on the same environments.

DQN approximates the Q values of tabular Q-learning with a network. Where states are few and
countable (gymnasium's toy-text environments: FrozenLake, Taxi, CliffWalking), everything can be
done exactly or by counting, and compared with DQN:

- ``value_iteration`` and ``policy_iteration`` solve the Bellman optimality equation of a known
  model, given in gymnasium's toy-text format ``P[s][a] = [(prob, next_state, reward,
  terminated), ...]`` (``env.unwrapped.P``). The model is turned into dense NumPy arrays once
  (``dense_model``), so each sweep is one matrix product.
- ``TransitionModel`` estimates such a model from experience by counting: the entry ``(s, a)``
  holds ``{s1: c1, s2: c2, ...}``, from which ``P(s' | s, a)`` and the rewards follow. Value
  iteration on the estimate is model-based reinforcement learning from samples.
- ``QLearningAgent`` learns Q values from experience without a model, with keras-rl's
  ``fit`` / ``test`` loop, the same policies and callbacks as ``DQNAgent``, and checkpoints.

A transition that *terminates* the episode ends all future reward: it never bootstraps. A
transition cut off by a time limit (*truncated*) does: the state it reached still has a future.
"""

from __future__ import annotations

import json
import operator
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium
import h5py
import numpy as np

from kerasdqn._checks import check_bool, check_float, check_int
from kerasdqn._files import atomic_path, check_path, check_writable
from kerasdqn.checkpoint import (
    checked_policy,
    checked_rng_state,
    checkpoint_path,
    copy_policy_fields,
    json_attribute,
    policy_state,
    read_counter,
)
from kerasdqn.core import Agent, Processor
from kerasdqn.memory import SequentialMemory
from kerasdqn.policy import EpsGreedyQPolicy, GreedyQPolicy, Policy
from kerasdqn.weights import open_for_reading

_PROBABILITY_TOLERANCE = 1e-6
_TIE_TOLERANCE = 1e-6

# --------------------------------------------------------------------------- models


@dataclass(frozen=True, eq=False)
class DenseModel:
    """A finite MDP as dense arrays, the form the planning functions compute with.

    Attributes:
        transitions: ``P(s' | s, a)``, shape ``(nb_states, nb_actions, nb_states)``.
        rewards: the expected reward of taking ``a`` in ``s``, shape ``(nb_states,
            nb_actions)``.
        continuing: the probability of moving to ``s'`` *without terminating*, shape like
            ``transitions``. It is the not-terminated mask folded into the probabilities:
            equal to ``transitions`` where no transition terminates, zero where all do. Only
            this part bootstraps: ``Q = rewards + gamma * continuing @ V``.

    The arrays are float64 copies and read-only, so a model never changes once built.
    """

    transitions: np.ndarray
    rewards: np.ndarray
    continuing: np.ndarray

    def __post_init__(self) -> None:
        for name in ("transitions", "rewards", "continuing"):
            array = np.array(getattr(self, name), dtype=np.float64)
            if not np.isfinite(array).all():
                raise ValueError(f"model: {name} holds NaN or infinite values")
            array.setflags(write=False)
            object.__setattr__(self, name, array)
        _check_dense_shapes(self.transitions, self.rewards, self.continuing)
        _check_probabilities(self.transitions, self.continuing)

    @property
    def nb_states(self) -> int:
        return self.transitions.shape[0]

    @property
    def nb_actions(self) -> int:
        return self.transitions.shape[1]


def _check_dense_shapes(transitions, rewards, continuing) -> None:
    if transitions.ndim != 3 or transitions.shape[0] != transitions.shape[2]:
        raise ValueError(
            "model: transitions must have shape (nb_states, nb_actions, nb_states), "
            f"got {transitions.shape}"
        )
    if transitions.shape[0] == 0 or transitions.shape[1] == 0:
        raise ValueError("model: expected at least one state and one action")
    if rewards.shape != transitions.shape[:2]:
        raise ValueError(
            f"model: rewards must have shape {transitions.shape[:2]}, got {rewards.shape}"
        )
    if continuing.shape != transitions.shape:
        raise ValueError(
            f"model: continuing must have shape {transitions.shape}, got {continuing.shape}"
        )


def _check_probabilities(transitions, continuing) -> None:
    if (transitions < 0).any() or (continuing < 0).any():
        raise ValueError("model: probabilities must not be negative")
    if (continuing > transitions + _PROBABILITY_TOLERANCE).any():
        raise ValueError("model: continuing must not exceed transitions")
    sums = transitions.sum(axis=2)
    bad = np.argwhere(np.abs(sums - 1.0) > _PROBABILITY_TOLERANCE)
    if len(bad):
        state, action = bad[0]
        raise ValueError(
            f"model: the probabilities of P[{state}][{action}] sum to "
            f"{sums[state, action]:.9g}, not 1"
        )


ToyTextModel = Mapping | Sequence
"""gymnasium's toy-text format: ``P[s][a] = [(prob, next_state, reward, terminated), ...]``."""


def dense_model(model: ToyTextModel | DenseModel | TransitionModel) -> DenseModel:
    """``model`` as a ``DenseModel``: toy-text ``P`` (a dict or list over states, each a dict or
    list over actions), an estimate (``TransitionModel``), or a ``DenseModel`` already."""
    if isinstance(model, DenseModel):
        return model
    if isinstance(model, TransitionModel):
        return model.to_dense()
    rows = _indexed("model", model)
    nb_states = len(rows)
    action_rows = [_indexed(f"model[{state}]", row) for state, row in enumerate(rows)]
    nb_actions = len(action_rows[0])
    transitions = np.zeros((nb_states, nb_actions, nb_states))
    continuing = np.zeros_like(transitions)
    rewards = np.zeros((nb_states, nb_actions))
    for state, actions in enumerate(action_rows):
        if len(actions) != nb_actions:
            raise ValueError(
                f"model: state {state} has {len(actions)} actions, state 0 has {nb_actions}"
            )
        for action, outcomes in enumerate(actions):
            for outcome in _outcomes(state, action, outcomes, nb_states):
                probability, next_state, reward, terminated = outcome
                transitions[state, action, next_state] += probability
                rewards[state, action] += probability * reward
                if not terminated:
                    continuing[state, action, next_state] += probability
    return DenseModel(transitions, rewards, continuing)


def _indexed(name: str, table: Any) -> list:
    """The values of a dict keyed 0..n-1 or of a list, in order; at least one."""
    if isinstance(table, Mapping):
        if sorted(table) != list(range(len(table))):
            raise ValueError(f"{name}: expected keys 0, 1, ..., n-1, got {sorted(table)!r}")
        values = [table[index] for index in range(len(table))]
    elif isinstance(table, Sequence) and not isinstance(table, str):
        values = list(table)
    else:
        raise TypeError(
            f"{name}: expected a toy-text model P[s][a] = [(prob, next_state, reward, "
            f"terminated), ...] (a dict or list), a DenseModel or a TransitionModel, got {table!r}"
        )
    if not values:
        raise ValueError(f"{name}: expected at least one entry")
    return values


def _outcomes(state: int, action: int, outcomes: Any, nb_states: int) -> list[tuple]:
    """The checked entries of ``P[state][action]``."""
    where = f"model[{state}][{action}]"
    if not isinstance(outcomes, Sequence) or not outcomes:
        raise ValueError(f"{where}: expected a non-empty list of (prob, next_state, ...) tuples")
    checked = []
    for outcome in outcomes:
        if not isinstance(outcome, Sequence) or len(outcome) != 4:
            raise ValueError(
                f"{where}: expected (prob, next_state, reward, terminated), got {outcome!r}"
            )
        probability = check_float(f"{where} probability", outcome[0], 0.0, 1.0)
        next_state = check_int(f"{where} next_state", outcome[1], minimum=0)
        if next_state >= nb_states:
            raise ValueError(f"{where}: next_state {next_state} is not below {nb_states}")
        reward = check_float(f"{where} reward", outcome[2])
        checked.append((probability, next_state, reward, bool(outcome[3])))
    return checked


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True, eq=False)
class PlanningResult:
    """What value or policy iteration found (read-only arrays).

    Attributes:
        values: ``V(s)``, shape ``(nb_states,)``.
        q_values: ``Q(s, a) = R(s, a) + gamma * sum_s' continuing(s, a, s') V(s')``.
        policy: an action per state: value iteration's is ``greedy_policy(q_values)``;
            policy iteration's is the policy whose values ``values`` are.
        sweeps: value iteration: Bellman sweeps over all states; policy iteration: rounds of
            evaluating the policy and improving it.
        converged: whether the stopping rule was met within ``max_iterations``.
    """

    values: np.ndarray
    q_values: np.ndarray
    policy: np.ndarray
    sweeps: int
    converged: bool

    def __post_init__(self) -> None:
        for name in ("values", "q_values", "policy"):
            array = np.array(getattr(self, name))
            array.setflags(write=False)
            object.__setattr__(self, name, array)


def q_values_of(
    model: ToyTextModel | DenseModel | TransitionModel, values, gamma: float
) -> np.ndarray:
    """One-step lookahead: ``Q(s, a) = R(s, a) + gamma * sum_s' continuing(s, a, s') V(s')``."""
    dense = dense_model(model)
    gamma = check_float("gamma", gamma, 0.0, 1.0)
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (dense.nb_states,):
        raise ValueError(f"values: expected shape ({dense.nb_states},), got {values.shape}")
    return dense.rewards + gamma * (dense.continuing @ values)


def greedy_policy(q_values, tolerance: float = _TIE_TOLERANCE) -> np.ndarray:
    """The best action of each state: the lowest-numbered one among those within
    ``tolerance * max(1, max |Q|)`` of the best.

    The tolerance makes tied actions (equal in exact arithmetic, a rounding error apart after
    iterating) count as ties, so the policy does not depend on the rounding, and value and
    policy iteration return the same policy (for ``gamma < 1``).
    """
    q_values = np.asarray(q_values, dtype=np.float64)
    if q_values.ndim != 2 or 0 in q_values.shape:
        raise ValueError(f"q_values: expected shape (nb_states, nb_actions), got {q_values.shape}")
    tolerance = _tie_tolerance(q_values, check_float("tolerance", tolerance, 0.0))
    best = q_values.max(axis=1, keepdims=True)
    return np.argmax(q_values >= best - tolerance, axis=1)


def value_iteration(
    model: ToyTextModel | DenseModel | TransitionModel,
    gamma: float,
    theta: float = 1e-10,
    max_iterations: int = 100_000,
) -> PlanningResult:
    """Solve the Bellman optimality equation by sweeps ``V <- max_a (R + gamma * C @ V)``,
    ``C`` being the model's ``continuing`` probabilities (terminal transitions drop out).

    Starting from ``V = 0``, sweep ``n`` gives the best expected discounted return of ``n``
    steps. It stops once no state's value changed by ``theta`` or more in a sweep; for
    ``gamma < 1`` the values are then within ``gamma * theta / (1 - gamma)`` of the optimum.
    With ``gamma = 1`` it converges where every policy worth following ends (FrozenLake); where
    reward can be collected forever it cannot, and after ``max_iterations`` sweeps it warns
    (``RuntimeWarning``) and returns ``converged=False``.

    The policy is ``greedy_policy`` of the Q values. With ``gamma = 1`` beware: an action that
    makes no progress but risks nothing ties with one that reaches the goal (on FrozenLake 8x8
    ``V = 1`` almost everywhere, and the greedy policy walks into a wall forever), so use
    ``gamma < 1`` or ``policy_iteration``, whose policy is the one its values belong to.
    """
    dense = dense_model(model)
    gamma = check_float("gamma", gamma, 0.0, 1.0)
    theta = check_float("theta", theta, 0.0, low_open=True)
    max_iterations = check_int("max_iterations", max_iterations, minimum=1)
    values = np.zeros(dense.nb_states)
    sweeps, change = 0, np.inf
    while sweeps < max_iterations and change >= theta:
        new_values = (dense.rewards + gamma * (dense.continuing @ values)).max(axis=1)
        change = float(np.max(np.abs(new_values - values)))
        values = new_values
        sweeps += 1
    converged = change < theta
    if not converged:
        warnings.warn(
            f"value_iteration: no convergence within max_iterations={max_iterations} sweeps "
            f"(the last sweep changed a value by {change:.3g}, theta is {theta:.3g})",
            RuntimeWarning,
            stacklevel=2,
        )
    q_values = q_values_of(dense, values, gamma)
    return PlanningResult(values, q_values, greedy_policy(q_values), sweeps, converged)


def policy_iteration(
    model: ToyTextModel | DenseModel | TransitionModel,
    gamma: float,
    max_iterations: int = 1_000,
) -> PlanningResult:
    """Alternate exact policy evaluation (``policy_values``) and greedy improvement, from the
    policy that takes action 0 everywhere, until the policy stops changing.

    An action is replaced only by one better by more than ``greedy_policy``'s tolerance, so
    ties never make it cycle. The result's ``values`` are exactly those of its ``policy`` (the
    last one evaluated). Where ``gamma < 1`` that policy is the one ``value_iteration`` returns;
    with ``gamma = 1`` it can be better (see ``value_iteration``).
    """
    dense = dense_model(model)
    gamma = check_float("gamma", gamma, 0.0, 1.0)
    max_iterations = check_int("max_iterations", max_iterations, minimum=1)
    policy = np.zeros(dense.nb_states, dtype=np.int64)
    states = np.arange(dense.nb_states)
    rounds, converged = 0, False
    while rounds < max_iterations and not converged:
        values = policy_values(dense, policy, gamma)
        q_values = q_values_of(dense, values, gamma)
        greedy = greedy_policy(q_values)
        better = q_values[states, greedy] > q_values[states, policy] + _tie_tolerance(q_values)
        converged = not better.any()
        policy = np.where(better, greedy, policy)
        rounds += 1
    if not converged:
        warnings.warn(
            f"policy_iteration: the policy still changed after max_iterations={max_iterations}",
            RuntimeWarning,
            stacklevel=2,
        )
    return PlanningResult(values, q_values, policy, rounds, converged)


def _tie_tolerance(q_values: np.ndarray, relative: float = _TIE_TOLERANCE) -> float:
    """How far apart two Q values may be and still count as tied."""
    return relative * max(1.0, float(np.abs(q_values).max()))


def policy_values(
    model: ToyTextModel | DenseModel | TransitionModel, policy, gamma: float
) -> np.ndarray:
    """``V`` of a deterministic ``policy`` (one action per state), exactly: the solution of
    ``V = R_pi + gamma * C_pi V``.

    With ``gamma = 1`` the system is singular where the policy can loop forever without
    terminating; such states collect no reward (else their value would be infinite, and this
    raises ``ValueError``) and get value 0, and the others are solved around them.
    """
    dense = dense_model(model)
    gamma = check_float("gamma", gamma, 0.0, 1.0)
    policy = check_policy_array(policy, dense.nb_states, dense.nb_actions)
    states = np.arange(dense.nb_states)
    continuing = dense.continuing[states, policy]
    rewards = dense.rewards[states, policy]
    if gamma < 1.0:
        return np.linalg.solve(np.eye(dense.nb_states) - gamma * continuing, rewards)
    ends = _can_terminate(continuing)
    if np.any(rewards[~ends] != 0.0):
        looping = np.flatnonzero(~ends & (rewards != 0.0))
        raise ValueError(
            f"policy: from states {looping[:10].tolist()} it never terminates yet collects "
            "reward, so with gamma=1 their value is infinite; use gamma < 1"
        )
    values = np.zeros(dense.nb_states)
    inner = continuing[np.ix_(ends, ends)]
    values[ends] = np.linalg.solve(np.eye(len(inner)) - inner, rewards[ends])
    return values


def horizon_values(
    model: ToyTextModel | DenseModel | TransitionModel, policy, horizon: int, gamma: float = 1.0
) -> np.ndarray:
    """What ``policy`` expects to collect from each state within ``horizon`` steps, as under a
    time limit of that many steps (discounted by ``gamma``). On FrozenLake, with ``gamma = 1``
    and the start state's entry, this is the exact chance of reaching the goal in time."""
    dense = dense_model(model)
    policy = check_policy_array(policy, dense.nb_states, dense.nb_actions)
    horizon = check_int("horizon", horizon, minimum=0)
    gamma = check_float("gamma", gamma, 0.0, 1.0)
    states = np.arange(dense.nb_states)
    continuing = dense.continuing[states, policy]
    rewards = dense.rewards[states, policy]
    values = np.zeros(dense.nb_states)
    for _ in range(horizon):
        values = rewards + gamma * (continuing @ values)
    return values


def _can_terminate(continuing: np.ndarray) -> np.ndarray:
    """Which states reach a terminating transition with positive probability (by the chain
    whose continuing probabilities are ``continuing``, shape ``(S, S)``)."""
    reached = 1.0 - continuing.sum(axis=1) > 1e-12
    while True:
        grown = reached | (continuing[:, reached].sum(axis=1) > 0.0)
        if (grown == reached).all():
            return reached
        reached = grown


def check_policy_array(policy, nb_states: int, nb_actions: int) -> np.ndarray:
    """``policy`` as an int64 array of one valid action per state."""
    array = np.asarray(policy)
    if array.shape != (nb_states,) or array.dtype.kind not in "iu":
        raise ValueError(
            f"policy: expected {nb_states} integer actions (one per state), got "
            f"shape {array.shape} of {array.dtype}"
        )
    if array.size and (array.min() < 0 or array.max() >= nb_actions):
        raise ValueError(f"policy: actions must lie in [0, {nb_actions}), got {array.tolist()}")
    return array.astype(np.int64)


def evaluate_policy(
    env: gymnasium.Env, policy, nb_episodes: int, seed: int | None = None
) -> np.ndarray:
    """The undiscounted return of each of ``nb_episodes`` episodes of ``env`` played with
    ``policy`` (an action per state). ``seed`` seeds the first reset; the environment's own
    random generator then carries on. On FrozenLake the mean return is the success rate."""
    nb_episodes = check_int("nb_episodes", nb_episodes, minimum=1)
    nb_states, nb_actions = _discrete_sizes(env)
    policy = check_policy_array(policy, nb_states, nb_actions).tolist()
    returns = np.zeros(nb_episodes)
    observation, _ = env.reset(seed=seed)
    for episode in range(nb_episodes):
        if episode:
            observation, _ = env.reset()
        done = False
        while not done:
            observation, reward, terminated, truncated, _ = env.step(policy[int(observation)])
            returns[episode] += reward
            done = terminated or truncated
    return returns


def _discrete_sizes(env) -> tuple[int, int]:
    """``(nb_states, nb_actions)`` of an environment with Discrete spaces counted from 0."""
    if not callable(getattr(env, "step", None)) or not callable(getattr(env, "reset", None)):
        raise TypeError(f"env: expected a gymnasium environment, got {env!r}")
    sizes = []
    for name in ("observation_space", "action_space"):
        space = getattr(env, name, None)
        if not isinstance(space, gymnasium.spaces.Discrete) or int(space.start) != 0:
            raise ValueError(
                f"env: tabular methods need a Discrete {name} counted from 0, got {space!r}"
            )
        sizes.append(int(space.n))
    return sizes[0], sizes[1]


# --------------------------------------------------------------------------- learned models


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


# --------------------------------------------------------------------------- Q-learning

_WEIGHTS_FORMAT = "kerasdqn-q-table"
_CHECKPOINT_FORMAT = "kerasdqn-qlearning-checkpoint"
_CHECKPOINT_VERSION = 1


class QLearningAgent(Agent):
    """Tabular Q-learning (Watkins, 1989) with keras-rl's ``fit`` / ``test`` loop.

    After each transition ``(s, a, r, s')`` taken while training,

        Q[s, a] += alpha * (r + gamma * (1 - terminated) * max_a' Q[s', a'] - Q[s, a])

    A transition cut off by a time limit (truncated) bootstraps from ``s'``, as in
    ``DQNAgent``; only termination stops it. The next state is known only when the next
    observation arrives (``forward`` or ``finish_episode``), so a non-terminal update waits
    until then; a step's metrics are those of the last update made during it.

    Args:
        nb_states: number of states; observations are state indices ``0 .. nb_states - 1``
            (a ``processor`` may map other observations to them).
        nb_actions: number of discrete actions.
        alpha: learning rate, in (0, 1].
        gamma: discount factor in [0, 1].
        policy: exploration while training (default ``EpsGreedyQPolicy(eps=0.1)``); any
            kerasdqn policy works, e.g. ``BoltzmannQPolicy`` for softmax exploration or a
            ``LinearAnnealedPolicy`` schedule, which follows the agent's ``step``.
        test_policy: policy while testing (default ``GreedyQPolicy()``).
        nb_steps_warmup: steps acting with ``policy`` before learning starts.
        initial_q: the value every ``Q[s, a]`` starts at (above the returns: optimism, which
            explores).
        seed: seeds exploration (see ``Agent``).
        processor: optional ``Processor`` hooks.

    Attributes:
        q_table: the Q values, a float64 array of shape ``(nb_states, nb_actions)``.
    """

    def __init__(
        self,
        nb_states: int,
        nb_actions: int,
        *,
        alpha: float = 0.1,
        gamma: float = 0.99,
        policy: Policy | None = None,
        test_policy: Policy | None = None,
        nb_steps_warmup: int = 0,
        initial_q: float = 0.0,
        seed: int | None = None,
        processor: Processor | None = None,
    ) -> None:
        super().__init__(processor=processor, seed=seed)
        self.nb_states = check_int("nb_states", nb_states, minimum=1)
        self.nb_actions = check_int("nb_actions", nb_actions, minimum=1)
        self.alpha = check_float("alpha", alpha, 0.0, 1.0, low_open=True)
        self.gamma = check_float("gamma", gamma, 0.0, 1.0)
        self.nb_steps_warmup = check_int("nb_steps_warmup", nb_steps_warmup, minimum=0)
        self.initial_q = check_float("initial_q", initial_q)
        self.q_table = np.full((self.nb_states, self.nb_actions), self.initial_q)
        self.policy = EpsGreedyQPolicy() if policy is None else policy
        self.test_policy = GreedyQPolicy() if test_policy is None else test_policy
        self.compiled = True
        self.reset_states()

    # ----------------------------------------------------------------- policies

    @property
    def policy(self) -> Policy:
        return self._policy

    @policy.setter
    def policy(self, policy: Policy) -> None:
        self._policy = _check_policy("policy", policy)
        policy.attach(self)

    @property
    def test_policy(self) -> Policy:
        return self._test_policy

    @test_policy.setter
    def test_policy(self, policy: Policy) -> None:
        self._test_policy = _check_policy("test_policy", policy)
        policy.attach(self)

    def compile(self, optimizer: Any = None, metrics: list | None = None) -> None:
        """Nothing to compile: a Q table needs no optimizer. Kept so code written for
        ``DQNAgent`` (``agent.compile(...)`` before ``fit``) runs unchanged; the arguments
        are ignored."""

    @property
    def metrics_names(self) -> list[str]:
        """``td_error`` (``|target - Q(s, a)|`` before the update), ``mean_q`` (``max_a Q`` of
        the updated state after it), then the policy's and the processor's metrics."""
        names = ["td_error", "mean_q"] + list(self.policy.metrics_names)
        if self.processor is not None:
            names += list(self.processor.metrics_names)
        return names

    @property
    def model(self):
        """There is none: reading it raises an ``AttributeError`` that says so, rather than a
        bare missing-attribute error, to code written for ``DQNAgent``'s network."""
        raise AttributeError(
            "QLearningAgent has a Q table (agent.q_table), not a Keras model: there are no "
            "network weights, e.g. for TensorBoard histograms (use histogram_freq=0)"
        )

    # ----------------------------------------------------------------- acting and learning

    def forward(self, observation) -> int:
        """Complete the update waiting for this state, then pick an action with ``policy``
        (``test_policy`` outside ``fit``) from the state's row of Q values."""
        state = self._state_index(observation, "observation")
        if self._pending is not None:
            self._step_metrics = self._complete_pending(state)
        policy = self.policy if self.training else self.test_policy
        action = policy.select_action(q_values=self.q_table[state].copy())
        self.recent_state, self.recent_action = state, action
        return action

    def backward(self, reward: float, terminal: bool, truncated: bool = False) -> np.ndarray:
        """Learn from the last action's outcome: at once if it terminated, else when the next
        state arrives. Returns the step's metrics (NaN where nothing was learned)."""
        metrics, self._step_metrics = self._step_metrics, None
        learning = (
            self.training and self.recent_state is not None and self.step >= self.nb_steps_warmup
        )
        if learning and terminal:
            metrics = self._update(self.recent_state, self.recent_action, reward, 0.0)
        elif learning:
            self._pending = (self.recent_state, self.recent_action, float(reward))
        self.recent_state = self.recent_action = None
        if metrics is None:
            return np.full(len(self.metrics_names), np.nan)
        return metrics

    def finish_episode(self, observation) -> None:
        """The episode's last observation: complete the waiting update, bootstrapping from
        it (the episode was truncated, or cut at the end of ``fit``)."""
        if self._pending is not None:
            self._complete_pending(self._state_index(observation, "observation"))
        self.recent_state = self.recent_action = None

    def reset_states(self) -> None:
        """Forget the episode in progress, including an update still waiting for its next
        state."""
        self.recent_state: int | None = None
        self.recent_action: int | None = None
        self._pending: tuple[int, int, float] | None = None
        self._step_metrics: np.ndarray | None = None

    def _complete_pending(self, next_state: int) -> np.ndarray:
        state, action, reward = self._pending
        self._pending = None
        return self._update(state, action, reward, float(self.q_table[next_state].max()))

    def _update(self, state: int, action: int, reward: float, next_value: float) -> np.ndarray:
        """One Q-learning step towards ``reward + gamma * next_value``; its metrics."""
        error = reward + self.gamma * next_value - self.q_table[state, action]
        self.q_table[state, action] += self.alpha * error
        extra = list(self.policy.metrics)
        if self.processor is not None:
            extra += list(self.processor.metrics)
        return np.array([abs(error), self.q_table[state].max()] + extra, dtype=np.float64)

    def _state_index(self, observation, name: str) -> int:
        try:
            state = operator.index(observation)
        except TypeError:
            raise TypeError(
                f"{name}: expected a state index (an integer), got {observation!r}; map other "
                "observations to state indices with a Processor"
            ) from None
        if not 0 <= state < self.nb_states:
            raise ValueError(f"{name}: state {state} is not in [0, {self.nb_states})")
        return state

    def check_env(self, env) -> None:
        if not callable(getattr(env, "step", None)) or not callable(getattr(env, "reset", None)):
            raise TypeError(f"env: expected a gymnasium environment, got {env!r}")
        spaces = [("action_space", self.nb_actions, "nb_actions")]
        if self.processor is None:
            spaces.append(("observation_space", self.nb_states, "nb_states"))
        for attribute, size, argument in spaces:
            space = getattr(env, attribute, None)
            if not isinstance(space, gymnasium.spaces.Discrete) or int(space.start) != 0:
                raise ValueError(
                    f"env: tabular Q-learning needs a Discrete {attribute} counted from 0, "
                    f"got {space!r}"
                )
            if int(space.n) != size:
                raise ValueError(
                    f"env: its {attribute} has {int(space.n)} elements but the agent was built "
                    f"with {argument}={size}"
                )

    def get_config(self) -> dict:
        return {
            "nb_states": self.nb_states,
            "nb_actions": self.nb_actions,
            "alpha": self.alpha,
            "gamma": self.gamma,
            "nb_steps_warmup": self.nb_steps_warmup,
            "initial_q": self.initial_q,
        }

    # ----------------------------------------------------------------- weights

    def save_weights(self, filepath: str | os.PathLike, overwrite: bool = False) -> None:
        """Write the Q table to an HDF5 file, atomically; an existing file is replaced only
        with ``overwrite=True``."""
        filepath = check_writable(filepath, check_bool("overwrite", overwrite))
        _check_finite_table(self.q_table, filepath)
        with atomic_path(filepath) as temporary, h5py.File(temporary, "w") as handle:
            handle.attrs["format"] = _WEIGHTS_FORMAT
            handle["q_table"] = self.q_table

    def load_weights(self, filepath: str | os.PathLike) -> None:
        """Load a Q table written by ``save_weights`` for the same numbers of states and
        actions. The file is checked first: on any problem the agent is left unchanged."""
        filepath = check_path("filepath", filepath)
        with open_for_reading(filepath, "Q table") as handle:
            if handle.attrs.get("format") != _WEIGHTS_FORMAT:
                raise ValueError(f"{filepath!r} is not a kerasdqn Q table file")
            table = self._read_table(handle, filepath)
        self.q_table[...] = table

    def _read_table(self, handle: h5py.File, source: str) -> np.ndarray:
        """The checked Q table of an open weights or checkpoint file."""
        dataset = handle.get("q_table")
        if not isinstance(dataset, h5py.Dataset):
            raise ValueError(f"{source!r} holds no Q table")
        expected = (self.nb_states, self.nb_actions)
        if dataset.shape != expected:
            raise ValueError(
                f"{source!r}: the Q table has shape {dataset.shape}, but this agent's is "
                f"{expected} (nb_states, nb_actions)"
            )
        if dataset.dtype.kind != "f":
            raise ValueError(f"{source!r}: the Q table holds {dataset.dtype}, not floats")
        table = np.asarray(dataset, dtype=np.float64)
        if not np.isfinite(table).all():
            raise ValueError(f"{source!r}: the Q table holds NaN or infinite values")
        return table

    # ----------------------------------------------------------------- checkpoints

    def save_checkpoint(self, filepath: str | os.PathLike, pending_observation=None) -> None:
        """Write everything training depends on to one HDF5 file, atomically: the Q table,
        the step and episode counters, the policies' state and the random generator's.

        ``filepath`` may be a directory (then ``<directory>/checkpoint.h5``).
        ``pending_observation``: the current observation of an unfinished episode. The update
        waiting for it is stored, and loading completes it, ending that episode there as a
        truncation would. Without it, an unfinished episode's waiting update is not saved.
        """
        filepath = checkpoint_path(filepath)
        _check_finite_table(self.q_table, filepath)
        pending = None
        if pending_observation is not None and self._pending is not None:
            next_state = self._state_index(pending_observation, "pending_observation")
            pending = [*self._pending, next_state]
        with atomic_path(filepath) as temporary, h5py.File(temporary, "w") as handle:
            handle.attrs["format"] = _CHECKPOINT_FORMAT
            handle.attrs["version"] = _CHECKPOINT_VERSION
            handle.attrs["step"] = self.step
            handle.attrs["episode"] = self.episode
            handle.attrs["config"] = json.dumps(self.get_config())
            handle.attrs["rng_state"] = json.dumps(self.rng.bit_generator.state)
            handle.attrs["policy_state"] = json.dumps(policy_state(self.policy))
            handle.attrs["test_policy_state"] = json.dumps(policy_state(self.test_policy))
            handle.attrs["pending"] = json.dumps(pending)
            handle["q_table"] = self.q_table

    def load_checkpoint(self, filepath: str | os.PathLike) -> None:
        """Restore a checkpoint written by ``save_checkpoint`` into this agent, built with
        the same numbers of states and actions and the same kinds of policies; ``fit`` then
        continues every counter and schedule. Everything is read and checked first: on any
        problem this raises ``ValueError`` naming the file and changes nothing."""
        filepath = checkpoint_path(filepath)
        with open_for_reading(filepath, "checkpoint") as handle:
            if handle.attrs.get("format") != _CHECKPOINT_FORMAT:
                raise ValueError(f"{filepath!r} is not a kerasdqn Q-learning checkpoint")
            try:
                state = self._read_checkpoint(handle, filepath)
            except (KeyError, TypeError, json.JSONDecodeError) as error:
                raise ValueError(f"{filepath!r} is damaged or incomplete ({error})") from None
        self._apply_checkpoint(state)

    def _read_checkpoint(self, handle: h5py.File, source: str) -> dict[str, Any]:
        if int(handle.attrs["version"]) > _CHECKPOINT_VERSION:
            raise ValueError(f"{source!r} was written by a newer kerasdqn; upgrade to read it")
        config = json.loads(handle.attrs["config"])
        for key in ("nb_states", "nb_actions"):
            if config.get(key) != getattr(self, key):
                raise ValueError(
                    f"{source!r} was written by an agent with {key}={config.get(key)}, "
                    f"this one has {key}={getattr(self, key)}"
                )
        state = {
            "q_table": self._read_table(handle, source),
            "step": read_counter(handle, "step", source),
            "episode": read_counter(handle, "episode", source),
            "rng_state": checked_rng_state(
                self.rng, json_attribute(handle, "rng_state", source), source
            ),
            "policy": checked_policy(
                self.policy,
                json_attribute(handle, "policy_state", source),
                f"{source!r}: policy_state",
            ),
            "test_policy": checked_policy(
                self.test_policy,
                json_attribute(handle, "test_policy_state", source),
                f"{source!r}: test_policy_state",
            ),
            "pending": json_attribute(handle, "pending", source),
        }
        if state["pending"] is not None:
            self._check_pending(state["pending"], source)
        return state

    def _check_pending(self, pending: Any, source: str) -> None:
        if not isinstance(pending, list) or len(pending) != 4:
            raise ValueError(f"{source!r}: damaged pending update {pending!r}")
        state, action, reward, next_state = pending
        for value, size in ((state, self.nb_states), (action, self.nb_actions)):
            if not isinstance(value, int) or not 0 <= value < size:
                raise ValueError(f"{source!r}: damaged pending update {pending!r}")
        if not isinstance(next_state, int) or not 0 <= next_state < self.nb_states:
            raise ValueError(f"{source!r}: damaged pending update {pending!r}")
        if not isinstance(reward, int | float) or not np.isfinite(reward):
            raise ValueError(f"{source!r}: damaged pending update {pending!r}")

    def _apply_checkpoint(self, state: dict[str, Any]) -> None:
        self.q_table[...] = state["q_table"]
        self.step = state["step"]
        self.episode = state["episode"]
        self.rng.bit_generator.state = state["rng_state"]
        copy_policy_fields(self.policy, state["policy"])
        copy_policy_fields(self.test_policy, state["test_policy"])
        self.reset_states()
        if state["pending"] is not None:
            from_state, action, reward, next_state = state["pending"]
            self._pending = (from_state, action, float(reward))
            self._complete_pending(next_state)


def _check_policy(name: str, policy: Any) -> Policy:
    if not isinstance(policy, Policy):
        raise TypeError(f"{name}: expected a kerasdqn.policy.Policy, got {policy!r}")
    return policy


def _check_finite_table(table: np.ndarray, filepath: str) -> None:
    if not np.isfinite(table).all():
        raise FloatingPointError(
            f"the Q table holds NaN or infinite values; not writing {filepath!r}, so any "
            "earlier file there stays intact"
        )
