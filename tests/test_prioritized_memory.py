"""PrioritizedMemory: priorities follow the ring, sampling follows the priorities, importance
weights and beta follow the paper, and priorities survive checkpoints and reach the loss.

Most tests use ``alpha=1`` and ``epsilon=0.5``, so that a TD error ``td`` gives the priority
``|td| + 0.5`` exactly and the expected values can be written down by hand. Observation ``k``
is ``[k, -k]``.
"""

import math
import os
import tracemalloc

import h5py
import keras
import numpy as np
import pytest

from kerasdqn import DQNAgent, PrioritizedMemory, SequentialMemory, build_mlp
from kerasdqn.memory import Experience, TransitionBatch


def obs(k: int) -> np.ndarray:
    return np.array([k, -k], dtype=np.float32)


def add_episode(memory, ids) -> None:
    """Append an episode visiting observations ``ids``; the last one is its final observation
    (the step before it terminated)."""
    *steps, last = ids
    for i, k in enumerate(steps):
        memory.append(obs(k), k % 2, k / 10, terminal=i == len(steps) - 1)
    memory.append_final(obs(last))


def add_steps(memory, ids) -> None:
    """Append observations ``ids`` as steps of an episode that goes on."""
    for k in ids:
        memory.append(obs(k), k % 2, k / 10, terminal=False)


def exact_memory(limit: int = 100, **kwargs) -> PrioritizedMemory:
    """A memory in which the TD error ``td`` gives the priority ``|td| + 0.5``."""
    memory = PrioritizedMemory(limit, alpha=1.0, epsilon=0.5, **kwargs)
    memory.rng = np.random.default_rng(0)
    return memory


def set_priorities(memory, positions, priorities) -> None:
    """Hand the TD errors that give ``priorities`` (>= 0.5) to the transitions at
    ``positions`` of a memory that has not wrapped around (serial numbers are positions)."""
    memory.update_priorities(np.asarray(positions), np.asarray(priorities) - 0.5)


# ------------------------------------------------------------------ construction


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"alpha": -0.1}, ValueError, "alpha"),
        ({"alpha": math.nan}, ValueError, "alpha"),
        ({"beta": 1.5}, ValueError, "beta"),
        ({"beta": -0.1}, ValueError, "beta"),
        ({"beta_steps": 0}, ValueError, "beta_steps"),
        ({"beta_steps": 10.0}, TypeError, "beta_steps"),
        ({"epsilon": 0.0}, ValueError, "epsilon"),
        ({"limit": 1}, ValueError, "limit"),
    ],
)
def test_invalid_constructor_arguments_raise_naming_the_argument(kwargs, error, name):
    with pytest.raises(error, match=f"^{name}:"):
        PrioritizedMemory(**{"limit": 10, **kwargs})


def test_get_config_holds_the_new_arguments_and_rebuilds_the_memory():
    memory = PrioritizedMemory(
        50, window_length=2, alpha=0.7, beta=0.5, beta_steps=20, epsilon=0.01
    )
    config = memory.get_config()
    assert config == {
        "limit": 50,
        "window_length": 2,
        "ignore_episode_boundaries": False,
        "alpha": 0.7,
        "beta": 0.5,
        "beta_steps": 20,
        "epsilon": 0.01,
    }
    assert PrioritizedMemory(**config).get_config() == config
    assert PrioritizedMemory.prioritized and not SequentialMemory.prioritized


def test_the_sum_tree_is_counted_in_nbytes():
    # 1000 leaves are padded to 1024; the tree holds 2 * 1024 float64 nodes.
    assert PrioritizedMemory(1000).nbytes - SequentialMemory(1000).nbytes == 2 * 1024 * 8


# ------------------------------------------------------------------ priorities follow the ring


def test_new_transitions_enter_at_the_highest_priority_seen_so_far():
    memory = exact_memory()
    add_episode(memory, range(1, 6))  # transitions at 0..3, the final observation at 4
    assert memory.priorities[:5].tolist() == [1.0, 1.0, 1.0, 1.0, 0.0]
    assert memory.max_priority == 1.0
    set_priorities(memory, [0, 1], [9.0, 0.5])
    assert memory.max_priority == 9.0
    add_episode(memory, range(6, 9))  # transitions at 5, 6, the final observation at 7
    assert memory.priorities[:8].tolist() == [9.0, 0.5, 1.0, 1.0, 0.0, 9.0, 9.0, 0.0]
    set_priorities(memory, [0], [2.0])
    assert memory.max_priority == 9.0  # the highest seen, not the highest now


def test_a_priority_is_the_td_error_plus_epsilon_to_the_alpha():
    memory = PrioritizedMemory(20, alpha=0.6, epsilon=0.01)
    add_steps(memory, range(1, 6))
    memory.update_priorities(np.array([0, 1, 2]), np.array([-2.0, 0.0, 3.0], np.float32))
    expected = [2.01**0.6, 0.01**0.6, 3.01**0.6, 1.0, 0.0]
    np.testing.assert_allclose(memory.priorities[:5], expected, rtol=1e-12)
    assert memory.max_priority == pytest.approx(3.01**0.6, rel=1e-12)


def test_the_newest_entry_of_each_stream_has_no_priority_until_its_next_observation_comes():
    memory = exact_memory(limit=30)
    for t in range(6):
        for stream in (0, 1):
            k = 100 * stream + t
            memory.append_transition(obs(k), 0, 0.0, obs(k + 1), terminated=t == 5, stream=stream)
    memory.append_transition(obs(500), 0, 0.0, obs(501), terminated=False, stream=2)
    positive = np.flatnonzero(memory.priorities > 0)
    np.testing.assert_array_equal(positive, memory.transition_positions())
    assert memory.nb_transitions == 13
    sampled = memory.sample_indices(2000)
    assert set(sampled.tolist()) == set(positive.tolist())


def test_a_stream_that_fell_a_whole_ring_behind_gets_no_transition_from_an_evicted_entry():
    # Streams 0 and 1 fill a ring of 4 while stream 2's newest entry becomes the oldest.
    memory = exact_memory(limit=4)
    memory.append_transition(obs(1), 0, 0.0, obs(2), terminated=False, stream=2)
    memory.append_transition(obs(10), 0, 0.0, obs(11), terminated=False, stream=1)
    memory.append_transition(obs(11), 0, 0.0, obs(12), terminated=False, stream=1)
    memory.append_transition(obs(2), 1, 5.0, obs(3), terminated=False, stream=2)
    positive = np.flatnonzero(memory.priorities > 0)
    np.testing.assert_array_equal(positive, memory.transition_positions())
    batch = memory.batch_at(positive)
    assert sorted(batch.reward.tolist()) == [0.0, 5.0]
    assert not any(np.array_equal(s0, s1) for s0, s1 in zip(batch.state0, batch.state1))


def test_an_overwritten_position_loses_its_priority_and_its_new_transition_gets_the_max():
    memory = exact_memory(limit=6)
    add_steps(memory, range(1, 7))  # positions 0..5; 5 is the newest, 0..4 start transitions
    set_priorities(memory, [0, 1], [9.0, 0.5])
    add_steps(memory, [7])  # overwrites position 0, the newest now; position 5 starts one
    assert memory.priorities.tolist() == [0.0, 0.5, 1.0, 1.0, 1.0, 9.0]
    add_steps(memory, [8])  # overwrites position 1
    assert memory.priorities.tolist() == [9.0, 0.0, 1.0, 1.0, 1.0, 9.0]
    add_steps(memory, [9])
    assert memory.priorities[1] == 9.0  # the new transition's, not the 0.5 of the old one


def test_never_samples_a_zero_priority_position_the_newest_entry_or_a_final_observation():
    memory = exact_memory(limit=30)
    add_episode(memory, range(1, 8))
    add_episode(memory, range(8, 12))
    add_steps(memory, range(12, 20))
    set_priorities(memory, memory.transition_positions(), np.linspace(0.5, 40.0, 16))
    final, newest = {6, 10}, 18
    assert memory.priorities[sorted(final | {newest})].tolist() == [0.0, 0.0, 0.0]
    sampled = set(memory.sample_indices(20_000).tolist())
    assert sampled == set(memory.transition_positions().tolist())
    assert not sampled & (final | {newest})


def test_never_samples_the_transition_that_would_straddle_the_write_index_after_wrap_around():
    memory = exact_memory(limit=10)
    add_steps(memory, range(1, 11))
    set_priorities(memory, [4], [1000.0])  # position 4: about to be the newest after wrapping
    add_steps(memory, range(11, 26))  # 25 entries written: the newest (serial 24) is at 4
    assert memory.priorities[4] == 0.0
    sampled = memory.sample_indices(5000)
    assert 4 not in set(sampled.tolist())
    assert set(sampled.tolist()) == set(range(10)) - {4}
    batch = memory.sample_batch(64)
    np.testing.assert_array_equal(batch.state1[:, -1, 0], batch.state0[:, -1, 0] + 1)


def test_stale_priority_updates_after_the_ring_overwrote_the_transitions_are_ignored():
    memory = exact_memory(limit=20)
    add_steps(memory, range(1, 31))
    batch = memory.sample_batch(16)
    assert (batch.indices >= 10).all()  # serial numbers, not positions, once wrapped
    np.testing.assert_array_equal(batch.state0[:, -1, 0], batch.indices + 1)
    before = memory.priorities
    add_steps(memory, range(31, 51))  # the whole ring is written again
    memory.update_priorities(batch.indices, np.full(16, 100.0))
    np.testing.assert_array_equal(memory.priorities, before)
    assert memory.max_priority == 1.0

    batch = memory.sample_batch(16)
    add_steps(memory, range(51, 56))  # overwrites serials 30..34
    memory.update_priorities(batch.indices, np.full(16, 100.0))
    priorities = memory.priorities[batch.indices % 20]
    stale = batch.indices < 35
    assert stale.any() and (~stale).any()
    assert (priorities[~stale] == 100.5).all()
    assert (priorities[stale] != 100.5).all()
    assert memory.max_priority == 100.5


def test_update_priorities_refuses_bad_input_naming_it():
    memory = exact_memory()
    add_steps(memory, range(1, 5))
    with pytest.raises(ValueError, match="td_errors: expected one per index"):
        memory.update_priorities(np.array([0, 1]), np.array([1.0]))
    with pytest.raises(ValueError, match="td_errors: expected finite"):
        memory.update_priorities(np.array([0]), np.array([np.nan]))
    with pytest.raises(TypeError, match="indices"):
        memory.update_priorities(np.array([0.5]), np.array([1.0]))
    # Serial numbers the memory never gave: negative, or past the 4 entries written.
    for never_given in ([-3], [4], [10**9], [0, 50]):
        with pytest.raises(ValueError, match=r"indices: .* from 0 to 3"):
            memory.update_priorities(np.array(never_given), np.ones(len(never_given)))
    assert memory.priorities[:4].tolist() == [1.0, 1.0, 1.0, 0.0]


# ------------------------------------------------------------------ sampling


def test_sampling_frequencies_match_the_priorities():
    memory = exact_memory()
    add_episode(memory, range(1, 10))  # transitions at 0..7
    priorities = np.arange(1.0, 9.0)
    set_priorities(memory, range(8), priorities)
    draws = np.concatenate([memory.sample_batch(50).indices for _ in range(400)])
    counts = np.bincount(draws, minlength=9)
    assert counts[8] == 0  # the final observation
    expected = len(draws) * priorities / priorities.sum()
    chi_square = ((counts[:8] - expected) ** 2 / expected).sum()
    # The chi-square critical value for 7 degrees of freedom at the 0.1% significance level;
    # uniform sampling would score about 10600 here.
    assert chi_square < 24.32


def test_each_draw_of_a_batch_comes_from_its_own_segment_of_the_total():
    memory = exact_memory()
    add_episode(memory, range(1, 6))
    set_priorities(memory, range(4), [1.0, 1.0, 1.0, 1.0])
    # Four equal segments of four equal priorities: each segment holds one transition.
    for _ in range(20):
        assert memory.sample_indices(4).tolist() == [0, 1, 2, 3]


def test_importance_weights_follow_the_formula_normalized_by_the_batch_maximum():
    memory = exact_memory(beta=0.5, beta_steps=100)
    add_episode(memory, range(1, 6))
    set_priorities(memory, range(4), [1.0, 2.0, 3.0, 4.0])
    # N = 4 transitions, P = p / 10: w = (4 * P)^-beta.
    raw = {0.5: [0.4**-0.5, 0.8**-0.5, 1.2**-0.5, 1.6**-0.5], 1.0: [2.5, 1.25, 1 / 1.2, 0.625]}
    for step, beta in [(0, 0.5), (100, 1.0)]:
        for _ in range(10):
            batch = memory.sample_batch(6, step=step)
            expected = np.array(raw[beta])[batch.indices]
            assert batch.weights.dtype == np.float32 and batch.weights.shape == (6,)
            np.testing.assert_allclose(batch.weights, expected / expected.max(), rtol=1e-6)


def test_beta_anneals_linearly_to_one_over_beta_steps_and_stays_there():
    memory = PrioritizedMemory(10, beta=0.4, beta_steps=1000)
    assert memory.beta_at(None) == 0.4
    assert memory.beta_at(0) == 0.4
    assert memory.beta_at(500) == pytest.approx(0.7)
    assert memory.beta_at(1000) == 1.0
    assert memory.beta_at(10**6) == 1.0
    with pytest.raises(ValueError, match="step"):
        memory.beta_at(-1)


def test_equal_priorities_give_unit_weights_and_alpha_zero_samples_uniformly():
    memory = PrioritizedMemory(100, alpha=0.0)
    memory.rng = np.random.default_rng(0)
    add_episode(memory, range(1, 10))
    memory.update_priorities(np.arange(8), np.arange(8) * 10.0)
    assert memory.priorities[:8].tolist() == [1.0] * 8
    batch = memory.sample_batch(32, step=0)
    assert batch.weights.tolist() == [1.0] * 32


def test_windows_n_step_returns_and_uint8_frames_are_those_of_sequential_memory():
    uniform = SequentialMemory(40, window_length=3)
    prioritized = PrioritizedMemory(40, window_length=3)
    rng = np.random.default_rng(0)
    for memory in (uniform, prioritized):
        frames = np.random.default_rng(1)
        for length in (6, 3, 9, 8, 7, 12):
            for i in range(length):
                frame = frames.integers(0, 256, (3, 3), dtype=np.uint8)
                memory.append(frame, i % 2, float(i), terminal=i == length - 1)
            memory.append_final(frames.integers(0, 256, (3, 3), dtype=np.uint8))
    positions = uniform.transition_positions()
    np.testing.assert_array_equal(positions, prioritized.transition_positions())
    positions = rng.permutation(positions)
    expected = uniform.batch_at(positions, n_step=3, gamma=0.9)
    batch = prioritized.batch_at(positions, n_step=3, gamma=0.9)
    for name in ("state0", "action", "reward", "state1", "terminal1", "steps"):
        np.testing.assert_array_equal(getattr(batch, name), getattr(expected, name), name)
    assert batch.state0.dtype == np.uint8
    np.testing.assert_array_equal(batch.indices % 40, positions)


def test_keras_rl_sample_and_the_shared_sample_batch_signature_still_work():
    memory = exact_memory()
    add_episode(memory, range(1, 6))
    set_priorities(memory, range(4), [1.0, 1.0, 1.0, 40.0])
    experiences = memory.sample(10)
    assert len(experiences) == 10 and all(isinstance(e, Experience) for e in experiences)
    assert sum(e.state0[-1][0] == 4 for e in experiences) >= 8  # the transition 4 -> 5
    uniform = SequentialMemory(100)
    add_episode(uniform, range(1, 6))
    batch = uniform.sample_batch(4, n_step=1, gamma=0.9, step=10)
    assert batch.weights is None and batch.action.shape == (4,)


def test_sampling_an_empty_memory_says_what_to_do():
    memory = PrioritizedMemory(10)
    with pytest.raises(ValueError, match="no complete transition"):
        memory.sample_batch(4)


# ------------------------------------------------------------------ state and checkpoints


def filled_memory() -> PrioritizedMemory:
    memory = exact_memory(limit=25)
    add_episode(memory, range(1, 12))
    add_steps(memory, range(12, 40))
    serials = memory.sample_batch(20).indices
    memory.update_priorities(serials, np.random.default_rng(0).normal(size=20))
    return memory


def test_get_state_and_set_state_restore_the_priorities_and_the_next_draws():
    memory = filled_memory()
    restored = PrioritizedMemory(**memory.get_config())
    restored.set_state(memory.get_state())
    np.testing.assert_array_equal(restored.priorities, memory.priorities)
    assert restored.max_priority == memory.max_priority
    memory.rng, restored.rng = np.random.default_rng(7), np.random.default_rng(7)
    a, b = memory.sample_batch(32, step=50), restored.sample_batch(32, step=50)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.weights, b.weights)
    add_steps(restored, [40])
    add_steps(memory, [40])
    np.testing.assert_array_equal(restored.priorities, memory.priorities)


def _with(state, **changes):
    changed = dict(state)
    changed.update(changes)
    return changed


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: {k: v for k, v in s.items() if k != "priorities"}, "holds no priorities"),
        (lambda s: {k: v for k, v in s.items() if k != "max_priority"}, "max_priority"),
        (lambda s: _with(s, priorities=s["priorities"][:-1]), "priorities has shape"),
        (lambda s: _with(s, priorities=np.where(s["has_next"], -1.0, 0.0)), ">= 0"),
        (lambda s: _with(s, priorities=np.where(s["has_next"], np.nan, 0.0)), "NaN"),
        (lambda s: _with(s, priorities=np.where(s["has_next"], 1.0, 0.5)), "0 where no"),
        (lambda s: _with(s, priorities=np.where(s["has_next"], 0.0, 0.0)), "> 0 where"),
        (lambda s: _with(s, max_priority=0.1), "max_priority"),
        (lambda s: _with(s, max_priority=np.inf), "max_priority"),
    ],
)
def test_check_state_refuses_priorities_that_do_not_fit_and_changes_nothing(change, message):
    state = filled_memory().get_state()
    fresh = PrioritizedMemory(25, alpha=1.0, epsilon=0.5)
    with pytest.raises(ValueError, match=message):
        fresh.set_state(change(state))
    assert fresh.nb_entries == 0 and fresh.priorities.sum() == 0.0


def test_a_uniform_state_is_refused_by_a_prioritized_memory_and_the_reverse():
    uniform = SequentialMemory(25)
    add_episode(uniform, range(1, 12))
    with pytest.raises(ValueError, match="SequentialMemory's.*PrioritizedMemory needs them"):
        PrioritizedMemory(25).set_state(uniform.get_state())
    with pytest.raises(ValueError, match="PrioritizedMemory's.*samples uniformly"):
        SequentialMemory(25).set_state(filled_memory().get_state())


def make_agent(memory) -> DQNAgent:
    agent = DQNAgent(
        build_mlp((1, 4), 2, (16,)),
        nb_actions=2,
        memory=memory,
        nb_steps_warmup=50,
        batch_size=16,
        gradient_steps=2,
        target_model_update=100,
        seed=5,
    )
    agent.compile(keras.optimizers.Adam(1e-3))
    return agent


def test_a_short_cartpole_fit_learns_and_moves_priorities_away_from_their_start(cartpole):
    agent = make_agent(PrioritizedMemory(1000, beta_steps=300))
    history = agent.fit(cartpole, nb_steps=300, verbose=0)
    assert agent.step == 300 and history.history["nb_steps"]
    memory = agent.memory
    priorities = memory.priorities[memory.transition_positions()]
    assert (priorities > 0).all()
    # 250 learning steps x 2 gradient steps x 16 samples: most transitions were drawn and given
    # their TD error's priority; the few written since the last step still hold the max.
    assert np.count_nonzero(priorities != memory.max_priority) > 0.8 * len(priorities)
    assert len(np.unique(priorities)) > 100


def test_priorities_survive_a_checkpoint_exactly(cartpole, tmp_path):
    agent = make_agent(PrioritizedMemory(300, beta_steps=500))
    agent.fit(cartpole, nb_steps=200, verbose=0)
    agent.save_checkpoint(tmp_path / "c.h5")
    with h5py.File(tmp_path / "c.h5", "r") as handle:
        assert handle["memory/priorities"].dtype == np.float64
    fresh = make_agent(PrioritizedMemory(300, beta_steps=500))
    fresh.load_checkpoint(tmp_path / "c.h5")
    np.testing.assert_array_equal(fresh.memory.priorities, agent.memory.priorities)
    assert fresh.memory.max_priority == agent.memory.max_priority
    assert (fresh.memory.priorities[fresh.memory.transition_positions()] != 1.0).any()
    a = agent.memory.sample_batch(32, step=agent.step)
    b = fresh.memory.sample_batch(32, step=fresh.step)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.weights, b.weights)


def test_a_checkpoint_of_the_other_kind_of_memory_is_refused_naming_the_mismatch(
    cartpole, tmp_path
):
    uniform = make_agent(SequentialMemory(300))
    uniform.fit(cartpole, nb_steps=60, verbose=0)
    uniform.save_checkpoint(tmp_path / "uniform.h5")
    prioritized = make_agent(PrioritizedMemory(300))
    with pytest.raises(ValueError, match="differently built agent.*memory.*alpha"):
        prioritized.load_checkpoint(tmp_path / "uniform.h5")
    assert prioritized.step == 0 and prioritized.memory.nb_entries == 0
    prioritized.fit(cartpole, nb_steps=60, verbose=0)
    prioritized.save_checkpoint(tmp_path / "prioritized.h5")
    with pytest.raises(ValueError, match="differently built agent.*memory.*alpha"):
        make_agent(SequentialMemory(300)).load_checkpoint(tmp_path / "prioritized.h5")


# ------------------------------------------------------------------ the loss


def test_importance_weights_reach_the_loss():
    agent = DQNAgent(
        build_mlp((1, 4), 2, (8,)),
        nb_actions=2,
        memory=PrioritizedMemory(100),
        batch_size=4,
        seed=0,
    )
    agent.compile(keras.optimizers.SGD(learning_rate=0.0))  # the weights stay as they are
    rng = np.random.default_rng(0)
    batch = TransitionBatch(
        state0=rng.normal(size=(4, 1, 4)).astype(np.float32),
        action=np.array([0, 1, 0, 1]),
        reward=np.array([1.0, 2.0, 3.0, 4.0], np.float32),
        state1=rng.normal(size=(4, 1, 4)).astype(np.float32),
        terminal1=np.array([False, False, False, True]),
        weights=np.array([1.0, 1.0, 0.0, 1.0], np.float32),
    )
    far_off = batch._replace(reward=np.array([1.0, 2.0, 1000.0, 4.0], np.float32))
    # The sample of weight 0 does not count, however far off its target is...
    assert agent.learn(far_off)[0] == pytest.approx(agent.learn(batch)[0], rel=1e-6)
    ones = np.ones(4, np.float32)
    # ... while with weight 1 it does,
    assert agent.learn(far_off._replace(weights=ones))[0] > 100 * agent.learn(batch)[0]
    # and halving every weight halves the loss.
    full = agent.learn(batch._replace(weights=ones))[0]
    assert agent.learn(batch._replace(weights=ones / 2))[0] == pytest.approx(full / 2, rel=1e-6)


# ------------------------------------------------------------------ memory size


@pytest.mark.parametrize("memory_class", [SequentialMemory, PrioritizedMemory])
def test_a_memory_too_large_for_the_machine_is_refused_before_allocating(memory_class):
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        pytest.skip("the system does not say how much memory it has")
    observation = np.zeros((1000, 1000))  # 8 MB of float64
    limit = physical // observation.nbytes + 2
    memory = memory_class(limit)
    before = memory.nbytes
    tracemalloc.start()
    try:
        with pytest.raises(
            MemoryError,
            match=rf"limit: {limit} observations of shape \(1000, 1000\) and dtype float64 "
            r"need [0-9.]+ GB, more than .* smaller limit.* uint8",
        ):
            memory.append(observation, 0, 0.0, terminal=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50e6  # the buffer (more than the machine's memory) was never allocated
    assert memory.nbytes == before and memory.nb_entries == 0
