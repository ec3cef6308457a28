"""Whole-agent files: a DQN agent saved to one HDF5 file and rebuilt from it alone.

``DQNAgent.save`` writes, atomically:

- ``agent_class``: the agent's class, one of ``AGENT_CLASSES`` (``DQNAgent``,
  ``CategoricalDQNAgent``, ``QuantileDQNAgent``; for a class of one's own, the kerasdqn class
  it derives from); files without it hold a ``DQNAgent``;
- ``config``: the agent's ``get_config()`` (the replay memory's configuration included) plus
  ``jit_compile`` and ``fast_acting``, as JSON;
- ``memory_class``: ``SequentialMemory`` or ``PrioritizedMemory`` (files without it: the
  former);
- ``policy`` and ``test_policy``: ``{"class_name", "config"}`` of kerasdqn's own policies (a
  ``LinearAnnealedPolicy`` nests its inner policy the same way), as JSON;
- ``architecture``: the online network, dueling head included, as Keras JSON
  (``model.to_json()``);
- ``weights``: the online network's weights, in the layout of ``save_weights``;
- ``optimizer`` and ``metrics``: the optimizer's Keras configuration and the metric names given
  to ``compile``, as JSON (null when the agent was not compiled);
- ``processor``: the class name of the agent's ``Processor``, or an empty string;
- ``memory`` (with ``include_memory=True``): the replay memory, as a checkpoint stores it.

``DQNAgent.load`` rebuilds an agent of the saved class (``DQNAgent.load`` of a C51 file
gives a ``CategoricalDQNAgent``), the network with Keras in safe mode, and refuses any Python
lambda in the file before Keras sees it; agent and policy classes are looked up by name only in
fixed tables. Loading never runs code from the file: it holds numbers, arrays and JSON only.
Every part is checked, and any problem raises one ``ValueError`` naming the file and the part.

What a file does not hold: the step and episode counters, the random generator's state, the
target network (loading copies the online weights into it) and the optimizer's moments. A loaded
agent is the agent one would build by hand and ``load_weights`` into: its counters start at 0,
so warm-up and annealing schedules run again in its next ``fit``. ``save_checkpoint`` is the
way to continue a training run exactly.
"""

from __future__ import annotations

import importlib
import json
import os
from typing import Any

import h5py
import keras
import numpy as np

from kerasdqn._env_checks import shape_matches
from kerasdqn._files import atomic_path, check_path, check_room_for, check_writable
from kerasdqn._version import __version__
from kerasdqn.checkpoint import _write_memory, json_attribute
from kerasdqn.layers import DuelingCombine, NoisyDense, dense_like, noise_kept
from kerasdqn.memory import PrioritizedMemory, SequentialMemory
from kerasdqn.policy import (
    BoltzmannQPolicy,
    EpsGreedyQPolicy,
    GreedyQPolicy,
    LinearAnnealedPolicy,
    MaxBoltzmannQPolicy,
    Policy,
)
from kerasdqn.state import StateWindow
from kerasdqn.weights import (
    check_finite_weights,
    open_for_reading,
    read_weights_group,
    write_weights_group,
)

FORMAT = "kerasdqn-agent"
VERSION = 1

#: The policy classes a file may name, by name; nothing else is ever looked up.
POLICY_CLASSES: dict[str, type[Policy]] = {
    cls.__name__: cls
    for cls in (
        GreedyQPolicy,
        EpsGreedyQPolicy,
        BoltzmannQPolicy,
        MaxBoltzmannQPolicy,
        LinearAnnealedPolicy,
    )
}

#: The agent classes a file may name, by name, with the module of each; nothing else is ever
#: imported.
AGENT_CLASSES: dict[str, str] = {
    "DQNAgent": "kerasdqn.agents.dqn",
    "CategoricalDQNAgent": "kerasdqn.agents.categorical",
    "QuantileDQNAgent": "kerasdqn.agents.quantile",
}

#: The replay memory classes a file may name.
MEMORY_CLASSES: dict[str, type[SequentialMemory]] = {
    cls.__name__: cls for cls in (SequentialMemory, PrioritizedMemory)
}

# Constructor arguments that are not in get_config() but shape the rebuilt agent.
_EXTRA_ARGUMENTS = ("jit_compile", "fast_acting")


# --------------------------------------------------------------------------- saving


def save_agent(
    agent, filepath: str | os.PathLike, include_memory: bool = False, overwrite: bool = False
) -> None:
    """Write ``agent`` to one HDF5 file (see the module docstring), atomically.

    Raises ``FileExistsError`` if the file exists and ``overwrite`` is false,
    ``FloatingPointError`` if a weight is NaN or infinite, and ``ValueError`` if a policy is
    not one of kerasdqn's.
    """
    for name, value in (("include_memory", include_memory), ("overwrite", overwrite)):
        if not isinstance(value, bool | np.bool_):
            raise TypeError(f"{name}: expected True or False, got {value!r}")
    filepath = check_writable(filepath, bool(overwrite))
    check_finite_weights(agent.model, filepath)
    attributes = _saved_attributes(agent)
    memory = agent.memory.get_state() if include_memory else None
    nbytes = sum(int(np.prod(weight.shape)) * 8 for weight in agent.model.weights)
    if memory is not None:
        nbytes += sum(np.asarray(value).nbytes for value in memory.values())
    check_room_for(filepath, nbytes)
    with atomic_path(filepath) as temporary, h5py.File(temporary, "w") as handle:
        handle.attrs.update(attributes)
        write_weights_group(handle.create_group("weights"), agent.model)
        if memory is not None:
            _write_memory(handle.create_group("memory"), memory)


def _saved_attributes(agent) -> dict[str, Any]:
    """The file's attributes: format, configuration, policies, architecture, optimizer."""
    processor = "" if agent.processor is None else type(agent.processor).__name__
    return {
        "format": FORMAT,
        "version": VERSION,
        "kerasdqn_version": __version__,
        "keras_version": keras.__version__,
        "agent_class": kerasdqn_class(type(agent)).__name__,
        "config": json.dumps(agent_config(agent)),
        "policy": json.dumps(policy_spec(agent.policy, "policy")),
        "test_policy": json.dumps(policy_spec(agent.test_policy, "test_policy")),
        "architecture": agent.model.to_json(),
        "optimizer": json.dumps(_optimizer_spec(agent)),
        "metrics": json.dumps([name for name, _ in getattr(agent, "_metric_functions", [])]),
        "processor": processor,
        "memory_class": _memory_class_name(agent.memory),
    }


def _memory_class_name(memory) -> str:
    """The name of the memory's class in ``MEMORY_CLASSES``: for a class of one's own, the one
    it derives from; for any other memory, ``SequentialMemory`` (as before classes were
    recorded)."""
    for cls in type(memory).__mro__:
        if MEMORY_CLASSES.get(cls.__name__) is cls:
            return cls.__name__
    return SequentialMemory.__name__


def agent_config(agent) -> dict[str, Any]:
    """``agent.get_config()`` plus the constructor arguments it leaves out."""
    return {
        **agent.get_config(),
        "jit_compile": agent.jit_compile,
        "fast_acting": agent.fast_acting,
    }


def kerasdqn_class(cls: type) -> type:
    """``cls`` itself if it is one of ``AGENT_CLASSES``, else the nearest of them it derives
    from (a class of one's own is saved as the kerasdqn agent it extends)."""
    for candidate in cls.__mro__:
        if AGENT_CLASSES.get(candidate.__name__) == candidate.__module__:
            return candidate
    raise ValueError(
        f"agent: a {cls.__name__} is not a kerasdqn agent ({', '.join(AGENT_CLASSES)})"
    )


def policy_spec(policy: Policy, name: str) -> dict[str, Any]:
    """``{"class_name", "config"}`` of one of kerasdqn's policies; others are refused, since
    loading could not rebuild them."""
    if type(policy) not in POLICY_CLASSES.values():
        raise ValueError(
            f"{name}: a {type(policy).__name__} cannot be saved; whole-agent files hold only "
            f"kerasdqn's policies ({', '.join(POLICY_CLASSES)}). Save the weights with "
            "save_weights instead"
        )
    config = policy.get_config()
    if isinstance(policy, LinearAnnealedPolicy):
        config["inner_policy"] = policy_spec(policy.inner_policy, f"{name}.inner_policy")
    return {"class_name": type(policy).__name__, "config": config}


def _optimizer_spec(agent) -> dict[str, Any] | None:
    """The optimizer's Keras configuration, or None before ``compile``."""
    if not agent.compiled:
        return None
    return keras.optimizers.serialize(agent.optimizer)


# --------------------------------------------------------------------------- loading


def load_agent(
    cls,
    filepath: str | os.PathLike,
    custom_objects: dict | None = None,
    *,
    compile: bool = True,
    processor=None,
    seed: int | None = None,
):
    """Rebuild an agent of class ``cls`` from a file written by ``save_agent``.

    Args:
        cls: the class ``load`` was called on. The agent built is of the saved class, or of
            ``cls`` where ``cls`` derives from the saved class (a class of one's own):
            ``DQNAgent.load`` of a C51 file gives a ``CategoricalDQNAgent``, and
            ``CategoricalDQNAgent.load`` of a DQN file is refused.
        filepath: the file.
        custom_objects: custom layers, functions and metrics the network or ``compile`` needs,
            by name; they also become the agent's ``custom_model_objects``.
        compile: compile the agent with a new optimizer built from the saved configuration
            (fresh moments) and the saved metrics, if it was compiled when saved.
        processor: the ``Processor`` to use; required if the agent was saved with one
            (processors are code, which files do not hold).
        seed: seeds the new agent's random generator (see ``Agent``).
    """
    filepath = check_path("filepath", filepath)
    custom_objects = _check_custom_objects(custom_objects)
    with open_for_reading(filepath, "saved agent") as handle:
        parts = _read_parts(handle, cls, filepath, custom_objects)
        _check_processor(parts["processor"], processor, filepath)
        agent = _construct(parts, custom_objects, processor, seed, filepath)
        _load_weights(agent, handle, filepath)
        if "memory" in handle:
            _load_memory(agent, handle["memory"], filepath)
    if compile and parts["optimizer"] is not None:
        _compile(agent, parts, custom_objects, filepath)
    return agent


def _check_custom_objects(custom_objects) -> dict:
    if custom_objects is None:
        return {}
    if not isinstance(custom_objects, dict):
        raise TypeError(
            f"custom_objects: expected a dict of names to classes or functions, got "
            f"{custom_objects!r}"
        )
    return dict(custom_objects)


def _read_parts(handle: h5py.File, cls, source: str, custom_objects: dict) -> dict[str, Any]:
    """Every JSON part of the file, read and checked, the agent class resolved (which imports
    the custom layers its network may hold) and the network rebuilt."""
    _check_format(handle, source)
    agent_class = _agent_class(handle, cls, source)
    config = json_attribute(handle, "config", source)
    if not isinstance(config, dict) or not isinstance(config.get("memory"), dict):
        raise ValueError(f"{source!r}: config: expected a JSON object with a 'memory' object")
    optimizer = json_attribute(handle, "optimizer", source)
    _refuse_lambdas(optimizer, source, "optimizer")
    metrics = json_attribute(handle, "metrics", source)
    if not isinstance(metrics, list) or not all(isinstance(name, str) for name in metrics):
        raise ValueError(f"{source!r}: metrics: expected a list of names, got {metrics!r}")
    processor = handle.attrs.get("processor", "")
    return {
        "agent_class": agent_class,
        "config": config,
        "policy": build_policy(json_attribute(handle, "policy", source), f"{source!r}: policy"),
        "test_policy": build_policy(
            json_attribute(handle, "test_policy", source), f"{source!r}: test_policy"
        ),
        "model": _rebuild_model(handle, config, custom_objects, source),
        "optimizer": optimizer,
        "metrics": metrics,
        "processor": processor.decode() if isinstance(processor, bytes) else str(processor),
        "memory_class": _memory_class(handle, source),
    }


def _memory_class(handle: h5py.File, source: str) -> type[SequentialMemory]:
    name = handle.attrs.get("memory_class", "SequentialMemory")
    name = name.decode() if isinstance(name, bytes) else str(name)
    if name not in MEMORY_CLASSES:
        raise ValueError(
            f"{source!r}: memory_class: {name!r} is not one of kerasdqn's memories "
            f"({', '.join(MEMORY_CLASSES)})"
        )
    return MEMORY_CLASSES[name]


def _check_format(handle: h5py.File, source: str) -> None:
    if handle.attrs.get("format") != FORMAT:
        raise ValueError(f"{source!r} is not a kerasdqn agent file (written by DQNAgent.save)")
    version = handle.attrs.get("version")
    if not isinstance(version, int | np.integer) or version < 1:
        raise ValueError(f"{source!r}: version: expected a format number, got {version!r}")
    if version > VERSION:
        raise ValueError(
            f"{source!r} was written by a newer kerasdqn (format {int(version)}); upgrade "
            "kerasdqn to read it"
        )


def _agent_class(handle: h5py.File, cls, source: str) -> type:
    """The class to build: the one the file names (``DQNAgent`` if it names none), or ``cls``
    where ``cls`` is the saved class or a class of one's own deriving from it."""
    name = handle.attrs.get("agent_class", "DQNAgent")
    name = name.decode() if isinstance(name, bytes) else str(name)
    home = AGENT_CLASSES.get(name)
    if home is None:
        raise ValueError(
            f"{source!r}: agent_class: {name!r} is not one of kerasdqn's agents "
            f"({', '.join(AGENT_CLASSES)}); other classes are never loaded from a file"
        )
    saved = getattr(importlib.import_module(home), name)
    if kerasdqn_class(cls) is saved:
        return cls
    if issubclass(saved, cls):
        return saved
    raise ValueError(
        f"{source!r} holds a {name}, which {cls.__name__}.load cannot build; load it with "
        f"{name}.load or DQNAgent.load"
    )


def build_policy(spec: Any, where: str) -> Policy:
    """A policy from ``{"class_name", "config"}``, by its constructor (so with its checks);
    only the classes of ``POLICY_CLASSES`` are accepted."""
    if not isinstance(spec, dict) or not isinstance(spec.get("config"), dict):
        raise ValueError(
            f"{where}: expected {{'class_name': ..., 'config': {{...}}}}, got {spec!r}"
        )
    cls = POLICY_CLASSES.get(spec.get("class_name"))
    if cls is None:
        raise ValueError(
            f"{where}: {spec.get('class_name')!r} is not one of kerasdqn's policies "
            f"({', '.join(POLICY_CLASSES)}); other classes are never loaded from a file"
        )
    config = dict(spec["config"])
    if cls is LinearAnnealedPolicy:
        config["inner_policy"] = build_policy(config.get("inner_policy"), f"{where}.inner_policy")
    try:
        return cls(**config)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: {error}") from None


def _refuse_lambdas(config: Any, source: str, part: str) -> None:
    """Refuse a serialized Python lambda anywhere in ``config`` (whatever Keras's global safe
    mode setting: its code would run on loading)."""
    if isinstance(config, dict):
        if config.get("class_name") == "__lambda__":
            raise ValueError(
                f"{source!r}: {part}: it holds a Python lambda (a Lambda layer?), which "
                "loading would run as code; refused (safe mode). Rebuild such a network by "
                "hand and use load_weights"
            )
        values = config.values()
    elif isinstance(config, list):
        values = config
    else:
        return
    for value in values:
        _refuse_lambdas(value, source, part)


def _rebuild_model(handle: h5py.File, config: dict, custom_objects: dict, source: str):
    """The network from its Keras JSON, in safe mode; for a dueling agent, without its head
    (the constructor adds it again)."""
    architecture = json_attribute(handle, "architecture", source)
    _refuse_lambdas(architecture, source, "architecture")
    try:
        with keras.saving.custom_object_scope(custom_objects):
            model = keras.saving.deserialize_keras_object(
                architecture, custom_objects=custom_objects, safe_mode=True
            )
    except Exception as error:  # Keras raises many kinds for a bad configuration
        raise ValueError(f"{source!r}: architecture: cannot be rebuilt ({error})") from None
    if not isinstance(model, keras.Model):
        raise ValueError(f"{source!r}: architecture: expected a Keras model, got {model!r}")
    if config.get("enable_dueling_network") is True:
        model = _without_dueling_head(model, source)
    return model


def _without_dueling_head(model: keras.Model, source: str) -> keras.Model:
    """The dueling network with its head (a Dense or NoisyDense layer and ``DuelingCombine``,
    or a distributional agent's ``DistributionalDuelingCombine``) replaced by a placeholder
    layer of the same kind (so that a noisy head comes back noisy) and of the head's output
    width, as the network was given to the agent before the constructor put the head on it."""
    # Imported here: the distributional agents build on DQNAgent, which imports this module.
    from kerasdqn.agents.distributional import DistributionalDuelingCombine

    combine = model.layers[-1] if model.layers else None
    head = getattr(combine, "input", None)
    dense = getattr(getattr(head, "_keras_history", None), "operation", None)
    ends_with_head = isinstance(combine, DuelingCombine | DistributionalDuelingCombine)
    if not ends_with_head or not isinstance(dense, keras.layers.Dense | NoisyDense):
        raise ValueError(
            f"{source!r}: architecture: config says enable_dueling_network but the network "
            "does not end with a dueling head (Dense(nb_actions + 1), DuelingCombine)"
        )
    units = int(combine.output.shape[-1])
    placeholder = dense_like(dense, units, name="saved_dueling_placeholder")
    name = model.name.removesuffix("_dueling")
    return keras.Model(model.inputs[0], placeholder(dense.input), name=name)


def _check_processor(saved: str, processor, source: str) -> None:
    if saved and processor is None:
        raise ValueError(
            f"{source!r}: processor: the agent was saved with a processor ({saved}); "
            "processors are code, which the file does not hold: pass processor= to load"
        )


def _construct(parts: dict, custom_objects: dict, processor, seed, source: str):
    """The agent, built by its class's constructor from the saved arguments."""
    arguments = dict(parts["config"])
    try:
        memory = parts["memory_class"](**arguments.pop("memory"))
        return parts["agent_class"](
            parts["model"],
            parts["policy"],
            parts["test_policy"],
            memory=memory,
            processor=processor,
            custom_model_objects=custom_objects,
            seed=seed,
            **arguments,
        )
    except (TypeError, ValueError) as error:
        raise ValueError(f"{source!r}: config: the agent cannot be built ({error})") from None


def _load_weights(agent, handle: h5py.File, source: str) -> None:
    group = handle.get("weights")
    if not isinstance(group, h5py.Group):
        raise ValueError(f"{source!r}: weights: the group 'weights' is missing")
    try:
        pairs = read_weights_group(group, agent.model, source)
    except ValueError as error:
        raise ValueError(f"weights: {error}") from None
    for variable, value in pairs:
        variable.assign(value)
    agent.update_target_model_hard()
    agent.refresh_acting_weights()


def _load_memory(agent, group: Any, source: str) -> None:
    """Restore the stored replay memory, checked by the memory itself first. Its observations
    stay on disk (an open dataset) for ``set_state`` to read block by block, so a large replay
    loads without a second copy in memory."""
    if not isinstance(group, h5py.Group):
        raise ValueError(f"{source!r}: memory: expected a group")
    state: dict[str, Any] = {}
    for name, dataset in group.items():
        if not isinstance(dataset, h5py.Dataset):
            raise ValueError(f"{source!r}: memory: {name} is not a dataset")
        state[name] = dataset if name == "observations" else np.asarray(dataset[()])
    state.update(group.attrs.items())
    shape = None if agent.processor is not None else agent.expected_observation_shape()
    try:
        agent.memory.check_state(state, shape)
    except (KeyError, ValueError) as error:
        raise ValueError(f"{source!r}: {error}") from None
    actions = np.asarray(state["actions"])
    if len(actions) and (int(actions.max()) >= agent.nb_actions or int(actions.min()) < 0):
        raise ValueError(
            f"{source!r}: memory: actions from {int(actions.min())} to {int(actions.max())}, "
            f"but the agent has actions 0 to {agent.nb_actions - 1}"
        )
    agent.memory.set_state(state)


def _compile(agent, parts: dict, custom_objects: dict, source: str) -> None:
    """Compile with a new optimizer made from the saved configuration (safe mode: only
    Keras's optimizers and those in ``custom_objects``) and the saved metrics."""
    try:
        with keras.saving.custom_object_scope(custom_objects):
            optimizer = keras.saving.deserialize_keras_object(
                parts["optimizer"], custom_objects=custom_objects, safe_mode=True
            )
    except Exception as error:  # Keras raises many kinds for a bad configuration
        raise ValueError(
            f"{source!r}: optimizer: cannot be rebuilt ({error}); pass its class in "
            "custom_objects, or load with compile=False and compile yourself"
        ) from None
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise ValueError(f"{source!r}: optimizer: expected a Keras optimizer, got {optimizer!r}")
    metrics = [custom_objects.get(name, name) for name in parts["metrics"]]
    try:
        agent.compile(optimizer, metrics=metrics)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{source!r}: metrics: {error}; pass custom metrics in custom_objects, or load "
            "with compile=False and compile yourself"
        ) from None


# --------------------------------------------------------------------------- acting


def greedy_action(agent, observation: Any) -> int:
    """The greedy action for ``observation`` (see ``DQNAgent.predict``); reads the agent,
    changes nothing in it (a noisy network's noise generators are put back)."""
    with noise_kept(agent.model):
        return int(np.argmax(agent.compute_q_values(state_for(agent, observation))))


def state_for(agent, observation: Any) -> np.ndarray:
    """The state ``predict`` acts on: ``observation`` itself if it already has the network's
    state shape ``(window_length,) + observation_shape`` (processed observations), else the
    processed observation after ``window_length - 1`` zero frames, as at an episode start."""
    state_shape = tuple(agent.model.inputs[0].shape[1:])
    array = np.asarray(observation)
    if array.dtype != object and shape_matches(array.shape, state_shape):
        return array
    if agent.processor is not None:
        observation = agent.processor.process_observation(observation)
    processed = np.asarray(observation)
    if not shape_matches(processed.shape, state_shape[1:]):
        raise ValueError(
            f"observation: expected shape {state_shape[1:]} (one observation) or "
            f"{state_shape} (a whole state), got {processed.shape}"
        )
    return StateWindow(agent.memory.window_length).state(processed)
