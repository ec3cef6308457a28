"""Keras layers used to build Q networks."""

from __future__ import annotations

import keras
from keras import ops

from kerasdqn._checks import check_choice

DUELING_TYPES = ("avg", "max", "naive")


def combine_dueling(head, dueling_type: str, xp):
    """``Q = V + A - mean_a A`` (``'avg'``), ``V + A - max_a A`` (``'max'``) or ``V + A``
    (``'naive'``) from ``head = [V, A_1, ..., A_n]`` per row. ``xp`` is the array module:
    ``keras.ops`` inside the network, NumPy for acting; both offer ``mean`` and ``max``."""
    value, advantage = head[:, :1], head[:, 1:]
    if dueling_type == "avg":
        advantage = advantage - xp.mean(advantage, axis=1, keepdims=True)
    elif dueling_type == "max":
        advantage = advantage - xp.max(advantage, axis=1, keepdims=True)
    return value + advantage


@keras.saving.register_keras_serializable(package="kerasdqn")
class DuelingCombine(keras.layers.Layer):
    """Turns ``[V(s), A(s, a_1), ..., A(s, a_n)]`` into ``Q(s, a)`` (Wang et al., 2016).

    ``dueling_type`` chooses the aggregation, as in keras-rl:

    - ``'avg'``:   ``Q = V + A - mean_a A``
    - ``'max'``:   ``Q = V + A - max_a A``
    - ``'naive'``: ``Q = V + A``

    The mean and max run over the actions of each state (keras-rl's ``'avg'`` averaged over
    the whole batch as well, which made a state's Q values depend on the rest of its batch).
    """

    def __init__(self, dueling_type: str = "avg", **kwargs) -> None:
        super().__init__(**kwargs)
        self.dueling_type = check_choice("dueling_type", dueling_type, DUELING_TYPES)

    def call(self, inputs):
        return combine_dueling(inputs, self.dueling_type, ops)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1] - 1)

    def get_config(self) -> dict:
        return {**super().get_config(), "dueling_type": self.dueling_type}
