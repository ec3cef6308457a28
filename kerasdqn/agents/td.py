"""Temporal-difference math of DQN, as pure functions of tensors.

A transition ``(s, a, R, s')`` that spans ``k`` environment steps (``k = 1`` for plain DQN, up to
``n`` with n-step returns, ``R`` the discounted reward sum over those steps) has the TD target

    y = R + gamma^k * (1 - terminated) * V(s')

where ``V(s') = max_a Q_target(s', a)`` (Mnih et al., 2015), or ``Q_target(s', argmax_a Q(s', a))``
for Double DQN (van Hasselt et al., 2015). The TD error is ``y - Q(s, a)``; the loss is
``0.5 * error^2`` (Huber beyond ``delta_clip``), weighted per sample for prioritized replay and
averaged over the batch.

Nothing here holds state or touches a network: the agent's compiled training step composes these
functions, and tests call them on hand-built tensors.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf


def n_step_discounts(gamma: float, steps: np.ndarray | int, terminated: np.ndarray) -> np.ndarray:
    """``gamma^k * (1 - terminated)`` per transition: the weight of ``V(s')`` in its target.

    ``steps`` holds the ``k`` each transition spans (an int for all of them), ``terminated``
    whether it ended in a terminal state, where the future is worth nothing.
    """
    return (gamma ** np.asarray(steps) * (1.0 - np.asarray(terminated))).astype(np.float32)


def q_of_actions(q_values: tf.Tensor, actions: tf.Tensor) -> tf.Tensor:
    """``Q(s_i, a_i)`` for each row ``i``: ``q_values`` is ``(batch, nb_actions)``."""
    return tf.gather(q_values, actions, axis=1, batch_dims=1)


def max_next_values(next_q_target: tf.Tensor) -> tf.Tensor:
    """DQN's ``V(s') = max_a Q_target(s', a)``."""
    return tf.reduce_max(next_q_target, axis=1)


def double_next_values(next_q_target: tf.Tensor, next_q_online: tf.Tensor) -> tf.Tensor:
    """Double DQN's ``V(s') = Q_target(s', argmax_a Q(s', a))``: the online network picks the
    action, the target network values it, which removes the max operator's upward bias."""
    best = tf.argmax(next_q_online, axis=1, output_type=tf.int32)
    return q_of_actions(next_q_target, best)


def td_targets(reward: tf.Tensor, discount: tf.Tensor, next_values: tf.Tensor) -> tf.Tensor:
    """``y = R + discount * V(s')``, with ``discount`` from ``n_step_discounts``; no gradient
    flows through the target."""
    # y = r + gamma^k * (1 - terminated) * V(s')
    return tf.stop_gradient(reward + discount * next_values)


def huber_loss(error: tf.Tensor, delta_clip: float) -> tf.Tensor:
    """``0.5 * error^2`` where ``|error| < delta_clip``, linear beyond it (keras-rl's form);
    ``delta_clip = inf`` is the plain squared error."""
    squared = 0.5 * tf.square(error)
    if math.isinf(delta_clip):
        return squared
    linear = delta_clip * (tf.abs(error) - 0.5 * delta_clip)
    return tf.where(tf.abs(error) < delta_clip, squared, linear)


def td_loss(
    targets: tf.Tensor,
    q_taken: tf.Tensor,
    delta_clip: float,
    weights: tf.Tensor | None = None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """The batch loss and the per-sample TD errors ``y - Q(s, a)``.

    ``weights`` (importance-sampling weights of prioritized replay, one per sample) scale each
    sample's loss before the mean; None weighs all samples 1.
    """
    errors = targets - q_taken
    losses = huber_loss(errors, delta_clip)
    if weights is not None:
        losses = weights * losses
    return tf.reduce_mean(losses), errors


def mean_max_q(q_values: tf.Tensor) -> tf.Tensor:
    """The mean over the batch of the largest Q value of each state (keras-rl's ``mean_q``)."""
    return tf.reduce_mean(tf.reduce_max(q_values, axis=1))
