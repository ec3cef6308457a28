"""Checkpoints: exact resumption, interruption, atomic writes, and no code in the files."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium
import h5py
import keras
import numpy as np
import pytest

from kerasdqn import DQNAgent, PrioritizedMemory, SequentialMemory, build_mlp
from kerasdqn.callbacks import Callback

JOB = str(Path(__file__).with_name("resume_job.py"))


def run_job(*args, timeout=300, env=None) -> str:
    result = subprocess.run(
        [sys.executable, JOB, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=None if env is None else {**os.environ, **env},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def read_weights(path) -> list[np.ndarray]:
    arrays = []
    with h5py.File(path, "r") as handle:
        handle.visititems(
            lambda name, item: (
                arrays.append((name, item[()])) if isinstance(item, h5py.Dataset) else None
            )
        )
    return [array for _, array in sorted(arrays, key=lambda pair: pair[0])]


def test_resuming_in_a_new_process_gives_bit_identical_weights(tmp_path):
    # 1000 steps = 20 whole episodes of the job's environment: no episode is cut.
    run_job("straight", 2000, tmp_path / "straight.h5")
    run_job("first", 1000, tmp_path / "checkpoints")
    run_job("resume", 1000, tmp_path / "checkpoints", tmp_path / "resumed.h5")
    straight = read_weights(tmp_path / "straight.h5")
    resumed = read_weights(tmp_path / "resumed.h5")
    assert len(straight) == len(resumed) > 0
    for a, b in zip(straight, resumed):
        np.testing.assert_array_equal(a, b)


def test_a_noisy_agent_resumes_with_the_noise_it_would_have_drawn(tmp_path):
    # The NoisyDense layers' random-number states are in the checkpoint: without them the
    # resumed run drew other noise and ended up to 0.04 away from the straight one.
    noisy = {"RESUME_JOB_NOISY": "1"}
    run_job("straight", 1200, tmp_path / "straight.h5", env=noisy)
    run_job("first", 600, tmp_path / "checkpoints", env=noisy)
    run_job("resume", 600, tmp_path / "checkpoints", tmp_path / "resumed.h5", env=noisy)
    straight = read_weights(tmp_path / "straight.h5")
    resumed = read_weights(tmp_path / "resumed.h5")
    assert len(straight) == len(resumed) > 0
    for a, b in zip(straight, resumed):
        np.testing.assert_array_equal(a, b)


@pytest.fixture
def trained(cartpole):
    def make():
        agent = DQNAgent(
            build_mlp((1, 4), 2, (16,)),
            nb_actions=2,
            memory=SequentialMemory(300),
            nb_steps_warmup=50,
            n_step=2,
            seed=5,
        )
        agent.compile(keras.optimizers.Adam(1e-3), metrics=["mae"])
        return agent

    agent = make()
    agent.fit(cartpole, nb_steps=400, verbose=0)
    return agent, make


def test_a_loaded_checkpoint_restores_every_part_of_the_training_state(trained, tmp_path):
    agent, make = trained
    agent.save_checkpoint(tmp_path)
    fresh = make()
    fresh.load_checkpoint(tmp_path / "checkpoint.h5")

    assert (fresh.step, fresh.episode) == (agent.step, agent.episode) == (400, agent.episode)
    for source, copy in [(agent.model, fresh.model), (agent.target_model, fresh.target_model)]:
        for a, b in zip(source.get_weights(), copy.get_weights()):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(agent.optimizer.variables, fresh.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    memory, restored = agent.memory.get_state(), fresh.memory.get_state()
    assert memory.keys() == restored.keys()
    for key in memory:
        np.testing.assert_array_equal(memory[key], restored[key])
    assert fresh.rng.bit_generator.state == agent.rng.bit_generator.state
    state = np.zeros((1, 4), np.float32)
    np.testing.assert_array_equal(fresh.compute_q_values(state), agent.compute_q_values(state))


def test_checkpoint_files_hold_only_arrays_numbers_and_strings(trained, tmp_path):
    agent, _ = trained
    agent.save_checkpoint(tmp_path / "c.h5")
    with h5py.File(tmp_path / "c.h5", "r") as handle:
        items = []
        handle.visititems(lambda name, item: items.append(item))
        for item in [handle] + items:
            for value in item.attrs.values():
                assert isinstance(value, str | bytes | np.ndarray | np.generic | int | float)
                if isinstance(value, np.ndarray) and value.dtype.kind == "O":  # HDF5 string lists
                    assert all(isinstance(element, str | bytes) for element in value)
            if isinstance(item, h5py.Dataset):
                assert item.dtype.kind in "biuf"


def test_an_episode_cut_by_a_checkpoint_ends_there_as_a_truncation(trained, tmp_path):
    agent, make = trained
    pending = np.array([0.1, 0.2, 0.3, 0.4], np.float32)
    agent.save_checkpoint(tmp_path / "c.h5", pending_observation=pending)
    fresh = make()
    fresh.load_checkpoint(tmp_path / "c.h5")
    state = fresh.memory.get_state()
    newest = (state["nb_written"] - 1) % fresh.memory.limit
    np.testing.assert_array_equal(state["observations"][newest], pending)
    assert not state["has_next"][newest]
    assert fresh.memory.nb_entries == agent.memory.nb_entries or fresh.memory.nb_entries == 300
    # The next observation stored begins a new episode: nothing links it to the pending one.
    fresh.memory.append(np.zeros(4, np.float32), 0, 0.0, terminal=False)
    after = fresh.memory.get_state()
    assert after["episode_start"][(after["nb_written"] - 1) % fresh.memory.limit]
    assert not after["has_next"][newest]


class StopAt(Callback):
    """Raises once the agent reaches ``step``, as a crash would."""

    def __init__(self, step: int) -> None:
        super().__init__()
        self.stop_step = step

    def on_step_end(self, step, logs=None):
        if self.model.step >= self.stop_step:
            raise RuntimeError("crash")


def test_a_vector_run_that_crashed_mid_episode_resumes_on_one_environment(trained, tmp_path):
    _, make = trained
    agent = make()
    envs = gymnasium.vector.SyncVectorEnv([lambda: gymnasium.make("CartPole-v1")] * 2)
    envs.reset(seed=0)
    with pytest.raises(RuntimeError, match="crash"):
        agent.fit(
            envs, 100, verbose=0, callbacks=[StopAt(15)], checkpoint_dir=tmp_path,
            checkpoint_interval=10,
        )  # fmt: skip
    resumed = make()
    resumed.load_checkpoint(tmp_path)
    assert resumed.step == 10
    stored = resumed.memory.nb_transitions
    env = gymnasium.make("CartPole-v1")
    env.reset(seed=1)
    resumed.fit(env, nb_steps=20, verbose=0)
    # Twenty more transitions: none links the vector run's last observation to the
    # environment's first (that would be a 21st).
    assert resumed.memory.nb_transitions == stored + 20


def test_a_checkpoint_of_a_different_agent_is_refused_and_changes_nothing(trained, tmp_path):
    agent, _ = trained
    agent.save_checkpoint(tmp_path / "c.h5")
    other = DQNAgent(build_mlp((1, 4), 2, (16,)), nb_actions=2, memory=SequentialMemory(999))
    other.compile("adam")
    before = other.model.get_weights()
    with pytest.raises(ValueError, match="differently built agent.*memory"):
        other.load_checkpoint(tmp_path / "c.h5")
    for a, b in zip(before, other.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert other.step == 0


def test_load_checkpoint_needs_a_compiled_agent_and_an_existing_file(trained, tmp_path):
    agent, make = trained
    uncompiled = DQNAgent(build_mlp((1, 4), 2, (16,)), nb_actions=2, memory=SequentialMemory(300))
    with pytest.raises(RuntimeError, match="compile the agent first"):
        uncompiled.load_checkpoint(tmp_path / "c.h5")
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        make().load_checkpoint(tmp_path / "missing.h5")


def test_fit_writes_checkpoints_every_interval_and_at_the_end(trained, cartpole, tmp_path):
    agent, _ = trained
    seen = []

    class Peek(keras.callbacks.Callback):
        def on_batch_begin(self, batch, logs=None):
            path = tmp_path / "checkpoint.h5"
            if agent.step in (551, 651) and path.exists():
                with h5py.File(path, "r") as handle:
                    seen.append(int(handle.attrs["step"]))

    agent.fit(
        cartpole,
        nb_steps=275,
        verbose=0,
        checkpoint_dir=tmp_path,
        checkpoint_interval=100,
        callbacks=[Peek()],
    )
    assert seen == [500, 600]
    with h5py.File(tmp_path / "checkpoint.h5", "r") as handle:
        assert int(handle.attrs["step"]) == 675


@pytest.mark.parametrize(
    "signal_number", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"]
)
def test_a_signal_stops_fit_cleanly_with_a_checkpoint(tmp_path, signal_number):
    log = tmp_path / "log.json"
    process = subprocess.Popen(
        [sys.executable, JOB, "until-signal", tmp_path, log],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "training"
    time.sleep(3)
    process.send_signal(signal_number)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr[-3000:]
    steps = int(stdout.split("stopped at step ")[1].split()[0])
    assert steps > 0
    with h5py.File(tmp_path / "checkpoint.h5", "r") as handle:
        assert int(handle.attrs["step"]) == steps
    assert json.loads(log.read_text())["episode_reward"]  # on_train_end ran: the log was saved


def test_killing_a_writer_mid_write_leaves_the_previous_checkpoint_intact(trained, tmp_path):
    agent, make = trained
    path = tmp_path / "checkpoint.h5"
    agent.save_checkpoint(path)
    original = path.read_bytes()
    slow_writer = (
        "import sys, time, numpy as np, h5py\n"
        "from kerasdqn._files import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp, h5py.File(tmp, 'w') as f:\n"
        "    print('writing', flush=True)\n"
        "    for i in range(400):\n"
        "        f[str(i)] = np.random.rand(10_000)\n"
        "        f.flush()\n"
        "        time.sleep(0.01)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", slow_writer, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "writing"
    time.sleep(1.0)
    process.kill()
    process.wait()

    leftovers = [name for name in os.listdir(tmp_path) if name.startswith(".checkpoint.h5.")]
    assert leftovers, "the writer should have been killed in the middle of its write"
    assert path.read_bytes() == original
    make().load_checkpoint(path)
    agent.save_checkpoint(path)  # the next save clears what the killed writer left
    assert [name for name in os.listdir(tmp_path) if name.startswith(".checkpoint.h5.")] == []


def test_a_format_1_checkpoint_loads_with_every_transition_as_it_was(cartpole):
    """tests/data/v1_checkpoint.h5 was written by kerasdqn 0.1.0 (make_v1_checkpoint.py)."""
    data = Path(__file__).with_name("data")
    keras.utils.set_random_seed(3)
    agent = DQNAgent(
        build_mlp((2, 4), 2, (8,)),
        nb_actions=2,
        memory=SequentialMemory(60, window_length=2),
        nb_steps_warmup=20,
        n_step=2,
        seed=3,
    )
    agent.compile(keras.optimizers.Adam(1e-3))
    agent.load_checkpoint(data / "v1_checkpoint.h5")

    reference = np.load(data / "v1_reference.npz")
    memory = agent.memory
    assert memory.nb_transitions == int(reference["nb_transitions"])
    positions = np.array(sorted(set(memory.sample_indices(5000).tolist())))
    batch = memory.batch_at(positions, n_step=2, gamma=0.99)
    for name in ("state0", "action", "reward", "state1", "terminal1", "steps"):
        np.testing.assert_array_equal(getattr(batch, name), reference[name], err_msg=name)
    assert agent.step == 150
    history = agent.fit(cartpole, nb_steps=30, verbose=0)
    assert agent.step == 180 and history.history["nb_steps"]


def prioritized_agent(beta_steps: int, alpha: float = 0.6) -> DQNAgent:
    keras.utils.set_random_seed(0)
    memory = PrioritizedMemory(500, alpha=alpha, beta=0.4, beta_steps=beta_steps)
    agent = DQNAgent(build_mlp((1, 4), 2, (8,)), nb_actions=2, memory=memory, nb_steps_warmup=50)
    agent.compile(keras.optimizers.Adam(1e-3))
    return agent


def test_a_prioritized_run_resumes_for_more_steps_with_its_saved_beta_schedule(tmp_path):
    agent = prioritized_agent(beta_steps=300)
    env = gymnasium.make("CartPole-v1")
    env.reset(seed=0)
    agent.fit(env, nb_steps=300, verbose=0)
    agent.save_checkpoint(tmp_path / "checkpoint.h5")
    longer = prioritized_agent(beta_steps=600)  # as kerasdqn train --steps 600 --resume builds
    longer.load_checkpoint(tmp_path / "checkpoint.h5")
    assert (longer.memory.beta, longer.memory.beta_steps) == (0.4, 300)
    assert longer.memory.beta_at(300) == 1.0  # annealed, as at the end of the saved run
    with pytest.raises(ValueError, match="alpha"):  # how priorities are stored: structure
        prioritized_agent(beta_steps=300, alpha=0.5).load_checkpoint(tmp_path / "checkpoint.h5")
