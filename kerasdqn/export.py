"""Export a Q network as a TensorFlow SavedModel that serves greedy actions on its own.

The SavedModel is written by Keras's ``keras.export.ExportArchive``: traced TensorFlow graphs
and the network's weights, no Python code. Loading it takes TensorFlow only (neither kerasdqn
nor its custom layers, such as the dueling head, are needed)::

    import tensorflow as tf

    policy = tf.saved_model.load("exports/cartpole")
    actions = policy.greedy_action(states)  # int64, shape (batch,)
    q_values = policy.q_values(states)  # float32, shape (batch, nb_actions)

Both endpoints take a batch of *states* as the network sees them: ``(batch, window_length) +
observation_shape`` in the network's input dtype, i.e. the observations already stacked into
windows and passed through the agent's processor, if it has one (a processor is Python code and
is not exported). They are also the SavedModel's signatures ``greedy_action`` and ``q_values``
(input ``states``, output ``output_0``), ``greedy_action`` being the default one
(``serving_default``) that TensorFlow Serving calls. Ties between actions go to the lowest
index, as in ``numpy.argmax``.

The export is atomic: it is written into a temporary directory beside the target and renamed
into place only when complete, so the target is never a half-written SavedModel.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
from collections.abc import Callable

import keras
import tensorflow as tf

from kerasdqn._checks import check_bool
from kerasdqn._files import _fsync_directory, _process_runs, check_path

GREEDY_ENDPOINT = "greedy_action"
Q_VALUES_ENDPOINT = "q_values"
_TEMPORARY_SUFFIX = ".tmp"


def export_greedy_policy(
    model: keras.Model, directory: str | os.PathLike, overwrite: bool = False
) -> str:
    """Write ``model`` as a SavedModel serving ``q_values(states)`` and
    ``greedy_action(states)`` (the default signature) into ``directory``; return its path.

    Args:
        model: a Q network from one batch of states to ``(batch, nb_actions)`` Q values, with
            one input and one output (a Functional or Sequential Keras model, e.g. an agent's
            ``model``).
        directory: the SavedModel's directory; missing parent directories are created.
        overwrite: replace an existing SavedModel there. The old one is replaced only once the
            new one is completely written; a failed export leaves it as it was.

    Raises:
        TypeError: ``model`` is not a Keras model, or an argument has the wrong type.
        ValueError: ``model`` has no known input, several inputs or outputs, or an output
            that is not one row of Q values per state.
        FileExistsError: ``directory`` exists and ``overwrite`` is false.
    """
    return _export(model, directory, overwrite)


def _export(
    model: keras.Model,
    directory: str | os.PathLike,
    overwrite: bool,
    q_values_from_outputs: Callable[[tf.Tensor], tf.Tensor] = lambda outputs: outputs,
) -> str:
    """``export_greedy_policy``, the Q values being ``q_values_from_outputs`` of the model's
    outputs."""
    state_spec = _check_model(model)
    directory = check_path("directory", directory)
    overwrite = check_bool("overwrite", overwrite)
    _check_target(directory, overwrite)
    parent = os.path.dirname(os.path.abspath(directory))
    os.makedirs(parent, exist_ok=True)
    remove_stale_exports(directory)
    with _staging_directory(directory) as staging:
        _write_archive(model, state_spec, staging, q_values_from_outputs)
        _fsync_tree(staging)
        _move_into_place(staging, directory, overwrite)
    _fsync_directory(parent)
    return directory


def export_agent(agent, directory: str | os.PathLike, overwrite: bool = False) -> str:
    """Export a ``DQNAgent``'s online network (``agent.model``, with its dueling head if it
    has one) with ``export_greedy_policy``; return the SavedModel's path.

    The SavedModel takes states as the agent's network does, after the agent's processor
    (``agent.process_state_batch``), which is not part of the export. A distributional agent
    (C51, QR-DQN) is served as any other: ``q_values`` are the means of its return
    distributions (``agent.q_values_from_outputs``), ``(batch, nb_actions)``, and
    ``greedy_action`` their argmax, the action the agent itself picks.
    """
    from kerasdqn.agents.dqn import DQNAgent

    if not isinstance(agent, DQNAgent):
        raise TypeError(
            f"agent: expected a DQNAgent, got {agent!r}; to export a Keras model use "
            "export_greedy_policy(model, directory)"
        )
    return _export(agent.model, directory, overwrite, agent.q_values_from_outputs)


def _check_model(model) -> tf.TensorSpec:
    """The spec of a batch of ``model``'s states, after checking that it is a Q network
    with one input and one ``(batch, nb_actions)`` output."""
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"model: expected a Keras model (keras.Model), got {model!r} ({type(model).__name__})"
        )
    inputs = getattr(model, "inputs", None) if model.built else None
    if not inputs:
        raise ValueError(
            "model: expected a built model with a known input shape (a Functional or "
            "Sequential model started with keras.Input(shape=...))"
        )
    if len(inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            f"model: a Q network has one input (the states) and one output (the Q values); "
            f"this model has {len(inputs)} inputs and {len(model.outputs)} outputs"
        )
    output_shape = tuple(model.outputs[0].shape)
    if len(output_shape) != 2 or output_shape[1] is None:
        raise ValueError(
            f"model: its output shape is {output_shape}; a Q network outputs one row of "
            "nb_actions Q values per state, shape (batch, nb_actions)"
        )
    shape = (None,) + tuple(inputs[0].shape[1:])
    return tf.TensorSpec(shape, tf.as_dtype(inputs[0].dtype), name="states")


def _check_target(directory: str, overwrite: bool) -> None:
    """Refuse a ``directory`` that exists (unless ``overwrite`` and it holds a SavedModel or
    nothing: another directory is not deleted) or whose parent is not a directory."""
    if os.path.lexists(directory) and not os.path.isdir(directory):
        raise NotADirectoryError(f"directory: {directory!r} exists and is not a directory")
    if os.path.isdir(directory):
        if not overwrite:
            raise FileExistsError(
                f"directory: {directory!r} already exists; pass overwrite=True to replace it"
            )
        if os.listdir(directory) and not _is_saved_model(directory):
            raise FileExistsError(
                f"directory: {directory!r} exists and does not hold a SavedModel; "
                "overwrite=True replaces a SavedModel only, so remove it yourself or "
                "choose another directory"
            )
    parent = os.path.dirname(os.path.abspath(directory))
    if os.path.lexists(parent) and not os.path.isdir(parent):
        raise NotADirectoryError(f"directory: its parent {parent!r} is not a directory")


def _is_saved_model(directory: str) -> bool:
    return any(
        os.path.isfile(os.path.join(directory, name))
        for name in ("saved_model.pb", "saved_model.pbtxt")
    )


def _write_archive(
    model: keras.Model,
    state_spec: tf.TensorSpec,
    path: str,
    q_values_from_outputs: Callable[[tf.Tensor], tf.Tensor],
) -> None:
    """Trace the two endpoints of ``model`` and write them as a SavedModel at ``path``."""
    archive = keras.export.ExportArchive()
    archive.track(model)

    def q_values(states):
        return q_values_from_outputs(model(states, training=False))

    def greedy_action(states):
        return tf.argmax(q_values(states), axis=1, output_type=tf.int64)

    # The first endpoint added is also the SavedModel's default signature.
    archive.add_endpoint(GREEDY_ENDPOINT, greedy_action, input_signature=[state_spec])
    archive.add_endpoint(Q_VALUES_ENDPOINT, q_values, input_signature=[state_spec])
    archive.write_out(path, verbose=False)


def _temporary_prefix(directory: str) -> str:
    """``.<name>.`` beside ``directory``: its temporary exports are
    ``.<name>.<pid>.<random>.tmp``."""
    absolute = os.path.abspath(directory)
    return os.path.join(os.path.dirname(absolute), f".{os.path.basename(absolute)}.")


@contextlib.contextmanager
def _staging_directory(directory: str):
    """Yield a new empty temporary directory beside ``directory``; remove it afterwards if
    it is still there (it is not once it has been moved into place)."""
    staging = tempfile.mkdtemp(
        dir=os.path.dirname(os.path.abspath(directory)),
        prefix=f"{os.path.basename(_temporary_prefix(directory))}{os.getpid()}.",
        suffix=_TEMPORARY_SUFFIX,
    )
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _move_into_place(staging: str, directory: str, overwrite: bool) -> None:
    """Rename the complete export ``staging`` to ``directory``. An old SavedModel there (only
    with ``overwrite``) is first renamed aside, put back if the rename fails, else deleted."""
    if not (overwrite and os.path.isdir(directory)):
        os.rename(staging, directory)
        return
    aside = tempfile.mkdtemp(
        dir=os.path.dirname(staging),
        prefix=f"{os.path.basename(_temporary_prefix(directory))}{os.getpid()}.",
        suffix=_TEMPORARY_SUFFIX,
    )
    old = os.path.join(aside, "old")
    os.rename(directory, old)
    try:
        os.rename(staging, directory)
    except BaseException:
        os.rename(old, directory)
        shutil.rmtree(aside, ignore_errors=True)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def _fsync_tree(root: str) -> None:
    """Flush every file and directory under ``root`` to disk, so that the rename publishes
    complete files even after a crash."""
    for folder, _, files in os.walk(root):
        for name in files:
            handle = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(handle)
            finally:
                os.close(handle)
        _fsync_directory(folder)


def remove_stale_exports(directory: str | os.PathLike) -> list[str]:
    """Remove the temporary directories that exports to ``directory`` left behind when their
    process was killed (those of running processes are kept); return them."""
    prefix = _temporary_prefix(os.fspath(directory))
    removed = []
    for path in glob.glob(glob.escape(prefix) + "*" + _TEMPORARY_SUFFIX):
        pid = path[len(prefix) :].split(".", 1)[0]
        if os.path.isdir(path) and pid.isdigit() and not _process_runs(int(pid)):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed
