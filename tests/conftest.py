"""Shared test set-up: quiet TensorFlow, one thread (the networks here are tiny), fixtures."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gymnasium  # noqa: E402
import keras  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.threading.set_inter_op_parallelism_threads(1)
tf.config.threading.set_intra_op_parallelism_threads(1)


@pytest.fixture
def cartpole():
    """A seeded CartPole-v1 environment, closed after the test."""
    env = gymnasium.make("CartPole-v1")
    env.reset(seed=0)
    env.action_space.seed(0)
    yield env
    env.close()


@pytest.fixture(autouse=True)
def _seed_everything():
    """Each test starts from the same seeds: Python's, NumPy's and Keras's weight init."""
    keras.utils.set_random_seed(0)
