"""Checkpoints of a replay memory of pixels: chunked, optionally compressed, streamed.

The memory's arrays are written as chunked HDF5 datasets, chunk by chunk, and the observations
are read back block by block into the memory's one preallocated array: loading a memory needs
its payload once, not twice (the peak-memory test runs in a fresh process and fails on a
loader that reads the observations whole and then copies them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from kerasdqn import PrioritizedMemory, SequentialMemory
from kerasdqn._blocks import BLOCK_BYTES, row_blocks, rows_per_block

sys.path.insert(0, os.path.dirname(__file__))
from checkpoint_memory_job import fill, frame, pixel_agent  # noqa: E402

JOB = os.path.join(os.path.dirname(__file__), "checkpoint_memory_job.py")
FRAMES = 5_000  # 35 MB of 84x84 uint8 frames, in 9 chunks
PEAK_FRAMES = 20_000  # 141 MB: far above what the process holds besides


@pytest.fixture(scope="module")
def filled_agent():
    agent = pixel_agent(FRAMES)
    fill(agent.memory, FRAMES)
    return agent


def assert_same_memory(a: SequentialMemory, b: SequentialMemory) -> None:
    state_a, state_b = a.get_state(), b.get_state()
    assert state_a.keys() == state_b.keys()
    for name in state_a:
        np.testing.assert_array_equal(state_a[name], state_b[name], err_msg=name)


def test_a_pixel_replay_comes_back_identical_from_chunked_datasets(filled_agent, tmp_path):
    path = tmp_path / "checkpoint.h5"
    filled_agent.save_checkpoint(path)
    with h5py.File(path, "r") as handle:
        memory = handle["memory"]
        observations = memory["observations"]
        assert observations.shape == (FRAMES, 84, 84)
        rows = observations.chunks[0]
        assert observations.chunks == (rows, 84, 84)
        assert BLOCK_BYTES // 4 <= rows * 84 * 84 <= BLOCK_BYTES
        assert all(memory[name].chunks is not None for name in memory if memory[name].size)
        assert observations.compression is None
    fresh = pixel_agent(FRAMES)
    fresh.load_checkpoint(path)
    assert_same_memory(filled_agent.memory, fresh.memory)
    assert fresh.memory._observations.shape == (FRAMES, 84, 84)  # the one ring, filled


@pytest.mark.parametrize("compression", ["lzf", "gzip"])
def test_compression_makes_frames_smaller_and_loads_the_same(filled_agent, tmp_path, compression):
    plain, packed = tmp_path / "plain.h5", tmp_path / f"{compression}.h5"
    filled_agent.save_checkpoint(plain)
    filled_agent.save_checkpoint(packed, compression=compression)
    with h5py.File(packed, "r") as handle:
        assert handle["memory/observations"].compression == compression
    assert os.path.getsize(packed) < 0.25 * os.path.getsize(plain)
    fresh = pixel_agent(FRAMES)
    fresh.load_checkpoint(packed)
    assert_same_memory(filled_agent.memory, fresh.memory)


@pytest.mark.parametrize("compression", ["zip", "LZF", True, 4])
def test_a_bad_compression_is_refused_before_anything_is_written(tmp_path, compression):
    agent = pixel_agent(10)
    path = tmp_path / "checkpoint.h5"
    with pytest.raises(ValueError, match=r"^compression: expected None, 'lzf' or 'gzip', got"):
        agent.save_checkpoint(path, compression=compression)
    assert not path.exists()


def test_a_checkpoint_with_contiguous_datasets_still_loads(filled_agent, tmp_path):
    """Files written before chunking held each memory array as one contiguous dataset."""
    path = tmp_path / "checkpoint.h5"
    filled_agent.save_checkpoint(path)
    with h5py.File(path, "r+") as handle:
        memory = handle["memory"]
        for name in list(memory):
            value = memory[name][()]
            del memory[name]
            memory.create_dataset(name, data=value)
            assert memory[name].chunks is None
    fresh = pixel_agent(FRAMES)
    fresh.load_checkpoint(path)
    assert_same_memory(filled_agent.memory, fresh.memory)


def garble_the_last_chunk_of_frames(path) -> None:
    """Overwrite part of the compressed bytes of the observations' last HDF5 chunk."""
    with h5py.File(path, "r") as handle:
        observations = handle["memory/observations"]
        last = observations.id.get_chunk_info(observations.id.get_num_chunks() - 1)
    with open(path, "r+b") as handle:
        handle.seek(last.byte_offset + last.size // 2)
        handle.write(b"\xff" * 64)


def test_a_damaged_chunk_late_in_the_frames_leaves_the_agent_as_it_was(filled_agent, tmp_path):
    path = tmp_path / "checkpoint.h5"
    filled_agent.save_checkpoint(path, compression="gzip")
    garble_the_last_chunk_of_frames(path)
    victim = pixel_agent(FRAMES)
    fill(victim.memory, 100)
    before = {name: np.array(value) for name, value in victim.memory.get_state().items()}
    with pytest.raises(ValueError, match="damaged or incomplete"):
        victim.load_checkpoint(path)
    after = victim.memory.get_state()
    for name, value in before.items():
        np.testing.assert_array_equal(after[name], value, err_msg=name)
    assert victim.memory.nb_entries == 100


@pytest.mark.parametrize("memory_class", [SequentialMemory, PrioritizedMemory])
def test_without_room_for_two_copies_a_full_memory_drops_its_frames_before_loading(
    filled_agent, tmp_path, monkeypatch, memory_class
):
    """Loading into a memory that already holds frames keeps them until the new ones are
    read only when the machine has room for both; else they go first, and the load still
    restores exactly (a load that fails part-way then leaves the memory empty)."""
    import kerasdqn.memory

    path = tmp_path / "checkpoint.h5"
    source = pixel_agent(FRAMES, memory_class(FRAMES, window_length=4))
    fill(source.memory, FRAMES)
    source.save_checkpoint(path, compression="gzip")
    victim = pixel_agent(FRAMES, memory_class(FRAMES, window_length=4))
    fill(victim.memory, 300)
    old_frames = victim.memory._observations
    monkeypatch.setattr(kerasdqn.memory, "_available_memory", lambda default: 10**6)
    victim.load_checkpoint(path)
    assert victim.memory._observations is not old_frames
    assert_same_memory(source.memory, victim.memory)

    garble_the_last_chunk_of_frames(path)
    with pytest.raises(ValueError, match="damaged or incomplete"):
        victim.load_checkpoint(path)
    assert victim.memory.nb_entries == 0 and victim.memory.nb_transitions == 0
    with pytest.raises(ValueError, match="no complete transition"):
        victim.memory.sample_batch(1)


def test_priorities_of_a_prioritized_pixel_replay_survive_exactly(tmp_path):
    agent = pixel_agent(3000, PrioritizedMemory(3000, window_length=4))
    for index in range(2500):
        agent.memory.append(frame(index), index % 3, 0.5, terminal=index % 700 == 699)
    batch = agent.memory.sample_batch(256)
    agent.memory.update_priorities(batch.indices, np.random.default_rng(0).normal(size=256))
    agent.save_checkpoint(tmp_path / "checkpoint.h5", compression="lzf")
    fresh = pixel_agent(3000, PrioritizedMemory(3000, window_length=4))
    fresh.load_checkpoint(tmp_path / "checkpoint.h5")
    np.testing.assert_array_equal(fresh.memory.priorities, agent.memory.priorities)
    assert fresh.memory.max_priority == agent.memory.max_priority
    assert_same_memory(agent.memory, fresh.memory)


def test_blocks_are_a_few_megabytes_of_whole_entries_and_cover_every_entry():
    blocks = list(row_blocks((20_000, 84, 84), np.uint8))
    assert blocks[0] == slice(0, 594) and blocks[-1] == slice(19_602, 20_000)  # 594 * 7056 B
    assert all(a.stop == b.start for a, b in zip(blocks, blocks[1:]))
    assert rows_per_block((3, 84, 84), np.uint8) == 3 and rows_per_block((0, 4), np.int64) == 1


def test_a_nan_in_the_last_block_of_float_observations_is_found():
    filled = 200_000  # (8,) float32: two blocks
    state = {
        "actions": np.zeros(filled, np.int32),
        "rewards": np.zeros(filled, np.float32),
        "terminated": np.zeros(filled, np.bool_),
        "episode_start": np.arange(filled) == 0,
        "has_next": np.arange(filled) < filled - 1,
        "nb_written": filled,
        "streams": np.zeros((0, 5), np.int64),
        "observations": np.zeros((filled, 8), np.float32),
    }
    assert len(list(row_blocks(state["observations"].shape, np.float32))) == 2
    memory = SequentialMemory(filled)
    memory.set_state(state)  # all finite: accepted
    assert memory.nb_transitions == filled - 1
    state["observations"][-1, -1] = np.nan
    with pytest.raises(ValueError, match="memory: observations holds NaN"):
        SequentialMemory(filled).set_state(state)


@pytest.mark.skipif(
    not os.path.exists("/proc/self/clear_refs"), reason="measures peak memory through /proc"
)
def test_loading_needs_the_frames_once_not_twice(tmp_path):
    result = subprocess.run(
        [sys.executable, JOB, str(PEAK_FRAMES), str(tmp_path / "checkpoint.h5")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    payload = figures["payload"]
    assert 0.9 * payload < figures["loading"] < 1.2 * payload, figures  # not 2x
    assert figures["saving"] < 0.2 * payload, figures  # writing copies no frames
