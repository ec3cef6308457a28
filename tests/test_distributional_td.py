"""The distributional TD math: C51's projection and loss, QR-DQN's quantile Huber loss, on
hand-built tensors against hand-computed values and slow NumPy references."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasdqn.agents import td

SUPPORT = np.linspace(-2.0, 2.0, 5, dtype=np.float32)  # atoms -2, -1, 0, 1, 2 (spacing 1)


def tensor(values):
    return tf.constant(values, dtype=tf.float32)


def reference_projection(next_probs, rewards, discounts, support):
    """Bellemare et al. (2017), Algorithm 1, one atom at a time, in float64."""
    support = np.asarray(support, dtype=np.float64)
    v_min, v_max = support[0], support[-1]
    delta_z = (v_max - v_min) / (len(support) - 1)
    projected = np.zeros((len(rewards), len(support)))
    for row, (probs, reward, discount) in enumerate(zip(next_probs, rewards, discounts)):
        for z, p in zip(support, probs):
            position = (np.clip(reward + discount * z, v_min, v_max) - v_min) / delta_z
            lower, upper = int(np.floor(position)), int(np.ceil(position))
            if lower == upper:
                projected[row, lower] += p
            else:
                projected[row, lower] += p * (upper - position)
                projected[row, upper] += p * (position - lower)
    return projected


def project(next_probs, rewards, discounts, support=SUPPORT):
    return td.categorical_projection(
        tensor(next_probs), tensor(rewards), tensor(discounts), tensor(support)
    ).numpy()


def random_distributions(rng, rows, atoms):
    probs = rng.random((rows, atoms)) ** 3
    return (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)


def test_mass_between_two_atoms_is_split_by_closeness():
    # All mass on z = 1; 0.25 + 1 * 1 = 1.25 lies a quarter of the way from atom 1 to atom 2.
    projected = project([[0, 0, 0, 1, 0]], [0.25], [1.0])
    np.testing.assert_allclose(projected, [[0, 0, 0, 0.75, 0.25]], atol=1e-6)


def test_an_exact_hit_puts_all_the_mass_on_that_atom():
    # r = 1, discount 1: every atom moves exactly one atom up; the top one is clipped at 2.
    probs = [[0.1, 0.2, 0.3, 0.25, 0.15]]
    projected = project(probs, [1.0], [1.0])
    np.testing.assert_allclose(projected, [[0, 0.1, 0.2, 0.3, 0.4]], atol=1e-6)


def test_a_terminated_transition_collapses_onto_the_reward():
    probs = [[0.1, 0.2, 0.3, 0.25, 0.15]] * 2
    projected = project(probs, [1.0, -0.5], [0.0, 0.0])
    np.testing.assert_allclose(projected, [[0, 0, 0, 1, 0], [0, 0.5, 0.5, 0, 0]], atol=1e-6)


def test_gamma_zero_gives_the_same_target_as_termination():
    discounts = td.n_step_discounts(0.0, 1, np.array([False]))
    probs = [[0.1, 0.2, 0.3, 0.25, 0.15]]
    np.testing.assert_allclose(project(probs, [0.3], discounts), project(probs, [0.3], [0.0]))


def test_mass_pushed_beyond_the_support_lands_on_the_end_atoms():
    probs = [[0.1, 0.2, 0.3, 0.25, 0.15]] * 2
    projected = project(probs, [5.0, -7.0], [0.9, 0.5])
    np.testing.assert_allclose(projected, [[0, 0, 0, 0, 1], [1, 0, 0, 0, 0]], atol=1e-6)


@pytest.mark.parametrize("atoms", [5, 51])
def test_projection_matches_the_reference_on_random_distributions(atoms):
    rng = np.random.default_rng(0)
    support = np.linspace(-10, 10, atoms, dtype=np.float32)
    rows = 64
    next_probs = random_distributions(rng, rows, atoms)
    rewards = rng.uniform(-12, 12, rows).astype(np.float32)  # some push mass outside
    discounts = td.n_step_discounts(0.9, rng.integers(1, 4, rows), rng.random(rows) < 0.2)
    rewards[:4] = [1.0, -2.0, 0.0, 10.0]  # hits of whole atoms when discount is 0
    discounts[:4] = 0.0
    projected = project(next_probs, rewards, discounts, support)
    expected = reference_projection(next_probs, rewards, discounts, support)
    np.testing.assert_allclose(projected, expected, atol=1e-6)
    np.testing.assert_allclose(projected.sum(axis=1), 1.0, atol=1e-6)


def test_atoms_that_land_on_atoms_keep_all_their_mass_on_the_51_atom_support():
    # Dopamine's support: -10..10 in steps of 0.4, which float32 does not hold exactly.
    support = np.linspace(-10, 10, 51, dtype=np.float32)
    next_probs = random_distributions(np.random.default_rng(1), 3, 51)
    projected = project(next_probs, [0.0, 0.4, -0.8], [1.0, 1.0, 1.0], support)
    np.testing.assert_array_equal(projected[0], next_probs[0])  # Z(s') itself
    np.testing.assert_allclose(projected[1, 1:-1], next_probs[1, :-2], rtol=1e-6, atol=0)
    np.testing.assert_allclose(projected[2, 1:-2], next_probs[2, 3:], rtol=1e-6, atol=0)
    assert projected[1, 0] == 0.0 and projected[2, -2:].tolist() == [0.0, 0.0]


def test_an_atom_just_beside_an_atom_still_splits_its_mass_as_algorithm_1_does():
    # All mass on z = 0; r = 0.40002 moves it 5e-5 spacings past atom 26 (z = 0.4).
    support = np.linspace(-10, 10, 51, dtype=np.float32)
    next_probs = np.zeros((1, 51), np.float32)
    next_probs[0, 25] = 1.0
    projected = project(next_probs, [0.40002], [0.99], support)
    expected = reference_projection(next_probs, [0.40002], [0.99], support)
    assert expected[0, 27] == pytest.approx(5e-5, rel=1e-3)
    np.testing.assert_allclose(projected, expected, atol=1e-7)


def test_the_projection_passes_no_gradient():
    probs = tf.Variable([[0.1, 0.2, 0.3, 0.25, 0.15]])
    with tf.GradientTape() as tape:
        projected = td.categorical_projection(probs * 1.0, tensor([0.5]), tensor([0.9]), SUPPORT)
    assert tape.gradient(projected, probs) is None


def test_categorical_loss_is_the_cross_entropy_and_weights_scale_each_sample():
    target = tensor([[0.0, 1.0], [0.5, 0.5]])
    logits = tensor([[0.0, 0.0], [np.log(3.0), 0.0]])  # softmax: (1/2, 1/2) and (3/4, 1/4)
    loss, losses = td.categorical_loss(target, logits)
    expected = [np.log(2.0), -0.5 * (np.log(0.75) + np.log(0.25))]
    np.testing.assert_allclose(losses, expected, rtol=1e-6)
    assert float(loss) == pytest.approx(np.mean(expected), rel=1e-6)
    weighted, same_losses = td.categorical_loss(target, logits, tensor([1.0, 0.5]))
    assert float(weighted) == pytest.approx((expected[0] + 0.5 * expected[1]) / 2, rel=1e-6)
    np.testing.assert_array_equal(same_losses, losses)  # priorities stay unweighted


def test_quantile_midpoints_are_the_centres_of_equal_slices():
    np.testing.assert_allclose(td.quantile_midpoints(4), [1 / 8, 3 / 8, 5 / 8, 7 / 8])


def test_quantile_targets_are_reward_plus_discounted_quantiles():
    targets = td.quantile_targets(tensor([1.0, 2.0]), tensor([0.5, 0.0]), tensor([[2, 4], [6, 8]]))
    np.testing.assert_allclose(targets, [[2.0, 3.0], [2.0, 2.0]])


# Two quantiles (levels 1/4, 3/4) at 0 and 1, targets 0.5 and 3. The pairs u = T theta_j -
# theta_i: for theta_0 = 0, u = 0.5 and 3 (both above: weight 1/4); for theta_1 = 1,
# u = -0.5 (below: weight |3/4 - 1| = 1/4) and 2 (above: weight 3/4).
#   kappa 1: L/1 = 0.125, 2.5 | 0.125, 1.5 ->
#            (0.25 * 0.125 + 0.25 * 2.5) / 2 + (0.25 * 0.125 + 0.75 * 1.5) / 2 = 0.90625
#   kappa 2: L/2 = 0.0625, 2 | 0.0625, 1 -> (0.015625 + 0.5) / 2 + (0.015625 + 0.75) / 2
#            = 0.640625
#   kappa 0: |u| = 0.5, 3 | 0.5, 2 -> (0.125 + 0.75) / 2 + (0.125 + 1.5) / 2 = 1.25
@pytest.mark.parametrize("kappa, expected", [(1.0, 0.90625), (2.0, 0.640625), (0.0, 1.25)])
def test_quantile_huber_loss_matches_the_hand_computed_value(kappa, expected):
    loss, losses = td.quantile_huber_loss(tensor([[0.5, 3.0]]), tensor([[0.0, 1.0]]), kappa)
    assert float(losses[0]) == pytest.approx(expected)
    assert float(loss) == pytest.approx(expected)


def reference_quantile_loss(targets, quantiles, kappa):
    """Dabney et al. (2018) eq. 10 with the 1/kappa convention, one pair at a time."""
    n = len(quantiles)
    total = 0.0
    for i, theta in enumerate(quantiles):
        tau = (2 * i + 1) / (2 * n)
        for target in targets:
            u = target - theta
            huber = 0.5 * u * u if abs(u) <= kappa else kappa * (abs(u) - 0.5 * kappa)
            total += abs(tau - (u < 0)) * huber / kappa / len(targets)
    return total


def test_quantile_huber_loss_matches_the_reference_on_three_quantiles_and_weights():
    rng = np.random.default_rng(1)
    targets = rng.normal(size=(4, 3)).astype(np.float32) * 2
    quantiles = np.sort(rng.normal(size=(4, 3)).astype(np.float32), axis=1)
    weights = np.array([1.0, 0.5, 0.25, 0.0], dtype=np.float32)
    loss, losses = td.quantile_huber_loss(tensor(targets), tensor(quantiles), 1.0, tensor(weights))
    expected = [reference_quantile_loss(t, q, 1.0) for t, q in zip(targets, quantiles)]
    np.testing.assert_allclose(losses, expected, rtol=1e-5)
    assert float(loss) == pytest.approx(np.mean(weights * expected), rel=1e-5)


@pytest.mark.parametrize("kappa, expected", [(1.0, [-2 / 3, 2 / 3]), (0.0, [-1.0, 1.0])])
def test_minimizing_the_quantile_loss_finds_the_known_quantiles(kappa, expected):
    # Returns -1 and +1 with probability 1/2 each; levels 1/4 and 3/4. With kappa = 0 the
    # minimizers are the quantiles -1 and 1. With kappa = 1 the quadratic zone moves them
    # inwards: d/dtheta [ (3/4) (theta + 1)^2 / 2 ] = 1/4 gives theta = -1 + 1/3.
    quantiles = tf.Variable([[0.0, 0.1]])
    targets = tensor([[-1.0, 1.0]])
    optimizer = keras.optimizers.SGD(learning_rate=0.05)
    for _ in range(800):
        with tf.GradientTape() as tape:
            loss, _ = td.quantile_huber_loss(targets, quantiles, kappa)
        optimizer.apply_gradients([(tape.gradient(loss, quantiles), quantiles)])
    np.testing.assert_allclose(quantiles.numpy()[0], expected, atol=0.03)


def test_distributions_of_actions_picks_each_rows_action():
    distributions = tensor(np.arange(12).reshape(2, 3, 2))
    picked = td.distributions_of_actions(distributions, tf.constant([2, 0]))
    np.testing.assert_array_equal(picked, [[4, 5], [6, 7]])
