"""The contract ``fit`` and ``test`` hold an environment to, checked where its values enter.

gymnasium's contract: ``reset()`` returns ``(observation, info)``; ``step(action)`` returns
``(observation, reward, terminated, truncated, info)``; observations have the observation
space's shape, rewards are real numbers. An environment that breaks it is stopped at the value
that breaks it, with an error naming the environment (its ``spec.id``, else its class), the
method, the step, what came and what was expected, instead of failing later deep inside
TensorFlow or as a NaN loss.

Once, before the first ``reset``: ``check_observation_space`` (the space must have a shape
unless a ``Processor`` adapts the observations). Then ``EnvContract`` checks each value:

- without a ``Processor``, each observation is a numeric array (bool, int, uint or float; any
  such dtype, as the agent casts it) of the expected shape: the agent's
  ``expected_observation_shape()``, else the observation space's;
- with one, each processed observation is numeric (its shape is the processor's business);
- every float observation is finite; every reward is a finite real number.

Steps in the messages: in ``fit``, "step N" is the agent's step counter (``Agent.step``, the
step being taken, from 0, continuing across ``fit`` calls), so an environment that breaks at
the 5th step of the first ``fit`` is reported at step 4. In ``test``, "step N of test episode
E" counts the ``env.step`` calls since that episode's reset, from 0. A ``reset`` is reported
"before step N" (``fit``) or "at the start of test episode E" (``test``).
"""

from __future__ import annotations

import math
import numbers

import gymnasium
import numpy as np

from kerasdqn.errors import OneEnvironmentExpected

#: NumPy dtype kinds an observation may have: bool, signed and unsigned int, float.
NUMERIC_KINDS = "biuf"

FLATTEN_HINT = (
    "flatten them with gymnasium.wrappers.FlattenObservation(env), or pass a Processor whose "
    "process_observation turns each observation into one numeric array"
)


def check_one_env(name: str, env, player: str) -> None:
    """Raise ``OneEnvironmentExpected`` naming ``name`` if ``env`` is a gymnasium
    ``VectorEnv``: ``player`` (such as ``"test"``) plays one environment at a time."""
    if isinstance(env, gymnasium.vector.VectorEnv):
        raise OneEnvironmentExpected(
            f"{name}: {player} plays one environment at a time; pass a single gymnasium "
            f"environment (e.g. gymnasium.make(id)), not the VectorEnv {env!r}"
        )


def env_name(env) -> str:
    """The environment as messages name it: its ``spec.id``, else its class name (for a
    wrapper around an unregistered environment: the environment's, then the wrapper's)."""
    spec = getattr(env, "spec", None)
    if getattr(spec, "id", None):
        return str(spec.id)
    name = type(env).__name__
    inner = type(getattr(env, "unwrapped", env)).__name__
    return name if inner == name else f"{inner} (wrapped in {name})"


def shape_matches(shape: tuple, expected: tuple) -> bool:
    """Whether ``shape`` is ``expected``, where a None in ``expected`` stands for any size."""
    return len(shape) == len(expected) and all(
        want is None or have == want for have, want in zip(shape, expected)
    )


def check_observation_space(env, has_processor: bool, expected_shape: tuple | None) -> None:
    """Refuse, before anything runs, an observation space the agent cannot take as it is.

    Without a processor the space must have a shape (``Dict``, ``Tuple`` and other composite
    spaces have none), and it must be ``expected_shape`` when the agent knows one. An
    environment without an ``observation_space`` is left to the per-value checks.
    """
    space = getattr(env, "observation_space", None)
    if has_processor or space is None:
        return
    shape = getattr(space, "shape", None)
    if shape is None:
        raise ValueError(
            f"env {env_name(env)}: its observation space {space} has no single array shape "
            f"and no Processor adapts its observations: {FLATTEN_HINT}"
        )
    if expected_shape is not None and not shape_matches(tuple(shape), expected_shape):
        raise ValueError(
            f"env {env_name(env)}: observations have shape {tuple(shape)} (its observation "
            f"space) but the agent takes observations of shape {expected_shape}"
        )


class EnvContract:
    """The per-value checks of one ``fit`` or ``test`` run, and where in it the run is.

    Args:
        env: the environment (named in messages).
        agent: the agent running it: its ``training`` and ``step`` place the errors in ``fit``.
        expected_shape: the shape each observation must have (None: not checked, as with a
            processor).
        shape_origin: where ``expected_shape`` comes from, for the messages.
    """

    def __init__(self, env, agent, expected_shape: tuple | None, shape_origin: str = "") -> None:
        self.env = env
        self.agent = agent
        self.expected_shape = expected_shape
        self.shape_origin = shape_origin
        self.processed = agent.processor is not None
        self.episode = 0  # the test episode in progress
        self.env_steps = 0  # env.step calls since the last reset

    @classmethod
    def for_agent(cls, env, agent) -> EnvContract:
        """The contract ``agent`` holds ``env`` to: observations of the agent's shape, else of
        the observation space's; any shape with a processor."""
        if agent.processor is not None:
            return cls(env, agent, None)
        expected = agent.expected_observation_shape()
        if expected is not None:
            return cls(env, agent, tuple(expected), "the shape the agent takes")
        shape = getattr(getattr(env, "observation_space", None), "shape", None)
        if shape is None:
            return cls(env, agent, None)
        return cls(env, agent, tuple(shape), "the observation space's shape")

    # ------------------------------------------------------------- the values

    def reset_observation(self, result):
        """The observation of what ``env.reset()`` returned, if it is ``(observation, info)``;
        the episode's steps count from 0 again."""
        self.env_steps = 0
        if type(result) is tuple and len(result) == 2 and isinstance(result[1], dict):
            return result[0]
        if isinstance(result, list) and len(result) == 2 and isinstance(result[1], dict):
            return result[0]
        raise self.breach(
            TypeError,
            "reset",
            "value returned",
            f"{describe(result)}, not an (observation, info) pair",
            "gymnasium's (observation, info): an environment written for the old gym API? "
            "Make reset(seed=None, options=None) return (observation, {})",
        )

    def step_result(self, result):
        """What ``env.step(action)`` returned, if it is gymnasium's five values."""
        if type(result) is tuple and len(result) == 5:
            return result
        if isinstance(result, list | tuple) and len(result) == 5:
            return tuple(result)
        raise self.breach(
            TypeError,
            "step",
            "value returned",
            describe(result),
            "gymnasium's five values (observation, reward, terminated, truncated, info)",
        )

    def step_values(self, observation, reward) -> float:
        """Check a step's (processed) observation and reward; the reward as a float."""
        self.observation(observation, "step")
        if type(reward) is float or type(reward) is int:
            value = reward
        else:
            value = self._real_reward(reward)
        if not math.isfinite(value):
            raise self.breach(
                FloatingPointError, "step", "reward", f"{value}", "a finite number", stops=True
            )
        self.env_steps += 1
        return float(value)

    def observation(self, observation, method: str) -> None:
        """Check an observation from ``method`` (``reset`` or ``step``), after the processor:
        numeric, finite, and of the expected shape (when there is one)."""
        array = np.asarray(observation)
        kind = array.dtype.kind
        if kind == "f":
            if not np.isfinite(array).all():
                raise self._non_finite(array, method)
        elif kind not in NUMERIC_KINDS:
            raise self._wrong_observation(observation, method)
        expected = self.expected_shape
        if expected is not None and array.shape != expected:
            if not shape_matches(array.shape, expected):
                raise self._wrong_observation(observation, method)

    # ------------------------------------------------------------- the errors

    def _real_reward(self, reward) -> float:
        """A reward that is not a Python float or int, as a float, if it is a real number."""
        if isinstance(reward, numbers.Real | np.bool_):
            return float(reward)
        if reward is not None and not isinstance(reward, str | bytes):
            array = np.asarray(reward)
            if array.size == 1 and array.dtype.kind in NUMERIC_KINDS:
                return float(array.reshape(()))
        raise self.breach(
            TypeError,
            "step",
            "reward",
            describe(reward),
            "a real number (a Python or NumPy int, float or bool)",
        )

    def _non_finite(self, array: np.ndarray, method: str) -> FloatingPointError:
        return self.breach(
            FloatingPointError,
            method,
            "observation",
            f"{describe(array)} holding non-finite values ({_preview(array)})",
            "finite numbers",
            stops=True,
        )

    def _wrong_observation(self, observation, method: str) -> ValueError:
        if self.expected_shape is None:
            expected = "numbers (bool, int, uint or float)"
        else:
            expected = (
                f"a numeric array (bool, int, uint or float) of shape {self.expected_shape}, "
                f"{self.shape_origin}"
            )
        if self.processed:
            expected += " from the Processor"
        return self.breach(ValueError, method, "observation", describe(observation), expected)

    def breach(
        self, error: type, method: str, subject: str, came: str, expected: str, stops=False
    ) -> Exception:
        """The ``error`` for ``subject`` (what ``method`` gave), placed in the run."""
        if self.processed and subject in ("observation", "reward"):
            subject += " after the Processor"
        stopped = ""
        if stops:
            stopped = "; training stopped" if self.agent.training else "; testing stopped"
        return error(
            f"env {env_name(self.env)}, {method}(): the {subject} {self._where(method)} is "
            f"{came}; expected {expected}{stopped}{self._counting(method)}"
        )

    def _where(self, method: str) -> str:
        """Where the run is, in the words of the module docstring."""
        if self.agent.training:
            return f"{'before' if method == 'reset' else 'at'} step {self.agent.step}"
        if method == "reset":
            return f"at the start of test episode {self.episode}"
        return f"at step {self.env_steps} of test episode {self.episode}"

    def _counting(self, method: str) -> str:
        """How ``_where`` counts steps, for the end of a message."""
        if self.agent.training:
            return " (steps: the agent's step counter, from 0)"
        return "" if method == "reset" else " (steps: env.step calls since its reset, from 0)"


def describe(value) -> str:
    """A short account of a value an environment gave: its shape and dtype for an array, its
    length for a tuple or list, else its (shortened) repr and type."""
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    if isinstance(value, tuple | list):
        return f"a {type(value).__name__} of {len(value)} values"
    if isinstance(value, dict):
        return f"a dict with keys {sorted(map(str, value))}"
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _preview(array: np.ndarray) -> str:
    with np.printoptions(threshold=8, edgeitems=2, precision=4):
        return str(array)
