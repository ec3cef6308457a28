"""Hyperparameter search with optuna: what ``kerasdqn tune ENV_ID --trials N`` runs.

A study is a set of trials, each a fresh agent trained with settings drawn by ``sample_config``
and scored by greedy evaluations on a separate environment. The study lives on disk, so running
the same search again continues it; the best trial's settings are written as a preset that
``kerasdqn train ENV_ID --preset FILE`` reads::

    tuner = Tuner("CartPole-v1", {"steps": 20_000}, trials=20,
                  storage="runs/tune/CartPole-v1/study.log", study_name="CartPole-v1",
                  out="runs/tune/CartPole-v1/best.toml")
    tuner.run()
    tuner.write_preset()

The search space (rl-zoo's DQN space, narrowed to what can learn within a short budget):

    lr              log-uniform in [1e-5, 1e-2]
    batch_size      16, 32, 64, 128, 256
    gamma           0.9, 0.95, 0.98, 0.99, 0.995, 0.999
    train_interval  1, 4, 16, 64, 256 steps
    gradient_steps  train_interval divided by 1, 2, 4 or 8 (at least 1): never more than one
                    gradient step per environment step, which bounds what a trial costs
    target_update   a hard copy every 10, 100, 1000, 5000 or 10000 steps, or a soft update with
                    tau log-uniform in [0.001, 0.1]
    eps_end         uniform in [0, 0.2]
    eps_fraction    uniform in [0.05, 0.5]
    hidden          1 to 3 layers of 32, 64, 128 or 256 units
    n_step          1, 3, 5, 10
    double          on or off

Fields given in ``fixed`` are not sampled; the fields nobody sets keep ``DQNConfig``'s defaults.

Seeds: trial number ``i`` trains with seed ``fixed["seed"] + i`` (``seed`` defaults to 0), its
training and evaluation environments seeded as ``kerasdqn train`` seeds them, so that training
with a trial's preset replays that trial. The sampler (TPE) is seeded with the seed plus the
number of trials already in the study, so a resumed study does not draw its first settings again.

The objective is the mean reward of the greedy evaluation at the last step (made at the end if
the evaluation interval does not fall on it), not the best one during training: a lucky peak
is not what training with these settings ends with. Each evaluation before it is reported to
optuna's median pruner, which stops a trial whose reward is below the median of the complete
trials at the same step, once 5 trials are complete and from a third of the steps on (rl-zoo's
settings).

Storage: an optuna journal file by default, or an SQLite database for a path ending in ``.db``
or an ``sqlite:///PATH`` URL. The journal needs no database library: each change is one line
appended and synced, so a run killed mid-write loses at most that line, which the next reader
skips, and a lock file beside it lets several processes share one study. SQLite suits tools that
query the database.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import shlex
import signal
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import keras

from kerasdqn._files import atomic_path, check_writable_directory
from kerasdqn.config import DQNConfig, flag_for
from kerasdqn.envs import make_env
from kerasdqn.errors import UsageError
from kerasdqn.evaluation import EvalCallback
from kerasdqn.training import build_agent, make_evaluation_env

try:
    import optuna
except ImportError:
    raise UsageError(
        "kerasdqn tune needs optuna: pip install -e '.[tune]' (in a clone of kerasdqn) or "
        "pip install optuna"
    ) from None

from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.exc import SQLAlchemyError  # optuna's SQLite storage; one of its requirements

__all__ = [
    "SAMPLED_FIELDS",
    "TrialEvaluation",
    "Tuner",
    "TuningInterrupted",
    "TuningSpec",
    "make_pruner",
    "objective",
    "sample_config",
    "trial_line",
]

PRUNER_STARTUP_TRIALS = 5  # complete trials before the median pruner judges any
EVALUATION_SEED_OFFSET = 2_000  # as kerasdqn train's evaluation during training
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)  # what counts towards --trials
_STATE_WORDS = {
    TrialState.COMPLETE: "is complete",
    TrialState.PRUNED: "is pruned",
    TrialState.FAIL: "is marked failed and will run again",
    TrialState.RUNNING: "is left running, not counted",
    TrialState.WAITING: "is waiting, not counted",
}

# --------------------------------------------------------------------------- search space


def _lr(trial: optuna.Trial, chosen: dict) -> float:
    return trial.suggest_float("lr", 1e-5, 1e-2, log=True)


def _batch_size(trial: optuna.Trial, chosen: dict) -> int:
    return trial.suggest_categorical("batch_size", (16, 32, 64, 128, 256))


def _gamma(trial: optuna.Trial, chosen: dict) -> float:
    return trial.suggest_categorical("gamma", (0.9, 0.95, 0.98, 0.99, 0.995, 0.999))


def _train_interval(trial: optuna.Trial, chosen: dict) -> int:
    return trial.suggest_categorical("train_interval", (1, 4, 16, 64, 256))


def _gradient_steps(trial: optuna.Trial, chosen: dict) -> int:
    """A fraction of the train interval (rl-zoo's ``subsample_steps``)."""
    divisor = trial.suggest_categorical("gradient_steps_divisor", (1, 2, 4, 8))
    return max(1, chosen["train_interval"] // divisor)


def _target_update(trial: optuna.Trial, chosen: dict) -> float:
    """A hard copy interval (1 or more) or a soft update's tau (below 1), as DQNConfig takes."""
    if trial.suggest_categorical("target_update_kind", ("hard", "soft")) == "hard":
        return trial.suggest_categorical("target_copy_interval", (10, 100, 1000, 5000, 10000))
    return trial.suggest_float("target_tau", 1e-3, 0.1, log=True)


def _eps_end(trial: optuna.Trial, chosen: dict) -> float:
    return trial.suggest_float("eps_end", 0.0, 0.2)


def _eps_fraction(trial: optuna.Trial, chosen: dict) -> float:
    return trial.suggest_float("eps_fraction", 0.05, 0.5)


def _hidden(trial: optuna.Trial, chosen: dict) -> tuple[int, ...]:
    layers = trial.suggest_int("layers", 1, 3)
    return (trial.suggest_categorical("width", (32, 64, 128, 256)),) * layers


def _n_step(trial: optuna.Trial, chosen: dict) -> int:
    return trial.suggest_categorical("n_step", (1, 3, 5, 10))


def _double(trial: optuna.Trial, chosen: dict) -> bool:
    return trial.suggest_categorical("double", (True, False))


# Each sampled field's suggestion, in the order they are drawn (gradient_steps after
# train_interval, which it divides); ``chosen`` holds the values settled before it.
_SUGGESTIONS: dict[str, Callable[[optuna.Trial, dict], Any]] = {
    "lr": _lr,
    "batch_size": _batch_size,
    "gamma": _gamma,
    "train_interval": _train_interval,
    "gradient_steps": _gradient_steps,
    "target_update": _target_update,
    "eps_end": _eps_end,
    "eps_fraction": _eps_fraction,
    "hidden": _hidden,
    "n_step": _n_step,
    "double": _double,
}
SAMPLED_FIELDS: tuple[str, ...] = tuple(_SUGGESTIONS)


def sample_config(trial: optuna.Trial, fixed: Mapping[str, Any] | None = None) -> DQNConfig:
    """The ``DQNConfig`` of ``trial``: ``fixed``'s fields as given, the ``SAMPLED_FIELDS`` not
    among them drawn from the search space (see the module's docstring), the rest at their
    defaults, and the seed ``fixed["seed"]`` (default 0) plus the trial's number.

    The config's own validation checks every value: a bad fixed one raises its ValueError or
    TypeError, naming the field.
    """
    chosen = {name: value for name, value in (fixed or {}).items() if name != "seed"}
    for name, suggest in _SUGGESTIONS.items():
        if name not in chosen:
            chosen[name] = suggest(trial, chosen)
    seed = (fixed or {}).get("seed", 0)
    return DQNConfig(**chosen, seed=seed + trial.number)


def make_pruner(steps: int) -> optuna.pruners.MedianPruner:
    """The median pruner of a study of ``steps``-step trials: it judges a trial once
    ``PRUNER_STARTUP_TRIALS`` are complete and from a third of the steps on."""
    return optuna.pruners.MedianPruner(
        n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=steps // 3
    )


# --------------------------------------------------------------------------- one trial


class TuningInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a trial's training. A ``KeyboardInterrupt``, so that optuna
    marks the trial failed and passes it on, as it does for Ctrl-C anywhere else."""

    def __init__(self, signal_name: str) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name


class TrialEvaluation(EvalCallback):
    """An ``EvalCallback`` that reports each evaluation to an optuna trial (``trial.report``
    with the mean reward at the agent's step) and, when the trial's pruner says so, stops
    training cleanly after that step through ``agent.stop_training``.

    Args:
        trial: the optuna trial the evaluations belong to.
        eval_env: a gymnasium environment used only for evaluation.
        steps: the trial's training steps; the evaluation at the last one is the trial's
            value and is never pruned.
        eval_interval: training steps between evaluations.
        nb_episodes: greedy episodes per evaluation.
    """

    def __init__(
        self, trial: optuna.Trial, eval_env, steps: int, eval_interval: int, nb_episodes: int
    ) -> None:
        super().__init__(eval_env, eval_interval=eval_interval, nb_episodes=nb_episodes, verbose=0)
        self.trial = trial
        self.steps = steps
        self.pruned_at: int | None = None
        self.interrupted_by: str | None = None

    def evaluate(self, step: int) -> dict[str, Any]:
        """Evaluate (see ``EvalCallback.evaluate``), report, and stop if pruned."""
        result = super().evaluate(step)
        self.trial.report(result["mean_reward"], step)
        if self.agent.training and step < self.steps and self.trial.should_prune():
            self.pruned_at = step
            self.agent.stop_training = True
        return result

    def on_train_end(self, logs: dict | None = None) -> None:
        """Remember the signal that interrupted ``fit``, if one did."""
        super().on_train_end(logs)
        self.interrupted_by = (logs or {}).get("interrupted_by")

    def value(self) -> float:
        """Once ``fit`` has returned: the mean reward of the evaluation at the last step
        (made now if the interval did not fall on it). Raises ``TuningInterrupted`` if a
        signal stopped training, ``optuna.TrialPruned`` if the pruner did."""
        if self.interrupted_by is not None:
            raise TuningInterrupted(self.interrupted_by)
        if self.pruned_at is not None:
            raise optuna.TrialPruned(
                f"mean reward {self.evaluations[-1]['mean_reward']:.1f} at step "
                f"{self.pruned_at}, below the median of the complete trials there"
            )
        if not self.evaluations or self.evaluations[-1]["step"] != self.agent.step:
            self.evaluate(self.agent.step)
        return self.evaluations[-1]["mean_reward"]


@dataclasses.dataclass(frozen=True)
class TuningSpec:
    """What makes the trials of a study comparable: the environment, the settings every
    trial shares (``fixed``: ``DQNConfig`` fields, ``steps`` and the base ``seed`` among
    them), and how each trial is scored (greedy episodes every ``eval_interval`` steps)."""

    env_id: str
    fixed: Mapping[str, Any]
    eval_interval: int
    eval_episodes: int

    @property
    def steps(self) -> int:
        """Training steps of every trial."""
        return self.fixed.get("steps", DQNConfig.steps)

    @property
    def seed(self) -> int:
        """The base seed: trial number ``i`` trains with ``seed + i``."""
        return self.fixed.get("seed", DQNConfig.seed)

    def record(self) -> dict[str, Any]:
        """The spec as JSON values, as the study keeps it."""
        return json.loads(json.dumps(dataclasses.asdict(self) | {"fixed": dict(self.fixed)}))


def objective(spec: TuningSpec) -> Callable[[optuna.Trial], float]:
    """optuna's objective for ``spec``: see ``run_trial``."""
    return lambda trial: run_trial(trial, spec)


def run_trial(trial: optuna.Trial, spec: TuningSpec) -> float:
    """Train a fresh agent with ``trial``'s config (``sample_config``) for ``spec.steps``
    steps, evaluating it every ``spec.eval_interval`` steps on a separate environment; return
    the mean reward at the last step. The config goes into the trial's ``config`` user
    attribute, the steps trained into ``steps_trained``.

    Keras's session is cleared first, so nothing of the previous trial's networks is left.
    """
    config = sample_config(trial, spec.fixed)
    trial.set_user_attr("config", json.loads(json.dumps(dataclasses.asdict(config))))
    keras.backend.clear_session()
    keras.utils.set_random_seed(config.seed)
    env = make_env(spec.env_id, seed=config.seed)
    eval_env = make_evaluation_env(spec.env_id, seed=config.seed + EVALUATION_SEED_OFFSET)
    evaluation = TrialEvaluation(
        trial, eval_env, config.steps, spec.eval_interval, spec.eval_episodes
    )
    try:
        agent = build_agent(env, config)
        agent.fit(env, nb_steps=config.steps, callbacks=[evaluation], verbose=0)
        trial.set_user_attr("steps_trained", agent.step)
        return evaluation.value()
    finally:
        env.close()
        eval_env.close()


# --------------------------------------------------------------------------- the study


class Tuner:
    """A search on ``env_id``: the study ``study_name`` on ``storage`` (created, or loaded to
    continue it), run until ``trials`` trials have finished (complete or pruned), its best
    settings written as a preset to ``out``.

    Args:
        env_id: gymnasium environment id (with a Discrete action space).
        fixed: ``DQNConfig`` fields every trial uses as given (``steps`` and the base ``seed``
            among them); the others in ``SAMPLED_FIELDS`` are sampled.
        trials: finished trials the study should reach, 1 or more.
        storage: a journal file path, a path ending in ``.db`` or an ``sqlite:///PATH`` URL.
        study_name: the study's name in ``storage``.
        out: the preset file ``write_preset`` writes.
        eval_interval: steps between evaluations (default: a fifth of the steps).
        eval_episodes: greedy episodes per evaluation.
        timeout: seconds after which no new trial starts (the running one finishes).

    Problems the user can fix (an unknown environment, a bad path or value, a study on
    ``storage`` started with other settings) raise ``UsageError`` naming the flag.
    """

    def __init__(
        self,
        env_id: str,
        fixed: Mapping[str, Any] | None,
        trials: int,
        storage: str,
        study_name: str,
        out: str,
        eval_interval: int | None = None,
        eval_episodes: int = 5,
        timeout: float | None = None,
    ) -> None:
        make_env(env_id, seed=0).close()  # an unknown id is reported before any file is made
        self.spec = checked_spec(env_id, dict(fixed or {}), eval_interval, eval_episodes)
        self.trials = _at_least_one("--trials", trials)
        if timeout is not None and not timeout > 0:
            raise UsageError(f"--timeout: expected seconds > 0, got {timeout}")
        self.timeout = timeout
        self.out = checked_output_path(out)
        self.storage = storage
        self.study = open_study(storage, study_name, self.spec)

    @property
    def finished(self) -> list[FrozenTrial]:
        """The study's complete and pruned trials."""
        return self.study.get_trials(deepcopy=False, states=FINISHED)

    @property
    def missing(self) -> int:
        """Trials still to run to reach ``trials`` finished ones."""
        return max(0, self.trials - len(self.finished))

    def plan(self) -> str:
        """What ``run`` is about to do, in a line."""
        where = f"Study {self.study.study_name!r} in {self.storage}"
        done, missing = len(self.finished), self.missing
        if not self.study.trials:
            return f"{where}: new; running {missing} trials of {self.spec.steps} steps."
        if not missing:
            return f"{where}: {done} of {self.trials} trials finished; nothing to run."
        return (
            f"{where}: {done} of {self.trials} trials finished; resuming with the {missing} "
            "still missing."
        )

    def run(self, on_trial: Callable[[FrozenTrial], None] | None = None) -> None:
        """Run the missing trials (until ``timeout``), calling ``on_trial`` after each.

        Ctrl-C or SIGTERM raises ``KeyboardInterrupt`` (a ``TuningInterrupted`` if it came
        during training) once optuna has marked the running trial failed; the study stays on
        ``storage``, and running again resumes it.
        """
        self.study.sampler = optuna.samplers.TPESampler(
            seed=self.spec.seed + len(self.study.trials)
        )
        callbacks = [] if on_trial is None else [lambda study, trial: on_trial(trial)]
        with _quiet_optuna():
            self.study.optimize(
                objective(self.spec),
                n_trials=self.missing,
                timeout=self.timeout,
                callbacks=callbacks,
                gc_after_trial=True,
            )

    def interrupted(self, stop: KeyboardInterrupt) -> str:
        """The message for a run that ``stop`` interrupted."""
        name = getattr(stop, "signal_name", "SIGINT")
        last = self.study.trials[-1] if self.study.trials else None
        state = "" if last is None else f": trial {last.number} {_STATE_WORDS[last.state]}"
        return (
            f"\nInterrupted by {name}{state}. The study is kept in {self.storage} with "
            f"{len(self.finished)} of {self.trials} trials finished; run the same command "
            "again to resume it."
        )

    def summary(self) -> str:
        """The trials, the best one and its settings, and what is left to run."""
        lines = ["", trials_table(self.study)]
        best = self.best_trial()
        if best is None:
            lines.append("No trial is complete yet, so there is no best one.")
        else:
            lines += [
                f"Best: trial {best.number}, mean reward {best.value:.1f} at step "
                f"{self.spec.steps}, with",
                *_settings_lines(best, self.spec),
            ]
        if self.missing:
            lines.append(
                f"Stopped by --timeout with {len(self.finished)} of {self.trials} trials "
                "finished; run the same command again to continue."
            )
        return "\n".join(lines)

    def best_trial(self) -> FrozenTrial | None:
        """The complete trial with the highest value, if any."""
        complete = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return max(complete, key=lambda trial: trial.value, default=None)

    def write_preset(self) -> str | None:
        """Write the best trial's config as a preset to ``out`` (atomically) and return the
        path, or None if no trial is complete."""
        best = self.best_trial()
        if best is None:
            return None
        text = preset_text(best, self.spec, len(self.finished), self.command())
        try:
            with atomic_path(self.out) as temporary, open(temporary, "w") as handle:
                handle.write(text)
        except OSError as error:
            raise UsageError(f"--out: {error}") from None
        return self.out

    def command(self) -> str:
        """The ``kerasdqn tune`` command line of this search (the fields fixed at values
        other than DQNConfig's defaults spelled out)."""
        spec = self.spec
        words = ["kerasdqn", "tune", spec.env_id, "--trials", str(self.trials)]
        fixed = dict(spec.fixed, steps=spec.steps, seed=spec.seed)
        for name, value in fixed.items():
            if name in ("steps", "seed") or value != getattr(DQNConfig(), name):
                words += _flag_words(name, value)
        words += ["--eval-interval", str(spec.eval_interval)]
        words += ["--eval-episodes", str(spec.eval_episodes)]
        return shlex.join(words)


def checked_spec(
    env_id: str, fixed: dict, eval_interval: int | None, eval_episodes: int
) -> TuningSpec:
    """The spec, its values checked: the fixed settings by ``DQNConfig``, at least one step,
    an evaluation interval within the steps."""
    fixed = {name: tuple(v) if isinstance(v, list) else v for name, v in fixed.items()}
    try:
        DQNConfig(**fixed)
    except (TypeError, ValueError) as error:
        name, _, problem = str(error).partition(": ")
        raise UsageError(f"{flag_for(name)}: {problem}" if problem else str(error)) from None
    steps = _at_least_one("--steps", fixed.get("steps", DQNConfig.steps))
    interval = max(1, steps // 5) if eval_interval is None else eval_interval
    if not 1 <= interval <= steps:
        raise UsageError(f"--eval-interval: expected 1 to --steps ({steps}), got {interval}")
    _at_least_one("--eval-episodes", eval_episodes)
    return TuningSpec(env_id, fixed, interval, eval_episodes)


def _at_least_one(flag: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{flag}: expected 1 or more, got {value!r}")
    return value


def checked_output_path(path: str) -> str:
    """``path`` if a preset can be written there (its directory is created now, so that a
    long search does not find out at the end)."""
    if os.path.isdir(path):
        raise UsageError(f"--out {path!r} is a directory; expected a file path")
    try:
        check_writable_directory("--out", os.path.dirname(os.path.abspath(path)))
    except OSError as error:
        raise UsageError(str(error)) from None
    return path


def open_study(storage: str, study_name: str, spec: TuningSpec) -> optuna.Study:
    """The study ``study_name`` on ``storage``, created if it is not there (the spec kept in
    its ``spec`` user attribute) or loaded if it was made with the same spec."""
    try:
        with _quiet_optuna():
            study = optuna.create_study(
                storage=_optuna_storage(storage),
                study_name=study_name,
                direction="maximize",
                pruner=make_pruner(spec.steps),
                load_if_exists=True,
            )
    except (OSError, ValueError, KeyError, optuna.exceptions.OptunaError, SQLAlchemyError) as error:
        # SQLAlchemy's own text runs over several lines: the database's is the first
        reason = str(getattr(error, "orig", None) or error).splitlines()[0]
        raise UsageError(f"--storage {storage!r}: cannot open it as a study ({reason})") from None
    kept = study.user_attrs.get("spec")
    if kept is None:
        study.set_user_attr("spec", spec.record())
    elif kept != spec.record():
        raise UsageError(
            f"--study-name {study_name!r}: the study in {storage!r} was started with other "
            f"settings ({_differences(kept, spec.record())}); give those, or another "
            "--study-name or --storage"
        )
    return study


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """optuna's own log lines off but errors, for the while: ours say what happened, and its
    warning on a trial failed by Ctrl-C would come with a traceback."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)


def _optuna_storage(storage: str) -> str | optuna.storages.BaseStorage:
    """The optuna storage that ``storage`` names, its directory created."""
    if storage.startswith("sqlite:///"):
        path = storage[len("sqlite:///") :]
    elif "://" in storage:
        raise UsageError(
            f"--storage {storage!r}: expected a journal file path, a path ending in .db or "
            "sqlite:///PATH"
        )
    else:
        path = storage
    if os.path.isdir(path):
        raise UsageError(f"--storage {storage!r} is a directory; expected a file path")
    try:
        check_writable_directory("--storage", os.path.dirname(os.path.abspath(path)))
    except OSError as error:
        raise UsageError(str(error)) from None
    if storage.startswith("sqlite:///") or path.endswith(".db"):
        return f"sqlite:///{os.path.abspath(path)}"
    backend = optuna.storages.journal.JournalFileBackend(path)
    return optuna.storages.JournalStorage(backend)


def _differences(kept: dict, now: dict) -> str:
    """The settings that differ between spec records ``kept`` and ``now``, as flags:
    ``--steps 300 (now 400)``."""
    kept, now = _flat(kept), _flat(now)
    return ", ".join(
        f"{'ENV_ID' if name == 'env_id' else flag_for(name)} {_shown(kept.get(name))} "
        f"(now {_shown(now.get(name))})"
        for name in sorted(set(kept) | set(now))
        if kept.get(name) != now.get(name)
    )


def _flat(record: dict) -> dict:
    """A spec record with its fixed settings beside the rest."""
    return {name: value for name, value in record.items() if name != "fixed"} | record["fixed"]


def _shown(value: Any) -> str:
    """``value`` as the settings are printed: lists as flag values, floats to 4 digits."""
    if value is None:
        return "sampled"
    if isinstance(value, float):
        return f"{value:.4g}"
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


# --------------------------------------------------------------------------- reports


def trial_line(trial: FrozenTrial) -> str:
    """A line on a finished trial: its value or where it was pruned, and its duration."""
    seconds = "" if trial.duration is None else f" ({trial.duration.total_seconds():.0f} s)"
    if trial.state == TrialState.COMPLETE:
        return f"Trial {trial.number}: mean reward {trial.value:.1f}{seconds}"
    if trial.state == TrialState.PRUNED and trial.last_step is not None:
        reward = trial.intermediate_values[trial.last_step]
        return f"Trial {trial.number}: pruned at step {trial.last_step}, mean reward {reward:.1f}"
    return f"Trial {trial.number}: {trial.state.name.lower()}{seconds}"


def trials_table(study: optuna.Study) -> str:
    """The study's trials that are no longer running: number, value (a pruned trial's last
    reported one), state."""
    rows = [f"{'Trial':>5}  {'Mean reward':>11}  State"]
    for trial in study.get_trials(deepcopy=False):
        if trial.state in (TrialState.RUNNING, TrialState.WAITING):
            continue
        value, state = trial.value, trial.state.name.lower()
        if trial.state == TrialState.PRUNED and trial.last_step is not None:
            value = trial.intermediate_values[trial.last_step]
            state = f"pruned at step {trial.last_step}"
        shown = "-" if value is None else f"{value:.1f}"
        rows.append(f"{trial.number:>5}  {shown:>11}  {state}")
    return "\n".join(rows)


def _settings_lines(trial: FrozenTrial, spec: TuningSpec) -> list[str]:
    """The trial's sampled settings and seed, one per line."""
    config = trial.user_attrs["config"]
    names = [name for name in SAMPLED_FIELDS if name not in spec.fixed] + ["seed"]
    return [f"  {name:<15} {_shown(config[name])}" for name in names]


def preset_text(trial: FrozenTrial, spec: TuningSpec, finished: int, command: str) -> str:
    """A preset (TOML, as ``kerasdqn.presets.read_preset`` reads it) of ``trial``'s config:
    a ``[dqn]`` table of every field that has a value, a ``[claim]`` table of what it reached."""
    config = trial.user_attrs["config"]
    lines = [
        f"# DQN on {spec.env_id}: the best of {finished} finished trials of a kerasdqn tune "
        "search (the command below).",
        "",
        "[dqn]",
    ]
    lines += [f"{name} = {_toml(value)}" for name, value in config.items() if value is not None]
    claim = {
        "what": f"greedy mean reward over {spec.eval_episodes} episodes at the end of training "
        f"(step {spec.steps}), on a separate environment",
        "measured": f"trial {trial.number}: mean {trial.value:.1f}",
        "mean_reward": trial.value,
        "command": command,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    lines += ["", "[claim]"] + [f"{name} = {_toml(value)}" for name, value in claim.items()]
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    """``value`` (a bool, number, string or list of them) as a TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(map(_toml, value)) + "]"
    return repr(value)  # ints; floats, inf included, as TOML writes them


def _flag_words(name: str, value: Any) -> list[str]:
    """The command-line words that set config field ``name`` to ``value``."""
    if isinstance(value, bool):
        return [flag_for(name) if value else "--no-" + flag_for(name)[2:]]
    if isinstance(value, list | tuple):
        return [flag_for(name), *map(str, value)]
    return [flag_for(name), str(value)]


def exit_code(stop: KeyboardInterrupt) -> int:
    """The conventional exit status of a run ``stop`` ended: 128 + the signal's number."""
    return 128 + int(getattr(signal, getattr(stop, "signal_name", "SIGINT")))
