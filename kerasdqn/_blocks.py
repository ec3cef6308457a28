"""Big arrays handled in blocks of a few megabytes along their first axis.

A replay memory of a million Atari frames holds 7 GB of observations. Checkpoints check, copy
and write them one block at a time (and store them in HDF5 chunks of the same size), so that
no step ever holds a second full-size copy.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

BLOCK_BYTES = 4 * 2**20  # 4 MiB: large enough for fast I/O, small beside any replay memory


def rows_per_block(shape: tuple, dtype: Any, nbytes: int = BLOCK_BYTES) -> int:
    """How many rows (entries along the first axis) of an array of ``shape`` and ``dtype``
    make about ``nbytes``: at least 1, and no more than the array has (if it has any)."""
    row_nbytes = max(1, math.prod(shape[1:]) * np.dtype(dtype).itemsize)
    return max(1, min(shape[0], nbytes // row_nbytes))


def row_blocks(shape: tuple, dtype: Any, stop: int | None = None) -> Iterator[slice]:
    """Consecutive slices of ``rows_per_block`` rows covering rows ``0`` to ``stop``
    (default: all of them)."""
    rows = rows_per_block(shape, dtype)
    stop = shape[0] if stop is None else stop
    for start in range(0, stop, rows):
        yield slice(start, min(start + rows, stop))
