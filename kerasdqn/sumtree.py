"""A sum tree: priorities over a fixed number of leaves, sampled in proportion to them.

Each internal node holds the sum of its two children, so the root holds the total and a prefix
sum ``u`` in ``[0, total)`` leads from the root to the leaf ``i`` whose interval
``[p_0 + ... + p_(i-1), p_0 + ... + p_i)`` contains it, in ``log2(capacity)`` steps. Prioritized
replay (Schaul et al., 2016, "Prioritized Experience Replay", section 3.3 and appendix B.2.1)
draws its transitions this way.

The leaves are padded to a power of two, so that every leaf sits at the same depth and a whole
batch of prefix sums descends together, one NumPy operation per level. Each node is always
recomputed as the sum of its children (never adjusted by differences), so the sums carry no
drift however many updates come, and the same leaves always give the same tree.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from kerasdqn._checks import check_int


class SumTree:
    """Non-negative priorities over ``capacity`` leaves (float64), with their running sums.

    Args:
        capacity: the number of leaves (positions ``0 .. capacity - 1``), all 0 at first.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = check_int("capacity", capacity, minimum=1)
        self._depth = max(1, int(capacity - 1).bit_length())
        self._first_leaf = 1 << self._depth
        # Node 1 is the root; node k has children 2k and 2k + 1; leaves start at _first_leaf.
        self._nodes = np.zeros(2 * self._first_leaf, dtype=np.float64)

    @property
    def total(self) -> float:
        """The sum of all priorities."""
        return float(self._nodes[1])

    @property
    def nbytes(self) -> int:
        """Bytes held by the tree."""
        return self._nodes.nbytes

    def __getitem__(self, positions: Any) -> Any:
        """The priority of the leaf at ``positions`` (an int: a float; an array: an array)."""
        positions = _whole_numbers(positions)
        if positions.size and (positions.min() < 0 or positions.max() >= self.capacity):
            raise IndexError(f"positions: expected leaves in [0, {self.capacity})")
        return self._nodes[positions + self._first_leaf]

    def priorities(self) -> np.ndarray:
        """A copy of the leaves' priorities, shape ``(capacity,)``."""
        return self._nodes[self._first_leaf : self._first_leaf + self.capacity].copy()

    def update(self, positions: Any, priorities: Any) -> None:
        """Set the priorities of the leaves at ``positions`` (where a position repeats, its
        last priority is kept) and recompute the sums above them."""
        positions = _whole_numbers(positions).reshape(-1)
        priorities = np.asarray(priorities, dtype=np.float64).reshape(-1)
        if positions.shape != priorities.shape:
            raise ValueError(
                f"priorities: expected one per position ({len(positions)}), got {len(priorities)}"
            )
        if not positions.size:
            return
        if positions.min() < 0 or positions.max() >= self.capacity:
            raise ValueError(
                f"positions: expected leaves in [0, {self.capacity}), got "
                f"{positions.min()} .. {positions.max()}"
            )
        _check_priorities(priorities)
        if len(positions) > 1:
            # The last occurrence of each position wins.
            last = len(positions) - 1 - np.unique(positions[::-1], return_index=True)[1]
            positions, priorities = positions[last], priorities[last]
        nodes = positions + self._first_leaf
        self._nodes[nodes] = priorities
        for _ in range(self._depth):
            nodes = nodes >> 1
            left = 2 * nodes
            self._nodes[nodes] = self._nodes.take(left) + self._nodes.take(left + 1)

    def set(self, position: int, priority: float) -> None:
        """Set one leaf's priority and the sums above it: what a replay memory does at each
        write, where a plain loop costs less than NumPy's per-call overhead."""
        if not isinstance(position, (int, np.integer)) or isinstance(position, bool):
            raise TypeError(f"position: expected a whole number, got {position!r}")
        if not 0 <= position < self.capacity:
            raise ValueError(f"position: expected a leaf in [0, {self.capacity}), got {position}")
        if not (math.isfinite(priority) and priority >= 0.0):
            raise ValueError(f"priority: expected a finite number >= 0, got {priority}")
        nodes = self._nodes
        node = position + self._first_leaf
        nodes[node] = priority
        for _ in range(self._depth):
            node >>= 1
            nodes[node] = nodes[2 * node] + nodes[2 * node + 1]

    def set_all(self, priorities: Any) -> None:
        """Replace every leaf's priority (``capacity`` of them) and rebuild the sums."""
        priorities = np.asarray(priorities, dtype=np.float64)
        if priorities.shape != (self.capacity,):
            raise ValueError(
                f"priorities: expected shape ({self.capacity},), got {priorities.shape}"
            )
        _check_priorities(priorities)
        first = self._first_leaf
        self._nodes[first : first + self.capacity] = priorities
        self._nodes[first + self.capacity :] = 0.0
        while first > 1:
            half = first >> 1
            self._nodes[half:first] = (
                self._nodes[first : 2 * first : 2] + self._nodes[first + 1 : 2 * first : 2]
            )
            first = half

    def find(self, prefix_sums: Any) -> np.ndarray:
        """The leaf each prefix sum falls in: the ``i`` with ``p_0 + ... + p_(i-1) <= u <
        p_0 + ... + p_i``, for a batch of ``u`` in ``[0, total]``, in one descent.

        A leaf of priority 0 is never returned: where round-off (or ``u == total``) would
        lead past the last positive priority of a subtree, the descent stays on the side that
        holds one, ending at that last positive leaf. Raises ``ValueError`` if every priority
        is 0.
        """
        prefix = np.array(prefix_sums, dtype=np.float64).reshape(-1)
        total = self._nodes[1]
        if not total > 0.0:
            raise ValueError("the sum tree holds no positive priority to sample from")
        if prefix.size and not (np.isfinite(prefix).all() and prefix.min() >= 0.0):
            raise ValueError("prefix_sums: expected finite numbers >= 0")
        if prefix.size and prefix.max() > total * (1.0 + _ROUND_OFF):
            raise ValueError(
                f"prefix_sums: expected numbers up to the total priority {float(total)!r}, got "
                f"{float(prefix.max())!r}"
            )
        leaves = self._descend(prefix.copy(), guarded=False)
        # A zero leaf is reached only by overshooting a subtree's sum: rare, so those
        # prefix sums alone descend again, kept away from the empty sides.
        overshot = self._nodes.take(leaves + self._first_leaf) == 0.0
        if overshot.any():
            leaves[overshot] = self._descend(prefix[overshot], guarded=True)
        return leaves

    def _descend(self, prefix: np.ndarray, guarded: bool) -> np.ndarray:
        """Walk each prefix sum (modified in place) from the root to a leaf: right past the
        left child's sum; ``guarded``: only where the right child's sum is positive."""
        nodes = np.ones(prefix.shape, dtype=np.int64)
        for _ in range(self._depth):
            left = 2 * nodes
            left_sum = self._nodes.take(left)
            right = prefix >= left_sum
            if guarded:
                right &= self._nodes.take(left + 1) > 0.0
            np.subtract(prefix, left_sum, out=prefix, where=right)
            nodes = left + right
        return nodes - self._first_leaf


#: The relative excess over the total a prefix sum may have (round-off in computing it).
_ROUND_OFF = 1e-9


def _check_priorities(priorities: np.ndarray) -> None:
    if not (np.isfinite(priorities).all() and priorities.min() >= 0.0):
        raise ValueError("priorities: expected finite numbers >= 0")


def _whole_numbers(positions: Any) -> np.ndarray:
    """``positions`` as int64 leaves; fractional or boolean positions are refused rather than
    truncated to some other leaf."""
    array = np.asarray(positions)
    if array.size and array.dtype.kind not in "iu":
        raise TypeError(f"positions: expected whole numbers, got {array.dtype} values")
    return array.astype(np.int64, copy=False)
