"""C51 (Bellemare, Dabney and Munos, 2017, "A Distributional Perspective on Reinforcement
Learning", ICML) with keras-rl's ``DQNAgent`` interface.

The return distribution of each action is a categorical distribution on ``nb_atoms`` fixed
atoms ``z_j = v_min + j * (v_max - v_min) / (nb_atoms - 1)``. The target of a transition is the
distribution of ``R + discount * Z(s', a*)`` projected back onto the atoms
(``td.categorical_projection``), the loss its cross-entropy with the predicted distribution
(``td.categorical_loss``), and acting reads ``Q(s, a) = sum_j z_j p_j(s, a)``.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from kerasdqn._checks import check_float, check_int
from kerasdqn.agents import td
from kerasdqn.agents.distributional import DistributionalDQNAgent, numpy_softmax
from kerasdqn.policy import Policy


class CategoricalDQNAgent(DistributionalDQNAgent):
    """C51: DQN learning the return distribution on a fixed support of atoms.

    Args:
        model: a built Keras model from states of shape ``(window_length,) +
            observation_shape`` to ``nb_actions * nb_atoms`` logits: end it with a linear
            ``Dense(nb_actions * nb_atoms)`` (e.g. ``build_mlp(shape, nb_actions * nb_atoms)``).
            The agent reshapes the outputs to ``(nb_actions, nb_atoms)``, action ``a``'s
            logits being outputs ``a * nb_atoms`` to ``(a + 1) * nb_atoms - 1``, and applies a
            softmax over the atoms; the model itself has no softmax.
        nb_atoms: atoms of the support, at least 2; 51, the paper's, by default.
        v_min: the lowest atom, the smallest return the distribution can hold; default -10.
        v_max: the highest atom, above ``v_min``; default 10. Returns outside
            ``[v_min, v_max]`` are clipped onto the end atoms, so choose the range to cover
            the environment's discounted returns (the paper's -10 and 10 suit clipped Atari
            rewards).
        enable_double_dqn: the online network picks the next action (by its mean), the
            target network gives its distribution.
        enable_dueling_network: a dueling head, the aggregation done per atom (Rainbow's).

    All other arguments (``policy``, ``test_policy``, ``dueling_type``, ``nb_actions``,
    ``memory``, ``gamma``, ``batch_size``, ``nb_steps_warmup``, ``train_interval``,
    ``target_model_update``, ``n_step``, ``gradient_steps``, ``seed`` and the rest) are
    ``DQNAgent``'s, except ``delta_clip``: the loss is a cross-entropy. With a
    ``PrioritizedMemory``, each transition's priority is the KL divergence of the predicted
    distribution from its target (``loss_and_kl``), as in Rainbow (Hessel et al., 2018):
    the cross-entropy less the target's entropy, which is 0 when the prediction is exact (the
    cross-entropy is not, for a target spread over several atoms). The gradient is the same.
    ``compute_batch_distributions`` gives the probabilities ``(batch, nb_actions, nb_atoms)``
    on ``support``.
    """

    algorithm = "C51"
    size_name = "nb_atoms"

    def __init__(
        self,
        model: keras.Model,
        policy: Policy | None = None,
        test_policy: Policy | None = None,
        enable_double_dqn: bool = False,
        enable_dueling_network: bool = False,
        dueling_type: str = "avg",
        *,
        nb_atoms: int = 51,
        v_min: float = -10.0,
        v_max: float = 10.0,
        **kwargs: Any,
    ) -> None:
        self.nb_atoms = check_int("nb_atoms", nb_atoms, minimum=2)
        self.v_min = check_float("v_min", v_min)
        self.v_max = check_float("v_max", v_max)
        if self.v_max <= self.v_min:
            raise ValueError(f"v_max: expected a number above v_min = {self.v_min}, got {v_max}")
        #: The atoms ``z_j``, float32, shape ``(nb_atoms,)``.
        self.support = np.linspace(self.v_min, self.v_max, self.nb_atoms, dtype=np.float32)
        super().__init__(
            model,
            policy,
            test_policy,
            enable_double_dqn,
            enable_dueling_network,
            dueling_type,
            distribution_size=self.nb_atoms,
            **kwargs,
        )

    def _check_output(self, model: keras.Model) -> None:
        """Also refuse a network ending in a softmax: the agent applies its own, per action,
        and a second one would flatten every distribution to near-uniform."""
        super()._check_output(model)
        last = model.layers[-1] if model.layers else None
        activation = getattr(last, "activation", None)
        if isinstance(last, keras.layers.Softmax) or activation is keras.activations.softmax:
            raise ValueError(
                f"model: its last layer {last.name!r} applies a softmax; C51 expects logits, "
                "a linear last layer (the agent takes the softmax over each action's atoms "
                "itself)"
            )

    def _q_values(self, outputs):
        # Q(s, a) = sum_j z_j softmax(logits)_j
        return tf.reduce_sum(tf.nn.softmax(outputs, axis=-1) * self.support, axis=-1)

    def _target(self, reward, discount, next_outputs):
        next_probs = tf.nn.softmax(next_outputs, axis=-1)
        return td.categorical_projection(next_probs, reward, discount, tf.constant(self.support))

    def _loss(self, target, outputs, weights):
        return loss_and_kl(target, outputs, weights)

    def _target_means(self, target):
        return tf.reduce_sum(target * self.support, axis=-1)

    def _numpy_distributions(self, outputs: np.ndarray) -> np.ndarray:
        return numpy_softmax(outputs)

    def _numpy_q_values(self, distributions: np.ndarray) -> np.ndarray:
        return distributions @ self.support

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "nb_atoms": self.nb_atoms,
            "v_min": self.v_min,
            "v_max": self.v_max,
        }


def entropy(probs: tf.Tensor) -> tf.Tensor:
    """``H(m) = -sum_j m_j log m_j`` over the last axis, ``0 log 0`` taken as 0."""
    return -tf.reduce_sum(tf.math.multiply_no_nan(tf.math.log(probs), probs), axis=-1)


def loss_and_kl(
    target_probs: tf.Tensor, logits: tf.Tensor, weights: tf.Tensor | None = None
) -> tuple[tf.Tensor, tf.Tensor]:
    """C51's batch loss (``td.categorical_loss``: the weighted mean cross-entropy) and each
    sample's ``KL(m || p) = sum_j m_j (log m_j - log p_j)``, the cross-entropy less the target's
    entropy: the priorities Rainbow hands a prioritized memory."""
    loss, cross_entropies = td.categorical_loss(target_probs, logits, weights)
    return loss, cross_entropies - entropy(target_probs)
