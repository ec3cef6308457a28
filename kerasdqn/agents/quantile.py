"""QR-DQN (Dabney, Rowland, Bellemare and Munos, 2018, "Distributional Reinforcement Learning
with Quantile Regression", AAAI) with keras-rl's ``DQNAgent`` interface.

The return distribution of each action is held as ``nb_quantiles`` values ``theta_i(s, a)``,
the estimates of its quantiles at the levels ``tau_hat_i = (2i + 1) / (2 nb_quantiles)``
(``td.quantile_midpoints``), each with probability ``1 / nb_quantiles``. The targets of a
transition are ``R + discount * theta_j(s', a*)`` (``td.quantile_targets``), the loss the
quantile Huber loss (``td.quantile_huber_loss``), and acting reads ``Q(s, a) = mean_i
theta_i(s, a)``. Unlike C51, there is no support to choose: the quantiles go where the returns
are.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from kerasdqn._checks import check_float, check_int
from kerasdqn.agents import td
from kerasdqn.agents.distributional import DistributionalDQNAgent
from kerasdqn.policy import Policy


class QuantileDQNAgent(DistributionalDQNAgent):
    """QR-DQN: DQN learning the quantiles of the return distribution.

    Args:
        model: a built Keras model from states of shape ``(window_length,) +
            observation_shape`` to ``nb_actions * nb_quantiles`` values: end it with a linear
            ``Dense(nb_actions * nb_quantiles)``. The agent reshapes the outputs to
            ``(nb_actions, nb_quantiles)``, action ``a``'s quantiles being outputs
            ``a * nb_quantiles`` to ``(a + 1) * nb_quantiles - 1``.
        nb_quantiles: quantiles per action, at least 1; 200 by default, the value of
            Dabney et al. (2018) on Atari. Small problems do well with far fewer (e.g. 32).
        kappa: the Huber threshold of the quantile loss, ``>= 0``; 1 by default (the paper's
            QR-DQN-1). 0 is the plain quantile regression loss (QR-DQN-0). The loss is
            divided by ``kappa`` (see ``td.quantile_huber_loss``).
        enable_double_dqn: the online network picks the next action (by its mean), the
            target network gives its quantiles.
        enable_dueling_network: a dueling head, the aggregation done per quantile.

    All other arguments (``policy``, ``test_policy``, ``dueling_type``, ``nb_actions``,
    ``memory``, ``gamma``, ``batch_size``, ``nb_steps_warmup``, ``train_interval``,
    ``target_model_update``, ``n_step``, ``gradient_steps``, ``seed`` and the rest) are
    ``DQNAgent``'s, except ``delta_clip``, which ``kappa`` replaces. With a
    ``PrioritizedMemory``, each transition's priority is its quantile loss.
    ``compute_batch_distributions`` gives the quantile values ``(batch, nb_actions,
    nb_quantiles)`` at the levels ``quantile_levels``.
    """

    algorithm = "QR-DQN"
    size_name = "nb_quantiles"

    def __init__(
        self,
        model: keras.Model,
        policy: Policy | None = None,
        test_policy: Policy | None = None,
        enable_double_dqn: bool = False,
        enable_dueling_network: bool = False,
        dueling_type: str = "avg",
        *,
        nb_quantiles: int = 200,
        kappa: float = 1.0,
        **kwargs: Any,
    ) -> None:
        self.nb_quantiles = check_int("nb_quantiles", nb_quantiles, minimum=1)
        self.kappa = check_float("kappa", kappa, 0.0)
        #: The levels ``tau_hat_i`` the quantiles estimate, float32, ``(nb_quantiles,)``.
        self.quantile_levels = td.quantile_midpoints(self.nb_quantiles)
        super().__init__(
            model,
            policy,
            test_policy,
            enable_double_dqn,
            enable_dueling_network,
            dueling_type,
            distribution_size=self.nb_quantiles,
            **kwargs,
        )

    def _q_values(self, outputs):
        return tf.reduce_mean(outputs, axis=-1)

    def _target(self, reward, discount, next_outputs):
        return td.quantile_targets(reward, discount, next_outputs)

    def _loss(self, target, outputs, weights):
        return td.quantile_huber_loss(target, outputs, self.kappa, weights)

    def _target_means(self, target):
        return tf.reduce_mean(target, axis=-1)

    def _numpy_distributions(self, outputs: np.ndarray) -> np.ndarray:
        return outputs

    def _numpy_q_values(self, distributions: np.ndarray) -> np.ndarray:
        return distributions.mean(axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "nb_quantiles": self.nb_quantiles, "kappa": self.kappa}
