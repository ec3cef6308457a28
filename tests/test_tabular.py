"""kerasdqn.tabular: value and policy iteration against known answers, a model learned by
counting, and tabular Q-learning in keras-rl's fit/test loop (truncation, checkpoints, logs)."""

from __future__ import annotations

import math

import gymnasium
import h5py
import numpy as np
import pytest
from gymnasium import spaces
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from kerasdqn import (
    BoltzmannQPolicy,
    EpsGreedyQPolicy,
    GreedyQPolicy,
    LinearAnnealedPolicy,
    Processor,
    SequentialMemory,
)
from kerasdqn.callbacks import TensorBoard
from kerasdqn.tabular import (
    DenseModel,
    QLearningAgent,
    TransitionModel,
    dense_model,
    evaluate_policy,
    greedy_policy,
    horizon_values,
    policy_iteration,
    policy_values,
    q_values_of,
    value_iteration,
)

# The article's loop: state 0 -> 1 pays +1, state 1 -> 0 pays +2, one action, no end.
TWO_STATE_LOOP = {0: {0: [(1.0, 1, 1.0, False)]}, 1: {0: [(1.0, 0, 2.0, False)]}}


def frozen_lake(map_name: str = "4x4") -> gymnasium.Env:
    """Slippery FrozenLake-v1 with its 100-step time limit."""
    return gymnasium.make("FrozenLake-v1", map_name=map_name)


# --------------------------------------------------------------------------- planning


def test_value_iteration_matches_the_two_state_loop_formula():
    result = value_iteration(TWO_STATE_LOOP, gamma=0.9)
    # V(0) = 1 + 0.9 * (2 + 0.9 * V(0))  =>  V(0) = 2.8 / 0.19, and V(1) = 2.9 / 0.19.
    np.testing.assert_allclose(result.values, [2.8 / 0.19, 2.9 / 0.19], atol=1e-8)
    np.testing.assert_allclose(result.q_values[:, 0], result.values, atol=1e-8)
    assert result.converged and result.policy.tolist() == [0, 0]


@pytest.mark.parametrize(
    ("round_trips", "expected"),
    # 37 and 100 round trips are the article's figures; 50 give 14.7364507 (its sweep-50
    # figure, 14.7365250, does not follow from the formula).
    [(37, 14.7307838), (50, 14.7364507), (100, 14.7368421)],
)
def test_each_value_iteration_sweep_adds_one_discounted_reward(round_trips, expected):
    with pytest.warns(RuntimeWarning, match="max_iterations"):
        result = value_iteration(TWO_STATE_LOOP, gamma=0.9, max_iterations=2 * round_trips)
    assert result.sweeps == 2 * round_trips and not result.converged
    assert result.values[0] == pytest.approx(expected, abs=5e-8)
    assert result.values[0] == pytest.approx(2.8 * (1 - 0.81**round_trips) / 0.19, abs=1e-12)


def test_policy_iteration_solves_the_two_state_loop_in_one_round():
    result = policy_iteration(TWO_STATE_LOOP, gamma=0.9)
    np.testing.assert_allclose(result.values, [2.8 / 0.19, 2.9 / 0.19], atol=1e-12)
    assert result.sweeps == 1 and result.converged


@pytest.mark.parametrize(
    ("gamma", "start_value"), [(0.9, 0.068891), (0.99, 0.542026), (1.0, 14 / 17)]
)
def test_frozen_lake_4x4_start_values_and_both_methods_agree(gamma, start_value):
    model = frozen_lake().unwrapped.P
    by_values = value_iteration(model, gamma)
    by_policies = policy_iteration(model, gamma)
    assert by_values.converged and by_policies.converged
    assert by_values.values[0] == pytest.approx(start_value, abs=5e-7)
    assert by_policies.values[0] == pytest.approx(start_value, abs=5e-7)
    np.testing.assert_allclose(by_values.values, by_policies.values, atol=1e-7)
    np.testing.assert_array_equal(by_values.policy, by_policies.policy)


def test_value_iteration_at_gamma_1_stops_close_to_14_17():
    # No discount to make sweeps contract: convergence comes from the episodes ending.
    result = value_iteration(frozen_lake().unwrapped.P, gamma=1.0, theta=1e-12)
    assert result.converged and result.sweeps < 2000
    assert result.values[0] == pytest.approx(14 / 17, abs=1e-9)


def test_frozen_lake_8x8_start_value_at_gamma_0_99():
    model = frozen_lake("8x8").unwrapped.P
    by_values = value_iteration(model, 0.99)
    by_policies = policy_iteration(model, 0.99)
    assert by_values.values[0] == pytest.approx(0.414640, abs=5e-7)
    np.testing.assert_array_equal(by_values.policy, by_policies.policy)


def test_the_gamma_0_99_policy_wins_about_74_percent_within_the_time_limit():
    env = frozen_lake()
    policy = value_iteration(env.unwrapped.P, 0.99).policy
    exact = horizon_values(env.unwrapped.P, policy, horizon=100)[0]
    assert round(exact, 2) == 0.74
    episodes = 2000
    measured = evaluate_policy(env, policy, episodes, seed=0).mean()
    # Four standard errors of a success rate: a false alarm about once in 16,000 runs.
    assert abs(measured - exact) < 4 * math.sqrt(exact * (1 - exact) / episodes)


def test_the_8x8_gamma_0_99_policy_wins_about_63_percent_within_the_time_limit():
    env = frozen_lake("8x8")
    policy = value_iteration(env.unwrapped.P, 0.99).policy
    exact = horizon_values(env.unwrapped.P, policy, horizon=100)[0]
    assert round(exact, 2) == 0.63
    measured = evaluate_policy(env, policy, 1000, seed=0).mean()
    assert abs(measured - exact) < 4 * math.sqrt(exact * (1 - exact) / 1000)


def test_horizon_values_collect_what_a_time_limit_allows():
    # Three steps from state 0 of the loop: 1 + 0.9 * 2 + 0.81 * 1.
    assert horizon_values(TWO_STATE_LOOP, [0, 0], 3, gamma=0.9)[0] == pytest.approx(3.61)
    assert horizon_values(TWO_STATE_LOOP, [0, 0], 0)[0] == 0.0


def test_terminal_transitions_do_not_bootstrap():
    # From state 0, the only action reaches state 1 (worth 10 at gamma 0.9) but terminates.
    model = {0: {0: [(1.0, 1, 0.0, True)]}, 1: {0: [(1.0, 1, 1.0, False)]}}
    result = value_iteration(model, 0.9)
    np.testing.assert_allclose(result.values, [0.0, 10.0], atol=1e-8)
    ongoing = {0: {0: [(1.0, 1, 0.0, False)]}, 1: model[1]}
    assert value_iteration(ongoing, 0.9).values[0] == pytest.approx(9.0, abs=1e-8)


def test_at_gamma_1_the_greedy_policy_can_stall_where_policy_iteration_reaches_the_goal():
    model = frozen_lake("8x8").unwrapped.P
    by_values = value_iteration(model, 1.0)
    by_policies = policy_iteration(model, 1.0)
    assert by_values.values[0] == pytest.approx(1.0, abs=1e-8)
    # Safe moves into a wall tie with moves towards the goal; the first-listed one loops.
    assert policy_values(model, by_values.policy, 1.0)[0] < 0.01
    assert policy_values(model, by_policies.policy, 1.0)[0] == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(policy_values(model, by_policies.policy, 1.0), by_policies.values)


def test_an_endless_rewarding_loop_has_no_value_at_gamma_1():
    with pytest.warns(RuntimeWarning, match="no convergence"):
        assert not value_iteration(TWO_STATE_LOOP, 1.0, max_iterations=500).converged
    with pytest.raises(ValueError, match="policy: .*infinite"):
        policy_values(TWO_STATE_LOOP, [0, 0], 1.0)


def test_dense_model_folds_termination_into_the_continuing_probabilities():
    dense = dense_model(frozen_lake().unwrapped.P)
    assert dense.transitions.shape == (16, 4, 16) and dense.rewards.shape == (16, 4)
    np.testing.assert_allclose(dense.transitions.sum(axis=2), 1.0)
    # State 14, action right: the goal (15) with 1/3, paying 1 and ending the episode.
    assert dense.transitions[14, 2, 15] == pytest.approx(1 / 3)
    assert dense.continuing[14, 2, 15] == 0.0 and dense.rewards[14, 2] == pytest.approx(1 / 3)
    assert dense.continuing[14, 2, 10] == pytest.approx(1 / 3)
    with pytest.raises(ValueError):
        dense.transitions[0, 0, 0] = 0.5  # read-only


def test_greedy_policy_breaks_near_ties_towards_the_first_action():
    q_values = np.array([[1.0, 1.0 + 1e-9, 0.0], [0.0, 0.5, 0.4]])
    assert greedy_policy(q_values).tolist() == [0, 1]
    assert greedy_policy(q_values, tolerance=0.0).tolist() == [1, 1]
    np.testing.assert_allclose(q_values_of(TWO_STATE_LOOP, [10.0, 20.0], 0.5), [[11.0], [7.0]])


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({0: {0: [(0.5, 0, 0.0, False)]}}, "sum to 0.5"),
        ({0: {0: [(1.0, 3, 0.0, False)]}}, "next_state 3"),
        ({0: {0: []}}, r"model\[0\]\[0\]"),
        ({1: {0: [(1.0, 0, 0.0, False)]}}, "keys 0, 1"),
        ({0: {0: [(1.0, 0, 0.0)]}}, "expected \\(prob"),
        ({0: {0: [(1.0, 0, 0.0, False)]}, 1: {}}, "model"),
        ("FrozenLake", "model: expected a toy-text model"),
    ],
)
def test_bad_models_are_refused_naming_the_model(model, message):
    with pytest.raises((ValueError, TypeError), match=message):
        value_iteration(model, 0.9)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: value_iteration(TWO_STATE_LOOP, 1.5), "gamma"),
        (lambda: value_iteration(TWO_STATE_LOOP, 0.9, theta=0.0), "theta"),
        (lambda: value_iteration(TWO_STATE_LOOP, 0.9, max_iterations=0), "max_iterations"),
        (lambda: policy_iteration(TWO_STATE_LOOP, -0.1), "gamma"),
        (lambda: policy_iteration(TWO_STATE_LOOP, 0.9, max_iterations=1.5), "max_iterations"),
        (lambda: policy_values(TWO_STATE_LOOP, [0, 1], 0.9), "policy"),
        (lambda: q_values_of(TWO_STATE_LOOP, [1.0], 0.9), "values"),
        (lambda: horizon_values(TWO_STATE_LOOP, [0, 0], -1), "horizon"),
        (lambda: greedy_policy(np.zeros(3)), "q_values"),
        (lambda: evaluate_policy(frozen_lake(), np.zeros(16, int), 0), "nb_episodes"),
        (lambda: evaluate_policy(frozen_lake(), np.zeros(15, int), 1), "policy"),
        (lambda: evaluate_policy(gymnasium.make("CartPole-v1"), [0], 1), "env"),
        (lambda: DenseModel(np.ones((2, 1, 3)), np.zeros((2, 1)), np.ones((2, 1, 3))), "model"),
    ],
)
def test_bad_planning_arguments_are_refused_naming_them(call, name):
    with pytest.raises((ValueError, TypeError), match=f"^{name}"):
        call()


# --------------------------------------------------------------------------- learned models


def test_transition_model_counts_successors_as_the_article_tabulates():
    model = TransitionModel(nb_states=3, nb_actions=2)
    model.add(0, 1, 1.0, 1, False)
    model.add(0, 1, 3.0, 1, False)
    model.add(0, 1, 5.0, 2, True)
    assert model.successor_counts(0, 1) == {1: 2, 2: 1}
    assert model.nb_transitions == 3 and model.visits[0, 1] == 3
    assert model.P[0][1] == [(2 / 3, 1, 2.0, False), (1 / 3, 2, 5.0, True)]
    # Never tried: an end without reward, as toy-text models write terminal states.
    assert model.P[2][0] == [(1.0, 2, 0.0, True)]
    dense = model.to_dense()
    np.testing.assert_allclose(dense.transitions, dense_model(model.P).transitions)
    np.testing.assert_allclose(dense.continuing, dense_model(model.P).continuing)
    np.testing.assert_allclose(dense.rewards, dense_model(model.P).rewards)
    assert dense.rewards[0, 1] == pytest.approx(3.0)


def test_transition_model_recovers_frozen_lake_within_sampling_error():
    env = frozen_lake()
    model = TransitionModel.for_env(env)
    model.add_random_rollout(env, 20_000, seed=0)
    true, estimate = dense_model(env.unwrapped.P), model.to_dense()
    visits = model.visits[:, :, np.newaxis]
    tried = visits[:, :, 0] > 0
    assert tried.sum() == 44  # every action in the 11 non-terminal states
    # The estimate of p after n visits has standard error sqrt(p (1 - p) / n); allow five
    # (over all 1024 entries a false alarm about once in 2,000 runs).
    error = np.abs(estimate.transitions - true.transitions)
    bound = 5 * np.sqrt(true.transitions * (1 - true.transitions) / np.maximum(visits, 1))
    assert (error <= bound + 1e-12).all()
    # What cannot happen is never estimated to; rewards and ends are those of the table.
    assert ((estimate.transitions > 0) == (true.transitions > 0)).all()
    outcomes = {
        (state, action, next_state): (reward, terminated)
        for state, actions in env.unwrapped.P.items()
        for action, entries in actions.items()
        for _, next_state, reward, terminated in entries
    }
    for state, action in np.argwhere(tried):
        for _, next_state, reward, terminated in model.P[state][action]:
            assert outcomes[state, action, next_state] == (reward, terminated)


def test_value_iteration_on_the_estimate_approaches_the_true_values():
    env = frozen_lake()
    true = value_iteration(env.unwrapped.P, 0.9).values
    errors = []
    for nb_steps in (5_000, 80_000):
        model = TransitionModel.for_env(env)
        model.add_random_rollout(env, nb_steps, seed=1)
        errors.append(np.abs(value_iteration(model, 0.9).values - true).max())
    # Sampling error falls as 1 / sqrt(steps): 16 times the data, about a quarter the error.
    assert errors[1] < 0.1 and errors[1] < errors[0] / 2, errors


def test_transition_model_reads_what_a_sequential_memory_holds():
    env = frozen_lake()
    memory = SequentialMemory(limit=5_000)
    direct = TransitionModel.for_env(env)
    rng = np.random.default_rng(0)
    observation, _ = env.reset(seed=0)
    for _ in range(2_000):
        action = int(rng.integers(4))
        next_observation, reward, terminated, truncated, _ = env.step(action)
        memory.append(observation, action, reward, terminated, truncated=truncated)
        direct.add(observation, action, reward, next_observation, terminated)
        observation = next_observation
        if terminated or truncated:
            memory.append_final(observation)
            observation, _ = env.reset()
    from_memory = TransitionModel.for_env(env)
    from_memory.add_memory(memory)
    np.testing.assert_array_equal(from_memory.counts, direct.counts)
    np.testing.assert_allclose(from_memory.to_dense().rewards, direct.to_dense().rewards)

    small = SequentialMemory(limit=300)  # wrapped around: only the newest transitions
    for step in range(1_000):
        small.append(step % 16, step % 4, 0.0, False)
    wrapped = TransitionModel.for_env(env)
    wrapped.add_memory(small)
    assert wrapped.nb_transitions == small.nb_transitions == 299


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda m: m.add(4, 0, 0.0, 0, False), "states"),
        (lambda m: m.add(0, 2, 0.0, 0, False), "actions"),
        (lambda m: m.add(0, 0, 0.0, -1, False), "next_states"),
        (lambda m: m.add(0, 0, math.nan, 0, False), "rewards"),
        (lambda m: m.add(0, 0, 0.0, 0, 1), "terminated"),
        (lambda m: m.add_batch([0, 1], [0], [0.0], [0], [False]), "states, actions"),
        (lambda m: m.add_memory([]), "memory"),
        (lambda m: m.add_random_rollout(frozen_lake(), 10), "env"),
        (lambda m: m.add_random_rollout(frozen_lake(), 0), "nb_steps"),
        (lambda m: m.successor_counts(0, 5), "action"),
        (lambda m: TransitionModel(0, 2), "nb_states"),
    ],
)
def test_bad_experience_is_refused_naming_the_argument(call, name):
    with pytest.raises((ValueError, TypeError), match=f"^{name}"):
        call(TransitionModel(4, 2))


# --------------------------------------------------------------------------- Q-learning


class Chain(gymnasium.Env):
    """Deterministic chain 0 - 1 - ... - (n-1): action 1 moves right, action 0 left (0 stays).
    Reaching the last state pays 1 and terminates; every other step pays 0."""

    def __init__(self, nb_states: int = 4) -> None:
        self.observation_space = spaces.Discrete(nb_states)
        self.action_space = spaces.Discrete(2)
        self.state = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = 0
        return self.state, {}

    def step(self, action):
        self.state = self.state + 1 if action == 1 else max(self.state - 1, 0)
        goal = self.state == self.observation_space.n - 1
        return self.state, float(goal), goal, False, {}


class Endless(gymnasium.Env):
    """One state, one action, reward 1 per step. It terminates after every step if
    ``terminates``, else never (only a time limit ends it)."""

    def __init__(self, terminates: bool) -> None:
        self.observation_space = spaces.Discrete(1)
        self.action_space = spaces.Discrete(1)
        self.terminates = terminates

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return 0, {}

    def step(self, action):
        return 0, 1.0, self.terminates, False, {}


class Rounds(gymnasium.Env):
    """Every episode lasts exactly 5 steps through states 0..4; the action equal to the
    state modulo 3 pays 1. Deterministic, so runs differ only through the agent."""

    def __init__(self) -> None:
        self.observation_space = spaces.Discrete(5)
        self.action_space = spaces.Discrete(3)
        self.state = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.state = 0
        return self.state, {}

    def step(self, action):
        reward = float(action == self.state % 3)
        self.state += 1
        return self.state % 5, reward, self.state == 5, False, {}


def make_agent(env: gymnasium.Env, **kwargs) -> QLearningAgent:
    return QLearningAgent(
        int(env.observation_space.n), int(env.action_space.n), **{"seed": 0, **kwargs}
    )


def test_q_learning_converges_to_the_hand_computed_q_values_of_a_chain():
    env = Chain(4)
    agent = make_agent(env, alpha=0.5, gamma=0.9, policy=EpsGreedyQPolicy(0.5))
    agent.fit(env, nb_steps=4_000, verbose=0, nb_max_episode_steps=20)
    # Right from state 2 pays 1 at once; each step further away costs a factor 0.9. Left
    # from s leads to max(s - 1, 0). State 3 ends episodes, so no action is taken there.
    right = [0.81, 0.9, 1.0]
    left = [0.9 * 0.81, 0.9 * 0.81, 0.9 * 0.9]
    np.testing.assert_allclose(agent.q_table[:3, 1], right, atol=1e-6)
    np.testing.assert_allclose(agent.q_table[:3, 0], left, atol=1e-6)
    np.testing.assert_array_equal(agent.q_table[3], 0.0)


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("time limit of the environment", 10.0),
        ("nb_max_episode_steps of fit", 10.0),
        ("termination", 1.0),
    ],
)
def test_truncation_bootstraps_and_termination_does_not(how, expected):
    # gamma 0.9: bootstrapping forever gives Q = 1 / (1 - 0.9) = 10; ending gives Q = 1.
    env = Endless(terminates=how == "termination")
    limit = None
    if how.startswith("time limit"):
        env = gymnasium.wrappers.TimeLimit(env, max_episode_steps=1)
    elif how.startswith("nb_max"):
        limit = 3
    agent = make_agent(env, alpha=1.0, gamma=0.9)
    history = agent.fit(env, nb_steps=600, verbose=0, nb_max_episode_steps=limit)
    assert agent.q_table[0, 0] == pytest.approx(expected, abs=1e-9)
    if how.startswith("time limit"):
        assert set(history.history["nb_episode_steps"]) == {1}


def test_an_episode_cut_at_the_end_of_fit_is_completed():
    env = Endless(terminates=False)
    agent = make_agent(env, alpha=1.0, gamma=0.5)
    agent.fit(env, nb_steps=1, verbose=0)
    # The one step waits for its next state; fit's end supplies it: Q = 1 + 0.5 * 0.
    assert agent.q_table[0, 0] == 1.0


def test_fit_returns_a_history_and_tensorboard_writes_event_files(tmp_path):
    env = Chain(4)
    schedule = LinearAnnealedPolicy(EpsGreedyQPolicy(), "eps", 1.0, 0.1, 0.0, nb_steps=500)
    agent = make_agent(env, alpha=0.5, gamma=0.9, policy=schedule)
    assert agent.metrics_names == ["td_error", "mean_q", "mean_eps"]
    callback = TensorBoard(log_dir=tmp_path / "logs", update_freq=50)
    history = agent.fit(env, nb_steps=1_000, callbacks=[callback], verbose=0)
    callback.close()
    logs = history.history
    assert sum(logs["nb_episode_steps"]) <= 1_000 and logs["nb_steps"][-1] <= 1_000
    assert all(reward == 1.0 for reward in logs["episode_reward"])
    assert all(np.isfinite(logs["td_error"])) and logs["mean_eps"][-1] == pytest.approx(0.1)
    accumulator = EventAccumulator(str(tmp_path / "logs"), size_guidance={"tensors": 0})
    accumulator.Reload()
    assert set(accumulator.Tags()["tensors"]) == {
        "episode/reward",
        "episode/length",
        "episode/epsilon",
        "train/td_error",
        "train/mean_q",
        "train/steps_per_second",
    }
    assert len(accumulator.Tensors("episode/reward")) == len(logs["episode_reward"])


def test_tensorboard_histograms_explain_that_there_is_no_network(tmp_path):
    env = Chain(4)
    callback = TensorBoard(log_dir=tmp_path, histogram_freq=1)
    with pytest.raises(AttributeError, match="histogram_freq=0"):
        make_agent(env).fit(
            env, nb_steps=200, callbacks=[callback], verbose=0, nb_max_episode_steps=10
        )


def test_boltzmann_exploration_learns_the_chain_too():
    env = Chain(4)
    agent = make_agent(env, alpha=0.5, gamma=0.9, policy=BoltzmannQPolicy(tau=0.5))
    agent.fit(env, nb_steps=3_000, verbose=0, nb_max_episode_steps=20)
    assert greedy_policy(agent.q_table)[:3].tolist() == [1, 1, 1]
    assert agent.q_table[0, 1] == pytest.approx(0.81, abs=1e-3)


def test_warm_up_steps_act_without_learning():
    env = Chain(4)
    agent = make_agent(env, nb_steps_warmup=50, initial_q=0.25)
    history = agent.fit(env, nb_steps=50, verbose=0, nb_max_episode_steps=10)
    np.testing.assert_array_equal(agent.q_table, 0.25)
    assert len(history.history["td_error"]) == 5
    assert all(math.isnan(value) for value in history.history["td_error"])
    metrics = agent.backward(0.0, terminal=False)
    assert metrics.shape == (2,) and np.isnan(metrics).all()
    agent.fit(env, nb_steps=50, verbose=0)
    assert (agent.q_table != 0.25).any()


def test_test_plays_greedily_and_changes_nothing():
    env = Chain(4)
    agent = make_agent(env, alpha=0.5, gamma=0.9, policy=EpsGreedyQPolicy(0.5))
    agent.fit(env, nb_steps=2_000, verbose=0, nb_max_episode_steps=20)
    table, step = agent.q_table.copy(), agent.step
    history = agent.test(env, nb_episodes=5, visualize=False, verbose=0)
    assert history.history["nb_episode_steps"] == [3] * 5
    np.testing.assert_array_equal(agent.q_table, table)
    assert agent.step == step


def test_a_processor_maps_other_observations_to_states():
    class Sign(Processor):
        """CartPole's pole angle: leaning left (0) or right (1)."""

        def process_observation(self, observation):
            return int(observation[2] > 0)

    env = gymnasium.make("CartPole-v1")
    env.reset(seed=0)
    agent = QLearningAgent(2, 2, processor=Sign(), seed=0)
    agent.fit(env, nb_steps=300, verbose=0)
    assert (agent.q_table != 0).all()


def resumable_agent() -> QLearningAgent:
    schedule = LinearAnnealedPolicy(EpsGreedyQPolicy(), "eps", 1.0, 0.05, 0.0, nb_steps=300)
    return QLearningAgent(5, 3, alpha=0.3, gamma=0.95, policy=schedule, seed=7)


def test_a_checkpoint_resumes_exactly(tmp_path):
    straight = resumable_agent()
    straight.fit(Rounds(), nb_steps=400, verbose=0)

    first = resumable_agent()
    first.fit(Rounds(), nb_steps=200, verbose=0, checkpoint_dir=tmp_path)  # 40 whole episodes
    resumed = resumable_agent()
    resumed.load_checkpoint(tmp_path)
    assert (resumed.step, resumed.episode) == (200, 40)
    resumed.fit(Rounds(), nb_steps=200, verbose=0)

    np.testing.assert_array_equal(resumed.q_table, straight.q_table)
    assert resumed.rng.bit_generator.state == straight.rng.bit_generator.state
    assert (resumed.step, resumed.episode) == (straight.step, straight.episode)


def test_a_checkpoint_mid_episode_completes_the_waiting_update_when_loaded(tmp_path):
    agent = QLearningAgent(3, 2, alpha=0.5, gamma=0.9, initial_q=1.0, seed=0)
    agent.training = True
    agent.forward(0)
    agent.backward(2.0, terminal=False)  # waits for the next state
    agent.save_checkpoint(tmp_path / "mid.h5", pending_observation=2)
    agent.finish_episode(2)  # ends the episode there: Q[0, a] = 1 + 0.5 * (2 + 0.9 - 1)
    assert agent.q_table.max() == pytest.approx(1.95)

    loaded = QLearningAgent(3, 2, alpha=0.5, gamma=0.9, initial_q=1.0, seed=0)
    loaded.load_checkpoint(tmp_path / "mid.h5")
    np.testing.assert_array_equal(loaded.q_table, agent.q_table)


def test_a_checkpoint_restores_what_the_policies_were_set_to(tmp_path):
    agent = QLearningAgent(4, 2, policy=EpsGreedyQPolicy(0.3), test_policy=EpsGreedyQPolicy(0.2))
    agent.policy.eps, agent.test_policy.eps = 0.05, 0.01
    agent.save_checkpoint(tmp_path / "policies.h5")
    loaded = QLearningAgent(4, 2, policy=EpsGreedyQPolicy(0.3), test_policy=EpsGreedyQPolicy(0.2))
    loaded.load_checkpoint(tmp_path / "policies.h5")
    assert (loaded.policy.eps, loaded.test_policy.eps) == (0.05, 0.01)


def write_checkpoint(tmp_path, **changes) -> str:
    path = str(tmp_path / "checkpoint.h5")
    QLearningAgent(4, 2, seed=0).save_checkpoint(path)
    with h5py.File(path, "a") as handle:
        for name, value in changes.items():
            if name == "q_table":
                del handle["q_table"]
                handle["q_table"] = value
            else:
                handle.attrs[name] = value
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"q_table": np.zeros((5, 2))}, "shape"),
        ({"q_table": np.full((4, 2), np.nan)}, "NaN"),
        ({"q_table": np.zeros((4, 2), dtype=np.int64)}, "not floats"),
        ({"step": -3}, "step"),
        ({"format": "something else"}, "not a kerasdqn Q-learning checkpoint"),
        ({"policy_state": '{"tau": 1.0}'}, "policy_state: unknown fields"),
        ({"rng_state": '{"bit_generator": "MT19937"}'}, "rng_state: expected the state"),
        ({"pending": "[0, 9, 1.0, 0]"}, "pending"),
        ({"config": '{"nb_states": 3, "nb_actions": 2}'}, "nb_states=3"),
        ({"rng_state": "{not json"}, "rng_state is not valid JSON"),
    ],
)
def test_a_bad_checkpoint_is_refused_naming_the_file_and_changes_nothing(
    tmp_path, changes, message
):
    path = write_checkpoint(tmp_path, **changes)
    agent = QLearningAgent(4, 2, initial_q=0.5, seed=1)
    agent.step, rng_state = 11, agent.rng.bit_generator.state
    with pytest.raises(ValueError, match=message) as error:
        agent.load_checkpoint(path)
    assert "checkpoint.h5" in str(error.value)
    np.testing.assert_array_equal(agent.q_table, 0.5)
    assert agent.step == 11 and agent.rng.bit_generator.state == rng_state


def test_weights_round_trip_and_refuse_to_overwrite_by_default(tmp_path):
    path = tmp_path / "q.h5"
    agent = QLearningAgent(4, 2, seed=0)
    agent.q_table[:] = np.arange(8).reshape(4, 2)
    agent.save_weights(path)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        agent.save_weights(path)
    agent.save_weights(path, overwrite=True)
    other = QLearningAgent(4, 2, seed=1)
    other.load_weights(path)
    np.testing.assert_array_equal(other.q_table, agent.q_table)
    with pytest.raises(ValueError, match="q.h5.*shape"):
        QLearningAgent(5, 2).load_weights(path)
    agent.q_table[0, 0] = np.inf
    with pytest.raises(FloatingPointError):
        agent.save_weights(path, overwrite=True)
    other.load_weights(path)  # the file kept its last good table
    assert other.q_table[0, 0] == 0.0


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"nb_states": 0}, "nb_states"),
        ({"nb_actions": 2.0}, "nb_actions"),
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.5}, "alpha"),
        ({"gamma": 1.01}, "gamma"),
        ({"nb_steps_warmup": -1}, "nb_steps_warmup"),
        ({"initial_q": math.inf}, "initial_q"),
        ({"policy": "eps-greedy"}, "policy"),
        ({"test_policy": GreedyQPolicy}, "test_policy"),
        ({"seed": -1}, "seed"),
        ({"processor": object()}, "processor"),
    ],
)
def test_bad_agent_arguments_are_refused_naming_them(kwargs, name):
    with pytest.raises((ValueError, TypeError), match=f"^{name}"):
        QLearningAgent(**{"nb_states": 4, "nb_actions": 2, **kwargs})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (gymnasium.make("CartPole-v1"), "Discrete observation_space"),
        (Chain(5), "nb_states=4"),
        (Endless(False), "nb_actions=2"),
        ("FrozenLake-v1", "gymnasium environment"),
    ],
)
def test_environments_the_table_does_not_fit_are_refused(env, message):
    with pytest.raises((ValueError, TypeError), match=f"^env: .*{message}"):
        QLearningAgent(4, 2).fit(env, nb_steps=10, verbose=0)


def test_observations_that_are_not_state_indices_are_refused():
    agent = QLearningAgent(4, 2)
    with pytest.raises(ValueError, match="^observation: state 4"):
        agent.forward(4)
    with pytest.raises(TypeError, match="^observation: expected a state index"):
        agent.forward(0.5)
