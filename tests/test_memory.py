"""SequentialMemory: ring buffer contents, episode boundaries, stacked windows and sampling.

Observations are hand-built and distinct: observation ``k`` is ``[k, -k]`` (``k >= 1``), so a
zero frame (padding) can never be mistaken for a stored one, and windows are asserted exactly.
"""

import tracemalloc

import numpy as np
import pytest

from kerasdqn import SequentialMemory
from kerasdqn.memory import Experience, PrioritizedMemory, TransitionBatch


def obs(k: int) -> np.ndarray:
    return np.array([k, -k], dtype=np.float32)


def window(*ids: int) -> np.ndarray:
    """A stacked state: observation ``k`` for each id, zeros for id 0."""
    return np.stack([obs(k) if k else np.zeros(2, np.float32) for k in ids])


def windows(*rows) -> np.ndarray:
    return np.stack([window(*row) for row in rows])


def add_episode(memory: SequentialMemory, ids, ending: str = "terminated") -> None:
    """Append an episode visiting observations ``ids`` as the agent does.

    Observation ``k`` is stored with action ``k`` and reward ``k / 10``; the last id is the
    final observation, stored with ``append_final``. ``ending`` is how the last step ended:
    'terminated', 'truncated', or 'open' (the episode goes on: the last id is appended as an
    ordinary step and no final observation is stored).
    """
    *steps, last = ids
    for i, k in enumerate(steps):
        end = i == len(steps) - 1 and ending != "open"
        memory.append(
            obs(k),
            k,
            k / 10,
            terminal=end and ending == "terminated",
            truncated=end and ending == "truncated",
        )
    if ending == "open":
        memory.append(obs(last), last, last / 10, terminal=False)
    else:
        memory.append_final(obs(last))


def fill(memory: SequentialMemory, nb_steps: int, seed: int = 0, open_steps: int = 0):
    """Append ``nb_steps`` entries of random-length episodes; return every entry in order.

    ``open_steps`` more steps of an unfinished episode follow. Each entry records its
    observation id, episode number and whether it is final, which is all a reference needs to
    know which windows and transitions are valid.
    """
    rng = np.random.default_rng(seed)
    history = []
    episode = 0
    k = 1
    while len(history) < nb_steps:
        length = int(rng.integers(1, 6))
        ending = ("terminated", "truncated")[int(rng.integers(2))]
        add_episode(memory, range(k, k + length + 1), ending)
        for j in range(length + 1):
            history.append({"id": k + j, "episode": episode, "final": j == length})
        history[-2]["terminal"] = ending == "terminated"
        k += length + 1
        episode += 1
    for j in range(k, k + open_steps):
        memory.append(obs(j), j, j / 10, terminal=False)
        history.append({"id": j, "episode": episode, "final": False})
    return history


def reference_transitions(history, limit, window_length, ignore_episode_boundaries=False):
    """{buffer position: (state0 ids, state1 ids, terminal1)} from the full history."""
    oldest = max(0, len(history) - limit)

    def usable(n, start):
        stored = n >= oldest
        same = history[n]["episode"] == history[start]["episode"]
        return stored and (ignore_episode_boundaries or same)

    expected = {}
    for n in range(oldest, len(history) - 1):
        if history[n]["final"]:
            continue
        ids = []
        for back in range(window_length - 1, 0, -1):
            # Usable only if this frame and every frame after it (up to n) is usable.
            ok = n - back >= 0 and all(usable(m, n) for m in range(n - back, n))
            ids.append(history[n - back]["id"] if ok else 0)
        state0 = ids + [history[n]["id"]]
        state1 = state0[1:] + [history[n + 1]["id"]]
        expected[n % limit] = (state0, state1, history[n].get("terminal", False))
    return expected


# ------------------------------------------------------------------ construction


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"limit": 0}, ValueError, "limit"),
        ({"limit": 1}, ValueError, "limit"),
        ({"limit": -5}, ValueError, "limit"),
        ({"limit": 10.0}, TypeError, "limit"),
        ({"limit": True}, TypeError, "limit"),
        ({"limit": 10, "window_length": 0}, ValueError, "window_length"),
        ({"limit": 10, "window_length": 2.5}, TypeError, "window_length"),
        ({"limit": 10, "window_length": True}, TypeError, "window_length"),
        ({"limit": 10, "ignore_episode_boundaries": 1}, TypeError, "ignore_episode_boundaries"),
    ],
)
def test_invalid_constructor_arguments_raise_naming_the_argument(kwargs, error, name):
    with pytest.raises(error, match=f"^{name}:"):
        SequentialMemory(**kwargs)


def test_get_config_rebuilds_an_equivalent_memory():
    memory = SequentialMemory(limit=100, window_length=4, ignore_episode_boundaries=True)
    config = memory.get_config()
    assert config == {"limit": 100, "window_length": 4, "ignore_episode_boundaries": True}
    assert SequentialMemory(**config).get_config() == config


@pytest.mark.parametrize("method", ["sample_batch", "sample", "sample_indices"])
def test_sampling_from_an_empty_memory_raises(method):
    memory = SequentialMemory(limit=10)
    with pytest.raises(ValueError, match="no complete transition"):
        getattr(memory, method)(4)


@pytest.mark.parametrize("memory_class", [SequentialMemory, PrioritizedMemory])
@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"n_step": 0}, ValueError, "n_step: expected an integer >= 1"),
        ({"n_step": 2.5}, TypeError, "n_step: expected an integer"),
        ({"gamma": float("nan")}, ValueError, "gamma: expected a finite number"),
        ({"gamma": 5.0}, ValueError, r"gamma: expected a number in \[0.0, 1.0\]"),
    ],
)
def test_sample_batch_refuses_a_bad_n_step_or_gamma_naming_it(
    memory_class, options, error, message
):
    memory = memory_class(limit=10)
    for value in range(5):
        memory.append(obs(value), 0, 1.0, terminal=False)
    with pytest.raises(error, match=message):
        memory.sample_batch(2, **options)


def test_sampling_needs_a_complete_transition():
    memory = SequentialMemory(limit=10)
    memory.append(obs(1), 1, 0.1, terminal=False)
    with pytest.raises(ValueError):
        memory.sample_batch(1)  # the next observation is not stored yet
    memory.append(obs(2), 2, 0.2, terminal=False)
    assert memory.sample_batch(1).action.tolist() == [1]


def test_an_episode_of_only_a_final_observation_has_no_transition():
    memory = SequentialMemory(limit=10)
    memory.append_final(obs(1))
    assert (memory.nb_entries, memory.nb_transitions) == (1, 0)
    with pytest.raises(ValueError):
        memory.sample_batch(1)


def test_observation_shape_mismatch_raises_naming_observation():
    memory = SequentialMemory(limit=10)
    memory.append(obs(1), 1, 0.1, terminal=False)
    with pytest.raises(ValueError, match="^observation:"):
        memory.append(np.zeros(3, np.float32), 2, 0.2, terminal=False)
    with pytest.raises(ValueError, match="^observation:"):
        memory.append_final(np.zeros((2, 1), np.float32))
    assert memory.nb_entries == 1


# ------------------------------------------------------------------ contents and flags


def test_transitions_link_each_observation_to_the_next():
    memory = SequentialMemory(limit=10)
    add_episode(memory, [1, 2, 3, 4])
    assert (memory.nb_entries, memory.nb_transitions) == (4, 3)
    batch = memory.batch_at(np.array([0, 1, 2]))
    assert isinstance(batch, TransitionBatch)
    np.testing.assert_array_equal(batch.state0, windows([1], [2], [3]))
    np.testing.assert_array_equal(batch.state1, windows([2], [3], [4]))
    np.testing.assert_array_equal(batch.action, [1, 2, 3])
    np.testing.assert_allclose(batch.reward, [0.1, 0.2, 0.3], rtol=1e-6)
    np.testing.assert_array_equal(batch.terminal1, [False, False, True])
    assert batch.state0.shape == (3, 1, 2)
    assert batch.state0.dtype == np.float32


def test_terminated_step_is_terminal_and_final():
    memory = SequentialMemory(limit=10)
    add_episode(memory, [1, 2, 3], "terminated")
    add_episode(memory, [4, 5], "open")
    # Positions 0, 1 | 2 is final | 3 -> 4 (4 is the newest, no next observation yet).
    assert memory.nb_transitions == 3
    batch = memory.batch_at(np.array([1, 3]))
    np.testing.assert_array_equal(batch.terminal1, [True, False])
    np.testing.assert_array_equal(batch.state1, windows([3], [5]))


def test_truncated_step_is_final_but_not_terminal():
    memory = SequentialMemory(limit=10)
    add_episode(memory, [1, 2, 3], "truncated")
    add_episode(memory, [4, 5, 6], "terminated")
    assert memory.nb_transitions == 4  # 1->2, 2->3, 4->5, 5->6; nothing starts at 3 or 6
    batch = memory.batch_at(np.array([0, 1, 3, 4]))
    np.testing.assert_array_equal(batch.terminal1, [False, False, False, True])
    np.testing.assert_array_equal(batch.state1, windows([2], [3], [5], [6]))
    sampled = set(memory.sample_indices(2000).tolist())
    assert sampled == {0, 1, 3, 4}


@pytest.mark.parametrize("flag", ["terminal", "truncated"])
def test_keras_rl_protocol_takes_the_observation_after_an_end_as_final(flag):
    """keras-rl appended the final observation with ``append``, not ``append_final``."""
    memory = SequentialMemory(limit=10, window_length=2)
    memory.append(obs(1), 1, 0.1, terminal=False)
    memory.append(obs(2), 2, 0.2, **{"terminal": False, "truncated": False, flag: True})
    memory.append(obs(3), 0, 0.0, terminal=False)  # final observation of episode 1
    memory.append(obs(4), 4, 0.4, terminal=False)
    memory.append(obs(5), 5, 0.5, terminal=False)
    assert memory.nb_transitions == 3  # 1->2, 2->3, 4->5
    assert set(memory.sample_indices(1000).tolist()) == {0, 1, 3}
    batch = memory.batch_at(np.array([1, 3]))
    np.testing.assert_array_equal(batch.terminal1, [flag == "terminal", False])
    np.testing.assert_array_equal(batch.state0, windows([1, 2], [0, 4]))
    np.testing.assert_array_equal(batch.state1, windows([2, 3], [4, 5]))


def test_training_false_updates_only_the_recent_window():
    memory = SequentialMemory(limit=10, window_length=2)
    memory.append(obs(1), 1, 0.1, terminal=False, training=False)
    memory.append_final(obs(2), training=False)
    memory.append(obs(3), 3, 0.3, terminal=False, training=False)
    assert (memory.nb_entries, memory.nb_transitions) == (0, 0)
    np.testing.assert_array_equal(memory.get_recent_state(obs(4)), window(3, 4))


# ------------------------------------------------------------------ stacked windows


def test_window_never_crosses_episode_start():
    memory = SequentialMemory(limit=20, window_length=3)
    add_episode(memory, [1, 2, 3])  # positions 0, 1, final 2
    add_episode(memory, [4, 5, 6, 7], "truncated")  # positions 3, 4, 5, final 6
    batch = memory.batch_at(np.array([0, 1, 3, 4, 5]))
    np.testing.assert_array_equal(
        batch.state0, windows([0, 0, 1], [0, 1, 2], [0, 0, 4], [0, 4, 5], [4, 5, 6])
    )
    np.testing.assert_array_equal(
        batch.state1, windows([0, 1, 2], [1, 2, 3], [0, 4, 5], [4, 5, 6], [5, 6, 7])
    )
    assert batch.state0.shape == (5, 3, 2)


def test_ignore_episode_boundaries_lets_windows_reach_into_the_previous_episode():
    memory = SequentialMemory(limit=20, window_length=3, ignore_episode_boundaries=True)
    add_episode(memory, [1, 2, 3])
    add_episode(memory, [4, 5, 6, 7])
    batch = memory.batch_at(np.array([0, 3, 4]))
    # Nothing was stored before position 0, so those frames stay zero.
    np.testing.assert_array_equal(batch.state0, windows([0, 0, 1], [2, 3, 4], [3, 4, 5]))
    np.testing.assert_array_equal(batch.state1, windows([0, 1, 2], [3, 4, 5], [4, 5, 6]))


def test_ring_wrap_keeps_only_the_last_limit_entries():
    memory = SequentialMemory(limit=5)
    add_episode(memory, range(1, 13), "open")  # observation k sits at position (k - 1) % 5
    assert (memory.nb_entries, memory.nb_transitions) == (5, 4)
    positions = np.array([(k - 1) % 5 for k in (8, 9, 10, 11)])
    batch = memory.batch_at(positions)
    np.testing.assert_array_equal(batch.state0, windows([8], [9], [10], [11]))
    np.testing.assert_array_equal(batch.state1, windows([9], [10], [11], [12]))
    np.testing.assert_array_equal(batch.action, [8, 9, 10, 11])
    memory.rng = np.random.default_rng(0)
    assert set(memory.sample_batch(1000).action.tolist()) == {8, 9, 10, 11}


def test_windows_after_wrap_around_never_use_overwritten_frames():
    memory = SequentialMemory(limit=5, window_length=3)
    add_episode(memory, range(1, 13), "open")  # observations 8..12 remain
    positions = np.array([(k - 1) % 5 for k in (8, 9, 10, 11)])
    batch = memory.batch_at(positions)
    np.testing.assert_array_equal(
        batch.state0, windows([0, 0, 8], [0, 8, 9], [8, 9, 10], [9, 10, 11])
    )
    np.testing.assert_array_equal(
        batch.state1, windows([0, 8, 9], [8, 9, 10], [9, 10, 11], [10, 11, 12])
    )


@pytest.mark.parametrize("open_steps", [0, 2])
@pytest.mark.parametrize("ignore_episode_boundaries", [False, True])
@pytest.mark.parametrize(("limit", "window_length"), [(7, 1), (7, 4), (12, 3), (50, 2)])
def test_every_transition_matches_a_reference_built_from_the_full_history(
    limit, window_length, ignore_episode_boundaries, open_steps
):
    """Random episodes, many wraps: each stored transition's windows, flags and actions."""
    memory = SequentialMemory(limit, window_length, ignore_episode_boundaries)
    history = fill(memory, 3 * limit + 5, seed=limit + window_length, open_steps=open_steps)
    expected = reference_transitions(history, limit, window_length, ignore_episode_boundaries)
    assert memory.nb_entries == limit
    assert memory.nb_transitions == len(expected)
    positions = np.array(sorted(expected))
    batch = memory.batch_at(positions)
    np.testing.assert_array_equal(batch.state0, windows(*[expected[p][0] for p in positions]))
    np.testing.assert_array_equal(batch.state1, windows(*[expected[p][1] for p in positions]))
    np.testing.assert_array_equal(batch.terminal1, [expected[p][2] for p in positions])
    np.testing.assert_array_equal(batch.action, batch.state0[:, -1, 0])


def test_state1_is_state0_shifted_by_one_with_the_next_observation():
    memory = SequentialMemory(limit=30, window_length=4)
    fill(memory, 70, seed=3)
    memory.rng = np.random.default_rng(0)
    batch = memory.sample_batch(512)
    np.testing.assert_array_equal(batch.state1[:, :-1], batch.state0[:, 1:])
    # The appended frame is the next observation (ids are consecutive within an episode).
    np.testing.assert_array_equal(batch.state1[:, -1, 0], batch.state0[:, -1, 0] + 1)


# ------------------------------------------------------------------ acting window


def test_get_recent_state_stacks_the_episode_and_zeros_before_its_start():
    memory = SequentialMemory(limit=20, window_length=3)
    np.testing.assert_array_equal(memory.get_recent_state(obs(1)), window(0, 0, 1))
    memory.append(obs(1), 1, 0.1, terminal=False)
    np.testing.assert_array_equal(memory.get_recent_state(obs(2)), window(0, 1, 2))
    memory.append(obs(2), 2, 0.2, terminal=False)
    np.testing.assert_array_equal(memory.get_recent_state(obs(3)), window(1, 2, 3))
    memory.append(obs(3), 3, 0.3, terminal=False)
    np.testing.assert_array_equal(memory.get_recent_state(obs(4)), window(2, 3, 4))
    memory.append(obs(4), 4, 0.4, terminal=True)
    memory.append_final(obs(5))
    np.testing.assert_array_equal(memory.get_recent_state(obs(6)), window(0, 0, 6))


def test_acting_window_equals_the_stored_state0():
    memory = SequentialMemory(limit=20, window_length=3)
    acted = []
    for episode in ([1, 2, 3, 4, 5], [6, 7, 8]):
        memory.clear_recent()
        *steps, last = episode
        for i, k in enumerate(steps):
            acted.append(memory.get_recent_state(obs(k)))
            memory.append(obs(k), k, 0.0, terminal=i == len(steps) - 1)
        memory.append_final(obs(last))
    # Transitions start at positions 0..3 and 5..6.
    batch = memory.batch_at(np.array([0, 1, 2, 3, 5, 6]))
    np.testing.assert_array_equal(batch.state0, np.stack(acted))


def test_keras_rl_protocol_resets_the_acting_window_after_the_final_observation():
    memory = SequentialMemory(limit=20, window_length=3)
    memory.append(obs(1), 1, 0.1, terminal=False)
    memory.append(obs(2), 2, 0.2, terminal=True)
    memory.append(obs(3), 0, 0.0, terminal=False)  # final observation
    np.testing.assert_array_equal(memory.get_recent_state(obs(4)), window(0, 0, 4))


def test_clear_recent_starts_a_fresh_window():
    memory = SequentialMemory(limit=20, window_length=2)
    memory.append(obs(1), 1, 0.1, terminal=False)
    memory.clear_recent()
    np.testing.assert_array_equal(memory.get_recent_state(obs(2)), window(0, 2))


def test_get_recent_state_with_window_length_one_adds_the_window_axis():
    memory = SequentialMemory(limit=20)
    state = memory.get_recent_state(obs(3))
    assert state.shape == (1, 2)
    np.testing.assert_array_equal(state, window(3))


# ------------------------------------------------------------------ sampling


def test_sample_indices_draw_every_valid_position_and_nothing_else():
    memory = SequentialMemory(limit=12)
    add_episode(memory, [1, 2, 3, 4])  # positions 0..2, final at 3
    add_episode(memory, [5, 6, 7], "truncated")  # positions 4, 5, final at 6
    add_episode(memory, [8, 9, 10, 11, 12, 13, 14, 15], "open")  # wraps: 8..15 at 7..11, 0..2
    # Entries now: 13, 14, 15 (newest at 2) | 4 (final) | 5, 6, 7 (final) | 8..12.
    newest, finals = 2, {3, 6}
    valid = set(range(12)) - finals - {newest}
    assert memory.nb_transitions == len(valid)
    memory.rng = np.random.default_rng(1)
    n = 20_000
    indices = memory.sample_indices(n)
    assert indices.shape == (n,)
    assert set(indices.tolist()) == valid
    # Uniform over the valid positions: each count within 4 binomial standard deviations.
    p = 1 / len(valid)
    counts = np.bincount(indices, minlength=12)[sorted(valid)]
    assert np.all(np.abs(counts - n * p) <= 4 * np.sqrt(n * p * (1 - p)))


@pytest.mark.parametrize("open_steps", [0, 3])
@pytest.mark.parametrize("window_length", [1, 3])
def test_sampled_transitions_are_always_valid_after_many_wraps(window_length, open_steps):
    limit = 9
    memory = SequentialMemory(limit, window_length)
    history = fill(memory, 200, seed=7, open_steps=open_steps)
    expected = reference_transitions(history, limit, window_length)
    entry_at = {n % limit: history[n] for n in range(len(history) - limit, len(history))}
    memory.rng = np.random.default_rng(2)
    drawn = set(memory.sample_indices(5000).tolist())
    assert drawn == set(expected)
    assert (len(history) - 1) % limit not in drawn  # the newest entry
    assert not any(entry_at[i]["final"] for i in drawn)


def test_same_rng_seed_gives_the_same_samples():
    batches = []
    for _ in range(2):
        memory = SequentialMemory(limit=20, window_length=2)
        fill(memory, 40, seed=5)
        memory.rng = np.random.default_rng(11)
        batches.append(memory.sample_batch(64))
    for first, second in zip(*batches):
        np.testing.assert_array_equal(first, second)


def test_keras_rl_sample_returns_experiences_matching_sample_batch():
    memory = SequentialMemory(limit=20, window_length=2)
    fill(memory, 40, seed=5)
    memory.rng = np.random.default_rng(4)
    experiences = memory.sample(16)
    memory.rng = np.random.default_rng(4)
    batch = memory.sample_batch(16)
    assert len(experiences) == 16
    assert all(isinstance(e, Experience) for e in experiences)
    assert Experience._fields == ("state0", "action", "reward", "state1", "terminal1")
    for field in Experience._fields:
        stacked = np.stack([getattr(e, field) for e in experiences])
        np.testing.assert_array_equal(stacked, getattr(batch, field))


def test_keras_rl_sample_with_batch_idxs_returns_those_transitions():
    memory = SequentialMemory(limit=20)
    add_episode(memory, [1, 2, 3, 4])
    experiences = memory.sample(2, batch_idxs=[2, 0])
    assert [int(e.action) for e in experiences] == [3, 1]
    np.testing.assert_array_equal(experiences[0].state1, window(4))
    assert bool(experiences[0].terminal1) and not bool(experiences[1].terminal1)


# ------------------------------------------------------------------ memory use


def test_nbytes_is_constant_after_the_first_append():
    memory = SequentialMemory(limit=100, window_length=4)
    memory.append(obs(1), 1, 0.1, terminal=False)
    allocated = memory.nbytes
    assert allocated >= 100 * obs(1).nbytes
    fill(memory, 1000, seed=1)
    assert memory.nbytes == allocated


def test_python_memory_does_not_grow_with_steps():
    """Beyond ``nbytes``: nothing else (the acting window, bookkeeping) accumulates."""
    memory = SequentialMemory(limit=50, window_length=4)
    fill(memory, 200, seed=0)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for k in range(5000):  # one long episode: the acting window is never cleared
            memory.append(obs(k), 1, 0.0, terminal=False)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # Keeping one observation array per step would take well over 5000 * 100 bytes.
    assert grown < 100_000


def test_bytes_per_transition_for_cartpole_observations():
    """What is compared: ``nbytes / limit`` against one stored entry's payload.

    A transition's payload is one CartPole observation (4 float32: its next observation is
    the next entry's, not a second copy), its action, its reward, and two flags (terminal,
    final), each at the itemsize of the dtype the memory hands back in a batch. A memory that
    stored state1 separately would need about 1.6x of that, more than the 1.2x allowed.
    """
    limit = 1000
    memory = SequentialMemory(limit=limit)
    observation = np.zeros(4, dtype=np.float32)
    memory.append(observation, 0, 1.0, terminal=False)
    memory.append(observation, 1, 1.0, terminal=False)
    batch = memory.sample_batch(1)
    assert batch.state0.dtype == np.float32
    assert batch.terminal1.dtype == np.bool_
    payload = (
        observation.nbytes
        + batch.action.dtype.itemsize
        + batch.reward.dtype.itemsize
        + 2 * batch.terminal1.dtype.itemsize
    )
    assert memory.nbytes / limit <= 1.2 * payload


# --------------------------------------------------------------------------- later additions


def test_a_refused_append_leaves_the_acting_window_as_it_was():
    memory = SequentialMemory(limit=10, window_length=2)
    memory.append(np.array([1.0, 1.0]), 0, 0.0, terminal=False)
    with pytest.raises(ValueError, match="observation: expected shape"):
        memory.append(np.ones(3), 0, 0.0, terminal=False)
    np.testing.assert_array_equal(
        memory.get_recent_state(np.array([2.0, 2.0])), [[1.0, 1.0], [2.0, 2.0]]
    )


def test_ignoring_episode_boundaries_applies_to_acting_windows_too():
    memory = SequentialMemory(limit=10, window_length=2, ignore_episode_boundaries=True)
    memory.append(np.array([1.0]), 0, 0.0, terminal=True)
    memory.append_final(np.array([2.0]))
    memory.clear_recent()  # the agent does this when the next episode begins
    acting = memory.get_recent_state(np.array([3.0]))
    memory.append(np.array([3.0]), 0, 0.0, terminal=False)
    memory.append(np.array([4.0]), 0, 0.0, terminal=False)
    np.testing.assert_array_equal(acting, [[2.0], [3.0]])
    np.testing.assert_array_equal(memory.batch_at(np.array([2])).state0[0], acting)


def n_step_memory(window_length=1) -> SequentialMemory:
    """Three episodes of one-number observations o_k = [k]:

    0 -> 1 -> 2 terminated (3 final); 4 -> 5 truncated (6 final); 7 -> 8 -> 9 (9 newest).
    Rewards: 1, 2, 4 | 1, 1 | 1, 1, 1.
    """
    memory = SequentialMemory(limit=20, window_length=window_length)
    steps = [
        (0, 1.0, False, False),
        (1, 2.0, False, False),
        (2, 4.0, True, False),
        (4, 1.0, False, False),
        (5, 1.0, False, True),
        (7, 1.0, False, False),
        (8, 1.0, False, False),
        (9, 1.0, False, False),
    ]
    for k, reward, terminal, truncated in steps:
        memory.append(np.array([float(k)]), k % 2, reward, terminal, truncated=truncated)
        if terminal or truncated:
            memory.append_final(np.array([float(k + 1)]))
    return memory


def test_n_step_returns_stop_at_termination_truncation_and_the_newest_entry():
    batch = n_step_memory().batch_at(np.array([0, 1, 2, 4, 5, 7, 8]), n_step=3, gamma=0.5)
    np.testing.assert_allclose(
        batch.reward, [1 + 0.5 * 2 + 0.25 * 4, 2 + 0.5 * 4, 4, 1 + 0.5 * 1, 1, 1 + 0.5 * 1, 1]
    )
    assert batch.steps.tolist() == [3, 2, 1, 2, 1, 2, 1]
    assert batch.terminal1.tolist() == [True, True, True, False, False, False, False]
    assert batch.state1[:, -1, 0].tolist() == [3, 3, 3, 6, 6, 9, 9]
    assert batch.state0[:, -1, 0].tolist() == [0, 1, 2, 4, 5, 7, 8]


def test_one_step_batches_are_the_n_step_batches_with_n_equal_to_one():
    memory = n_step_memory()
    positions = np.array([0, 1, 4, 7])
    one, plain = memory.batch_at(positions, n_step=1, gamma=0.5), memory.batch_at(positions)
    for a, b in zip(one, plain):
        np.testing.assert_array_equal(a, b)
    assert plain.steps.tolist() == [1, 1, 1, 1]


def test_n_step_next_state_windows_stack_the_frames_before_it():
    batch = n_step_memory(window_length=2).batch_at(np.array([0, 4, 7]), n_step=3, gamma=1.0)
    np.testing.assert_array_equal(batch.state1[:, :, 0], [[2, 3], [5, 6], [8, 9]])
    np.testing.assert_array_equal(batch.state0[:, :, 0], [[0, 0], [0, 4], [0, 7]])


# --------------------------------------------------------------------------- several streams


def stream_episodes(nb_streams, nb_steps, seed):
    """Per stream, a list of transitions (o, a, r, o', terminated, truncated) over random
    episodes; observation ids [1000 * stream + t + 1] are unique and never a zero frame."""
    rng = np.random.default_rng(seed)
    streams = []
    for stream in range(nb_streams):
        transitions, t = [], 0
        for _ in range(nb_steps):
            end = rng.random()
            terminated, truncated = end < 0.1, 0.1 <= end < 0.15
            o, o_next = [1000.0 * stream + t + 1], [1000.0 * stream + t + 2]
            transitions.append((o, t % 3, float(t), o_next, terminated, truncated))
            t += 2 if terminated or truncated else 1  # a new episode starts at a new id
        streams.append(transitions)
    return streams


def transition_set(memory, n_step=3):
    positions = np.array(sorted(set(memory.sample_indices(20_000).tolist())))
    batch = memory.batch_at(positions, n_step=n_step, gamma=0.5)
    return {
        (
            batch.state0[i].tobytes(),
            int(batch.action[i]),
            float(batch.reward[i]),
            batch.state1[i].tobytes(),
            bool(batch.terminal1[i]),
            int(batch.steps[i]),
        )
        for i in range(len(positions))
    }


@pytest.mark.parametrize("ignore_episode_boundaries", [False, True])
def test_interleaved_streams_store_the_transitions_each_stream_would_alone(
    ignore_episode_boundaries,
):
    streams = stream_episodes(nb_streams=3, nb_steps=40, seed=1)
    shared = SequentialMemory(
        500, window_length=3, ignore_episode_boundaries=ignore_episode_boundaries
    )
    shared.rng = np.random.default_rng(0)
    expected = set()
    for transitions in streams:
        alone = SequentialMemory(500, 3, ignore_episode_boundaries)
        alone.rng = np.random.default_rng(0)
        for transition in transitions:
            alone.append_transition(*transition)
        expected |= transition_set(alone)
    for step in range(40):
        for index, transitions in enumerate(streams):
            shared.append_transition(*transitions[step], stream=index)
    assert shared.nb_transitions == 3 * 40
    assert transition_set(shared) == expected


def test_each_observation_of_a_stream_is_stored_once():
    transitions = stream_episodes(nb_streams=1, nb_steps=50, seed=2)[0]
    memory = SequentialMemory(500)
    for transition in transitions:
        memory.append_transition(*transition)
    episodes = 1 + sum(terminated or truncated for *_, terminated, truncated in transitions[:-1])
    assert memory.nb_entries == len(transitions) + episodes


def test_whole_transitions_match_keras_rl_appends():
    transitions = stream_episodes(nb_streams=1, nb_steps=60, seed=3)[0]
    whole, appended = SequentialMemory(500, 2), SequentialMemory(500, 2)
    for o, a, r, o_next, terminated, truncated in transitions:
        whole.append_transition(o, a, r, o_next, terminated, truncated)
        appended.append(o, a, r, terminated, truncated=truncated)
        if terminated or truncated:
            appended.append_final(o_next)
    whole.rng, appended.rng = np.random.default_rng(0), np.random.default_rng(0)
    # The keras-rl memory has not seen the last next observation yet.
    assert transition_set(whole) - transition_set(appended) != set()
    appended.append_final(transitions[-1][3])
    assert transition_set(whole) == transition_set(appended)


def test_interleaved_streams_after_wrap_around_sample_only_real_transitions():
    streams = stream_episodes(nb_streams=4, nb_steps=100, seed=4)
    memory = SequentialMemory(57, window_length=1)
    memory.rng = np.random.default_rng(0)
    reference = SequentialMemory(1000, window_length=1)
    reference.rng = np.random.default_rng(0)
    for step in range(100):
        for index, transitions in enumerate(streams):
            memory.append_transition(*transitions[step], stream=index)
            reference.append_transition(*transitions[step], stream=index)
    assert memory.nb_entries == 57
    assert transition_set(memory, n_step=1) <= transition_set(reference, n_step=1)


def test_a_stream_continuing_from_the_oldest_entry_of_a_full_ring_keeps_its_transition():
    # Stream 0 waits while stream 1 fills the ring, so stream 0's newest entry ([1]) is the one
    # the next write evicts. Its next transition is stored whole, with [1] written again.
    memory = SequentialMemory(4)
    memory.append_transition([0.0], 0, 1.0, [1.0], terminated=False, stream=0)
    memory.append_transition([10.0], 0, 1.0, [11.0], terminated=False, stream=1)
    memory.append_transition([11.0], 0, 1.0, [12.0], terminated=False, stream=1)
    memory.append_transition([1.0], 1, 5.0, [2.0], terminated=False, stream=0)
    batch = memory.batch_at(memory.transition_positions())
    stored = sorted(zip(batch.state0.ravel(), batch.action, batch.reward, batch.state1.ravel()))
    assert stored == [(1.0, 1, 5.0, 2.0), (11.0, 0, 1.0, 12.0)]
    assert memory.nb_transitions == 2


def test_a_stream_whose_newest_entry_was_evicted_stacks_no_frames_of_other_streams():
    memory = SequentialMemory(3, window_length=3)
    memory.append_transition(obs(1), 2, -1.0, obs(2), terminated=False, stream=2)
    memory.append_transition(obs(3), 2, -2.0, obs(4), terminated=False, stream=1)
    memory.append_transition(obs(4), 3, 0.0, obs(5), terminated=False, stream=1)  # evicts obs 2
    memory.append_transition(obs(2), 0, -3.0, obs(6), terminated=False, stream=2)
    batch = memory.batch_at(memory.transition_positions())
    np.testing.assert_array_equal(batch.state0, windows((0, 0, 2)))
    np.testing.assert_array_equal(batch.state1, windows((0, 2, 6)))


@pytest.mark.parametrize("seed", range(4))
def test_streams_at_uneven_rates_through_a_small_ring_hold_only_real_transitions(seed):
    # A stream that falls behind (a slow actor) sees the others evict its newest entries.
    # After every write, each stored transition must be one the stream really made, its
    # stacked frames the stream's own (or zero padding where older frames are gone).
    rng = np.random.default_rng(seed)
    streams = stream_episodes(nb_streams=3, nb_steps=60, seed=seed)
    memory = SequentialMemory(5, window_length=3)
    reference = SequentialMemory(1000, window_length=3)
    next_step = [0, 0, 0]
    while min(next_step) < 60:
        stream = int(rng.choice(3, p=[0.2, 0.4, 0.4]))
        if next_step[stream] == 60:
            continue
        transition = streams[stream][next_step[stream]]
        memory.append_transition(*transition, stream=stream)
        reference.append_transition(*transition, stream=stream)
        next_step[stream] += 1
        assert_only_real_transitions(memory, reference)


def assert_only_real_transitions(memory: SequentialMemory, reference: SequentialMemory) -> None:
    """Each transition ``memory`` holds is the one ``reference`` (which kept everything) holds
    from the same observation, up to zero frames before the frames still stored."""
    real, stored = (m.batch_at(m.transition_positions(), 3, 0.5) for m in (reference, memory))
    by_start = {state[-1, 0]: i for i, state in enumerate(real.state0)}
    for i, state in enumerate(stored.state0):
        j = by_start[state[-1, 0]]
        for column in ("action", "reward", "steps", "terminal1"):
            assert getattr(stored, column)[i] == getattr(real, column)[j], column
        for name in ("state0", "state1"):
            frames, true_frames = getattr(stored, name)[i], getattr(real, name)[j]
            padded = ~frames.any(axis=1)
            assert padded.tolist() == sorted(padded.tolist(), reverse=True), name
            np.testing.assert_array_equal(frames[~padded], true_frames[~padded])
    assert memory.nb_transitions == len(stored.action)


def test_a_transition_that_does_not_continue_its_stream_is_refused():
    memory = SequentialMemory(10)
    memory.append_transition([1.0], 0, 0.0, [2.0], terminated=False)
    with pytest.raises(ValueError, match="observation: stream 0"):
        memory.append_transition([5.0], 0, 0.0, [6.0], terminated=False)
    memory.end_episode()
    memory.append_transition([5.0], 0, 0.0, [6.0], terminated=False)
    assert memory.nb_transitions == 2


def test_streams_written_both_ways_are_refused():
    memory = SequentialMemory(10)
    memory.append_transition([1.0], 0, 0.0, [2.0], terminated=False)
    with pytest.raises(ValueError, match="stream: stream 0 is written with append_transition"):
        memory.append([2.0], 0, 0.0, terminal=False)


def test_update_priorities_is_accepted_and_changes_nothing_in_uniform_replay():
    memory = n_step_memory()
    before = memory.get_state()
    memory.update_priorities(np.array([0, 1]), np.array([5.0, -1.0]))
    after = memory.get_state()
    for key in before:
        np.testing.assert_array_equal(before[key], after[key])
