"""SumTree: totals and prefix-sum search against a NumPy cumulative-sum reference, round-off at
segment edges, and bad input.

The reference leaf for a prefix sum ``u`` is ``np.searchsorted(np.cumsum(p), u, side='right')``:
the first leaf whose cumulative sum exceeds ``u``, which skips zero priorities by construction.
"""

import numpy as np
import pytest

from kerasdqn.sumtree import SumTree


def tree_of(priorities) -> SumTree:
    tree = SumTree(len(priorities))
    tree.update(np.arange(len(priorities)), priorities)
    return tree


def reference_find(priorities, prefix_sums) -> np.ndarray:
    """The leaf each prefix sum falls in; at or past the total, the last positive leaf."""
    cumulative = np.cumsum(priorities)
    leaves = np.searchsorted(cumulative, prefix_sums, side="right")
    last_positive = np.flatnonzero(np.asarray(priorities) > 0)[-1]
    return np.minimum(leaves, last_positive)


def test_total_and_find_match_the_cumulative_sum_on_whole_priorities_with_zeros_and_ties():
    # Whole numbers add exactly, so every segment edge can be hit exactly: zeros, ties, runs
    # of zeros at the start and the end, and a capacity that is not a power of two.
    priorities = np.array([0, 0, 3, 1, 1, 0, 4, 4, 0, 2, 7, 0, 0, 1, 5, 0, 0], dtype=np.float64)
    tree = tree_of(priorities)
    assert tree.total == priorities.sum() == 28
    cumulative = np.cumsum(priorities)
    prefix_sums = np.concatenate(
        [[0.0], cumulative, cumulative - 0.5, cumulative[cumulative > 0] - 1e-9]
    )
    prefix_sums = prefix_sums[(prefix_sums >= 0) & (prefix_sums <= tree.total)]
    np.testing.assert_array_equal(tree.find(prefix_sums), reference_find(priorities, prefix_sums))


def test_find_matches_the_cumulative_sum_on_random_priorities():
    rng = np.random.default_rng(0)
    priorities = rng.exponential(size=1000) * (rng.random(1000) < 0.8)  # a fifth are zero
    priorities[rng.integers(0, 1000, 50)] = 0.25  # and ties
    tree = tree_of(priorities)
    assert tree.total == pytest.approx(priorities.sum(), rel=1e-12)
    prefix_sums = rng.random(20_000) * tree.total
    # Where a prefix sum lies within round-off of an edge, the two sums may disagree on it.
    cumulative = np.cumsum(priorities)
    nearest = np.searchsorted(cumulative, prefix_sums)
    gap = np.minimum(
        np.abs(cumulative[np.minimum(nearest, 999)] - prefix_sums),
        np.abs(cumulative[np.maximum(nearest - 1, 0)] - prefix_sums),
    )
    clear = gap > 1e-9
    assert clear.mean() > 0.99
    found = tree.find(prefix_sums)
    np.testing.assert_array_equal(found[clear], reference_find(priorities, prefix_sums[clear]))
    assert (priorities[found] > 0).all()


def test_never_returns_a_zero_priority_leaf_at_the_total_or_past_a_rounded_sum():
    # 1e16 + 1 rounds to 1e16: the left half's sum hides its second leaf, and the prefix sum
    # 1e16 (the total) would lead a plain descent into the empty right half.
    tree = tree_of([1e16, 1.0, 0.0, 0.0])
    assert tree.total == 1e16
    assert tree.find([1e16]).tolist() == [1]
    tree = tree_of([0.1] * 10 + [0.0] * 6)
    edges = np.cumsum([0.1] * 10)
    found = tree.find(np.concatenate([edges, [tree.total, np.nextafter(tree.total, 0)]]))
    assert (tree[found] > 0).all()
    assert found[-2] == 9


def test_find_descends_a_whole_batch_in_one_call():
    tree = tree_of([1.0, 2.0, 3.0, 4.0])
    found = tree.find([0.0, 0.99, 1.0, 2.5, 3.0, 5.99, 6.0, 9.99, 10.0])
    assert found.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 3]


def test_updates_keep_the_sums_those_of_the_leaves_however_many_come():
    rng = np.random.default_rng(1)
    tree = SumTree(300)
    for _ in range(200):
        positions = rng.integers(0, 300, 32)
        tree.update(positions, rng.random(32) * (rng.random(32) < 0.9))
    for position in rng.integers(0, 300, 100):
        tree.set(int(position), float(rng.random()))
    rebuilt = SumTree(300)
    rebuilt.set_all(tree.priorities())
    assert rebuilt.total == tree.total  # bit for bit: each node is the sum of its children
    prefix_sums = rng.random(5000) * tree.total
    np.testing.assert_array_equal(rebuilt.find(prefix_sums), tree.find(prefix_sums))
    assert tree.total == pytest.approx(tree.priorities().sum(), rel=1e-12)


def test_a_repeated_position_keeps_its_last_priority():
    tree = SumTree(4)
    tree.update([2, 0, 2, 2], [5.0, 1.0, 7.0, 3.0])
    assert tree.priorities().tolist() == [1.0, 0.0, 3.0, 0.0]
    assert tree.total == 4.0


def test_set_changes_one_leaf_and_the_total():
    tree = tree_of([1.0, 2.0, 3.0])
    tree.set(1, 0.0)
    assert tree.priorities().tolist() == [1.0, 0.0, 3.0]
    assert tree.total == 4.0
    assert tree.find([0.5, 1.0, 3.9]).tolist() == [0, 2, 2]


def test_a_tree_of_one_leaf_finds_it():
    tree = tree_of([2.5])
    assert tree.find([0.0, 2.5]).tolist() == [0, 0]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda tree: tree.update([4], [1.0]), "positions"),
        (lambda tree: tree.update([-1], [1.0]), "positions"),
        (lambda tree: tree.update([0], [-1.0]), "priorities"),
        (lambda tree: tree.update([0], [np.nan]), "priorities"),
        (lambda tree: tree.update([0, 1], [1.0]), "priorities"),
        (lambda tree: tree.set(4, 1.0), "position"),
        (lambda tree: tree.set(0, np.inf), "priority"),
        (lambda tree: tree.set_all([1.0, 2.0]), "priorities"),
        (lambda tree: tree.find([-0.1]), "prefix_sums"),
        (lambda tree: tree.find([np.nan]), "prefix_sums"),
        (lambda tree: tree.find([100.0]), "prefix_sums: expected numbers up to the total .* 4.0"),
        (lambda tree: tree.find([4.0000001]), "prefix_sums"),
    ],
)
def test_bad_input_is_refused_naming_the_argument(call, message):
    tree = tree_of([1.0, 2.0, 0.0, 1.0])
    before = tree.priorities()
    with pytest.raises(ValueError, match=message):
        call(tree)
    np.testing.assert_array_equal(tree.priorities(), before)
    assert tree.total == 4.0


@pytest.mark.parametrize(
    "call",
    [
        lambda tree: tree.update([1.7], [5.0]),
        lambda tree: tree.update([True], [5.0]),
        lambda tree: tree.set(1.5, 5.0),
        lambda tree: tree[0.9],
    ],
)
def test_a_fractional_position_is_refused_not_truncated_to_another_leaf(call):
    tree = tree_of([1.0, 2.0, 0.0, 1.0])
    with pytest.raises(TypeError, match="position.*whole number"):
        call(tree)
    assert tree.priorities().tolist() == [1.0, 2.0, 0.0, 1.0]


def test_an_empty_tree_refuses_to_sample():
    with pytest.raises(ValueError, match="no positive priority"):
        SumTree(8).find([0.0])
    with pytest.raises(ValueError, match="capacity"):
        SumTree(0)
