"""Policies: action distributions checked statistically, annealing, randomness, argument checks.

Frequencies over ``N`` draws are compared with the exact probabilities to within 4 binomial
standard deviations, ``4 * sqrt(p * (1 - p) / N)``; with fixed seeds the draws are repeatable.
"""

import types

import numpy as np
import pytest

from kerasdqn import (
    BoltzmannQPolicy,
    EpsGreedyQPolicy,
    GreedyQPolicy,
    LinearAnnealedPolicy,
    MaxBoltzmannQPolicy,
)

N = 20_000


def attach(policy, seed=0, training=True, step=0):
    """Attach a stand-in for the agent: the policy reads its ``rng``, ``training``, ``step``."""
    agent = types.SimpleNamespace(rng=np.random.default_rng(seed), training=training, step=step)
    policy.attach(agent)
    return agent


def frequencies(policy, q_values, n=N, seed=0):
    attach(policy, seed)
    q_values = np.asarray(q_values, dtype=np.float32)
    actions = [policy.select_action(q_values) for _ in range(n)]
    assert all(isinstance(action, int) for action in actions[:10])
    return np.bincount(actions, minlength=len(q_values)) / n


def assert_frequencies(observed, expected, n=N):
    expected = np.asarray(expected, dtype=np.float64)
    assert observed.shape == expected.shape
    assert expected.sum() == pytest.approx(1.0)
    tolerance = 4 * np.sqrt(expected * (1 - expected) / n)
    assert np.all(np.abs(observed - expected) <= tolerance), (observed, expected)


def softmax(x):
    e = np.exp(np.asarray(x, dtype=np.float64) - np.max(x))
    return e / e.sum()


# ------------------------------------------------------------------ greedy and eps-greedy


def test_greedy_picks_the_highest_q_value_and_the_first_on_ties():
    policy = GreedyQPolicy()
    assert policy.select_action(np.array([0.1, 3.0, -2.0])) == 1
    assert policy.select_action(np.array([5.0, 1.0, 5.0])) == 0
    assert policy.select_action(np.array([-1.0])) == 0


def test_eps_greedy_takes_the_greedy_action_with_probability_one_minus_half_eps():
    observed = frequencies(EpsGreedyQPolicy(eps=0.3), [0.0, 1.0])
    assert_frequencies(observed, [0.15, 0.85])


def test_eps_greedy_explores_uniformly_over_all_actions():
    observed = frequencies(EpsGreedyQPolicy(eps=0.4), [2.0, -1.0, 0.5, 0.0])
    assert_frequencies(observed, [0.7, 0.1, 0.1, 0.1])


@pytest.mark.parametrize(("eps", "expected"), [(0.0, [0, 0, 1]), (1.0, [1 / 3, 1 / 3, 1 / 3])])
def test_eps_greedy_extremes(eps, expected):
    assert_frequencies(frequencies(EpsGreedyQPolicy(eps=eps), [0.0, 1.0, 2.0]), expected)


# ------------------------------------------------------------------ Boltzmann


@pytest.mark.parametrize("tau", [0.5, 1.0, 3.0])
def test_boltzmann_probabilities_are_proportional_to_exp_q_over_tau(tau):
    q_values = np.array([1.0, 2.0, 0.5, 3.0])
    observed = frequencies(BoltzmannQPolicy(tau=tau), q_values)
    assert_frequencies(observed, softmax(q_values / tau))


def test_boltzmann_chi_square_against_the_exact_softmax():
    q_values = np.array([0.0, 0.3, 0.6, 0.9, 1.2])
    expected = softmax(q_values)
    observed = frequencies(BoltzmannQPolicy(tau=1.0), q_values) * N
    chi_square = np.sum((observed - N * expected) ** 2 / (N * expected))
    assert chi_square < 23.5  # the 0.9999 quantile of chi-square with 4 degrees of freedom


def test_boltzmann_clip_avoids_overflow_for_huge_q_values():
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        assert_frequencies(frequencies(BoltzmannQPolicy(), [1e6, -1e6, 0.0], n=500), [1, 0, 0], 500)
        # Both clipped to the same bound: equally likely, not nan.
        assert_frequencies(frequencies(BoltzmannQPolicy(), [1e30, 1e30]), [0.5, 0.5])
        assert_frequencies(frequencies(BoltzmannQPolicy(), [-1e30, -1e30]), [0.5, 0.5])


def test_boltzmann_clip_bounds_q_over_tau_before_exponentiating():
    observed = frequencies(BoltzmannQPolicy(tau=1.0, clip=(-1.0, 1.0)), [10.0, 0.0])
    p = np.e / (np.e + 1.0)  # exp(1) against exp(0)
    assert_frequencies(observed, [p, 1 - p])


def test_max_boltzmann_is_greedy_with_probability_one_minus_eps_else_boltzmann():
    eps, tau = 0.3, 0.8
    q_values = np.array([0.0, 1.0, 2.0, -0.5])
    observed = frequencies(MaxBoltzmannQPolicy(eps=eps, tau=tau), q_values)
    expected = eps * softmax(q_values / tau)
    expected[2] += 1 - eps
    assert_frequencies(observed, expected)


def test_max_boltzmann_with_eps_zero_is_greedy():
    observed = frequencies(MaxBoltzmannQPolicy(eps=0.0), [0.0, 1.0, 0.9], n=1000)
    np.testing.assert_array_equal(observed, [0.0, 1.0, 0.0])


# ------------------------------------------------------------------ randomness


def make_policies():
    return [
        EpsGreedyQPolicy(eps=0.5),
        BoltzmannQPolicy(tau=1.0),
        MaxBoltzmannQPolicy(eps=0.5, tau=1.0),
        LinearAnnealedPolicy(EpsGreedyQPolicy(), "eps", 1.0, 0.1, 0.05, 100),
    ]


def actions(policy, seed, n=200):
    attach(policy, seed)
    q_values = np.array([0.2, 0.0, 0.4, 0.1])
    return [policy.select_action(q_values) for _ in range(n)]


@pytest.mark.parametrize("index", range(len(make_policies())))
def test_same_seed_gives_the_same_action_sequence(index):
    first, second, other = (make_policies()[index] for _ in range(3))
    assert actions(first, seed=3) == actions(second, seed=3)
    assert actions(first, seed=3) != actions(other, seed=4)


def test_policy_uses_the_agents_generator():
    policy = LinearAnnealedPolicy(BoltzmannQPolicy(), "tau", 1.0, 0.1, 0.05, 100)
    agent = attach(policy)
    assert policy.rng is agent.rng
    assert policy.inner_policy.rng is agent.rng


def test_detached_policy_seeds_its_generator_from_numpy_global_state():
    sequences = []
    for _ in range(2):
        np.random.seed(123)
        policy = EpsGreedyQPolicy(eps=0.5)
        sequences.append([policy.select_action(np.zeros(4)) for _ in range(100)])
    assert sequences[0] == sequences[1]
    assert len(set(sequences[0])) == 4


# ------------------------------------------------------------------ linear annealing


def annealed(**kwargs):
    settings = dict(value_max=1.0, value_min=0.1, value_test=0.05, nb_steps=100)
    settings.update(kwargs)
    return LinearAnnealedPolicy(EpsGreedyQPolicy(), "eps", **settings)


@pytest.mark.parametrize(
    ("step", "value"),
    [(0, 1.0), (1, 0.991), (25, 0.775), (50, 0.55), (99, 0.109), (100, 0.1), (101, 0.1)],
)
def test_linear_annealing_goes_from_value_max_to_value_min(step, value):
    policy = annealed()
    attach(policy, step=step)
    assert policy.get_current_value() == pytest.approx(value, abs=1e-12)


def test_linear_annealing_stays_at_value_min_after_nb_steps():
    policy = annealed()
    agent = attach(policy)
    for step in (101, 1000, 10**9):
        agent.step = step
        assert policy.get_current_value() == 0.1


def test_value_test_is_used_when_not_training():
    policy = annealed()
    attach(policy, training=False, step=30)
    assert policy.get_current_value() == 0.05


def test_select_action_sets_the_inner_attribute_and_metrics_report_it():
    policy = annealed()
    agent = attach(policy, step=50)
    assert policy.metrics_names == ["mean_eps"]
    policy.select_action(np.array([0.0, 1.0]))
    assert policy.inner_policy.eps == pytest.approx(0.55)
    assert policy.metrics == [pytest.approx(0.55)]
    agent.step = 75
    policy.select_action(np.array([0.0, 1.0]))
    assert policy.metrics == [pytest.approx(policy.get_current_value())]
    assert policy.metrics == [pytest.approx(0.325)]


def test_annealing_changes_the_action_distribution():
    policy = annealed(value_max=1.0, value_min=0.0, value_test=0.0, nb_steps=10)
    agent = attach(policy, step=0)
    q_values = np.array([0.0, 1.0])
    start = np.bincount([policy.select_action(q_values) for _ in range(N)], minlength=2) / N
    assert_frequencies(start, [0.5, 0.5])  # eps 1: uniform
    agent.step = 10
    assert {policy.select_action(q_values) for _ in range(1000)} == {1}  # eps 0: greedy
    agent.step, agent.training = 0, False
    assert {policy.select_action(q_values) for _ in range(1000)} == {1}  # value_test 0


def test_annealing_tau_of_a_boltzmann_policy():
    policy = LinearAnnealedPolicy(BoltzmannQPolicy(), "tau", 2.0, 0.5, 0.5, 10)
    attach(policy, step=5)
    policy.select_action(np.array([0.0, 1.0]))
    assert policy.metrics_names == ["mean_tau"]
    assert policy.inner_policy.tau == pytest.approx(1.25)
    assert policy.metrics == [pytest.approx(1.25)]


def test_get_config_describes_the_policies():
    assert EpsGreedyQPolicy(eps=0.2).get_config() == {"eps": 0.2}
    assert BoltzmannQPolicy(tau=2.0, clip=(-5, 5)).get_config() == {
        "tau": 2.0,
        "clip": (-5.0, 5.0),
    }
    config = annealed().get_config()
    assert config["inner_policy"] == {"class_name": "EpsGreedyQPolicy", "config": {"eps": 0.1}}
    assert (config["attr"], config["nb_steps"], config["value_min"]) == ("eps", 100, 0.1)


# ------------------------------------------------------------------ argument checks


@pytest.mark.parametrize(
    ("build", "error", "name"),
    [
        (lambda: EpsGreedyQPolicy(eps=1.5), ValueError, "eps"),
        (lambda: EpsGreedyQPolicy(eps=-0.1), ValueError, "eps"),
        (lambda: EpsGreedyQPolicy(eps=float("nan")), ValueError, "eps"),
        (lambda: EpsGreedyQPolicy(eps="0.1"), TypeError, "eps"),
        (lambda: BoltzmannQPolicy(tau=0), ValueError, "tau"),
        (lambda: BoltzmannQPolicy(tau=-1.0), ValueError, "tau"),
        (lambda: BoltzmannQPolicy(clip=(1.0, -1.0)), ValueError, "clip"),
        (lambda: BoltzmannQPolicy(clip=500.0), ValueError, "clip"),
        (lambda: MaxBoltzmannQPolicy(eps=1.5), ValueError, "eps"),
        (lambda: MaxBoltzmannQPolicy(tau=0.0), ValueError, "tau"),
        (lambda: MaxBoltzmannQPolicy(clip=(0.0, 0.0)), ValueError, "clip"),
        (lambda: annealed(nb_steps=0), ValueError, "nb_steps"),
        (lambda: annealed(nb_steps=10.0), TypeError, "nb_steps"),
        (lambda: annealed(value_max=float("inf")), ValueError, "value_max"),
        (lambda: annealed(value_min=None), TypeError, "value_min"),
        (lambda: annealed(value_test="0"), TypeError, "value_test"),
        (
            lambda: LinearAnnealedPolicy(EpsGreedyQPolicy(), "tau", 1.0, 0.1, 0.0, 10),
            ValueError,
            "attr",
        ),
        (
            lambda: LinearAnnealedPolicy(GreedyQPolicy(), "eps", 1.0, 0.1, 0.0, 10),
            ValueError,
            "attr",
        ),
        (
            lambda: LinearAnnealedPolicy(object(), "eps", 1.0, 0.1, 0.0, 10),
            TypeError,
            "inner_policy",
        ),
    ],
)
def test_invalid_arguments_raise_naming_the_argument(build, error, name):
    with pytest.raises(error, match=f"^{name}:"):
        build()


@pytest.mark.parametrize(
    "policy", [GreedyQPolicy(), *make_policies()], ids=lambda policy: type(policy).__name__
)
@pytest.mark.parametrize("q_values", [np.zeros((1, 3)), np.zeros((2, 2)), np.zeros(0), 1.0])
def test_q_values_must_be_a_non_empty_1d_array(policy, q_values):
    attach(policy)
    with pytest.raises(ValueError, match="^q_values:"):
        policy.select_action(q_values)
