"""Calling traced TensorFlow functions with as little Python overhead as possible.

A call through ``ConcreteFunction.__call__`` spends about as long binding and checking its
arguments in Python as a small network spends computing. The functions here are traced once
for fixed shapes, so the arguments need no checking: ``CompiledCall`` hands the tensors straight
to the traced graph, and falls back to the public call if that path is unavailable.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf


class CompiledCall:
    """``function`` traced once for ``specs``; called with arrays, returns a list of tensors."""

    def __init__(self, function: Callable, specs: list[tf.TensorSpec], jit_compile: bool):
        self._concrete = tf.function(function, jit_compile=jit_compile).get_concrete_function(
            *specs
        )
        self._captured = self._concrete.captured_inputs
        self._direct = getattr(self._concrete, "_call_flat", None)

    def __call__(self, *arrays: np.ndarray) -> list[tf.Tensor]:
        tensors = [tf.constant(array) for array in arrays]
        if self._direct is not None:
            try:
                return self._direct(tensors, self._captured)
            except (TypeError, AttributeError):
                # The private fast path changed in this TensorFlow version: use the public one.
                self._direct = None
        return tf.nest.flatten(self._concrete(*tensors))
