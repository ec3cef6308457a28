"""Callbacks: hooks into ``fit`` and ``test`` for logging and checkpoints.

As in keras-rl, a callback's ``model`` is the agent, and besides Keras's ``on_train_*`` hooks it
receives ``on_episode_begin/end``, ``on_step_begin/end`` and ``on_action_begin/end``. Plain Keras
callbacks also work: they get ``on_epoch_*`` for episodes and ``on_batch_*`` for steps.

Target-network updates are not callbacks: they live in ``kerasdqn.targets`` (their names are
importable from here too, as before).
"""

from __future__ import annotations

import json
import os
import re
import string
import sys
import timeit
import warnings
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from kerasdqn._checks import check_int
from kerasdqn._files import (
    atomic_path,
    check_directory_exists,
    check_path,
    check_writable_directory,
)
from kerasdqn.targets import HardTargetUpdate, SoftTargetUpdate, soft_update

__all__ = [
    "Callback",
    "CallbackList",
    "FileLogger",
    "GameScoreLogger",
    "HardTargetUpdate",
    "History",
    "MetricMeans",
    "ModelIntervalCheckpoint",
    "SoftTargetUpdate",
    "TensorBoard",
    "TestLogger",
    "TrainEpisodeLogger",
    "TrainIntervalLogger",
    "TrainingCheckpoint",
    "Visualizer",
    "soft_update",
]


class Callback(keras.callbacks.Callback):
    """Base class of kerasdqn callbacks; ``self.model`` (alias ``self.agent``) is the agent."""

    env: Any = None

    @property
    def agent(self):
        return self.model

    def _set_env(self, env) -> None:
        self.env = env

    def on_episode_begin(self, episode: int, logs: dict | None = None) -> None:
        """Called when an episode starts."""

    def on_episode_end(self, episode: int, logs: dict | None = None) -> None:
        """Called when an episode ends; ``logs`` holds the episode's figures."""

    def on_step_begin(self, step: int, logs: dict | None = None) -> None:
        """Called before the agent acts; ``step`` counts steps within the episode."""

    def on_step_end(self, step: int, logs: dict | None = None) -> None:
        """Called after the step; ``logs`` holds action, observation, reward, metrics, info."""

    def on_action_begin(self, action: int, logs: dict | None = None) -> None:
        """Called before each environment step (several per step with action repetition)."""

    def on_action_end(self, action: int, logs: dict | None = None) -> None:
        """Called after each environment step."""

    def on_chunk_end(self, step: int, logs: dict | None = None) -> None:
        """Called when many steps arrive at once (``ApeX.fit``: an actor's chunk was stored):
        ``logs['first_step']`` is the agent's step count before them, ``step`` after."""


_FALLBACKS = {
    "on_episode_begin": "on_epoch_begin",
    "on_episode_end": "on_epoch_end",
    "on_step_begin": "on_batch_begin",
    "on_step_end": "on_batch_end",
}
_HOOKS = (
    "on_train_begin",
    "on_train_end",
    "on_episode_begin",
    "on_episode_end",
    "on_step_begin",
    "on_step_end",
    "on_action_begin",
    "on_action_end",
    "on_chunk_end",
)


class CallbackList:
    """Calls each hook on every callback that implements it.

    The callbacks that leave a hook as the base class's no-op are skipped, so the per-step
    hooks cost nothing for callbacks that do not use them.
    """

    def __init__(self, callbacks: list, agent, env, params: dict) -> None:
        self.callbacks = list(callbacks)
        for callback in self.callbacks:
            callback.set_model(agent)
            callback.set_params(params)
            if hasattr(callback, "_set_env"):
                callback._set_env(env)
        for hook in _HOOKS:
            setattr(
                self,
                f"_{hook}",
                [
                    m
                    for m in map(lambda c: _implementation(c, hook), self.callbacks)
                    if m is not None
                ],
            )

    def on_train_begin(self, logs=None):
        for method in self._on_train_begin:
            method(logs)

    def on_train_end(self, logs=None):
        for method in self._on_train_end:
            method(logs)

    def on_episode_begin(self, episode, logs=None):
        for method in self._on_episode_begin:
            method(episode, logs)

    def on_episode_end(self, episode, logs=None):
        for method in self._on_episode_end:
            method(episode, logs)

    def on_step_begin(self, step, logs=None):
        for method in self._on_step_begin:
            method(step, logs)

    def on_step_end(self, step, logs=None):
        for method in self._on_step_end:
            method(step, logs)

    def on_action_begin(self, action, logs=None):
        for method in self._on_action_begin:
            method(action, logs)

    def on_action_end(self, action, logs=None):
        for method in self._on_action_end:
            method(action, logs)

    def on_chunk_end(self, step, logs=None):
        for method in self._on_chunk_end:
            method(step, logs)


def _implementation(callback, hook: str):
    """The callback's bound method for ``hook`` (or its Keras fallback), if it overrides it."""
    name = hook if isinstance(callback, Callback) else _FALLBACKS.get(hook, hook)
    own = getattr(type(callback), name, None)
    if own is None:
        return None
    base = Callback if isinstance(callback, Callback) else keras.callbacks.Callback
    if own is getattr(base, name, None):
        return None
    return getattr(callback, name)


class History(Callback):
    """Records each episode's logs: ``history.history[key]`` is a list with one value per
    episode (``episode_reward``, ``nb_episode_steps``, ``nb_steps``, the mean loss and metrics
    of the episode), and ``history.episode`` lists the episode numbers.

    Evaluations during training (``kerasdqn.evaluation.EvalCallback``) are recorded beside
    them, one value per evaluation: ``history.history['eval/step']``,
    ``['eval/mean_reward']`` and ``['eval/std_reward']`` (the TensorBoard tags), and the whole
    records, episode rewards included, in ``history.evaluations``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list] = {}
        self.episode: list[int] = []
        self.evaluations: list[dict] = []

    def on_episode_end(self, episode, logs=None):
        self.episode.append(episode)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)

    def record_evaluation(self, evaluation: dict) -> None:
        """Add one evaluation: a dict of ``step``, ``mean_reward``, ``std_reward``, ``rewards``."""
        self.evaluations.append(evaluation)
        for key in ("step", "mean_reward", "std_reward"):
            self.history.setdefault(f"eval/{key}", []).append(evaluation[key])


class MetricMeans:
    """Running means of each metric over the training steps added since it was made.

    Steps without training (metrics all NaN) are skipped, and so is any non-finite value; a
    metric with no value yet has mean NaN.
    """

    def __init__(self, size: int) -> None:
        self._sums = np.zeros(size)
        self._counts = np.zeros(size)

    def add(self, metrics) -> None:
        if len(metrics) and not np.isnan(metrics[0]):
            finite = np.isfinite(metrics)
            self._sums[finite] += np.asarray(metrics)[finite]
            self._counts[finite] += 1

    def means(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return self._sums / self._counts


def _format_metrics(names: list[str], values) -> str:
    return ", ".join(
        f"{name}: {value:f}" if np.isfinite(value) else f"{name}: --"
        for name, value in zip(names, values)
    )


class TrainEpisodeLogger(Callback):
    """``verbose=2``: one line per episode, in keras-rl's format."""

    def on_train_begin(self, logs=None):
        self.train_start = timeit.default_timer()
        self.metrics_names = self.model.metrics_names
        self.step = 0
        # Episodes in progress by index: several at once on a vector environment.
        self.episodes: dict[int, dict] = {}
        print(f"Training for {self.params['nb_steps']} steps ...")

    def on_train_end(self, logs=None):
        print(f"done, took {timeit.default_timer() - self.train_start:.3f} seconds")

    def on_episode_begin(self, episode, logs=None):
        self.episodes[episode] = {"start": timeit.default_timer(), "rewards": [], "actions": []}

    def on_step_end(self, step, logs=None):
        record = self.episodes[logs["episode"]]
        record["rewards"].append(logs["reward"])
        record["actions"].append(logs["action"])
        self.step += 1

    def on_episode_end(self, episode, logs=None):
        record = self.episodes.pop(episode)
        duration = timeit.default_timer() - record["start"]
        rewards, actions = record["rewards"], record["actions"]
        steps = len(rewards)
        digits = len(str(self.params["nb_steps"])) + 1
        metrics = [logs.get(name, np.nan) for name in self.metrics_names]
        print(
            f"{self.step:{digits}d}/{self.params['nb_steps']}: episode: {episode + 1}, "
            f"duration: {duration:.3f}s, episode steps: {steps:3}, "
            f"steps per second: {steps / max(duration, 1e-9):3.0f}, "
            f"episode reward: {np.sum(rewards):6.3f}, "
            f"mean reward: {np.mean(rewards):6.3f} "
            f"[{np.min(rewards):6.3f}, {np.max(rewards):6.3f}], "
            f"mean action: {np.mean(actions):.3f} "
            f"[{np.min(actions):.3f}, {np.max(actions):.3f}],  "
            f"{_format_metrics(self.metrics_names, metrics)}"
        )


class TrainIntervalLogger(Callback):
    """``verbose=1``: a Keras progress bar per ``interval`` steps, then a summary line.

    The bar shows steps per second, the last episode's reward, and the running means of the
    loss, the metrics and the annealed exploration value. Intervals count the agent's steps,
    so a resumed run carries on its numbering. When standard output is not a terminal (a
    pipe, a log file), no bar is drawn: each interval ends with one plain line instead.
    """

    def __init__(self, interval: int = 10000) -> None:
        super().__init__()
        self.interval = check_int("interval", interval, minimum=1)

    def on_train_begin(self, logs=None):
        self.train_start = timeit.default_timer()
        self.metrics_names = self.model.metrics_names
        self.step = self.model.step
        self.interval_open = False
        self.live = _is_terminal(sys.stdout)
        print(f"Training for {self.params['nb_steps']} steps ...")

    def on_train_end(self, logs=None):
        if self.interval_open:
            self._show_progress(force=True)
        print(f"done, took {timeit.default_timer() - self.train_start:.3f} seconds")

    def on_step_begin(self, step, logs=None):
        if not self.interval_open:
            self._start_interval()

    def _start_interval(self) -> None:
        self.interval_open = True
        self.interval_start = timeit.default_timer()
        self.interval_first_step = self.step
        self.episode_rewards: list[float] = []
        self.metric_means = MetricMeans(len(self.metrics_names))
        self.last_display = 0.0
        names = ["steps/s", "episode_reward"] + list(self.metrics_names)
        self.progbar = keras.utils.Progbar(target=self.interval, stateful_metrics=names)
        print(f"Interval {self.step // self.interval + 1} ({self.step} steps performed)")

    def _summary(self) -> str:
        rewards = self.episode_rewards
        text = (
            f"{len(rewards)} episodes - episode_reward: {np.mean(rewards):.3f} "
            f"[{np.min(rewards):.3f}, {np.max(rewards):.3f}]"
        )
        for name, value in zip(self.metrics_names, self.metric_means.means()):
            if np.isfinite(value):
                text += f" - {name}: {value:.3f}"
        return text

    def on_step_end(self, step, logs=None):
        self.metric_means.add(logs["metrics"])
        self.step += 1
        if self.step % self.interval == 0:
            self._show_progress(force=True)
            if self.episode_rewards:
                print(self._summary())
            print()
            self.interval_open = False
        else:
            self._show_progress()

    def _show_progress(self, force: bool = False) -> None:
        if not self.live:
            if force:
                self._print_plain_progress()
            return
        now = timeit.default_timer()
        if not force and now - self.last_display < 0.25:
            return
        self.last_display = now
        done = self.step - self.interval_first_step
        position = self.step % self.interval or (self.interval if done else 0)
        values = [("steps/s", done / max(now - self.interval_start, 1e-9))]
        if self.episode_rewards:
            values.append(("episode_reward", self.episode_rewards[-1]))
        values += [
            (name, value)
            for name, value in zip(self.metrics_names, self.metric_means.means())
            if np.isfinite(value)
        ]
        self.progbar.update(position, values=values, finalize=force and done > 0)

    def _print_plain_progress(self) -> None:
        done = self.step - self.interval_first_step
        rate = done / max(timeit.default_timer() - self.interval_start, 1e-9)
        print(
            f"Interval {self.interval_first_step // self.interval + 1}: steps "
            f"{self.interval_first_step}-{self.step}, {rate:.0f} steps/s",
            flush=True,
        )

    def on_episode_end(self, episode, logs=None):
        self.episode_rewards.append(logs["episode_reward"])


def _is_terminal(stream) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class TestLogger(Callback):
    """Prints one line per test episode, as keras-rl did."""

    def on_train_begin(self, logs=None):
        print(f"Testing for {self.params['nb_episodes']} episodes ...")

    def on_episode_end(self, episode, logs=None):
        print(
            f"Episode {episode + 1}: reward: {logs['episode_reward']:.3f}, "
            f"steps: {logs['nb_steps']}"
        )


class FileLogger(Callback):
    """Writes each episode's logs to a JSON file (one list per key), atomically.

    Every list has one entry per episode, in the order of ``episode``'s: a key an episode's
    logs lack (such as ``game_score``, which ``GameScoreLogger`` adds only to the episodes
    that end a game) holds ``null`` there, so the columns line up as keras-rl's plots and a
    ``pandas.DataFrame`` expect.

    ``interval``: rewrite the file every that many episodes as well as at the end.
    """

    def __init__(self, filepath: str, interval: int | None = None) -> None:
        super().__init__()
        self.filepath = check_path("filepath", filepath)
        self.interval = None if interval is None else check_int("interval", interval, minimum=1)
        self.data: dict[str, list] = {}

    def on_train_begin(self, logs=None):
        check_directory_exists("filepath", self.filepath)
        self.episode_starts: dict[int, float] = {}  # several at once on a vector environment

    def on_episode_begin(self, episode, logs=None):
        self.episode_starts[episode] = timeit.default_timer()

    def on_episode_end(self, episode, logs=None):
        record = {
            **(logs or {}),
            "episode": episode,
            "duration": timeit.default_timer() - self.episode_starts.pop(episode),
        }
        recorded = len(self.data.get("episode", ()))
        for key in record.keys() - self.data.keys():
            self.data[key] = [None] * recorded  # a key first seen now: none before
        for key, column in self.data.items():
            column.append(_json_number(record[key]) if key in record else None)
        if self.interval is not None and len(self.data["episode"]) % self.interval == 0:
            self.save_data()

    def on_train_end(self, logs=None):
        self.save_data()

    def save_data(self) -> None:
        """Write everything recorded so far."""
        if not self.data:
            return
        with atomic_path(self.filepath) as temporary, open(temporary, "w") as handle:
            json.dump(self.data, handle)


def _json_number(value):
    value = np.asarray(value).item()
    return None if isinstance(value, float) and not np.isfinite(value) else value


class ModelIntervalCheckpoint(Callback):
    """Saves the agent's weights every ``interval`` steps to ``filepath``.

    ``filepath`` may hold ``{step}`` (the agent's step count, which continues across ``fit``
    calls and checkpoints) and, as in keras-rl, the step's log entries such as ``{episode}``.
    Any other field is refused here, not at the first save ``interval`` steps later.
    """

    #: The fields ``filepath`` may name: the step count and the step's log entries.
    FIELDS = ("step", "action", "observation", "reward", "metrics", "episode", "info", "stream")

    def __init__(self, filepath: str, interval: int, verbose: int = 0) -> None:
        super().__init__()
        self.filepath = check_path("filepath", filepath)
        _check_format_fields("filepath", self.filepath, self.FIELDS)
        self.interval = check_int("interval", interval, minimum=1)
        self.verbose = verbose

    def on_train_begin(self, logs=None):
        check_directory_exists("filepath", self.filepath)

    def on_step_end(self, step, logs=None):
        steps = self.model.step + 1
        if steps % self.interval:
            return
        filepath = self.filepath.format(step=steps, **logs)
        if self.verbose > 0:
            print(f"Step {steps}: saving model to {filepath}")
        self.model.save_weights(filepath, overwrite=True)


def _check_format_fields(name: str, template: str, fields: tuple[str, ...]) -> None:
    """Raise ``ValueError`` unless ``template`` is a valid ``str.format`` template whose
    fields are all named among ``fields`` (``{step}``, ``{step:06d}``, ``{info[lives]}``)."""
    try:
        parsed = [field for _, field, _, _ in string.Formatter().parse(template)]
    except ValueError as error:
        raise ValueError(f"{name}: {template!r} is not a valid format string ({error})") from None
    for field in parsed:
        if field is None:
            continue
        root = re.split(r"[.\[]", field, maxsplit=1)[0]
        if root not in fields:
            raise ValueError(
                f"{name}: {template!r} names the field {{{field}}}; expected fields among "
                + ", ".join(f"{{{known}}}" for known in fields)
            )


def checked_checkpoint_target(
    directory: str | os.PathLike, interval: int | None
) -> tuple[str, int | None]:
    """``fit``'s ``checkpoint_dir`` (a path where files can be written) and
    ``checkpoint_interval`` (None, or at least 1), checked."""
    directory = check_path("checkpoint_dir", directory)
    interval = None if interval is None else check_int("checkpoint_interval", interval, minimum=1)
    check_writable_directory("checkpoint_dir", directory)
    return directory, interval


class TrainingCheckpoint(Callback):
    """Writes the whole training state (``agent.save_checkpoint``) to
    ``directory/checkpoint.h5``, atomically, every ``interval`` steps (None: never on the way)
    and when training ends or is interrupted; ``fit(checkpoint_dir=..., checkpoint_interval=...)``
    adds one.

    A checkpoint is written between two steps: the step that makes the count a multiple of
    ``interval`` first finishes, and its episode too if it ended there. An episode still going
    on is stored with its current observation, which loading turns into the episode's end. On
    a vector environment every stored transition is whole; the episodes going on there end,
    as truncations, when the resumed ``fit`` begins new ones.
    """

    def __init__(self, directory: str | os.PathLike, interval: int | None = None) -> None:
        super().__init__()
        self.directory, self.interval = checked_checkpoint_target(directory, interval)
        self.filepath = os.path.join(self.directory, "checkpoint.h5")

    def on_train_begin(self, logs=None):
        self._due = False
        self._observation = None

    def on_step_end(self, step, logs=None):
        # A vector environment's transitions are stored whole (their logs name the
        # "stream"): no observation is left pending.
        self._observation = None if "stream" in logs else logs["observation"]
        self._due = self.interval is not None and (self.model.step + 1) % self.interval == 0

    def on_episode_end(self, episode, logs=None):
        if self._due:
            self._save(pending_observation=None)

    def on_step_begin(self, step, logs=None):
        if self._due:
            self._save(pending_observation=self._observation)

    def on_train_end(self, logs=None):
        self._save(pending_observation=None)

    def _save(self, pending_observation) -> None:
        self._due = False
        self.model.save_checkpoint(self.filepath, pending_observation=pending_observation)


class Visualizer(Callback):
    """Renders the environment after each action (``visualize=True``).

    gymnasium fixes the render mode when the environment is made; without
    ``render_mode='human'``, or without a display, this warns once and renders nothing.
    """

    def on_train_begin(self, logs=None):
        self.enabled = getattr(self.env, "render_mode", None) is not None
        if not self.enabled:
            warnings.warn(
                "visualize=True, but the environment was made without a render mode: nothing "
                "is shown. Make it with gymnasium.make(..., render_mode='human') to watch it.",
                stacklevel=4,
            )

    def on_action_end(self, action, logs=None):
        if not self.enabled:
            return
        try:
            self.env.render()
        except Exception as error:  # no display, missing pygame ...
            self.enabled = False
            warnings.warn(
                f"visualize=True, but rendering failed, so nothing is shown: {error}", stacklevel=4
            )


class TensorBoard(Callback):
    """Writes training curves as TensorBoard event files under ``log_dir``.

    The step axis is the agent's environment-step counter, which continues across ``fit``
    calls. Tags:

    - ``episode/reward``, ``episode/length``, ``episode/epsilon``: once per episode (the
      epsilon in the episode's logs if they have one, as ``ApeX.fit``'s do: its actor's).
    - ``train/loss``, ``train/<metric>`` for each compiled metric, ``train/mean_q``: the mean
      over the training steps of the last ``update_freq`` environment steps (under
      ``ApeX.fit``, of the chunks that brought them).
    - ``train/steps_per_second``: environment steps per second over that stretch.
    - ``weights/<variable path>``: histograms of the online network's weights every
      ``histogram_freq`` episodes (0: never).
    """

    def __init__(self, log_dir: str, update_freq: int = 100, histogram_freq: int = 0) -> None:
        super().__init__()
        self.log_dir = os.fspath(log_dir)
        self.update_freq = check_int("update_freq", update_freq, minimum=1)
        self.histogram_freq = check_int("histogram_freq", histogram_freq, minimum=0)
        self._writer = None

    def on_train_begin(self, logs=None):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        self.metrics_names = self.model.metrics_names
        self._reset_stretch()

    def _reset_stretch(self) -> None:
        self._metric_means = MetricMeans(len(self.metrics_names))
        self._stretch_start = timeit.default_timer()
        self._stretch_steps = 0

    def on_step_end(self, step, logs=None):
        self._metric_means.add(logs["metrics"])
        self._stretch_steps += 1
        if self._stretch_steps >= self.update_freq:
            self._write_stretch(self.model.step + 1)

    def on_chunk_end(self, step, logs=None):
        """Many environment steps at once (``ApeX.fit``): the learner's metrics over them."""
        if "metrics" in logs:
            self._metric_means.add(logs["metrics"])
        self._stretch_steps += step - logs["first_step"]
        if self._stretch_steps >= self.update_freq:
            self._write_stretch(step)

    def _write_stretch(self, step: int) -> None:
        elapsed = max(timeit.default_timer() - self._stretch_start, 1e-9)
        schedules = set(self.model.policy.metrics_names)  # the policy's values: not trained
        with self._writer.as_default(step=step):
            tf.summary.scalar("train/steps_per_second", self._stretch_steps / elapsed)
            for name, mean in zip(self.metrics_names, self._metric_means.means()):
                if np.isfinite(mean) and name not in schedules:
                    tf.summary.scalar(f"train/{name}", mean)
        self._reset_stretch()

    def on_episode_end(self, episode, logs=None):
        with self._writer.as_default(step=self.model.step):
            tf.summary.scalar("episode/reward", logs["episode_reward"])
            tf.summary.scalar("episode/length", logs["nb_episode_steps"])
            # An episode played elsewhere (``ApeX.fit``'s actors) reports its own epsilon.
            epsilon = logs.get("epsilon", self.model.policy.epsilon)
            if epsilon is not None:
                tf.summary.scalar("episode/epsilon", epsilon)
            if self.histogram_freq and (episode + 1) % self.histogram_freq == 0:
                for weight in self.model.model.weights:
                    tf.summary.histogram(f"weights/{weight.path}", weight.numpy())

    def on_train_end(self, logs=None):
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class GameScoreLogger(Callback):
    """Logs the real score of each whole game, for Atari agents trained on clipped rewards
    and, often, one episode per life: the plain sum of the game's rewards, as gymnasium's
    ``RecordEpisodeStatistics`` reports it in the ``info['episode']['r']`` of the step that
    ends the game (``kerasdqn.envs.make_atari`` places it under the reward clipping and the
    episodes per life; Stable-Baselines3's ``Monitor`` writes the same key).

    The score is added as ``game_score`` to the logs of the episode that ends the game, so
    ``History`` (which ``fit`` and ``test`` always call last) records it:
    ``history.history['game_score']`` has one value per game, fewer than there are episodes
    when each life is an episode. Put this callback before any ``FileLogger`` that should
    record it too. With ``log_dir``, each training game's score is also written as the
    TensorBoard scalar ``charts/game_score`` at the agent's step. Episodes whose logs already
    carry a ``game_score`` (``ApeX.fit``'s, measured by the actors) are logged the same way.
    """

    def __init__(self, log_dir: str | os.PathLike | None = None) -> None:
        super().__init__()
        self.log_dir = None if log_dir is None else check_path("log_dir", log_dir)
        self._writer = None
        self._score: float | None = None

    def on_train_begin(self, logs=None):
        self._score = None

    def on_step_end(self, step, logs=None):
        record = (logs.get("info") or {}).get("episode")
        if isinstance(record, dict) and "r" in record:
            self._score = float(np.asarray(record["r"]))

    def on_episode_end(self, episode, logs=None):
        if self._score is None:
            # Ape-X's episodes arrive whole, with their actor's game score in the logs.
            self._score = logs.get("game_score")
        if self._score is None:
            return
        logs["game_score"] = self._score
        if self.log_dir is not None and self.model.training:
            if self._writer is None:  # made at the first game, so other runs get no file
                self._writer = tf.summary.create_file_writer(self.log_dir)
            with self._writer.as_default(step=self.model.step):
                tf.summary.scalar("charts/game_score", self._score)
        self._score = None

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file, if any."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
