"""Network weights in HDF5, in the layout Keras 2 (and so keras-rl) used for ``save_weights``.

The root group lists ``layer_names``; each layer has a group whose ``weight_names`` attribute
names its datasets (``dense/kernel:0`` ...). Weights are matched to layers in order, counting
only layers that have weights, as Keras 2 did: so files keras-rl saved load into the same
architecture built with Keras 3, and the files written here load in Keras 2.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import h5py
import keras
import numpy as np

from kerasdqn._files import atomic_path, check_path, check_room_for, check_writable
from kerasdqn.errors import ArchitectureMismatch


def save_model_weights(model: keras.Model, filepath: str | os.PathLike, overwrite: bool = False):
    """Write ``model``'s weights to ``filepath`` (any name: ``.h5``, ``.h5f`` ...), atomically.

    Raises ``FileExistsError`` if the file exists and ``overwrite`` is false.
    """
    filepath = check_writable(filepath, overwrite)
    check_finite_weights(model, filepath)
    check_room_for(filepath, sum(int(np.prod(weight.shape)) * 8 for weight in model.weights))
    with atomic_path(filepath) as temporary, h5py.File(temporary, "w") as handle:
        write_weights_group(handle, model)


@contextlib.contextmanager
def open_for_reading(filepath: str, what: str) -> Iterator[h5py.File]:
    """The HDF5 file at ``filepath``, open for reading; errors name the file and ``what``
    was expected there. A part that cannot be read or is missing (a damaged or cut-off file)
    raises ``ValueError`` naming the file."""
    if not os.path.isfile(filepath):
        raise FileNotFoundError(f"filepath: no {what} at {filepath!r}")
    try:
        handle = h5py.File(filepath, "r")
    except OSError as error:
        raise ValueError(f"filepath: {filepath!r} is not a readable HDF5 file ({error})") from None
    with handle:
        try:
            yield handle
        except (OSError, KeyError) as error:
            raise ValueError(
                f"{filepath!r} is damaged or incomplete: a part cannot be read ({error})"
            ) from None


def check_finite_weights(model: keras.Model, filepath: str) -> None:
    """Refuse to write weights holding NaN or infinity over ``filepath``."""
    for weight in model.weights:
        if not np.isfinite(keras.ops.convert_to_numpy(weight)).all():
            raise FloatingPointError(
                f"weight {weight.path!r} holds NaN or infinite values; not writing "
                f"{filepath!r}, so any earlier file there stays intact"
            )


def write_weights_group(group: h5py.Group, model: keras.Model) -> None:
    """Store ``model``'s weights in an open HDF5 group."""
    group.attrs["layer_names"] = [layer.name.encode("utf8") for layer in model.layers]
    group.attrs["backend"] = b"tensorflow"
    group.attrs["keras_version"] = keras.__version__.encode("utf8")
    for layer in model.layers:
        layer_group = group.create_group(layer.name)
        names = [f"{layer.name}/{weight.name}:0" for weight in _layer_weights(layer)]
        layer_group.attrs["weight_names"] = [name.encode("utf8") for name in names]
        for name, weight in zip(names, _layer_weights(layer)):
            write_array(layer_group, name, keras.ops.convert_to_numpy(weight))


def load_model_weights(model: keras.Model, filepath: str | os.PathLike) -> None:
    """Read weights saved by ``save_model_weights`` or by Keras 2 / keras-rl into ``model``.

    Every shape is checked before any weight is assigned, so a mismatch leaves the model as it
    was. Raises ``FileNotFoundError`` or ``ValueError`` naming the file on any problem.
    """
    filepath = check_path("filepath", filepath)
    with open_for_reading(filepath, "weights file") as handle:
        values = read_weights_group(handle, model, filepath)
    for variable, value in values:
        variable.assign(value)


def write_array(group: h5py.Group, name: str, array, **options) -> h5py.Dataset:
    """Store ``array`` as dataset ``name`` of ``group`` with a Fletcher-32 checksum of each
    chunk, so that bytes changed on disk make reading it fail (``open_for_reading`` then
    reports the file as damaged) instead of loading wrong numbers. HDF5 checks only chunked
    data, so 0-d and empty arrays, which have no chunks, are stored as they are.
    ``options``: more of ``h5py.Group.create_dataset``'s (``chunks``, ``compression``)."""
    array = np.asarray(array)
    if array.ndim == 0 or array.size == 0:
        return group.create_dataset(name, data=array)
    return group.create_dataset(name, data=array, fletcher32=True, **options)


def read_array(group: h5py.Group, name: str, source: str, part: str) -> np.ndarray:
    """Dataset ``name`` of ``group`` as a NumPy array, if it is there, numeric and finite;
    errors name the file and ``part``."""
    if name not in group:
        raise ValueError(f"{source!r}: {part}: the dataset {name!r} is missing")
    try:
        value = np.asarray(group[name][()])
    except OSError as error:  # unreadable bytes, or a checksum that no longer matches
        raise ValueError(
            f"{source!r} is damaged or incomplete: {part}: {name!r} cannot be read ({error})"
        ) from None
    except (TypeError, ValueError) as error:
        raise ValueError(f"{source!r}: {part}: {name!r} cannot be read ({error})") from None
    check_numeric_array(value, source, f"{part} {name!r}")
    return value


def check_numeric_array(value: np.ndarray, source: str, part: str) -> None:
    """Refuse an array that is not of numbers (strings, objects, records) or holds NaN or
    infinity."""
    if value.dtype.kind not in "biuf":
        raise ValueError(f"{source!r}: {part} holds {value.dtype} values, expected numbers")
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        raise ValueError(f"{source!r}: {part} holds NaN or infinite values")


def read_weights_group(group: h5py.Group, model: keras.Model, source: str) -> list:
    """Pairs ``(variable, array)`` for ``model`` from an HDF5 group, all shapes checked."""
    if "layer_names" not in group.attrs and "model_weights" in group:
        group = group["model_weights"]  # a whole model saved by Keras 2's model.save
    if not group.attrs.keys() & {"layer_names", "layer_names0"}:
        raise ValueError(
            f"{source!r} does not hold Keras weights (no 'layer_names' attribute)"
            f"{_what_it_is_instead(group)}"
        )
    missing = [name for name in _attribute_strings(group, "layer_names") if name not in group]
    if missing:
        names = ", ".join(map(repr, missing))
        raise ValueError(f"{source!r}: the layer groups {names} are missing")
    stored = [
        name
        for name in _attribute_strings(group, "layer_names")
        if _attribute_strings(group[name], "weight_names")
    ]
    layers = [layer for layer in model.layers if _layer_weights(layer)]
    if len(stored) != len(layers):
        raise ArchitectureMismatch(
            f"{source!r} holds weights for {len(stored)} layers ({', '.join(stored)}) but the "
            f"model has {len(layers)} layers with weights ({', '.join(l.name for l in layers)}): "
            "it was saved from a different architecture"
        )
    pairs = []
    for stored_name, layer in zip(stored, layers):
        layer_group = group[stored_name]
        part = f"layer {stored_name!r}"
        arrays = [
            read_array(layer_group, name, source, part)
            for name in _attribute_strings(layer_group, "weight_names")
        ]
        weights = _layer_weights(layer)
        if len(arrays) != len(weights):
            raise ArchitectureMismatch(
                f"{source!r}: layer {stored_name!r} has {len(arrays)} weights but model layer "
                f"{layer.name!r} has {len(weights)}: different architecture"
            )
        for weight, array in zip(weights, arrays):
            if tuple(weight.shape) != array.shape:
                raise ArchitectureMismatch(
                    f"{source!r}: weight {weight.name!r} of layer {layer.name!r} has shape "
                    f"{tuple(weight.shape)} in the model but {array.shape} in the file "
                    f"(layer {stored_name!r}): different architecture"
                )
            pairs.append((weight, array))
    return pairs


#: What the other files kerasdqn writes are, by their ``format`` attribute, and how to load them.
_OTHER_FORMATS = {
    "kerasdqn-checkpoint": (
        "a training checkpoint: resume from it with load_checkpoint (kerasdqn train "
        "--resume), or load the weights saved beside it"
    ),
    "kerasdqn-agent": "a saved agent: load it with DQNAgent.load",
}


def _what_it_is_instead(group: h5py.Group) -> str:
    """For a file kerasdqn wrote that is not a weights file, what it is (to append to the
    error); '' for any other file."""
    kind = _OTHER_FORMATS.get(str(group.file.attrs.get("format", "")))
    return f"; it is {kind}" if kind else ""


def _layer_weights(layer) -> list:
    """A layer's weights in Keras 2's order: trainable first, then non-trainable."""
    return list(layer.trainable_weights) + list(layer.non_trainable_weights)


def _attribute_strings(group: h5py.Group, name: str) -> list[str]:
    """A string-list attribute, also when Keras 2 split a long one into ``name0``, ``name1``..."""
    if name in group.attrs:
        values = list(group.attrs[name])
    else:
        values, chunk = [], 0
        while f"{name}{chunk}" in group.attrs:
            values.extend(group.attrs[f"{name}{chunk}"])
            chunk += 1
    return [value.decode("utf8") if isinstance(value, bytes) else str(value) for value in values]
