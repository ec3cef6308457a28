"""Training checkpoints: all that a DQN agent's training depends on, in one HDF5 file.

A checkpoint holds the online and target weights, the optimizer's state, the replay memory, the
step and episode counters, the policies' state and the agent's random generator. Restoring it
into an agent built and compiled the same way and calling ``fit`` continues training as if it
had never stopped. Files hold arrays, numbers and JSON only: loading one never runs code (no
pickle), so a checkpoint from someone else is safe to open.

An episode in progress when a checkpoint is written cannot be continued (the environment's state
is not the agent's); its last observation is stored, and loading ends the episode there as a
truncation, so the replay memory never joins it to the next episode.

The replay memory's arrays are stored as chunked HDF5 datasets (chunks of a few megabytes along
the entry axis, optionally compressed) and move between file and memory one chunk-sized block
at a time: writing never copies the observations, and loading reads them straight into the
memory's one preallocated array, so a million Atari frames (7 GB) never need twice that.
"""

from __future__ import annotations

import json
import numbers
import os
from typing import Any

import h5py
import numpy as np

from kerasdqn._blocks import row_blocks, rows_per_block
from kerasdqn._files import atomic_path, check_path, check_room_for
from kerasdqn._version import __version__
from kerasdqn.layers import noise_variables
from kerasdqn.memory import PrioritizedMemory, checked_beta_schedule, upgrade_single_writer_state
from kerasdqn.policy import Policy
from kerasdqn.weights import (
    check_finite_weights,
    open_for_reading,
    read_array,
    read_weights_group,
    write_array,
    write_weights_group,
)

CHECKPOINT_NAME = "checkpoint.h5"
#: The HDF5 compression filters ``save_checkpoint`` accepts (None: no compression).
COMPRESSIONS = (None, "lzf", "gzip")
FORMAT = "kerasdqn-checkpoint"
VERSION = 2  # 2: replay memories with several streams; format 1 files are upgraded on load
_STRUCTURE_KEYS = (
    "nb_actions",
    "enable_dueling_network",
    "dueling_type",
    "memory",
    # Distributional agents: what their outputs mean (absent, so equal, for DQN).
    "distribution_size",
    "nb_atoms",
    "v_min",
    "v_max",
    "nb_quantiles",
    "kappa",
)


def checkpoint_path(path: str | os.PathLike) -> str:
    """``path`` itself, or ``path/checkpoint.h5`` if ``path`` is a directory."""
    path = check_path("filepath", path)
    return os.path.join(path, CHECKPOINT_NAME) if os.path.isdir(path) else path


def save_checkpoint(
    agent, filepath: str, pending_observation: Any = None, compression: str | None = None
) -> None:
    """Write ``agent``'s training state to ``filepath`` atomically (see the module docstring).

    ``compression``: the HDF5 filter for the replay memory's arrays, one of ``COMPRESSIONS``:
    None (the default: fastest), ``"lzf"`` (fast, modest) or ``"gzip"`` (slower, smaller).
    Any kerasdqn reads all three; other HDF5 tools may lack ``lzf``.
    """
    compression = check_compression(compression)
    if not agent.compiled:
        raise RuntimeError("save_checkpoint: compile the agent first")
    check_finite_weights(agent.model, filepath)
    memory = agent.memory.get_state()
    check_room_for(filepath, _checkpoint_nbytes(agent, memory))
    with atomic_path(filepath) as temporary, h5py.File(temporary, "w") as handle:
        handle.attrs["format"] = FORMAT
        handle.attrs["version"] = VERSION
        handle.attrs["kerasdqn_version"] = __version__
        handle.attrs["step"] = agent.step
        handle.attrs["episode"] = agent.episode
        handle.attrs["config"] = json.dumps(agent.get_config())
        handle.attrs["rng_state"] = json.dumps(agent.rng.bit_generator.state)
        handle.attrs["policy_state"] = json.dumps(policy_state(agent.policy))
        handle.attrs["test_policy_state"] = json.dumps(policy_state(agent.test_policy))
        write_weights_group(handle.create_group("online"), agent.model)
        write_weights_group(handle.create_group("target"), agent.target_model)
        _write_variables(handle.create_group("optimizer"), agent.optimizer.variables)
        noise = noise_states(agent)
        if noise:
            _write_variables(handle.create_group("noise"), noise)
        _write_memory(handle.create_group("memory"), memory, compression)
        if pending_observation is not None:
            write_array(handle, "pending_observation", pending_observation)


def check_compression(compression: Any) -> str | None:
    """``compression`` if it is one of ``COMPRESSIONS``, else a ``ValueError`` naming it."""
    if compression is not None and not (
        isinstance(compression, str) and compression in COMPRESSIONS
    ):
        raise ValueError(f"compression: expected None, 'lzf' or 'gzip', got {compression!r}")
    return compression


def _checkpoint_nbytes(agent, memory: dict[str, Any]) -> int:
    """About how many bytes the checkpoint's arrays take."""
    variables = agent.model.weights + agent.target_model.weights + agent.optimizer.variables
    arrays = sum(np.asarray(value).nbytes for value in memory.values())
    return arrays + sum(int(np.prod(v.shape)) * 8 for v in variables)


def load_checkpoint(agent, filepath: str) -> None:
    """Restore a checkpoint into ``agent``, which must be built and compiled like the one
    that wrote it. Everything is read and checked before anything changes."""
    if not agent.compiled:
        raise RuntimeError(
            "load_checkpoint: compile the agent first; the optimizer's state is restored into it"
        )
    with open_for_reading(filepath, "checkpoint") as handle:
        state = _read_checkpoint(handle, agent, filepath)
        # The memory goes first (it allocates) and streams its observations from the open
        # file; it changes only once all are read, and nothing else has changed before.
        agent.memory.set_state(state["memory"])
    _apply(agent, state)


def _read_checkpoint(handle: h5py.File, agent, source: str) -> dict[str, Any]:
    """Every part of the checkpoint, read and checked; raises ``ValueError`` naming the file
    and the part on the first problem."""
    version = _check_format(handle, source)
    saved_config = json_attribute(handle, "config", source)
    _check_structure(saved_config, agent.get_config(), source)
    return {
        "memory_schedule": _memory_schedule(saved_config, agent.memory, source),
        "step": read_counter(handle, "step", source),
        "episode": read_counter(handle, "episode", source),
        "rng_state": checked_rng_state(
            agent.rng, json_attribute(handle, "rng_state", source), source
        ),
        "policy": checked_policy(
            agent.policy,
            json_attribute(handle, "policy_state", source),
            f"{source!r}: policy_state",
        ),
        "test_policy": checked_policy(
            agent.test_policy,
            json_attribute(handle, "test_policy_state", source),
            f"{source!r}: test_policy_state",
        ),
        "online": read_weights_group(_group(handle, "online", source), agent.model, source),
        "target": read_weights_group(_group(handle, "target", source), agent.target_model, source),
        "optimizer": _read_variables(
            _group(handle, "optimizer", source), agent.optimizer.variables, source, "optimizer"
        ),
        "noise": _read_noise(handle, agent, source),
        "memory": _read_memory(_group(handle, "memory", source), agent, version, source),
        "pending_observation": _read_pending(handle, agent, source),
    }


def _check_format(handle: h5py.File, source: str) -> int:
    if handle.attrs.get("format") != FORMAT:
        raise ValueError(f"{source!r} is not a kerasdqn checkpoint")
    version = handle.attrs.get("version")
    if not isinstance(version, numbers.Integral) or version < 1:
        raise ValueError(f"{source!r}: version: expected a format number, got {version!r}")
    if version > VERSION:
        raise ValueError(
            f"{source!r} was written by a newer kerasdqn (format {int(version)}); upgrade "
            "kerasdqn to read it"
        )
    return int(version)


def _attribute(handle: h5py.File, name: str, source: str) -> Any:
    if name not in handle.attrs:
        raise ValueError(f"{source!r}: the attribute {name!r} is missing")
    return handle.attrs[name]


def json_attribute(handle: h5py.File, name: str, source: str) -> Any:
    """A JSON attribute, parsed; errors name the file and the attribute."""
    text = _attribute(handle, name, source)
    try:
        return json.loads(text)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{source!r}: {name} is not valid JSON ({error})") from None


def read_counter(handle: h5py.File, name: str, source: str) -> int:
    """A whole-number attribute >= 0 (a step or episode count)."""
    value = _attribute(handle, name, source)
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{source!r}: {name}: expected a whole number >= 0, got {value!r}")
    return int(value)


def _group(handle: h5py.File, name: str, source: str) -> h5py.Group:
    group = handle.get(name)
    if not isinstance(group, h5py.Group):
        raise ValueError(f"{source!r}: the group {name!r} is missing")
    return group


def checked_rng_state(rng: np.random.Generator, state: Any, source: str) -> dict:
    """``state`` if a generator like ``rng`` accepts it (tried on a spare one)."""
    expected = rng.bit_generator.state["bit_generator"]
    if not isinstance(state, dict) or state.get("bit_generator") != expected:
        raise ValueError(f"{source!r}: rng_state: expected the state of a {expected} generator")
    try:
        type(rng.bit_generator)().state = state
    except (TypeError, ValueError, KeyError, OverflowError) as error:
        raise ValueError(f"{source!r}: rng_state: {error}") from None
    return state


def _read_memory(group: h5py.Group, agent, version: int, source: str) -> dict[str, Any]:
    """The memory's state, checked; its observations stay on disk (an open dataset, checked
    block by block), for ``set_state`` to read straight into the memory."""
    state: dict[str, Any] = {}
    for name, dataset in group.items():
        if not isinstance(dataset, h5py.Dataset):
            raise ValueError(f"{source!r}: memory: {name} is not a dataset")
        state[name] = dataset if name == "observations" else np.asarray(dataset[()])
    state.update(group.attrs.items())
    try:
        if version == 1:
            state = upgrade_single_writer_state(state, agent.memory.limit)
        agent.memory.check_state(state, _observation_shape(agent))
    except (KeyError, ValueError) as error:
        raise ValueError(f"{source!r}: {error}") from None
    actions = state["actions"]
    if len(actions) and int(actions.max()) >= agent.nb_actions:
        raise ValueError(
            f"{source!r}: memory: actions up to {int(actions.max())}, but the agent has "
            f"{agent.nb_actions} actions"
        )
    return state


def _read_pending(handle: h5py.File, agent, source: str) -> np.ndarray | None:
    if "pending_observation" not in handle:
        return None
    pending = read_array(handle, "pending_observation", source, "checkpoint")
    shape = _observation_shape(agent)
    if shape is not None and pending.shape != shape:
        raise ValueError(
            f"{source!r}: pending_observation has shape {pending.shape}, expected {shape}"
        )
    return pending


def _observation_shape(agent) -> tuple | None:
    """The observation shape the agent's network takes, unless a processor stands between."""
    if agent.processor is not None:
        return None
    return tuple(agent.model.inputs[0].shape[2:])


def _apply(agent, state: dict[str, Any]) -> None:
    """Put the checked state in place, the memory's aside (already restored)."""
    for variable, value in state["online"] + state["target"] + state["optimizer"] + state["noise"]:
        variable.assign(value)
    agent.step = state["step"]
    agent.episode = state["episode"]
    agent.rng.bit_generator.state = state["rng_state"]
    copy_policy_fields(agent.policy, state["policy"])
    copy_policy_fields(agent.test_policy, state["test_policy"])
    if state["memory_schedule"] is not None:
        agent.memory.beta, agent.memory.beta_steps = state["memory_schedule"]
    if state["pending_observation"] is not None:
        agent.memory.append_final(state["pending_observation"])
    agent.reset_states()
    agent.refresh_acting_weights()


def _check_structure(saved: Any, current: dict, source: str) -> None:
    if not isinstance(saved, dict):
        raise ValueError(f"{source!r}: config: expected a JSON object, got {saved!r}")
    saved, current = _without_schedules(saved), _without_schedules(current)
    differences = [
        f"{key}: checkpoint {saved.get(key)!r}, agent {current.get(key)!r}"
        for key in _STRUCTURE_KEYS
        if saved.get(key) != current.get(key)
    ]
    if differences:
        raise ValueError(
            f"{source!r} was written by a differently built agent (" + "; ".join(differences) + ")"
        )


#: What in a memory's configuration is a schedule rather than structure: a prioritized
#: memory's importance-sampling exponent, annealed over ``beta_steps``. Like the policies'
#: schedules, it resumes as the checkpoint saved it, so a run resumed for more steps than it
#: was started with (which changes ``beta_steps``) goes on as it would have.
_MEMORY_SCHEDULE_KEYS = ("beta", "beta_steps")


def _without_schedules(config: dict) -> dict:
    """``config`` with its memory's ``_MEMORY_SCHEDULE_KEYS`` left out."""
    memory = config.get("memory")
    if not isinstance(memory, dict):
        return config
    kept = {key: value for key, value in memory.items() if key not in _MEMORY_SCHEDULE_KEYS}
    return {**config, "memory": kept}


def _memory_schedule(saved: dict, memory, source: str) -> tuple[float, int] | None:
    """A prioritized memory's ``(beta, beta_steps)`` as the checkpoint saved them, checked as
    the memory checks them (the memory's own where the file lacks one); None for a memory
    without that schedule."""
    if not isinstance(memory, PrioritizedMemory):
        return None
    saved_memory = saved.get("memory") if isinstance(saved.get("memory"), dict) else {}
    try:
        return checked_beta_schedule(
            saved_memory.get("beta", memory.beta),
            saved_memory.get("beta_steps", memory.beta_steps),
        )
    except (TypeError, ValueError) as error:
        raise ValueError(f"{source!r}: config: memory: {error}") from None


def policy_state(policy: Policy) -> dict[str, Any]:
    """The fields a policy is made of (its ``get_config``), nested policies included."""
    state: dict[str, Any] = {}
    for name, value in _policy_fields(policy).items():
        if isinstance(value, Policy):
            state[name] = policy_state(value)
        elif isinstance(value, tuple):
            state[name] = list(value)
        else:
            state[name] = value
    return state


def _policy_fields(policy: Policy) -> dict[str, Any]:
    """The policy's configuration fields that are attributes of it, by their current value."""
    return {name: getattr(policy, name) for name in policy.get_config() if hasattr(policy, name)}


def checked_policy(policy: Policy, state: Any, where: str) -> Policy | None:
    """A new policy of ``policy``'s class made from ``state`` by its constructor (so with its
    checks), or None if the policy has no fields. Unknown fields are refused."""
    fields = _policy_fields(policy)
    if not isinstance(state, dict):
        raise ValueError(f"{where}: expected a JSON object, got {state!r}")
    unknown = sorted(set(state) - set(fields))
    if unknown:
        raise ValueError(
            f"{where}: unknown fields {unknown}; a {type(policy).__name__} has {sorted(fields)}"
        )
    if not fields:
        return None
    values = {**fields, **state}
    for name, value in fields.items():
        if isinstance(value, Policy):
            values[name] = checked_policy(value, state.get(name, {}), f"{where}.{name}")
    try:
        return type(policy)(**values)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: {error}") from None


def copy_policy_fields(policy: Policy, checked: Policy | None) -> None:
    """Set ``policy``'s fields to those of ``checked`` (nested policies keep their objects)."""
    if checked is None:
        return
    for name, value in _policy_fields(policy).items():
        if isinstance(value, Policy):
            copy_policy_fields(value, getattr(checked, name))
        else:
            setattr(policy, name, getattr(checked, name))


def _write_variables(group: h5py.Group, variables: list) -> None:
    group.attrs["paths"] = json.dumps([variable.path for variable in variables])
    for index, variable in enumerate(variables):
        write_array(group, str(index), variable.numpy())


def noise_states(agent) -> list:
    """The random-number states of the networks' noisy layers (``NoisyDense`` seed
    generators), online then target: restoring them makes a noisy agent resume with the very
    noise it would have drawn."""
    return noise_variables(agent.model) + noise_variables(agent.target_model)


def _read_noise(handle: h5py.File, agent, source: str) -> list:
    """The noise states, if the checkpoint holds them (one written before they were saved
    resumes with the agent's own noise)."""
    if "noise" not in handle:
        return []
    return _read_variables(_group(handle, "noise", source), noise_states(agent), source, "noise")


_SUGGESTIONS = {
    "optimizer": "compile it with the same optimizer",
    "noise": "build it with the same noisy layers",
}


def _read_variables(group: h5py.Group, variables: list, source: str, part: str) -> list:
    """Pairs ``(variable, array)`` from a group ``_write_variables`` wrote, shapes checked;
    ``part`` names it in errors (``"optimizer"`` or ``"noise"``)."""
    paths = json_attribute(group, "paths", source)
    if not isinstance(paths, list) or len(paths) != len(variables):
        count = len(paths) if isinstance(paths, list) else "no list of"
        raise ValueError(
            f"{source!r}: the {part} state has {count} variables but this agent has "
            f"{len(variables)}: {_SUGGESTIONS[part]}"
        )
    pairs = []
    for index, variable in enumerate(variables):
        value = read_array(group, str(index), source, part)
        if value.shape != tuple(variable.shape):
            raise ValueError(
                f"{source!r}: {part} variable {paths[index]!r} has shape {value.shape}, "
                f"but {variable.path!r} has {tuple(variable.shape)}"
            )
        pairs.append((variable, value))
    return pairs


def _write_memory(group: h5py.Group, state: dict[str, Any], compression: str | None = None) -> None:
    """A memory's ``get_state``: arrays as chunked datasets, numbers as attributes."""
    for name, value in state.items():
        if isinstance(value, np.ndarray):
            write_chunked(group, name, value, compression)
        else:
            group.attrs[name] = value


def write_chunked(
    group: h5py.Group, name: str, array: np.ndarray, compression: str | None = None
) -> h5py.Dataset:
    """Store ``array`` as dataset ``name``, chunked along its first axis in chunks of a few
    megabytes, each with a checksum (as ``write_array``), and written chunk by chunk (so
    never copied whole); an empty or 0-d array has no chunks to make and is stored as it
    is."""
    if array.ndim == 0 or array.size == 0:
        return write_array(group, name, array)
    chunks = (rows_per_block(array.shape, array.dtype),) + array.shape[1:]
    dataset = group.create_dataset(
        name,
        shape=array.shape,
        dtype=array.dtype,
        chunks=chunks,
        compression=compression,
        fletcher32=True,
    )
    for block in row_blocks(array.shape, array.dtype):
        dataset[block] = array[block]
    return dataset
