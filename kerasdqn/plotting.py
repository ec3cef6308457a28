"""Training curves from TensorBoard logs, as a PNG: episode rewards and the TD loss.

    plot_training("runs/CartPole-v1", "runs/CartPole-v1/curve.png")

reads the ``episode/reward`` and ``train/loss`` scalars that ``kerasdqn.callbacks.TensorBoard``
writes and draws them against environment steps. It renders with matplotlib's Agg canvas, so no
display is needed.
"""

from __future__ import annotations

import os

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import StrMethodFormatter
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util.tensor_util import make_ndarray

REWARD_TAG = "episode/reward"
LOSS_TAG = "train/loss"


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
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window: expected a whole number of episodes >= 1, got {window!r}")
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
