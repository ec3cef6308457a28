"""Loading cannot be fooled: damaged, crafted and non-finite files are refused whole.

Each case damages a copy of a real checkpoint or weights file in one way, loads it into an
agent that has trained (so every part of its state is distinctive) and checks three things:
the exception type, that the message names the file and the damaged part, and that the
agent's whole state (both networks, the optimizer, the replay memory, counters, random
generator and policies) is exactly what it was before the load.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from typing import NamedTuple

import gymnasium
import h5py
import keras
import numpy as np
import pytest

from kerasdqn import (
    DQNAgent,
    EpsGreedyQPolicy,
    LinearAnnealedPolicy,
    SequentialMemory,
    TrainingCheckpoint,
    build_mlp,
)
from kerasdqn.checkpoint import policy_state


def make_agent(seed: int = 5) -> DQNAgent:
    keras.utils.set_random_seed(seed)
    policy = LinearAnnealedPolicy(EpsGreedyQPolicy(), "eps", 1.0, 0.1, 0.0, nb_steps=300)
    agent = DQNAgent(
        build_mlp((1, 4), 2, (8,)),
        nb_actions=2,
        memory=SequentialMemory(300),
        policy=policy,
        nb_steps_warmup=50,
        n_step=2,
        seed=seed,
    )
    agent.compile(keras.optimizers.Adam(1e-3))
    return agent


def train(agent: DQNAgent, steps: int, seed: int) -> DQNAgent:
    env = gymnasium.make("CartPole-v1")
    env.reset(seed=seed)
    agent.fit(env, nb_steps=steps, verbose=0)
    return agent


@pytest.fixture(scope="module")
def good_files(tmp_path_factory):
    """A real checkpoint (with an episode cut in the middle) and a real weights file."""
    directory = tmp_path_factory.mktemp("good")
    agent = train(make_agent(), 400, seed=0)
    agent.save_checkpoint(
        directory / "checkpoint.h5", pending_observation=np.full(4, 0.25, np.float32)
    )
    agent.save_weights(directory / "weights.h5")
    return directory


@pytest.fixture
def victim():
    """An agent whose state differs from the files' in every part."""
    return train(make_agent(seed=9), 250, seed=1)


def full_state(agent: DQNAgent) -> dict:
    return {
        "online": [w.copy() for w in agent.model.get_weights()],
        "target": [w.copy() for w in agent.target_model.get_weights()],
        "optimizer": [v.numpy().copy() for v in agent.optimizer.variables],
        "memory": {k: np.array(v, copy=True) for k, v in agent.memory.get_state().items()},
        "counters": (agent.step, agent.episode, agent.gamma, agent.batch_size, agent.nb_actions),
        "rng": agent.rng.bit_generator.state,
        "policies": (policy_state(agent.policy), policy_state(agent.test_policy)),
        "acting": agent.compute_q_values(np.ones((1, 4), np.float32)).copy(),
    }


def assert_same_state(before: dict, after: dict) -> None:
    assert before.keys() == after.keys()
    for key in before:
        a, b = before[key], after[key]
        if isinstance(a, dict) and key == "memory":
            assert a.keys() == b.keys()
            for name in a:
                np.testing.assert_array_equal(a[name], b[name], err_msg=f"memory {name}")
        elif isinstance(a, list):
            assert len(a) == len(b)
            for x, y in zip(a, b):
                np.testing.assert_array_equal(x, y, err_msg=key)
        elif isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, b, err_msg=key)
        else:
            assert a == b, key


# --------------------------------------------------------------------------- damage


def set_attribute(name, value):
    def damage(handle):
        handle.attrs[name] = value

    return damage


def delete(path):
    def damage(handle):
        if "/" in path and path.rsplit("/", 1)[1].startswith("@"):
            group, attribute = path.rsplit("/@", 1)
            del handle[group].attrs[attribute]
        elif path.startswith("@"):
            del handle.attrs[path[1:]]
        else:
            del handle[path]

    return damage


def replace_dataset(path, make_value: Callable[[np.ndarray], np.ndarray]):
    def damage(handle):
        value = make_value(np.asarray(handle[path][()]))
        del handle[path]
        handle[path] = value

    return damage


def with_nan(array):
    array = array.astype(np.float32).copy()
    array.flat[0] = np.nan
    return array


def with_inf(array):
    array = array.astype(np.float32).copy()
    array.flat[-1] = np.inf
    return array


def as_strings(array):
    return np.array([b"x"] * array.size).reshape(array.shape)


def first_weight(group):
    """The path of the first weight dataset under a weights group."""

    def find(handle):
        names = []
        (handle[group] if group else handle).visititems(
            lambda name, item: names.append(name) if isinstance(item, h5py.Dataset) else None
        )
        return f"{group}/{sorted(names)[0]}" if group else sorted(names)[0]

    return find


def on_first_weight(group, make_value):
    def damage(handle):
        replace_dataset(first_weight(group)(handle), make_value)(handle)

    return damage


def delete_first_weight(group):
    def damage(handle):
        del handle[first_weight(group)(handle)]

    return damage


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


class Case(NamedTuple):
    name: str
    damage: Callable
    error: type
    part: str  # a regex the message must match besides the file's name


POLICY = '{"attr": "eps", "value_max": 1.0, "value_min": 0.1, "value_test": 0.0, "nb_steps": 300'
CHECKPOINT_CASES = [
    Case("cut off", None, ValueError, "not a readable HDF5 file|damaged"),
    Case("no format", delete("@format"), ValueError, "not a kerasdqn checkpoint"),
    Case("version text", set_attribute("version", "two"), ValueError, "version"),
    Case("step missing", delete("@step"), ValueError, "attribute 'step' is missing"),
    Case("step negative", set_attribute("step", -3), ValueError, "step: expected a whole number"),
    Case("episode text", set_attribute("episode", "many"), ValueError, "episode"),
    Case("config not JSON", set_attribute("config", "{oops"), ValueError, "config is not valid"),
    Case("config a list", set_attribute("config", "[1, 2]"), ValueError, "config: expected"),
    Case("rng not JSON", set_attribute("rng_state", "nope"), ValueError, "rng_state is not valid"),
    Case(
        "rng of another kind",
        set_attribute("rng_state", '{"bit_generator": "MT19937", "state": {}}'),
        ValueError,
        "rng_state: expected the state of a PCG64",
    ),
    Case(
        "rng malformed",
        set_attribute("rng_state", '{"bit_generator": "PCG64", "state": {"state": "x"}}'),
        ValueError,
        "rng_state",
    ),
    Case(
        "policy reaching the agent",
        set_attribute("policy_state", POLICY + ', "agent": {"gamma": 7}}'),
        ValueError,
        r"policy_state: unknown fields \['agent'\]",
    ),
    Case(
        "policy setting batch_size",
        set_attribute("test_policy_state", '{"batch_size": -3}'),
        ValueError,
        r"test_policy_state: unknown fields \['batch_size'\]",
    ),
    Case(
        "policy nb_steps negative",
        set_attribute("policy_state", POLICY.replace('"nb_steps": 300', '"nb_steps": -3') + "}"),
        ValueError,
        "policy_state: nb_steps",
    ),
    Case(
        "policy eps out of range",
        set_attribute("policy_state", POLICY + ', "inner_policy": {"eps": 7}}'),
        ValueError,
        r"policy_state\.inner_policy: eps",
    ),
    Case(
        "policy value a string",
        set_attribute("policy_state", POLICY.replace("1.0", '"high"') + "}"),
        ValueError,
        "policy_state: value_max",
    ),
    Case(
        "policy anneals a missing attribute",
        set_attribute("policy_state", POLICY.replace('"eps"', '"gamma"') + "}"),
        ValueError,
        "policy_state: attr",
    ),
    Case("policy not JSON", set_attribute("policy_state", "{"), ValueError, "policy_state is not"),
    Case("online group missing", delete("online"), ValueError, "group 'online' is missing"),
    Case("online weight NaN", on_first_weight("online", with_nan), ValueError, "NaN or infinite"),
    Case("target weight inf", on_first_weight("target", with_inf), ValueError, "NaN or infinite"),
    Case(
        "target weight strings",
        on_first_weight("target", as_strings),
        ValueError,
        "expected numbers",
    ),
    Case(
        "online weight missing",
        delete_first_weight("online"),
        ValueError,
        "dataset .* is missing",
    ),
    Case("optimizer NaN", replace_dataset("optimizer/3", with_nan), ValueError, "optimizer.*NaN"),
    Case("optimizer variable missing", delete("optimizer/3"), ValueError, "'3' is missing"),
    Case("optimizer paths not JSON", delete("optimizer/@paths"), ValueError, "'paths' is missing"),
    Case("memory group missing", delete("memory"), ValueError, "group 'memory' is missing"),
    Case(
        "memory rewards inf",
        replace_dataset("memory/rewards", with_inf),
        ValueError,
        "memory: rewards holds NaN",
    ),
    Case(
        "memory observations NaN",
        replace_dataset("memory/observations", with_nan),
        ValueError,
        "memory: observations holds NaN",
    ),
    Case(
        "memory lengths disagree",
        replace_dataset("memory/rewards", lambda a: a[:-5]),
        ValueError,
        r"memory: rewards has shape \(295,\), expected \(300,\)",
    ),
    Case(
        "memory observations of another shape",
        replace_dataset("memory/observations", lambda a: a[:, :3]),
        ValueError,
        r"observations have shape \(3,\), expected \(4,\)",
    ),
    Case(
        "memory observations as strings",
        replace_dataset("memory/observations", as_strings),
        ValueError,
        "memory: observations holds",
    ),
    Case(
        "memory without observations",
        delete("memory/observations"),
        ValueError,
        "entries without observations",
    ),
    Case("memory part missing", delete("memory/has_next"), ValueError, "has_next"),
    Case("memory counter missing", delete("memory/@nb_written"), ValueError, "nb_written"),
    Case(
        "memory flags not 0/1",
        replace_dataset("memory/has_next", lambda a: a.astype(np.int8) * 2),
        ValueError,
        "has_next must hold only 0/1",
    ),
    Case(
        "memory action out of range",
        replace_dataset("memory/actions", lambda a: a + 5),
        ValueError,
        "actions up to",
    ),
    Case(
        "memory streams malformed",
        replace_dataset("memory/streams", lambda a: a[:, :3]),
        ValueError,
        r"streams must be whole numbers of shape \(n, 5\)",
    ),
    Case(
        "memory link without its pair",
        lambda handle: handle["memory"].create_dataset("previous", data=np.zeros(300, np.int64)),
        ValueError,
        "previous and next must come together",
    ),
    Case(
        "pending observation of another shape",
        replace_dataset("pending_observation", lambda a: a[:2]),
        ValueError,
        r"pending_observation has shape \(2,\), expected \(4,\)",
    ),
    Case(
        "pending observation NaN",
        replace_dataset("pending_observation", with_nan),
        ValueError,
        "pending_observation.*NaN",
    ),
]


def damaged_copy(source, tmp_path, damage) -> str:
    path = tmp_path / f"damaged{source.suffix}"
    shutil.copy(source, path)
    if damage is None:
        truncate(path)
    else:
        with h5py.File(path, "r+") as handle:
            damage(handle)
    return str(path)


@pytest.mark.parametrize("case", CHECKPOINT_CASES, ids=[case.name for case in CHECKPOINT_CASES])
def test_a_damaged_or_crafted_checkpoint_is_refused_and_changes_nothing(
    case, good_files, victim, tmp_path
):
    path = damaged_copy(good_files / "checkpoint.h5", tmp_path, case.damage)
    before = full_state(victim)
    with pytest.raises(case.error) as raised:
        victim.load_checkpoint(path)
    message = str(raised.value)
    assert path in message
    assert re.search(case.part, message), message
    assert_same_state(before, full_state(victim))


def test_the_undamaged_checkpoint_loads(good_files, victim):
    """The control: the cases above fail because of their damage alone."""
    victim.load_checkpoint(good_files / "checkpoint.h5")
    assert victim.step == 400


WEIGHTS_CASES = [
    Case("cut off", None, ValueError, "not a readable HDF5 file|damaged"),
    Case("weight NaN", on_first_weight("", with_nan), ValueError, "NaN or infinite"),
    Case("weight strings", on_first_weight("", as_strings), ValueError, "expected numbers"),
    Case("weight missing", delete_first_weight(""), ValueError, "dataset .* is missing"),
    Case(
        "layer group missing",
        lambda handle: handle.pop(sorted(k for k in handle if k.startswith("dense"))[0]),
        ValueError,
        "layer groups .* are missing",
    ),
    Case("no layer names", delete("@layer_names"), ValueError, "does not hold Keras weights"),
]


@pytest.mark.parametrize("case", WEIGHTS_CASES, ids=[case.name for case in WEIGHTS_CASES])
def test_a_damaged_weights_file_is_refused_and_changes_nothing(case, good_files, victim, tmp_path):
    path = damaged_copy(good_files / "weights.h5", tmp_path, case.damage)
    before = full_state(victim)
    with pytest.raises(case.error) as raised:
        victim.load_weights(path)
    message = str(raised.value)
    assert path in message
    assert re.search(case.part, message), message
    assert_same_state(before, full_state(victim))


def flip_stored_bytes(path, dataset: str) -> None:
    """Invert 16 bytes in the middle of the stored data of ``dataset`` (its first chunk), as
    a failing disk or a bad copy would, leaving the file's structure readable."""
    with h5py.File(path, "r") as handle:
        item = handle[dataset]
        if item.chunks:
            chunk = item.id.get_chunk_info(0)
            offset, size = chunk.byte_offset, chunk.size
        else:
            offset, size = item.id.get_offset(), item.id.get_storage_size()
    data = bytearray(path.read_bytes())
    middle = offset + size // 2 - 8
    data[middle : middle + 16] = bytes(byte ^ 0xFF for byte in data[middle : middle + 16])
    path.write_bytes(bytes(data))


BYTES_CHANGED_ON_DISK = [
    ("weights.h5", first_weight("")),
    ("checkpoint.h5", first_weight("online")),
    ("checkpoint.h5", lambda handle: "optimizer/3"),
    ("checkpoint.h5", lambda handle: "memory/observations"),
]


@pytest.mark.parametrize(
    "file, dataset",
    BYTES_CHANGED_ON_DISK,
    ids=["weights file", "online weight", "optimizer variable", "memory observations"],
)
def test_bytes_changed_on_disk_are_detected_and_change_nothing(
    file, dataset, good_files, victim, tmp_path
):
    path = tmp_path / file
    shutil.copy(good_files / file, path)
    with h5py.File(path, "r") as handle:
        name = dataset(handle)
    flip_stored_bytes(path, name)
    before = full_state(victim)
    load = victim.load_weights if file == "weights.h5" else victim.load_checkpoint
    with pytest.raises(ValueError, match="damaged or incomplete") as raised:
        load(str(path))
    assert str(path) in str(raised.value)
    assert_same_state(before, full_state(victim))


def test_a_checkpoint_or_saved_agent_given_as_weights_is_named_for_what_it_is(
    good_files, victim, tmp_path
):
    with pytest.raises(ValueError, match="it is a training checkpoint: resume from it"):
        victim.load_weights(good_files / "checkpoint.h5")
    victim.save(tmp_path / "agent.h5")
    with pytest.raises(ValueError, match="it is a saved agent: load it with DQNAgent.load"):
        victim.load_weights(tmp_path / "agent.h5")


def test_a_crafted_policy_state_cannot_set_the_agents_attributes(good_files, victim, tmp_path):
    crafted = set_attribute(
        "policy_state", POLICY + ', "agent": {"gamma": 7, "batch_size": -3, "nb_actions": 0}}'
    )
    path = damaged_copy(good_files / "checkpoint.h5", tmp_path, crafted)
    with pytest.raises(ValueError, match="unknown fields"):
        victim.load_checkpoint(path)
    assert (victim.gamma, victim.batch_size, victim.nb_actions) == (0.99, 32, 2)


# --------------------------------------------------------------------------- faults


def test_an_existing_file_as_checkpoint_dir_fails_before_training(tmp_path):
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("x")
    agent = make_agent()
    env = gymnasium.make("CartPole-v1")
    with pytest.raises(NotADirectoryError, match="checkpoint_dir: .*file' exists and is not a"):
        agent.fit(env, nb_steps=100, checkpoint_dir=not_a_directory, verbose=0)
    assert agent.step == 0


def test_a_checkpoint_dir_that_cannot_be_created_fails_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(PermissionError, match="checkpoint_dir: cannot write files in"):
        TrainingCheckpoint(blocker / "checkpoints")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_checkpoint_dir_fails_before_training(tmp_path):
    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o500)
    with pytest.raises(PermissionError, match="checkpoint_dir: cannot write files in"):
        TrainingCheckpoint(read_only)


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_the_next_save_removes_temporaries_of_writers_that_died(good_files, tmp_path):
    path = tmp_path / "checkpoint.h5"
    dead = tmp_path / f".checkpoint.h5.{dead_pid()}.abcd.tmp"
    alive = tmp_path / f".checkpoint.h5.{os.getppid()}.efgh.tmp"  # a writer still running
    other_target = tmp_path / f".weights.h5.{dead_pid()}.ijkl.tmp"
    for leftover in (dead, alive, other_target):
        leftover.write_bytes(b"half a file")
    agent = make_agent()
    agent.save_checkpoint(path)
    assert not dead.exists()
    assert alive.exists() and other_target.exists()
    assert path.exists()


FULL_DISK_JOB = """
import json, os, resource, signal, sys
sys.path.insert(0, os.path.dirname(sys.argv[2]))
from test_loading import make_agent, train

path = sys.argv[1]
agent = train(make_agent(), 120, seed=0)
agent.save_checkpoint(path)
size = os.path.getsize(path)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails like a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (size // 4, resource.RLIM_INFINITY))
try:
    agent.save_checkpoint(path)
    outcome = {"error": None}
except Exception as error:
    outcome = {"error": type(error).__name__, "message": str(error)}
print(json.dumps(outcome))
"""


def test_a_full_disk_during_a_save_names_the_file_and_keeps_the_previous_one(tmp_path):
    """Run in its own process: the file-size limit that stands for a full disk applies to the
    whole process."""
    path = tmp_path / "checkpoint.h5"
    done = subprocess.run(
        [sys.executable, "-c", FULL_DISK_JOB, str(path), __file__],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["error"] == "OSError"
    message = outcome["message"]
    assert f"could not write {str(path)!r}" in message and "intact" in message
    assert len(message.splitlines()) == 1
    with h5py.File(path, "r") as handle:  # the previous checkpoint, whole
        assert int(handle.attrs["step"]) == 120
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.h5"]


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB file system of its own (needs root and tmpfs; skipped elsewhere)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small file system here: {mounted.stderr!r}")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=False)


def test_a_save_to_a_full_disk_is_refused_before_writing_and_keeps_the_previous_file(
    small_disk,
):
    agent = train(make_agent(), 120, seed=0)
    path = small_disk / "checkpoint.h5"
    agent.save_checkpoint(path)
    previous = path.read_bytes()
    free = shutil.disk_usage(small_disk).free
    (small_disk / "filler").write_bytes(b"\0" * (free - 64 * 1024))
    with pytest.raises(OSError, match=f"could not write {re.escape(repr(str(path)))}: not enough"):
        agent.save_checkpoint(path)
    with pytest.raises(OSError, match="could not write .*weights.h5.*: not enough room"):
        agent.save_weights(small_disk / "weights.h5")
    assert path.read_bytes() == previous
    assert sorted(os.listdir(small_disk)) == ["checkpoint.h5", "filler"]
