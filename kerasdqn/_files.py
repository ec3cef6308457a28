"""Atomic file writes: a file is either the old version or the complete new one, never half."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def atomic_path(filepath: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``filepath``; on success it replaces ``filepath``.

    The temporary file is flushed to disk before the rename, so a crash or a kill at any moment
    leaves either the previous file or the new one. On error the temporary file is removed.
    """
    filepath = os.fspath(filepath)
    directory = os.path.dirname(os.path.abspath(filepath))
    handle, temporary = tempfile.mkstemp(
        dir=directory, prefix=f".{os.path.basename(filepath)}.", suffix=".tmp"
    )
    os.close(handle)
    try:
        yield temporary
        _fsync_file(temporary)
        os.chmod(temporary, _mode_for(filepath))
        os.replace(temporary, filepath)
        _fsync_directory(directory)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise


def _mode_for(filepath: str) -> int:
    """The permissions a new file would get (the temporary file's are owner-only), or those
    of the file being replaced."""
    try:
        return os.stat(filepath).st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_file(path: str) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_directory(directory: str) -> None:
    with contextlib.suppress(OSError):
        handle = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


def check_path(name: str, filepath) -> str:
    """``filepath`` as a string, if it is a path."""
    if not isinstance(filepath, str | os.PathLike):
        raise TypeError(f"{name}: expected a file path, got {filepath!r}")
    return os.fspath(filepath)


def check_directory_exists(name: str, filepath: str) -> None:
    """Raise early if the directory that should hold ``filepath`` does not exist."""
    directory = os.path.dirname(os.path.abspath(filepath))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"{name}: the directory {directory!r} does not exist")


def check_writable(filepath: str | os.PathLike, overwrite: bool) -> str:
    """``filepath`` as a string, after checking that writing it is allowed and possible."""
    filepath = check_path("filepath", filepath)
    if os.path.isdir(filepath):
        raise IsADirectoryError(f"filepath: {filepath!r} is a directory, expected a file path")
    if os.path.exists(filepath) and not overwrite:
        raise FileExistsError(
            f"filepath: {filepath!r} already exists; pass overwrite=True to replace it"
        )
    check_directory_exists("filepath", filepath)
    return filepath
