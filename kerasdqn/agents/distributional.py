"""What the distributional agents share: C51 (``CategoricalDQNAgent``) and QR-DQN
(``QuantileDQNAgent``) learn the distribution of the return ``Z(s, a)``, not only its mean.

Their networks output ``size`` numbers per action (C51: logits of ``nb_atoms`` probabilities,
QR-DQN: ``nb_quantiles`` quantile values), flat: a final ``Dense(nb_actions * size)`` whose
outputs ``[a * size, (a + 1) * size)`` belong to action ``a``. The agent reshapes them to
``(nb_actions, size)``. Everything else is ``DQNAgent``'s: acting reads the Q values
``Q(s, a) = E[Z(s, a)]``, the replay memory, n-step returns, the target network and its
updates, checkpoints and files work as for DQN. A gradient step here

1. takes the next state's distributions from the target network and picks ``a*``, the action of
   the highest mean (the online network picks it with Double DQN);
2. builds the target distribution of ``R + discount * Z(s', a*)`` (the subclass's math, in
   ``kerasdqn.agents.td``);
3. minimizes the subclass's loss between it and the predicted distribution of the action taken,
   weighted per sample, and hands each sample's loss to the memory as its priority.

Acting stays as fast as DQN's: the network is evaluated by ``kerasdqn.inference`` (NumPy when
its layers allow, else one compiled call) and the outputs are turned into Q values with NumPy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from kerasdqn._checks import check_choice
from kerasdqn.agents import td
from kerasdqn.agents.dqn import DQNAgent, features_before_last_dense
from kerasdqn.inference import make_q_function
from kerasdqn.layers import DUELING_TYPES, combine_dueling, dense_like


class DistributionalDQNAgent(DQNAgent):
    """The machinery of C51 and QR-DQN (see the module docstring); use one of those.

    ``distribution_size``: the numbers the network outputs per action. Subclasses say what
    those numbers are (``_q_values``, ``_target``, ``_loss`` and their NumPy twins for acting).
    ``delta_clip`` is refused: the distributional losses have their own form.
    """

    #: The algorithm's name and that of its ``distribution_size`` argument, for messages.
    algorithm = "distributional DQN"
    size_name = "distribution_size"

    def __init__(self, model: keras.Model, *args: Any, distribution_size: int, **kwargs: Any):
        if "delta_clip" in kwargs:
            raise TypeError(
                f"delta_clip: {self.algorithm} has no Huber threshold on TD errors; its loss "
                "compares distributions (see the agent's documentation)"
            )
        self.distribution_size = distribution_size
        super().__init__(model, *args, **kwargs)

    # ----------------------------------------------------------------- the network

    def _check_output(self, model: keras.Model) -> None:
        """Raise unless the network outputs ``nb_actions * distribution_size`` numbers."""
        expected = self.nb_actions * self.distribution_size
        output_shape = tuple(model.outputs[0].shape)
        if output_shape != (None, expected):
            raise ValueError(
                f"model: its output shape is {output_shape}; {self.algorithm} expects "
                f"nb_actions * {self.size_name} = {self.nb_actions} * "
                f"{self.distribution_size} outputs, (None, {expected}): end the model with "
                f"a linear Dense({expected}); the agent reshapes its outputs to "
                f"(nb_actions, {self.size_name})"
            )

    def _with_dueling_head(self, model: keras.Model) -> keras.Model:
        return add_distributional_dueling_head(
            model, self.nb_actions, self.distribution_size, self.dueling_type
        )

    def _make_q_function(self, model: keras.Model, fast_acting: bool):
        """NumPy on the network's outputs; with a dueling head, the network runs up to the
        head's Dense layer (a chain NumPy can evaluate) and NumPy does the aggregation."""
        dueling_type = None
        if self.enable_dueling_network:
            dueling_type = self.dueling_type
            model = keras.Model(model.inputs[0], model.layers[-1].input)
        return DistributionQFunction(
            make_q_function(model, prefer_numpy=fast_acting, jit_compile=self.jit_compile),
            self.distribution_size,
            self._numpy_distributions,
            self._numpy_q_values,
            dueling_type,
        )

    def q_values_from_outputs(self, outputs: tf.Tensor) -> tf.Tensor:
        """The means of the flat distributions the network outputs, ``(batch, nb_actions)``."""
        return self._q_values(self._per_action(outputs))

    def _per_action(self, outputs: tf.Tensor) -> tf.Tensor:
        """The network's flat outputs as ``(batch, nb_actions, distribution_size)``."""
        return tf.reshape(outputs, (-1, self.nb_actions, self.distribution_size))

    # ----------------------------------------------------------------- acting

    def compute_batch_distributions(self, state_batch) -> np.ndarray:
        """The return distributions of a batch of states, ``(batch, nb_actions,
        distribution_size)`` (what the numbers are: see the subclass)."""
        states = self.process_state_batch(state_batch).astype(self._input_dtype, copy=False)
        return self._q_function.distributions(states)

    def compute_distribution(self, state) -> np.ndarray:
        """The return distributions of one state, ``(nb_actions, distribution_size)``."""
        return self.compute_batch_distributions(np.asarray(state)[np.newaxis])[0]

    # ----------------------------------------------------------------- learning

    def _gradient_step(self, state0, action, reward, discount, state1, weights):
        """One gradient step on the distributional loss (traced into the training call);
        returns ``[loss, metrics..., mean_q]`` and the per-sample losses (the priorities).
        Metrics compare the target distribution's mean with ``Q(s, a)``."""
        target = self._target_distribution(reward, discount, state1)
        with tf.GradientTape() as tape:
            outputs = self._per_action(self.model(state0, training=True))
            taken = td.distributions_of_actions(outputs, action)
            loss, losses = self._loss(target, taken, weights)
        self._apply_gradients(tape, loss)
        q_values = self._q_values(outputs)
        q_taken = td.q_of_actions(q_values, action)
        return self._statistics(loss, self._target_means(target), q_taken, q_values), losses

    def _target_distribution(self, reward, discount, state1):
        """The target of ``R + discount * Z(s', a*)``: ``a*`` has the highest mean under the
        target network, or under the online network with Double DQN."""
        next_outputs = self._per_action(self.target_model(state1, training=False))
        chooser = next_outputs
        if self.enable_double_dqn:
            chooser = self._per_action(self.model(state1, training=False))
        best = tf.argmax(self._q_values(chooser), axis=1, output_type=tf.int32)
        return self._target(reward, discount, td.distributions_of_actions(next_outputs, best))

    # What subclasses define, on (..., distribution_size) outputs of the network.

    def _q_values(self, outputs: tf.Tensor) -> tf.Tensor:
        """The means of the distributions ``outputs`` stand for (last axis reduced)."""
        raise NotImplementedError

    def _target(self, reward, discount, next_outputs) -> tf.Tensor:
        """The target distribution from the chosen action's next-state outputs."""
        raise NotImplementedError

    def _loss(self, target, outputs, weights) -> tuple[tf.Tensor, tf.Tensor]:
        """``(batch loss, per-sample losses)`` of ``outputs`` against ``target``."""
        raise NotImplementedError

    def _target_means(self, target: tf.Tensor) -> tf.Tensor:
        """The mean of each target distribution, ``(batch,)``, for the metrics."""
        raise NotImplementedError

    def _numpy_distributions(self, outputs: np.ndarray) -> np.ndarray:
        """NumPy, for acting: ``(batch, nb_actions, size)`` outputs -> distributions."""
        raise NotImplementedError

    def _numpy_q_values(self, distributions: np.ndarray) -> np.ndarray:
        """NumPy, for acting: distributions -> Q values ``(batch, nb_actions)``."""
        raise NotImplementedError

    def get_config(self) -> dict:
        config = super().get_config()
        del config["delta_clip"]
        return config


class DistributionQFunction:
    """Acting's evaluator for a distributional network: the network's flat outputs from
    ``network_function`` (a ``kerasdqn.inference`` evaluator), turned into distributions and
    Q values with NumPy. Refreshed, and fed the training call's weights, like that evaluator.

    ``dueling_type``: the outputs are a dueling head's ``[V, A_1, ..., A_n]`` streams, which
    are aggregated first (as ``DistributionalDuelingCombine`` does); None: they are not.
    """

    def __init__(
        self,
        network_function,
        distribution_size: int,
        to_distributions: Callable[[np.ndarray], np.ndarray],
        to_q_values: Callable[[np.ndarray], np.ndarray],
        dueling_type: str | None = None,
    ) -> None:
        self.network_function = network_function
        self.variables = network_function.variables
        self._size = distribution_size
        self._to_distributions = to_distributions
        self._to_q_values = to_q_values
        self._dueling_type = dueling_type

    def refresh(self, values: list | None = None) -> None:
        self.network_function.refresh(values)

    def distributions(self, state_batch: np.ndarray) -> np.ndarray:
        """``(batch, nb_actions, size)`` distributions of the states."""
        outputs = np.asarray(self.network_function(state_batch))
        outputs = outputs.reshape(len(outputs), -1, self._size)
        if self._dueling_type is not None:
            outputs = combine_dueling(outputs, self._dueling_type, np)
        return self._to_distributions(outputs)

    def __call__(self, state_batch: np.ndarray) -> np.ndarray:
        return self._to_q_values(self.distributions(state_batch))


def numpy_softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, shifted by the maximum so that ``exp`` cannot overflow."""
    exponentials = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exponentials / exponentials.sum(axis=-1, keepdims=True)


# --------------------------------------------------------------------------- dueling


@keras.saving.register_keras_serializable(package="kerasdqn")
class DistributionalDuelingCombine(keras.layers.Layer):
    """The dueling aggregation (Wang et al., 2016) done per atom or quantile, as in Rainbow
    (Hessel et al., 2018): from flat ``[V(s, .), A(s, a_1, .), ..., A(s, a_n, .)]``, each of
    ``distribution_size`` numbers, to flat ``Q(s, a_k, j) = V(s, j) + A(s, a_k, j) - mean_a
    A(s, a, j)`` (``'avg'``; ``'max'`` and ``'naive'`` as ``DuelingCombine``).
    """

    def __init__(self, distribution_size: int, dueling_type: str = "avg", **kwargs) -> None:
        super().__init__(**kwargs)
        self.distribution_size = int(distribution_size)
        self.dueling_type = check_choice("dueling_type", dueling_type, DUELING_TYPES)

    def call(self, inputs):
        size = self.distribution_size
        streams = inputs.shape[-1] // size  # 1 + nb_actions
        head = ops.reshape(inputs, (-1, streams, size))
        combined = combine_dueling(head, self.dueling_type, ops)
        return ops.reshape(combined, (-1, (streams - 1) * size))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1] - self.distribution_size)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "distribution_size": self.distribution_size,
            "dueling_type": self.dueling_type,
        }


def add_distributional_dueling_head(
    model: keras.Model, nb_actions: int, distribution_size: int, dueling_type: str
) -> keras.Model:
    """The model with its last Dense layer replaced by a value stream of
    ``distribution_size`` outputs and an advantage stream of ``nb_actions *
    distribution_size``, combined per atom or quantile by ``DistributionalDuelingCombine``.
    A ``NoisyDense`` last layer gives a noisy head (Rainbow's), as in ``add_dueling_head``."""
    features, last = features_before_last_dense(model, "nb_actions * size units")
    head = dense_like(last, (nb_actions + 1) * distribution_size, name="dueling_value_advantage")(
        features
    )
    outputs = DistributionalDuelingCombine(
        distribution_size, dueling_type, name="dueling_distributions"
    )(head)
    return keras.Model(model.inputs[0], outputs, name=f"{model.name}_dueling")
