"""Errors the experiment helpers raise for problems the user can fix."""


class UsageError(Exception):
    """A problem with an experiment's input that the user can fix; the message says how."""


class OneEnvironmentExpected(TypeError, ValueError):
    """A gymnasium ``VectorEnv`` given where one environment is played (``test``,
    ``EvalCallback``). The wrong kind of environment (``TypeError``) for an argument's value
    (``ValueError``): ``except`` either catches it."""


class ArchitectureMismatch(ValueError):
    """Weights saved from another network than the one they are loaded into: other layers,
    or weights of other shapes."""
