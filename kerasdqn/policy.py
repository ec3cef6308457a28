"""Action-selection policies: given the Q values of one state, pick an action.

``select_actions(q_values_batch)`` picks one action per row of a batch (one state per
environment of a vector environment) with one draw of random numbers for the whole batch where
the policy allows it; ``select_action`` on a single state keeps its own draws, so seeded
single-environment runs are unchanged.

The names, arguments and behaviour follow keras-rl. Randomness comes from the agent's
``numpy.random.Generator`` once the policy is attached to an agent (so an agent's ``seed`` makes
runs repeatable); a policy used on its own seeds its generator from NumPy's global state. Each
policy says what exploration rate it uses now (``epsilon``), so loggers need not guess.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kerasdqn._checks import check_float, check_int


class Policy:
    """Base class: subclasses implement ``select_action(q_values)``."""

    agent: Any = None
    _rng: np.random.Generator | None = None

    def attach(self, agent: Any) -> None:
        """Act for ``agent``: draw from its random generator, read its step counter."""
        self.agent = agent
        self.rng = agent.rng

    @property
    def rng(self) -> np.random.Generator:
        """The random generator: the agent's once attached to one."""
        if self._rng is None:
            self._rng = np.random.default_rng(np.random.randint(2**31))
        return self._rng

    @rng.setter
    def rng(self, generator: np.random.Generator) -> None:
        self._rng = generator

    @property
    def epsilon(self) -> float | None:
        """The probability of a random action now, for policies that have one."""
        return None

    @property
    def metrics_names(self) -> list[str]:
        return []

    @property
    def metrics(self) -> list[float]:
        return []

    def select_action(self, q_values: np.ndarray) -> int:
        raise NotImplementedError

    def select_actions(self, q_values_batch: np.ndarray) -> np.ndarray:
        """One action per row of ``q_values_batch`` (``(batch, nb_actions)``), as int64.

        This default asks ``select_action`` row by row; kerasdqn's policies override it with
        one vectorized draw."""
        q_values_batch = _check_q_values_batch(q_values_batch)
        return np.array([self.select_action(row) for row in q_values_batch], dtype=np.int64)

    def get_config(self) -> dict:
        return {}


def _check_q_values(q_values: np.ndarray) -> np.ndarray:
    q_values = np.asarray(q_values)
    if q_values.ndim != 1 or q_values.shape[0] == 0:
        raise ValueError(f"q_values: expected a non-empty 1-D array, got shape {q_values.shape}")
    return q_values


def _check_q_values_batch(q_values_batch: np.ndarray) -> np.ndarray:
    q_values_batch = np.asarray(q_values_batch)
    if q_values_batch.ndim != 2 or 0 in q_values_batch.shape:
        raise ValueError(
            "q_values_batch: expected a non-empty 2-D array (batch, nb_actions), got shape "
            f"{q_values_batch.shape}"
        )
    return q_values_batch


def _epsilon_greedy(q_values_batch: np.ndarray, eps: float, rng: np.random.Generator):
    """Per row: a uniformly random action with probability ``eps``, else the greedy one."""
    batch, nb_actions = q_values_batch.shape
    explore = rng.random(batch) < eps
    random_actions = rng.integers(nb_actions, size=batch)
    return np.where(explore, random_actions, np.argmax(q_values_batch, axis=1))


def _boltzmann_probabilities(q_values: np.ndarray, tau: float, clip: tuple) -> np.ndarray:
    """Softmax of ``q_values / tau`` over the last axis (one state or a batch of them)."""
    exp_values = np.exp(np.clip(q_values.astype(np.float64) / tau, clip[0], clip[1]))
    return exp_values / np.sum(exp_values, axis=-1, keepdims=True)


def _check_clip(clip: Any) -> tuple[float, float]:
    if not isinstance(clip, (tuple, list)) or len(clip) != 2 or not clip[0] < clip[1]:
        raise ValueError(f"clip: expected a pair (low, high) with low < high, got {clip!r}")
    return float(clip[0]), float(clip[1])


class GreedyQPolicy(Policy):
    """Always the action with the highest Q value."""

    def select_action(self, q_values: np.ndarray) -> int:
        return int(np.argmax(_check_q_values(q_values)))

    def select_actions(self, q_values_batch: np.ndarray) -> np.ndarray:
        return np.argmax(_check_q_values_batch(q_values_batch), axis=1)


class EpsGreedyQPolicy(Policy):
    """With probability ``eps`` a uniformly random action, otherwise the greedy one."""

    def __init__(self, eps: float = 0.1) -> None:
        self.eps = check_float("eps", eps, 0.0, 1.0)

    @property
    def epsilon(self) -> float:
        return self.eps

    def select_action(self, q_values: np.ndarray) -> int:
        q_values = _check_q_values(q_values)
        rng = self.rng
        if rng.random() < self.eps:
            return int(rng.integers(q_values.shape[0]))
        return int(np.argmax(q_values))

    def select_actions(self, q_values_batch: np.ndarray) -> np.ndarray:
        return _epsilon_greedy(_check_q_values_batch(q_values_batch), self.eps, self.rng)

    def get_config(self) -> dict:
        return {"eps": self.eps}


class BoltzmannQPolicy(Policy):
    """Samples actions with probability proportional to ``exp(Q / tau)``.

    ``clip`` bounds ``Q / tau`` before exponentiating, to avoid overflow.
    """

    def __init__(self, tau: float = 1.0, clip: tuple = (-500.0, 500.0)) -> None:
        self.tau = check_float("tau", tau, 0.0, low_open=True)
        self.clip = _check_clip(clip)

    def select_action(self, q_values: np.ndarray) -> int:
        q_values = _check_q_values(q_values)
        probabilities = _boltzmann_probabilities(q_values, self.tau, self.clip)
        return int(self.rng.choice(q_values.shape[0], p=probabilities))

    def select_actions(self, q_values_batch: np.ndarray) -> np.ndarray:
        q_values_batch = _check_q_values_batch(q_values_batch)
        probabilities = _boltzmann_probabilities(q_values_batch, self.tau, self.clip)
        # Inverse-CDF sampling: one uniform number per row.
        uniform = self.rng.random((len(q_values_batch), 1))
        actions = np.sum(np.cumsum(probabilities, axis=1) < uniform, axis=1)
        return np.minimum(actions, q_values_batch.shape[1] - 1)

    def get_config(self) -> dict:
        return {"tau": self.tau, "clip": self.clip}


class MaxBoltzmannQPolicy(Policy):
    """Epsilon-greedy whose exploratory actions are Boltzmann samples instead of uniform ones.

    Wiering, M.: Explorations in Efficient Reinforcement Learning, PhD thesis (1999).
    """

    def __init__(self, eps: float = 0.1, tau: float = 1.0, clip: tuple = (-500.0, 500.0)):
        self.eps = check_float("eps", eps, 0.0, 1.0)
        self.tau = check_float("tau", tau, 0.0, low_open=True)
        self.clip = _check_clip(clip)

    @property
    def epsilon(self) -> float:
        return self.eps

    def select_action(self, q_values: np.ndarray) -> int:
        q_values = _check_q_values(q_values)
        rng = self.rng
        if rng.random() < self.eps:
            probabilities = _boltzmann_probabilities(q_values, self.tau, self.clip)
            return int(rng.choice(q_values.shape[0], p=probabilities))
        return int(np.argmax(q_values))

    def get_config(self) -> dict:
        return {"eps": self.eps, "tau": self.tau, "clip": self.clip}


class LinearAnnealedPolicy(Policy):
    """Anneals attribute ``attr`` of ``inner_policy`` linearly with the agent's training step.

    While training, the value is ``value_max`` at step 0 and falls linearly to ``value_min`` at
    step ``nb_steps``, staying there after; while testing it is ``value_test``. The step is the
    agent's step counter, which continues across ``fit`` calls and checkpoints.
    """

    def __init__(
        self,
        inner_policy: Policy,
        attr: str,
        value_max: float,
        value_min: float,
        value_test: float,
        nb_steps: int,
    ) -> None:
        if not isinstance(inner_policy, Policy):
            raise TypeError(f"inner_policy: expected a Policy, got {inner_policy!r}")
        if not isinstance(attr, str) or not hasattr(inner_policy, attr):
            raise ValueError(
                f"attr: {type(inner_policy).__name__} has no attribute {attr!r} to anneal"
            )
        self.inner_policy = inner_policy
        self.attr = attr
        self.value_max = check_float("value_max", value_max)
        self.value_min = check_float("value_min", value_min)
        self.value_test = check_float("value_test", value_test)
        self.nb_steps = check_int("nb_steps", nb_steps, minimum=1)

    def attach(self, agent: Any) -> None:
        super().attach(agent)
        self.inner_policy.attach(agent)

    def get_current_value(self) -> float:
        """The annealed value at the agent's current step (``value_test`` when testing)."""
        if not self.agent.training:
            return self.value_test
        slope = -(self.value_max - self.value_min) / self.nb_steps
        return max(self.value_min, self.value_max + slope * float(self.agent.step))

    @property
    def epsilon(self) -> float | None:
        """The annealed value if ``eps`` is annealed, else the inner policy's epsilon."""
        if self.attr == "eps":
            return self.get_current_value()
        return self.inner_policy.epsilon

    def select_action(self, q_values: np.ndarray) -> int:
        setattr(self.inner_policy, self.attr, self.get_current_value())
        return self.inner_policy.select_action(q_values=q_values)

    def select_actions(self, q_values_batch: np.ndarray) -> np.ndarray:
        """The inner policy's actions for the batch, all with the value annealed to the
        agent's current step (the step count summed over a vector environment's envs)."""
        setattr(self.inner_policy, self.attr, self.get_current_value())
        return self.inner_policy.select_actions(q_values_batch)

    @property
    def metrics_names(self) -> list[str]:
        return [f"mean_{self.attr}"]

    @property
    def metrics(self) -> list[float]:
        return [float(getattr(self.inner_policy, self.attr))]

    def get_config(self) -> dict:
        return {
            "attr": self.attr,
            "value_max": self.value_max,
            "value_min": self.value_min,
            "value_test": self.value_test,
            "nb_steps": self.nb_steps,
            "inner_policy": {
                "class_name": type(self.inner_policy).__name__,
                "config": self.inner_policy.get_config(),
            },
        }
