"""Comparing runs: ``plotting.plot_runs`` and its parts, on real TensorBoard event files.

The event files are written directly with ``tf.summary`` under the tags that
``kerasdqn.callbacks.TensorBoard`` uses, so no agent is trained here.
"""

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from matplotlib.image import imread

from kerasdqn import plotting

SEEDS = {  # seed: (first step, last step) of its episodes; the runs overlap on 200..1800
    0: (100, 1800),
    1: (200, 2000),
    2: (150, 1900),
}


def write_run(logdir: Path, steps: np.ndarray, rewards: np.ndarray, loss: bool = True) -> Path:
    """A log directory with ``episode/reward`` at ``steps`` and, if ``loss``, ``train/loss``."""
    writer = tf.summary.create_file_writer(str(logdir))
    with writer.as_default():
        for step, reward in zip(steps, rewards):
            tf.summary.scalar(plotting.REWARD_TAG, float(reward), step=int(step))
        if loss:
            for step in range(100, int(steps[-1]) + 1, 100):
                tf.summary.scalar(plotting.LOSS_TAG, 1.0 / step, step=step)
    writer.close()
    return logdir


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """``runs/CartPole-v1-seed{0,1,2}`` (rewards rising at different rates) and
    ``runs/Acrobot-v1`` (one run, no loss), plus a directory and a file without events."""
    root = tmp_path_factory.mktemp("compare") / "runs"
    for seed, (first, last) in SEEDS.items():
        steps = np.linspace(first, last, 30).round()
        rewards = 10 + (seed + 1) * steps / 100 + np.sin(steps + seed)
        write_run(root / f"CartPole-v1-seed{seed}", steps, rewards)
    steps = np.arange(50, 1500, 50)
    write_run(root / "Acrobot-v1", steps, -500 + steps / 10, loss=False)
    (root / "checkpoints").mkdir()
    (root / "notes.txt").write_text("not a run")
    return root


def cartpole_runs(root: Path) -> list[str]:
    return [str(root / f"CartPole-v1-seed{seed}") for seed in SEEDS]


def test_plot_runs_writes_a_real_png_atomically(runs, tmp_path):
    output = tmp_path / "plots" / "comparison.png"
    written = plotting.plot_runs(
        [str(runs / "CartPole-v1-seed*"), str(runs / "Acrobot-v1")], output, window=5
    )
    assert written == str(output)
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, channels = imread(output).shape
    assert 600 <= width <= 2000 and 400 <= height <= 2000 and channels in (3, 4)
    assert sorted(path.name for path in output.parent.iterdir()) == ["comparison.png"]


def test_group_mean_is_the_mean_of_the_interpolated_smoothed_rewards(runs):
    groups = plotting.label_runs([str(runs / "*")])
    curves = plotting.smoothed(plotting.read_runs(list(groups)), plotting.REWARD_TAG, 5)
    curve = plotting.group_curves(curves, groups)["CartPole-v1"]
    grid = np.linspace(200, 1800, plotting.GRID_POINTS)
    expected = []
    for run in cartpole_runs(runs):
        steps, rewards = plotting.read_scalars(run)[plotting.REWARD_TAG]
        expected.append(np.interp(grid, steps, plotting.moving_average(rewards, 5)))
    assert curve.runs == cartpole_runs(runs)
    np.testing.assert_allclose(curve.steps, grid)
    np.testing.assert_allclose(curve.mean, np.mean(expected, axis=0))
    np.testing.assert_allclose(curve.low, np.min(expected, axis=0))
    np.testing.assert_allclose(curve.high, np.max(expected, axis=0))


def test_group_curves_by_hand():
    curves = {
        "a": (np.array([0.0, 10.0]), np.array([0.0, 10.0])),
        "b": (np.array([5.0, 15.0]), np.array([4.0, 4.0])),
        "c": (np.array([0.0, 1.0]), np.array([7.0, 9.0])),
    }
    result = plotting.group_curves(curves, {"a": "g", "b": "g", "c": "h", "d": "h"}, points=6)
    grid = np.array([5.0, 6, 7, 8, 9, 10])
    np.testing.assert_allclose(result["g"].steps, grid)
    np.testing.assert_allclose(result["g"].mean, (grid + 4) / 2)
    np.testing.assert_allclose(result["g"].low, [4, 4, 4, 4, 4, 4])
    np.testing.assert_allclose(result["g"].high, [5, 6, 7, 8, 9, 10])
    assert result["h"].runs == ["c"]  # "d" has no curve
    np.testing.assert_allclose(result["h"].mean, np.linspace(7, 9, 6))
    np.testing.assert_allclose(result["h"].low, result["h"].high)


def test_runs_that_do_not_overlap_get_no_group_curve(tmp_path):
    curves = {"a": (np.array([0.0, 1.0]), np.ones(2)), "b": (np.array([2.0, 3.0]), np.ones(2))}
    curve = plotting.group_curves(curves, {"a": "g", "b": "g"})["g"]
    assert curve.steps.shape == curve.mean.shape == curve.low.shape == (0,)
    first = write_run(tmp_path / "x-seed0", np.array([10, 20]), np.array([1.0, 2.0]))
    second = write_run(tmp_path / "x-seed1", np.array([30, 40]), np.array([1.0, 2.0]))
    output = plotting.plot_runs([str(first), str(second)], tmp_path / "disjoint.png")
    assert imread(output).ndim == 3


def test_glob_patterns_expand_sorted_and_deduplicated(runs):
    expanded = plotting.expand_logdirs(
        [str(runs / "CartPole-v1-seed*"), str(runs / "CartPole-v1-seed0"), str(runs / "*")]
    )
    assert expanded == cartpole_runs(runs) + [str(runs / "Acrobot-v1")]
    assert plotting.expand_logdirs([str(runs / "CartPole-v1-seed[02]")]) == [
        str(runs / "CartPole-v1-seed0"),
        str(runs / "CartPole-v1-seed2"),
    ]


@pytest.mark.parametrize(
    "name, group",
    [
        ("runs/CartPole-v1-seed0", "CartPole-v1"),
        ("runs/CartPole-v1-seed12/", "CartPole-v1"),
        ("runs/cartpole_seed_3", "cartpole"),
        ("runs/LunarLander-v3.Seed7", "LunarLander-v3"),
        ("runs/CartPole-v1", "CartPole-v1"),
        ("runs/seed3", "seed3"),
        ("runs/seedless-v0", "seedless-v0"),
    ],
)
def test_runs_group_by_their_name_without_a_seed_suffix(name, group):
    assert plotting.run_group(name) == group


def test_runs_are_grouped_by_seed_suffix_or_by_labels(runs):
    groups = plotting.label_runs([str(runs / "*")])
    assert list(groups.values()) == ["Acrobot-v1"] + ["CartPole-v1"] * 3
    patterns = [str(runs / "CartPole-v1-seed[01]"), str(runs / "CartPole-v1-seed2")]
    labelled = plotting.label_runs(patterns, labels=["tuned", "default"])
    assert list(labelled.values()) == ["tuned", "tuned", "default"]
    with pytest.raises(ValueError, match=r"labels: expected one label per .* \(2\)"):
        plotting.label_runs(patterns, labels=["only one"])


def test_plot_logdirs_picks_the_plot_and_the_default_output(runs, tmp_path):
    single = write_run(tmp_path / "one" / "CartPole-v1", np.arange(10, 200, 10), np.ones(19))
    assert plotting.plot_logdirs([str(single)], window=3) == str(single / "curve.png")
    assert imread(single / "curve.png").ndim == 3
    copies = [str(write_run(tmp_path / "two" / f"x-seed{seed}", [5, 9], [1, 2])) for seed in (0, 1)]
    assert plotting.plot_logdirs(copies) == str(tmp_path / "two" / "comparison.png")
    assert imread(tmp_path / "two" / "comparison.png").ndim == 3


@pytest.mark.parametrize(
    "runs, output",
    [
        (["runs/a-seed0"], "runs/a-seed0/curve.png"),
        (["runs/a-seed0", "runs/a-seed1/"], "runs/comparison.png"),
        (["runs/dqn/a", "runs/ddqn/a"], "runs/comparison.png"),
        (["a", "b"], "runs/comparison.png"),
        (["/a", "/b"], "runs/comparison.png"),
        (["/logs/a", "runs/b"], "runs/comparison.png"),
        (["/logs/x/a", "/logs/x/b"], "/logs/x/comparison.png"),
    ],
)
def test_default_output_is_beside_the_runs_or_under_runs(runs, output):
    assert plotting.default_output(runs) == output


def test_errors_name_the_argument_and_the_path(runs, tmp_path):
    output = tmp_path / "out.png"
    with pytest.raises(FileNotFoundError, match=r"logdirs: the pattern '.*nothing-\*' matches no"):
        plotting.plot_runs([str(runs / "nothing-*")], output)
    with pytest.raises(FileNotFoundError, match=r"logdirs: the pattern .* \(it matches '"):
        plotting.plot_runs([str(runs / "check*")], output)
    with pytest.raises(FileNotFoundError, match=r"logdirs: '.*checkpoints' holds no TensorBoard"):
        plotting.plot_runs([str(runs / "Acrobot-v1"), str(runs / "checkpoints")], output)
    with pytest.raises(FileNotFoundError, match=r"logdirs: '.*missing' is not a directory"):
        plotting.plot_runs([str(runs / "missing")], output)
    with pytest.raises(FileNotFoundError, match="these runs inside it do: Acrobot-v1, CartPole"):
        plotting.plot_runs([str(runs)], output)
    with pytest.raises(ValueError, match="logdirs: expected a list"):
        plotting.plot_runs(str(runs / "Acrobot-v1"), output)
    with pytest.raises(ValueError, match="window: expected a whole number"):
        plotting.plot_runs([str(runs / "*")], output, window=0)
    with pytest.raises(ValueError, match=r"output: '.*out\.xyz' has an unknown image format"):
        plotting.plot_runs([str(runs / "*")], tmp_path / "out.xyz")
    assert not output.exists()


def test_runs_without_rewards_are_refused_by_name(tmp_path):
    logdir = tmp_path / "loss-only"
    writer = tf.summary.create_file_writer(str(logdir))
    with writer.as_default():
        tf.summary.scalar(plotting.LOSS_TAG, 0.5, step=1)
    writer.close()
    with pytest.raises(ValueError, match=r"logdirs: '.*loss-only' holds no 'episode/reward'"):
        plotting.plot_runs([str(logdir)], tmp_path / "out.png")


def test_the_output_is_not_taken_for_a_run(runs):
    output = plotting.plot_runs([str(runs / "*")], runs / "comparison.png")
    try:  # a shell expands runs/* to the runs and last time's comparison.png
        names = sorted([str(runs / "Acrobot-v1"), output, *cartpole_runs(runs)])
        assert plotting.label_runs(names, output=output) == plotting.label_runs([str(runs / "*")])
        assert plotting.plot_logdirs(names, window=3) == output
        with pytest.raises(ValueError, match="logdirs: .* names no run"):
            plotting.label_runs([output], output=output)
        with pytest.raises(FileNotFoundError, match="logdirs: .*notes.txt' is not a directory"):
            plotting.plot_logdirs(names + [str(runs / "notes.txt")])
    finally:
        (runs / "comparison.png").unlink()
