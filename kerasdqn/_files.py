"""Atomic file writes: a file is either the old version or the complete new one, never half.

A write goes to a temporary file beside the target, named after the target and the writing
process (``.<name>.<pid>.<random>.tmp``), which is renamed over the target when complete. A
writer killed mid-write leaves its temporary file behind; the next write of the same target
removes those whose process is gone.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import resource
import shutil
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
    remove_stale_temporaries(filepath)
    try:
        handle, temporary = tempfile.mkstemp(
            dir=directory, prefix=f"{_temporary_prefix(filepath)}{os.getpid()}.", suffix=".tmp"
        )
    except OSError as error:
        raise _write_error(filepath, error) from error
    os.close(handle)
    try:
        yield temporary
        _fsync_file(temporary)
        os.chmod(temporary, _mode_for(filepath))
        os.replace(temporary, filepath)
        _fsync_directory(directory)
    except OSError as error:
        _remove(temporary)
        raise _write_error(filepath, error) from error
    except BaseException:
        _remove(temporary)
        raise


def _temporary_prefix(filepath: str) -> str:
    return os.path.join(
        os.path.dirname(os.path.abspath(filepath)), f".{os.path.basename(filepath)}."
    )


def remove_stale_temporaries(filepath: str) -> list[str]:
    """Remove the temporary files that writers of ``filepath`` which no longer run left
    behind (a temporary whose process still runs, this one included, is kept); return them."""
    prefix = _temporary_prefix(filepath)
    removed = []
    for path in glob.glob(glob.escape(prefix) + "*.tmp"):
        pid = path[len(prefix) :].split(".", 1)[0]
        if pid.isdigit() and not _process_runs(int(pid)):
            _remove(path)
            removed.append(path)
    return removed


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it runs, as another user
    return True


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def _write_error(filepath: str, error: OSError) -> OSError:
    """``error`` as raised while writing ``filepath``, said in one line that names the file
    (HDF5's own text is long and names only the temporary file)."""
    reason = os.strerror(error.errno) if error.errno else str(error).splitlines()[0]
    if error.errno is None and "file write failed" in str(error):
        reason = "the disk is full or the file is too large"
    code = error.errno if error.errno is not None else errno.EIO
    return OSError(
        code,
        f"could not write {filepath!r}: {reason}; the previous file there, if any, is intact",
    )


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


def check_writable_directory(name: str, directory: str) -> None:
    """Create ``directory`` if needed and make sure files can be written there, now, so that
    a run does not find out only when it first saves. Errors name the argument."""
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise NotADirectoryError(f"{name}: {directory!r} exists and is not a directory")
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise PermissionError(
            f"{name}: cannot write files in {directory!r} ({os.strerror(error.errno or 0)})"
        ) from None


def check_room_for(filepath: str, nbytes: int) -> None:
    """Refuse to start writing about ``nbytes`` to ``filepath`` where they cannot fit: on a
    disk without that much free space, or past this process's file size limit. Found before
    the write, this is a clean error; found by the HDF5 library halfway through a write, it
    can bring the whole process down."""
    needed = int(nbytes * 1.05) + 2**20
    directory = os.path.dirname(os.path.abspath(filepath))
    free = shutil.disk_usage(directory).free
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if needed > free:
        reason = f"it needs about {needed / 2**20:.1f} MiB, {free / 2**20:.1f} MiB are free"
        raise OSError(errno.ENOSPC, f"could not write {filepath!r}: {_space(reason)}")
    if limit != resource.RLIM_INFINITY and needed > limit:
        reason = f"it needs about {needed / 2**20:.1f} MiB, over the file size limit"
        raise OSError(errno.EFBIG, f"could not write {filepath!r}: {_space(reason)}")


def _space(reason: str) -> str:
    return f"not enough room ({reason}); the previous file there, if any, is intact"
