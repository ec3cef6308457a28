"""Write the Keras 2 weight files that tests/test_weights.py loads into kerasdqn.

Run with a Python that has TensorFlow and ``tf_keras`` (Keras 2, the Keras keras-rl used):

    python tests/data/make_keras2_weights.py

It builds two CartPole networks exactly as keras-rl users and keras-rl's ``DQNAgent`` built them,
with ``tf_keras`` layers, gives every weight a known value (``pattern_weights`` below; the test
recomputes it) and saves them with Keras 2's ``model.save_weights(... .h5)``, the HDF5 layout
keras-rl's ``DQNAgent.save_weights`` wrote:

- ``keras2_cartpole_tutorial.h5``: keras-rl's CartPole tutorial model
  ``Flatten(input_shape=(1, 4)), Dense(16), Activation('relu'), Dense(2), Activation('linear')``.
- ``keras2_cartpole_dueling.h5``: the dueling network keras-rl's ``DQNAgent`` built with
  ``enable_dueling_network=True, dueling_type='avg'`` from the model
  ``Flatten(input_shape=(1, 4)), Dense(16, relu), Dense(16, relu), Dense(2, linear)``: the last
  Dense layer dropped, ``Dense(nb_actions + 1)`` on ``model.layers[-2].output``, and a ``Lambda``
  combining V and A, in ``Model(inputs=model.input, outputs=...)``.

Only ``.h5`` names are written: with ``tf_keras`` a ``.h5f`` name would write a TensorFlow
checkpoint, not HDF5.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras  # noqa: E402
from tf_keras import backend as K  # noqa: E402
from tf_keras.layers import Activation, Dense, Flatten, Lambda  # noqa: E402

HERE = Path(__file__).resolve().parent
NB_ACTIONS = 2


def pattern_weights(shapes: list[tuple[int, ...]]) -> list[np.ndarray]:
    """Known weight values for arrays of the given shapes, in order.

    The arrays together hold ``(k % 13 - 6) / 8`` for ``k = 0, 1, 2, ...``, each filled in C
    order: small multiples of 1/8 of both signs, exact in float32.
    """
    arrays, start = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        values = (np.arange(start, start + size) % 13 - 6) / 8.0
        arrays.append(values.reshape(shape).astype(np.float32))
        start += size
    return arrays


def tutorial_model() -> tf_keras.Model:
    """keras-rl's CartPole tutorial network (examples/dqn_cartpole.py, one hidden layer)."""
    return tf_keras.Sequential(
        [
            Flatten(input_shape=(1, 4)),
            Dense(16),
            Activation("relu"),
            Dense(NB_ACTIONS),
            Activation("linear"),
        ]
    )


def dueling_model() -> tf_keras.Model:
    """The network keras-rl's DQNAgent built with enable_dueling_network=True, 'avg'."""
    model = tf_keras.Sequential(
        [
            Flatten(input_shape=(1, 4)),
            Dense(16, activation="relu"),
            Dense(16, activation="relu"),
            Dense(NB_ACTIONS, activation="linear"),
        ]
    )
    # keras-rl (rl/agents/dqn.py), verbatim but for K.mean's batch-wide average, which kerasdqn
    # takes per state; the Lambda has no weights, so the file is the same either way.
    layer = model.layers[-2]
    nb_action = model.output.shape[-1]
    y = Dense(nb_action + 1, activation="linear")(layer.output)
    output = Lambda(
        lambda a: K.expand_dims(a[:, 0], -1) + a[:, 1:] - K.mean(a[:, 1:], axis=1, keepdims=True),
        output_shape=(nb_action,),
    )(y)
    return tf_keras.Model(inputs=model.input, outputs=output)


def write(model: tf_keras.Model, name: str) -> None:
    model.set_weights(pattern_weights([w.shape for w in model.get_weights()]))
    path = HERE / name
    if path.exists():
        path.unlink()
    model.save_weights(str(path))
    check = tf_keras.models.clone_model(model)
    check.load_weights(str(path))
    for expected, loaded in zip(model.get_weights(), check.get_weights()):
        np.testing.assert_array_equal(expected, loaded)
    states = pattern_weights([(3, 1, 4)])[0] * 4
    print(f"{path.name}: {path.stat().st_size} bytes, layers {[l.name for l in model.layers]}")
    print(f"  weight shapes {[w.shape for w in model.get_weights()]}")
    print(f"  Q values of {states.reshape(3, 4).tolist()}:")
    print(f"  {model.predict(states, verbose=0).tolist()}")


def main() -> None:
    print(f"tensorflow {tf.__version__}, tf_keras {tf_keras.__version__}")
    write(tutorial_model(), "keras2_cartpole_tutorial.h5")
    tf_keras.backend.clear_session()
    write(dueling_model(), "keras2_cartpole_dueling.h5")


if __name__ == "__main__":
    main()
