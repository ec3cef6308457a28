"""Tabular Q-learning: ``QLearningAgent`` learns Q values from experience without a model.

It runs keras-rl's ``fit`` / ``test`` loop with the same policies and callbacks as
``DQNAgent``, and writes its Q table to weights files (``save_weights`` / ``load_weights``)
and its whole training state to checkpoints (``save_checkpoint`` / ``load_checkpoint``).
"""

from __future__ import annotations

import json
import operator
import os
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
from kerasdqn.policy import EpsGreedyQPolicy, GreedyQPolicy, Policy
from kerasdqn.weights import open_for_reading, write_array

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
            write_array(handle, "q_table", self.q_table)

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
            write_array(handle, "q_table", self.q_table)

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
