"""The target network's updates: a hard copy, Polyak averaging, and when each happens.

keras-rl's ``target_model_update`` chooses between them: below 1 it is ``tau``, and the target
network moves ``tau`` of the way towards the online one after every gradient step (a soft update,
run inside the compiled training call); 1 or more, the online weights are copied into the target
network every that many environment steps (a hard update, run by the agent between steps).
"""

from __future__ import annotations

import tensorflow as tf

from kerasdqn._checks import check_float, check_int


@tf.autograph.experimental.do_not_convert
def soft_update(target_variables: list, online_variables: list, tau: float) -> None:
    """Polyak averaging: ``target <- (1 - tau) * target + tau * online``, in place."""
    for target, online in zip(target_variables, online_variables):
        target.assign((1.0 - tau) * target + tau * online)


def make_hard_update(target_variables: list, online_variables: list):
    """A compiled function that copies each online variable into its target variable."""

    def copy() -> None:
        for target, online in zip(target_variables, online_variables):
            target.assign(online)

    return tf.function(copy).get_concrete_function()


class SoftTargetUpdate:
    """After every gradient step, ``target <- (1 - tau) * target + tau * online``
    (keras-rl's ``target_model_update < 1``)."""

    def __init__(self, tau: float) -> None:
        self.tau = check_float("tau", tau, 0.0, 1.0, low_open=True)

    @tf.autograph.experimental.do_not_convert
    def after_gradient_step(self, target_variables: list, online_variables: list) -> None:
        """Traced into the training call, after each gradient step."""
        soft_update(target_variables, online_variables, self.tau)

    def copy_due(self, step: int) -> bool:
        """Whether a hard copy is due at environment step ``step``: never."""
        return False


class HardTargetUpdate:
    """Copies the online weights into the target network at every environment step that is a
    multiple of ``interval`` (keras-rl's ``target_model_update >= 1``)."""

    def __init__(self, interval: int) -> None:
        self.interval = check_int("interval", interval, minimum=1)

    @tf.autograph.experimental.do_not_convert
    def after_gradient_step(self, target_variables: list, online_variables: list) -> None:
        """Nothing happens inside the training call."""

    def copy_due(self, step: int) -> bool:
        """Whether the copy is due at environment step ``step`` (counted from 0)."""
        return step % self.interval == 0


TargetUpdate = SoftTargetUpdate | HardTargetUpdate


def target_update_for(target_model_update: float) -> TargetUpdate:
    """The update keras-rl's ``target_model_update`` asks for: soft below 1, hard otherwise."""
    if target_model_update < 1:
        return SoftTargetUpdate(target_model_update)
    return HardTargetUpdate(int(target_model_update))
