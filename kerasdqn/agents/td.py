"""Temporal-difference math of DQN, as pure functions of tensors.

A transition ``(s, a, R, s')`` that spans ``k`` environment steps (``k = 1`` for plain DQN, up to
``n`` with n-step returns, ``R`` the discounted reward sum over those steps) has the TD target

    y = R + gamma^k * (1 - terminated) * V(s')

where ``V(s') = max_a Q_target(s', a)`` (Mnih et al., 2015), or ``Q_target(s', argmax_a Q(s', a))``
for Double DQN (van Hasselt et al., 2015). The TD error is ``y - Q(s, a)``; the loss is
``0.5 * error^2`` (Huber beyond ``delta_clip``), weighted per sample for prioritized replay and
averaged over the batch.

The distributional agents' math sits at the end: C51's projection of the target distribution
onto its atoms and its cross-entropy loss, QR-DQN's target quantiles and quantile Huber loss.
Each loss returns, like ``td_loss``, the batch loss and one value per sample for the memory's
priorities.

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


# --------------------------------------------------------------------------- distributional
#
# Distributional agents learn the distribution of the return Z(s, a) instead of its mean
# Q(s, a) = E[Z(s, a)]; the Bellman target is the distribution of R + discount * Z(s', a*).
# C51 (Bellemare et al., 2017) holds it as probabilities on a fixed support of atoms; QR-DQN
# (Dabney et al., 2018) as the values of fixed quantiles.


def distributions_of_actions(distributions: tf.Tensor, actions: tf.Tensor) -> tf.Tensor:
    """The distribution of each row's action: ``distributions`` is ``(batch, nb_actions,
    size)``, the result ``(batch, size)``."""
    return tf.gather(distributions, actions, axis=1, batch_dims=1)


# How close (in atom spacings) a moved atom must be to an atom to count as landing on it:
# above the error float32 inputs carry (a reward of 0.4 is 1.5e-8 spacings off on Dopamine's
# support), far below any mass worth keeping apart.
ON_ATOM_TOLERANCE = 1e-6


def categorical_projection(
    next_probs: tf.Tensor, rewards: tf.Tensor, discounts: tf.Tensor, support: tf.Tensor
) -> tf.Tensor:
    """C51's target: the distribution of ``R + discount * Z(s')`` projected onto ``support``.

    ``next_probs`` ``(batch, nb_atoms)`` are the probabilities of ``Z(s')`` on ``support``
    (``nb_atoms`` evenly spaced values from ``v_min`` to ``v_max``), ``rewards`` and
    ``discounts`` (from ``n_step_discounts``) one per row. Each atom ``z_i`` moves to
    ``R + discount * z_i``, clipped to ``[v_min, v_max]``; its probability is split between the
    two atoms around it in proportion to closeness (Bellemare et al., 2017, Algorithm 1), all
    of it to an atom it lands on exactly. A terminated transition (discount 0) puts all the
    mass at ``R``. Returns ``(batch, nb_atoms)`` probabilities, without gradient.

    The positions are computed in float64 from the atoms' indices (``z_i = v_min + i *
    delta_z``), not from float32 atoms, which are a few 1e-6 spacings off their ideal values:
    the projection then matches Algorithm 1 to float32 precision, and an atom landing on an
    atom (within ``ON_ATOM_TOLERANCE`` spacings) gives it all of its mass.
    """
    nb_atoms = support.shape[0]
    v_min = tf.cast(support[0], tf.float64)
    delta_z = (tf.cast(support[-1], tf.float64) - v_min) / (nb_atoms - 1)
    rewards = tf.cast(rewards, tf.float64)[:, tf.newaxis]
    discounts = tf.cast(discounts, tf.float64)[:, tf.newaxis]
    atoms = tf.range(nb_atoms, dtype=tf.float64)
    # b_i = (R + d z_i - v_min) / delta_z = (R - (1 - d) v_min) / delta_z + d i, in [0, N - 1]
    position = (rewards - (1.0 - discounts) * v_min) / delta_z + discounts * atoms
    position = tf.clip_by_value(position, 0.0, nb_atoms - 1.0)
    whole = tf.round(position)
    position = tf.where(tf.abs(position - whole) < ON_ATOM_TOLERANCE, whole, position)
    # Atom i gives atom j the share max(0, 1 - |b_i - j|): (u - b) to l = floor(b), (b - l) to
    # u = ceil(b), and 1 to j = b when b is whole (l == u).
    shares = tf.nn.relu(1.0 - tf.abs(position[:, :, tf.newaxis] - atoms))
    shares = tf.cast(shares, next_probs.dtype)
    return tf.stop_gradient(tf.einsum("bi,bij->bj", next_probs, shares))


def categorical_loss(
    target_probs: tf.Tensor, logits: tf.Tensor, weights: tf.Tensor | None = None
) -> tuple[tf.Tensor, tf.Tensor]:
    """C51's loss: the cross-entropy ``-sum_j m_j log p_j`` of the predicted distribution
    (``softmax(logits)`` over the last axis) under the projected target ``m``.

    Returns the batch loss (each sample's cross-entropy times its ``weights`` entry, then the
    mean) and the per-sample cross-entropies, unweighted, which a prioritized memory takes as
    priorities. ``weights`` None weighs all samples 1.
    """
    losses = -tf.reduce_sum(target_probs * tf.nn.log_softmax(logits, axis=-1), axis=-1)
    weighted = losses if weights is None else weights * losses
    return tf.reduce_mean(weighted), losses


def quantile_midpoints(nb_quantiles: int) -> np.ndarray:
    """``tau_hat_i = (2i + 1) / (2N)``, the quantile levels QR-DQN's outputs estimate: the
    midpoints of ``N`` equal slices of [0, 1] (Dabney et al., 2018, Lemma 2)."""
    return ((2 * np.arange(nb_quantiles) + 1) / (2 * nb_quantiles)).astype(np.float32)


def quantile_targets(rewards: tf.Tensor, discounts: tf.Tensor, next_quantiles: tf.Tensor):
    """QR-DQN's target quantiles ``R + discount * theta_j(s', a*)``, ``(batch, N)``, without
    gradient; ``discounts`` from ``n_step_discounts``, so a terminated transition gives ``R``."""
    return tf.stop_gradient(rewards[:, tf.newaxis] + discounts[:, tf.newaxis] * next_quantiles)


def quantile_huber_loss(
    target_quantiles: tf.Tensor,
    quantiles: tf.Tensor,
    kappa: float,
    weights: tf.Tensor | None = None,
) -> tuple[tf.Tensor, tf.Tensor]:
    """QR-DQN's loss (Dabney et al., 2018, eq. 10): per sample,
    ``sum_i mean_j rho_kappa(tau_hat_i, T theta_j - theta_i)``.

    ``quantiles`` ``(batch, N)`` are the predictions ``theta_i`` at levels ``tau_hat_i =
    (2i + 1) / (2N)``, ``target_quantiles`` ``(batch, N')`` the targets ``T theta_j``.
    ``rho_kappa(tau, u) = |tau - 1{u < 0}| * L_kappa(u) / kappa``, with the Huber loss
    ``L_kappa(u) = 0.5 u^2`` for ``|u| <= kappa`` and ``kappa (|u| - 0.5 kappa)`` beyond.
    The division by ``kappa`` is the convention of the IQN paper (Dabney et al., 2018b, eq. 3)
    and Dopamine, not of eq. 10: it keeps the gradient's size independent of ``kappa``, and
    ``kappa = 0`` is the plain quantile regression loss ``|tau - 1{u < 0}| * |u|``
    (QR-DQN-0); for ``kappa = 1`` (QR-DQN-1) both conventions agree.

    Returns the batch loss (weighted by ``weights`` per sample, then the mean) and the
    per-sample losses, unweighted, which a prioritized memory takes as priorities.
    """
    tau_hat = tf.constant(quantile_midpoints(quantiles.shape[-1]))[:, tf.newaxis]
    errors = target_quantiles[:, tf.newaxis, :] - quantiles[:, :, tf.newaxis]  # u_ij
    if kappa == 0:
        spread = tf.abs(errors)
    else:
        spread = huber_loss(errors, kappa) / kappa
    below = tf.cast(errors < 0, errors.dtype)
    per_pair = tf.abs(tau_hat - below) * spread
    losses = tf.reduce_sum(tf.reduce_mean(per_pair, axis=2), axis=1)
    weighted = losses if weights is None else weights * losses
    return tf.reduce_mean(weighted), losses
