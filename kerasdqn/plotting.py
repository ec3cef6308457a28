"""Training curves from TensorBoard logs, as a PNG: episode rewards and the TD loss.

    plot_training("runs/CartPole-v1", "runs/CartPole-v1/curve.png")

reads the ``episode/reward`` and ``train/loss`` scalars that ``kerasdqn.callbacks.TensorBoard``
writes and draws them against environment steps.

    plot_runs(["runs/CartPole-v1-seed*", "runs/Acrobot-v1"], "runs/comparison.png")

compares several runs on one figure: each run's moving average as a thin line and, for each
group of two or more runs (seeds of one setting), their mean and min-max band on a common grid
of environment steps (``group_curves``). It renders with matplotlib's Agg canvas, so no display
is needed.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import StrMethodFormatter
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util.tensor_util import make_ndarray

from kerasdqn._files import atomic_path

REWARD_TAG = "episode/reward"
LOSS_TAG = "train/loss"
GRID_POINTS = 200  # points of the common step grid a group's runs are interpolated onto
SEED_SUFFIX = re.compile(r"[-_.]?seed[-_=]?\d+$", re.IGNORECASE)
GLOB_CHARACTERS = "*?["


def event_files(logdir: str | os.PathLike) -> list[str]:
    """The TensorBoard event files directly in ``logdir``."""
    return sorted(name for name in os.listdir(logdir) if "tfevents" in name)


def read_scalars(logdir: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{tag: (steps, values)}`` for every scalar tag in ``logdir``'s event files.

    Raises ``FileNotFoundError`` if ``logdir`` is missing or holds no event files (naming the
    subdirectories that do, when ``logdir`` holds several runs).
    """
    logdir = os.fspath(logdir)
    if not os.path.isdir(logdir):
        raise FileNotFoundError(f"{logdir!r} is not a directory")
    if not event_files(logdir):
        runs = [
            os.path.relpath(directory, logdir)
            for directory, _, files in sorted(os.walk(logdir))
            if any("tfevents" in name for name in files)
        ]
        hint = f"; these runs inside it do: {', '.join(runs)}" if runs else ""
        raise FileNotFoundError(f"{logdir!r} holds no TensorBoard event files{hint}")
    accumulator = EventAccumulator(logdir, size_guidance={"tensors": 0})
    accumulator.Reload()
    scalars = {}
    for tag in accumulator.Tags()["tensors"]:
        events = accumulator.Tensors(tag)
        steps = np.array([event.step for event in events])
        values = np.array([float(make_ndarray(event.tensor_proto)) for event in events])
        scalars[tag] = (steps, values)
    return scalars


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of each value and the ``window - 1`` before it (fewer at the start)."""
    sums = np.cumsum(np.insert(np.asarray(values, dtype=float), 0, 0.0))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(0, ends - window)
    return (sums[ends] - sums[starts]) / (ends - starts)


def plot_training(
    logdir: str | os.PathLike, output: str | os.PathLike, window: int = 20, title: str | None = None
) -> str:
    """Draw ``logdir``'s training curves into the image file ``output`` (PNG, SVG, PDF ... by
    its extension) and return its path.

    Top: each training episode's reward against the environment step it ended at, with a
    moving average over ``window`` episodes. Bottom: the mean TD loss, on a log scale when it
    spans more than a decade. ``title`` defaults to the log directory's name.

    Raises ``FileNotFoundError`` (no event files) or ``ValueError`` (no episode rewards logged,
    a bad ``window``, an unknown image format).
    """
    _check_window(window)
    scalars = read_scalars(logdir)
    if REWARD_TAG not in scalars:
        raise ValueError(
            f"{os.fspath(logdir)!r} holds no {REWARD_TAG!r} scalars (tags found: "
            f"{', '.join(sorted(scalars)) or 'none'}); write it with "
            "kerasdqn.callbacks.TensorBoard during fit"
        )
    figure = Figure(figsize=(9, 7.5), layout="constrained")
    reward_axes, loss_axes = figure.subplots(2, 1, sharex=True)
    _plot_rewards(reward_axes, *scalars[REWARD_TAG], window)
    _plot_loss(loss_axes, *scalars.get(LOSS_TAG, (np.array([]), np.array([]))))
    name = title or os.path.basename(os.path.normpath(os.path.abspath(logdir)))
    figure.suptitle(f"DQN training: {name}", fontsize=14, fontweight="bold")
    output = os.fspath(output)
    directory = os.path.dirname(os.path.abspath(output))
    os.makedirs(directory, exist_ok=True)
    figure.savefig(output, dpi=110)
    return output


def _plot_rewards(axes, steps: np.ndarray, rewards: np.ndarray, window: int) -> None:
    axes.plot(steps, rewards, ".", color="tab:blue", alpha=0.35, markersize=4, label="episode")
    axes.plot(
        steps,
        moving_average(rewards, window),
        color="tab:blue",
        linewidth=2.2,
        label=f"moving average ({window} episodes)",
    )
    axes.set_title(f"Episode reward ({len(rewards)} training episodes, exploration included)")
    axes.set_ylabel("episode reward")
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    axes.xaxis.set_tick_params(labelbottom=True)
    axes.set_xlabel("environment steps")


def _plot_loss(axes, steps: np.ndarray, losses: np.ndarray) -> None:
    axes.set_title("Training loss (mean TD loss)")
    axes.set_xlabel("environment steps")
    axes.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    axes.set_ylabel("loss")
    axes.grid(alpha=0.3)
    if not len(losses):
        axes.text(
            0.5,
            0.5,
            f"no {LOSS_TAG!r} logged: training ended before learning started",
            transform=axes.transAxes,
            ha="center",
            va="center",
        )
        axes.set_yticks([])
        return
    axes.plot(steps, losses, color="tab:red", linewidth=1.2, label="loss")
    positive = losses[losses > 0]
    if len(positive) == len(losses) and positive.max() > 10 * positive.min():
        axes.set_yscale("log")
        axes.set_ylabel("loss (log scale)")
    axes.legend(loc="best")


def _check_window(window: int) -> None:
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window: expected a whole number of episodes >= 1, got {window!r}")


class GroupCurve(NamedTuple):
    """A group's runs on a common grid of environment steps: their mean and the band of their
    minimum and maximum at each step (all empty when the runs' step ranges do not overlap)."""

    runs: list[str]
    steps: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray


def run_group(logdir: str | os.PathLike) -> str:
    """The group a run belongs to: its directory's name without a trailing seed suffix
    (``runs/CartPole-v1-seed3`` and ``runs/CartPole-v1_seed_0`` are both ``CartPole-v1``); a
    name with no suffix is its own group."""
    name = os.path.basename(os.path.normpath(os.path.abspath(logdir)))
    return SEED_SUFFIX.sub("", name) or name


def expand_logdirs(logdirs: Sequence[str | os.PathLike]) -> list[str]:
    """The run directories ``logdirs`` names, in order, each once: a plain path as given, a
    glob pattern (``*``, ``?``, ``[``) as the sorted directories it matches that hold
    TensorBoard event files.

    Raises ``FileNotFoundError`` naming the pattern when it matches no such directory, and
    ``ValueError`` when ``logdirs`` is empty or a single string.
    """
    return list(_expand(logdirs))


def _expand(logdirs: Sequence[str | os.PathLike]) -> dict[str, int]:
    """``{run directory: index of the ``logdirs`` entry that named it first}``."""
    if isinstance(logdirs, str | os.PathLike) or not len(logdirs):
        raise ValueError(f"logdirs: expected a list of log directories, got {logdirs!r}")
    runs: dict[str, int] = {}
    for index, pattern in enumerate(logdirs):
        for run in _matches(os.fspath(pattern)):
            runs.setdefault(os.path.normpath(run), index)
    return runs


def _matches(pattern: str) -> list[str]:
    if not any(character in pattern for character in GLOB_CHARACTERS):
        return [pattern]
    matched = sorted(glob.glob(pattern))
    runs = [path for path in matched if os.path.isdir(path) and event_files(path)]
    if not runs:
        found = f" (it matches {', '.join(map(repr, matched[:5]))})" if matched else ""
        raise FileNotFoundError(
            f"logdirs: the pattern {pattern!r} matches no directory holding TensorBoard "
            f"event files{found}"
        )
    return runs


def label_runs(
    logdirs: Sequence[str | os.PathLike],
    labels: Sequence[str] | None = None,
    output: str | os.PathLike | None = None,
) -> dict[str, str]:
    """``{run directory: group label}`` for the runs ``logdirs`` names (see
    ``expand_logdirs``). ``labels``, one per entry of ``logdirs``, names the group of every
    run that entry names; by default a run's group is ``run_group`` of its directory.

    ``output``, the image being written, is left out if named: a shell-expanded ``runs/*``
    names the ``runs/comparison.png`` written last time."""
    runs = _expand(logdirs)
    if output is not None:
        target = os.path.abspath(output)
        runs = {run: index for run, index in runs.items() if os.path.abspath(run) != target}
        if not runs:
            raise ValueError(f"logdirs: {list(map(os.fspath, logdirs))!r} names no run")
    if labels is None:
        return {run: run_group(run) for run in runs}
    if isinstance(labels, str) or len(labels) != len(logdirs):
        raise ValueError(
            f"labels: expected one label per log directory or pattern ({len(logdirs)}), "
            f"got {labels!r}"
        )
    return {run: str(labels[index]) for run, index in runs.items()}


def read_runs(runs: Sequence[str]) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """``{run: read_scalars(run)}``, each run checked to hold episode rewards; errors name
    the ``logdirs`` argument."""
    scalars = {}
    for run in runs:
        try:
            scalars[run] = read_scalars(run)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"logdirs: {error}") from None
        if REWARD_TAG not in scalars[run]:
            raise ValueError(
                f"logdirs: {run!r} holds no {REWARD_TAG!r} scalars (tags found: "
                f"{', '.join(sorted(scalars[run])) or 'none'})"
            )
    return scalars


def smoothed(
    scalars: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]], tag: str, window: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{run: (steps, moving average over window values)}`` of ``tag`` for the runs that
    logged it."""
    return {
        run: (np.asarray(tags[tag][0], dtype=float), moving_average(tags[tag][1], window))
        for run, tags in scalars.items()
        if tag in tags and len(tags[tag][1])
    }


def common_grid(curves: Sequence[tuple[np.ndarray, np.ndarray]], points: int) -> np.ndarray:
    """``points`` evenly spaced environment steps covering the overlap of the curves' step
    ranges (from the latest first step to the earliest last step); empty without overlap."""
    start = max(float(steps[0]) for steps, _ in curves)
    stop = min(float(steps[-1]) for steps, _ in curves)
    if start > stop:
        return np.array([])
    return np.linspace(start, stop, points if stop > start else 1)


def group_curves(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    groups: Mapping[str, str],
    points: int = GRID_POINTS,
) -> dict[str, GroupCurve]:
    """Each group's mean, minimum and maximum over its runs.

    ``curves`` is ``{run: (steps, values)}`` (values already smoothed, see ``smoothed``),
    ``groups`` ``{run: group label}``; runs missing from ``curves`` are left out. Each run's
    values are interpolated linearly onto the group's ``common_grid``; a group of one run gets
    that run on the grid, with ``low == mean == high``.
    """
    members: dict[str, list[str]] = {}
    for run, label in groups.items():
        if run in curves:
            members.setdefault(label, []).append(run)
    result = {}
    for label, runs in members.items():
        grid = common_grid([curves[run] for run in runs], points)
        values = np.array([np.interp(grid, *curves[run]) for run in runs])
        result[label] = GroupCurve(
            runs, grid, values.mean(axis=0), values.min(axis=0), values.max(axis=0)
        )
    return result


def plot_runs(
    logdirs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    window: int = 20,
    labels: Sequence[str] | None = None,
) -> str:
    """Draw several runs' training curves on one figure, write it to ``output`` (PNG, or SVG,
    PDF ... by its extension) atomically, and return its path.

    ``logdirs`` are log directories or glob patterns (see ``expand_logdirs``); runs are
    grouped by ``labels`` (one per entry of ``logdirs``) or else by their directory's name
    without a seed suffix (``run_group``). Top: each run's episode reward, as its moving
    average over ``window`` episodes (thin lines), and for each group of two or more runs the
    mean over them with a min-max band, on a common grid of environment steps covering the
    overlap of the group's runs (``group_curves``). Bottom: the TD loss the same way (moving
    average over ``window`` logged values).

    Raises ``FileNotFoundError`` (a pattern matching nothing, a directory without event
    files) or ``ValueError`` (no episode rewards, bad ``window``, ``labels`` or format);
    each names the argument at fault.
    """
    _check_window(window)
    output, image_format = _check_output(output)
    groups = label_runs(logdirs, labels, output)
    scalars = read_runs(list(groups))
    figure = Figure(figsize=(10, 8), layout="constrained")
    reward_axes, loss_axes = figure.subplots(2, 1, sharex=True)
    colors = {label: f"C{index % 10}" for index, label in enumerate(dict.fromkeys(groups.values()))}
    rewards = smoothed(scalars, REWARD_TAG, window)
    _draw_comparison(reward_axes, rewards, groups, colors)
    reward_axes.set_title(f"Episode reward (moving average over {window} episodes)")
    reward_axes.set_ylabel("episode reward")
    reward_axes.xaxis.set_tick_params(labelbottom=True)
    losses = smoothed(scalars, LOSS_TAG, window)
    _draw_comparison(loss_axes, losses, groups, colors)
    _finish_loss_axes(loss_axes, losses, window)
    for axes in (reward_axes, loss_axes):
        axes.set_xlabel("environment steps")
        axes.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
        axes.grid(alpha=0.3)
    figure.suptitle(_comparison_title(groups), fontsize=14, fontweight="bold")
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with atomic_path(output) as temporary:
        figure.savefig(temporary, format=image_format, dpi=110)
    return output


def _comparison_title(groups: Mapping[str, str]) -> str:
    """``DQN training: CartPole-v1 (3 runs) vs Acrobot-v1 (1 run)``, or counts if that is long."""
    counts: dict[str, int] = {}
    for label in groups.values():
        counts[label] = counts.get(label, 0) + 1
    title = " vs ".join(f"{label} ({n} run{'s' if n > 1 else ''})" for label, n in counts.items())
    if len(title) > 90:
        title = f"{len(groups)} runs in {len(counts)} groups"
    return f"DQN training: {title}"


def _check_output(output: str | os.PathLike) -> tuple[str, str]:
    """``output`` as a string and the image format its extension names (PNG by default)."""
    if not isinstance(output, str | os.PathLike):
        raise TypeError(f"output: expected a file path, got {output!r}")
    output = os.fspath(output)
    if os.path.isdir(output):
        raise IsADirectoryError(f"output: {output!r} is a directory, expected an image file")
    image_format = os.path.splitext(output)[1][1:].lower() or "png"
    supported = Figure().canvas.get_supported_filetypes()
    if image_format not in supported:
        raise ValueError(
            f"output: {output!r} has an unknown image format {image_format!r} "
            f"(known: {', '.join(sorted(supported))})"
        )
    return output, image_format


def _draw_comparison(
    axes,
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    groups: Mapping[str, str],
    colors: Mapping[str, str],
) -> None:
    """Each run as a thin line; each group of two or more runs as its mean and band."""
    for label, curve in group_curves(curves, groups).items():
        color, several = colors[label], len(curve.runs) > 1
        for run in curve.runs:
            axes.plot(
                *curves[run],
                color=color,
                linewidth=0.8 if several else 1.8,
                alpha=0.45 if several else 1.0,
                label=None if several else f"{label} (1 run)",
            )
        if several and len(curve.steps):
            axes.fill_between(curve.steps, curve.low, curve.high, color=color, alpha=0.2)
            axes.plot(
                curve.steps,
                curve.mean,
                color=color,
                linewidth=2.4,
                label=f"{label}: mean of {len(curve.runs)} runs, band min-max",
            )
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="best", fontsize="small")


def _finish_loss_axes(
    axes, losses: Mapping[str, tuple[np.ndarray, np.ndarray]], window: int
) -> None:
    """Title and scale of the loss panel: log when every loss is positive and they span more
    than a decade; a note instead when no run logged a loss."""
    axes.set_title(f"Training loss (mean TD loss, moving average over {window} values)")
    axes.set_ylabel("loss")
    if not losses:
        axes.text(
            0.5,
            0.5,
            f"no {LOSS_TAG!r} logged: training ended before learning started",
            transform=axes.transAxes,
            ha="center",
            va="center",
        )
        axes.set_yticks([])
        return
    values = np.concatenate([values for _, values in losses.values()])
    if values.min() > 0 and values.max() > 10 * values.min():
        axes.set_yscale("log")
        axes.set_ylabel("loss (log scale)")


def default_output(runs: Sequence[str]) -> str:
    """Where a plot of ``runs`` goes when no output is given: ``RUN/curve.png`` for one run;
    for several, ``comparison.png`` in the directory that holds them all (``runs/`` for
    ``runs/CartPole-v1-seed*``), or ``runs/comparison.png`` when they share none below the
    current or root directory."""
    if len(runs) == 1:
        return os.path.join(runs[0], "curve.png")
    parents = [os.path.dirname(os.path.normpath(run)) for run in runs]
    try:
        parent = os.path.commonpath(parents)
    except ValueError:  # absolute and relative paths mixed
        parent = ""
    if parent in ("", os.curdir) or parent == os.path.dirname(parent):
        parent = "runs"
    return os.path.join(parent, "comparison.png")


def plot_logdirs(
    logdirs: Sequence[str | os.PathLike],
    output: str | os.PathLike | None = None,
    window: int = 20,
    labels: Sequence[str] | None = None,
) -> str:
    """What ``kerasdqn plot`` draws: ``plot_training`` when ``logdirs`` names one run (its
    label, if given, as the title), ``plot_runs`` when it names several; ``output`` defaults
    to ``default_output``. Returns the path written."""
    if output is None:
        output = default_output(list(label_runs(logdirs, labels)))
    groups = label_runs(logdirs, labels, output)
    runs = list(groups)
    if len(runs) == 1:
        title = groups[runs[0]] if labels is not None else None
        return plot_training(runs[0], output, window=window, title=title)
    return plot_runs(logdirs, output, window=window, labels=labels)
