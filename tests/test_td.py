"""The pure TD math, on hand-built tensors whose answers are worked out in the comments."""

import numpy as np
import pytest
import tensorflow as tf

from kerasdqn.agents import td


def tensor(values, dtype=tf.float32):
    return tf.constant(values, dtype=dtype)


def test_n_step_discounts_are_gamma_to_the_steps_and_zero_after_termination():
    discounts = td.n_step_discounts(0.5, np.array([1, 2, 3]), np.array([False, False, True]))
    np.testing.assert_array_equal(discounts, [0.5, 0.25, 0.0])
    assert discounts.dtype == np.float32


def test_max_next_values_take_the_target_networks_best_action():
    next_q_target = tensor([[1.0, 3.0], [-2.0, -5.0]])
    np.testing.assert_array_equal(td.max_next_values(next_q_target), [3.0, -2.0])


def test_double_next_values_let_the_online_network_choose_and_the_target_value():
    next_q_target = tensor([[1.0, 3.0], [-2.0, -5.0]])
    next_q_online = tensor([[9.0, 0.0], [0.0, 9.0]])  # picks action 0, then action 1
    np.testing.assert_array_equal(td.double_next_values(next_q_target, next_q_online), [1.0, -5.0])


def test_td_targets_bootstrap_only_with_a_non_zero_discount():
    targets = td.td_targets(tensor([1.0, 1.0]), tensor([0.5, 0.0]), tensor([4.0, 4.0]))
    np.testing.assert_array_equal(targets, [3.0, 1.0])  # 1 + 0.5 * 4; terminated: 1


def test_q_of_actions_picks_each_rows_action():
    q_values = tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    picked = td.q_of_actions(q_values, tf.constant([2, 0], dtype=tf.int32))
    np.testing.assert_array_equal(picked, [3.0, 4.0])


def test_huber_loss_is_quadratic_inside_and_linear_outside_delta():
    errors = tensor([0.5, -2.0, 3.0])
    # delta 1: 0.5 * 0.25 = 0.125; 1 * (2 - 0.5) = 1.5; 1 * (3 - 0.5) = 2.5
    np.testing.assert_allclose(td.huber_loss(errors, 1.0), [0.125, 1.5, 2.5])
    np.testing.assert_allclose(td.huber_loss(errors, np.inf), [0.125, 2.0, 4.5])


def test_td_loss_returns_the_mean_loss_and_signed_per_sample_errors():
    loss, errors = td.td_loss(tensor([1.0, 0.0]), tensor([0.0, 2.0]), delta_clip=np.inf)
    np.testing.assert_array_equal(errors, [1.0, -2.0])
    assert float(loss) == pytest.approx((0.5 * 1 + 0.5 * 4) / 2)


def test_importance_weights_scale_each_samples_loss_before_the_mean():
    loss, _ = td.td_loss(
        tensor([1.0, 0.0]), tensor([0.0, 2.0]), delta_clip=np.inf, weights=tensor([1.0, 0.25])
    )
    assert float(loss) == pytest.approx((0.5 * 1 + 0.25 * 0.5 * 4) / 2)


def test_unit_weights_give_exactly_the_unweighted_loss():
    targets, q_taken = tensor([0.3, -1.7, 2.9]), tensor([0.1, 0.2, -0.4])
    plain, _ = td.td_loss(targets, q_taken, 1.0)
    weighted, _ = td.td_loss(targets, q_taken, 1.0, weights=tf.ones(3))
    assert float(plain) == float(weighted)


def test_no_gradient_flows_through_the_target():
    next_values = tf.Variable([2.0])
    with tf.GradientTape() as tape:
        targets = td.td_targets(tensor([1.0]), tensor([0.5]), next_values * 1.0)
    assert tape.gradient(targets, next_values) is None


def test_mean_max_q_averages_each_states_best_value():
    assert float(td.mean_max_q(tensor([[1.0, 3.0], [-1.0, -2.0]]))) == pytest.approx(1.0)
