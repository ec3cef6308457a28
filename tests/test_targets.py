"""Target-network updates: Polyak averaging, the hard copy, and when each is due."""

import keras
import numpy as np
import pytest

from kerasdqn.targets import (
    HardTargetUpdate,
    SoftTargetUpdate,
    make_hard_update,
    soft_update,
    target_update_for,
)


def variables(*values):
    return [keras.Variable(np.asarray(value, dtype=np.float32)) for value in values]


def test_soft_update_moves_tau_of_the_way_towards_the_online_weights():
    target, online = variables([0.0, 8.0]), variables([4.0, 0.0])
    soft_update(target, online, tau=0.25)
    np.testing.assert_array_equal(target[0].numpy(), [1.0, 6.0])


def test_hard_update_copies_every_variable():
    target, online = variables([0.0], [[1.0, 2.0]]), variables([5.0], [[3.0, 4.0]])
    make_hard_update(target, online)()
    for copied, source in zip(target, online):
        np.testing.assert_array_equal(copied.numpy(), source.numpy())


def test_a_hard_copy_is_due_at_multiples_of_the_interval_only():
    update = HardTargetUpdate(3)
    assert [step for step in range(10) if update.copy_due(step)] == [0, 3, 6, 9]


def test_a_soft_update_never_asks_for_a_copy():
    assert not any(SoftTargetUpdate(0.1).copy_due(step) for step in range(10))


@pytest.mark.parametrize(
    ("value", "kind", "setting"),
    [(0.01, SoftTargetUpdate, 0.01), (1, HardTargetUpdate, 1), (500, HardTargetUpdate, 500)],
)
def test_target_model_update_below_one_is_soft_and_otherwise_hard(value, kind, setting):
    update = target_update_for(value)
    assert isinstance(update, kind)
    assert (update.tau if kind is SoftTargetUpdate else update.interval) == setting


def test_bad_settings_name_the_argument():
    with pytest.raises(ValueError, match="tau"):
        SoftTargetUpdate(0.0)
    with pytest.raises(ValueError, match="interval"):
        HardTargetUpdate(0)
