"""Training checkpoints: all that a DQN agent's training depends on, in one HDF5 file.

A checkpoint holds the online and target weights, the optimizer's state, the replay memory, the
step and episode counters, the policies' state and the agent's random generator. Restoring it
into an agent built and compiled the same way and calling ``fit`` continues training as if it
had never stopped. Files hold arrays, numbers and JSON only: loading one never runs code (no
pickle), so a checkpoint from someone else is safe to open.

An episode in progress when a checkpoint is written cannot be continued (the environment's state
is not the agent's); its last observation is stored, and loading ends the episode there as a
truncation, so the replay memory never joins it to the next episode.
"""

from __future__ import annotations

import json
import os
from typing import Any

import h5py
import numpy as np

from kerasdqn._files import atomic_path, check_path
from kerasdqn._version import __version__
from kerasdqn.memory import upgrade_single_writer_state
from kerasdqn.policy import Policy
from kerasdqn.weights import (
    check_finite_weights,
    open_for_reading,
    read_weights_group,
    write_weights_group,
)

CHECKPOINT_NAME = "checkpoint.h5"
FORMAT = "kerasdqn-checkpoint"
VERSION = 2  # 2: replay memories with several streams; format 1 files are upgraded on load
_STRUCTURE_KEYS = ("nb_actions", "enable_dueling_network", "dueling_type", "memory")


def checkpoint_path(path: str | os.PathLike) -> str:
    """``path`` itself, or ``path/checkpoint.h5`` if ``path`` is a directory."""
    path = check_path("filepath", path)
    return os.path.join(path, CHECKPOINT_NAME) if os.path.isdir(path) else path


def save_checkpoint(agent, filepath: str, pending_observation: Any = None) -> None:
    """Write ``agent``'s training state to ``filepath`` atomically (see the module docstring)."""
    if not agent.compiled:
        raise RuntimeError("save_checkpoint: compile the agent first")
    check_finite_weights(agent.model, filepath)
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
        _write_memory(handle.create_group("memory"), agent.memory.get_state())
        if pending_observation is not None:
            handle["pending_observation"] = np.asarray(pending_observation)


def load_checkpoint(agent, filepath: str) -> None:
    """Restore a checkpoint into ``agent``, which must be built and compiled like the one
    that wrote it. Everything is read and checked before anything changes."""
    if not agent.compiled:
        raise RuntimeError(
            "load_checkpoint: compile the agent first; the optimizer's state is restored into it"
        )
    with open_for_reading(filepath, "checkpoint") as handle:
        state = _read_checkpoint(handle, agent, filepath)
    _apply(agent, state)


def _read_checkpoint(handle: h5py.File, agent, source: str) -> dict[str, Any]:
    if handle.attrs.get("format") != FORMAT:
        raise ValueError(f"{source!r} is not a kerasdqn checkpoint")
    if int(handle.attrs["version"]) > VERSION:
        raise ValueError(
            f"{source!r} was written by a newer kerasdqn (format "
            f"{int(handle.attrs['version'])}); upgrade kerasdqn to read it"
        )
    _check_structure(json.loads(handle.attrs["config"]), agent.get_config(), source)
    memory = {name: np.asarray(dataset) for name, dataset in handle["memory"].items()}
    memory.update(handle["memory"].attrs.items())
    if int(handle.attrs["version"]) == 1:
        memory = upgrade_single_writer_state(memory, agent.memory.limit)
    pending = handle.get("pending_observation")
    return {
        "step": int(handle.attrs["step"]),
        "episode": int(handle.attrs["episode"]),
        "rng_state": json.loads(handle.attrs["rng_state"]),
        "policy_state": json.loads(handle.attrs["policy_state"]),
        "test_policy_state": json.loads(handle.attrs["test_policy_state"]),
        "online": read_weights_group(handle["online"], agent.model, source),
        "target": read_weights_group(handle["target"], agent.target_model, source),
        "optimizer": _read_variables(handle["optimizer"], agent.optimizer.variables, source),
        "memory": memory,
        "pending_observation": None if pending is None else np.asarray(pending),
    }


def _apply(agent, state: dict[str, Any]) -> None:
    agent.memory.set_state(state["memory"])
    for variable, value in state["online"] + state["target"] + state["optimizer"]:
        variable.assign(value)
    agent.step = state["step"]
    agent.episode = state["episode"]
    agent.rng.bit_generator.state = state["rng_state"]
    set_policy_state(agent.policy, state["policy_state"])
    set_policy_state(agent.test_policy, state["test_policy_state"])
    if state["pending_observation"] is not None:
        agent.memory.append_final(state["pending_observation"])
    agent.reset_states()
    agent.refresh_acting_weights()


def _check_structure(saved: dict, current: dict, source: str) -> None:
    differences = [
        f"{key}: checkpoint {saved.get(key)!r}, agent {current.get(key)!r}"
        for key in _STRUCTURE_KEYS
        if saved.get(key) != current.get(key)
    ]
    if differences:
        raise ValueError(
            f"{source!r} was written by a differently built agent (" + "; ".join(differences) + ")"
        )


def policy_state(policy) -> dict[str, Any]:
    """A policy's plain attributes (numbers, strings), nested policies included."""
    state: dict[str, Any] = {}
    for name, value in vars(policy).items():
        if name.startswith("_") or name == "agent":
            continue
        if isinstance(value, bool | int | float | str):
            state[name] = value
        elif isinstance(value, Policy):
            state[name] = policy_state(value)
    return state


def set_policy_state(policy, state: dict[str, Any]) -> None:
    """Restore what ``policy_state`` returned."""
    for name, value in state.items():
        if isinstance(value, dict):
            set_policy_state(getattr(policy, name), value)
        else:
            setattr(policy, name, value)


def _write_variables(group: h5py.Group, variables: list) -> None:
    group.attrs["paths"] = json.dumps([variable.path for variable in variables])
    for index, variable in enumerate(variables):
        group.create_dataset(str(index), data=np.asarray(variable.numpy()))


def _read_variables(group: h5py.Group, variables: list, source: str) -> list:
    paths = json.loads(group.attrs["paths"])
    if len(paths) != len(variables):
        raise ValueError(
            f"{source!r}: the optimizer state has {len(paths)} variables but this agent's "
            f"optimizer has {len(variables)}: compile it with the same optimizer"
        )
    pairs = []
    for index, variable in enumerate(variables):
        value = np.asarray(group[str(index)])
        if value.shape != tuple(variable.shape):
            raise ValueError(
                f"{source!r}: optimizer variable {paths[index]!r} has shape {value.shape}, "
                f"but {variable.path!r} has {tuple(variable.shape)}"
            )
        pairs.append((variable, value))
    return pairs


def _write_memory(group: h5py.Group, state: dict[str, Any]) -> None:
    for name, value in state.items():
        if isinstance(value, np.ndarray):
            group.create_dataset(name, data=value)
        else:
            group.attrs[name] = value
