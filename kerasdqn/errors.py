"""Errors the experiment helpers raise for problems the user can fix."""


class UsageError(Exception):
    """A problem with an experiment's input that the user can fix; the message says how."""
