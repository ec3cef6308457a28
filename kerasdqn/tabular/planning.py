"""Planning on a known model: value and policy iteration, and the exact values of a policy.

A finite MDP, given in gymnasium's toy-text format ``P[s][a] = [(prob, next_state, reward,
terminated), ...]`` (``env.unwrapped.P``) or estimated by a ``TransitionModel``, is turned into
dense NumPy arrays once (``dense_model``, a ``DenseModel``), so each sweep is one matrix
product. ``value_iteration`` and ``policy_iteration`` solve its Bellman optimality equation
(a ``PlanningResult``); ``policy_values`` and ``horizon_values`` give a fixed policy's values,
``q_values_of`` and ``greedy_policy`` the one-step lookahead and its best actions, and
``evaluate_policy`` plays a policy in an environment.

A transition that *terminates* the episode ends all future reward: it never bootstraps. A
transition cut off by a time limit (*truncated*) does: the state it reached still has a future.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gymnasium
import numpy as np

from kerasdqn._checks import check_float, check_int

if TYPE_CHECKING:
    from kerasdqn.tabular.model import TransitionModel

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
    # The estimate's module builds on this one, so it is imported when first needed.
    from kerasdqn.tabular.model import TransitionModel

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
