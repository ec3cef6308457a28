"""``kerasdqn tune``: hyperparameter search with optuna, run for real on tiny CartPole studies
(300 steps a trial), and its pieces (the sampler, the pruner hook) on hand-made studies."""

import contextlib
import io
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium
import optuna
import pytest
from optuna.trial import TrialState, create_trial

import kerasdqn
from kerasdqn import cli, tuning
from kerasdqn.config import DQNConfig
from kerasdqn.presets import read_preset
from kerasdqn.training import build_agent

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--steps", "300", "--warmup", "100", "--eval-interval", "150", "--eval-episodes", "2"]


def journal(path) -> optuna.storages.JournalStorage:
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))


def load(path) -> optuna.Study:
    return optuna.load_study(study_name="CartPole-v1", storage=journal(path))


def tune(directory, *flags) -> list[str]:
    """``kerasdqn tune CartPole-v1`` with the tiny budget, its study and preset in
    ``directory``."""
    return ["tune", "CartPole-v1", *TINY, *flags] + [
        "--storage",
        str(directory / "study.log"),
        "--out",
        str(directory / "best.toml"),
    ]


@pytest.fixture(scope="module")
def two_trials(tmp_path_factory):
    """A two-trial study run through the command line: its directory and what it printed."""
    directory = tmp_path_factory.mktemp("tune")
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        code = cli.main(tune(directory, "--trials", "2"))
    assert code == 0
    return directory, output.getvalue()


# --------------------------------------------------------------------------- end to end


def test_a_two_trial_study_prints_its_trials_and_the_best(two_trials):
    directory, output = two_trials
    study = load(directory / "study.log")
    assert [trial.state for trial in study.trials] == [TrialState.COMPLETE] * 2
    assert "new; running 2 trials of 300 steps" in output
    for trial in study.trials:
        assert re.search(rf"^\s+{trial.number}\s+{trial.value:.1f}\s+complete$", output, re.M)
    assert f"Best: trial {study.best_trial.number}, mean reward {study.best_value:.1f}" in output
    assert f"train with: kerasdqn train CartPole-v1 --preset {directory / 'best.toml'}" in output


def test_trial_i_trains_with_seed_plus_i_and_its_sampled_config(two_trials):
    directory, _ = two_trials
    for trial in load(directory / "study.log").trials:
        config = trial.user_attrs["config"]
        assert config["seed"] == trial.number and config["steps"] == 300
        assert config["lr"] == trial.params["lr"] and config["warmup"] == 100
        assert trial.user_attrs["steps_trained"] == 300
        assert sorted(trial.intermediate_values) == [150, 300]
        assert trial.value == trial.intermediate_values[300]  # the last evaluation


def test_the_preset_holds_the_best_config_and_train_replays_its_trial(
    two_trials, tmp_path, monkeypatch, capsys
):
    directory, _ = two_trials
    best = load(directory / "study.log").best_trial
    preset = directory / "best.toml"
    config = best.user_attrs["config"]
    expected = {name: tuple(v) if isinstance(v, list) else v for name, v in config.items()}
    assert read_preset(preset) == {k: v for k, v in expected.items() if v is not None}
    monkeypatch.chdir(tmp_path)
    code = cli.main(
        ["train", "CartPole-v1", "--preset", str(preset), "--steps", "300", "--episodes", "1"]
        + ["--eval-interval", "150", "--eval-episodes", "2", "--verbose", "2"]
    )
    output = capsys.readouterr().out
    assert code == 0 and "Trained 300 steps" in output
    assert f"Eval at step 300: mean reward {best.value:.1f} " in output


def test_running_again_with_more_trials_runs_only_the_missing_one(two_trials, tmp_path, capsys):
    directory, _ = two_trials
    shutil.copy(directory / "study.log", tmp_path / "study.log")
    assert cli.main(tune(tmp_path, "--trials", "3")) == 0
    assert "2 of 3 trials finished; resuming with the 1 still missing" in capsys.readouterr().out
    study = load(tmp_path / "study.log")
    assert len(study.trials) == 3 and study.trials[2].user_attrs["config"]["seed"] == 2
    first = load(directory / "study.log").trials
    assert [t.params for t in study.trials[:2]] == [t.params for t in first]
    assert cli.main(tune(tmp_path, "--trials", "3")) == 0
    assert "3 of 3 trials finished; nothing to run" in capsys.readouterr().out
    assert len(load(tmp_path / "study.log").trials) == 3


def test_a_study_is_continued_only_with_the_settings_it_was_started_with(
    two_trials, tmp_path, capsys
):
    directory, _ = two_trials
    shutil.copy(directory / "study.log", tmp_path / "study.log")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(tune(tmp_path, "--trials", "3", "--steps", "400", "--lr", "0.001"))
    error = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "--lr sampled (now 0.001), --steps 300 (now 400)" in error
    assert len(load(tmp_path / "study.log").trials) == 2


# --------------------------------------------------------------------------- the sampler


def test_sampled_configs_are_valid_and_cover_the_search_space():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    configs = [tuning.sample_config(study.ask(), {"steps": 1000, "seed": 7}) for _ in range(200)]
    assert [config.seed for config in configs] == [7 + number for number in range(200)]
    for config in configs:
        assert isinstance(config, DQNConfig) and 1e-5 <= config.lr <= 1e-2
        assert config.train_interval // 8 <= config.gradient_steps <= config.train_interval
        assert set(config.hidden) <= {32, 64, 128, 256} and len(set(config.hidden)) == 1
        assert config.target_update in (10, 100, 1000, 5000, 10000) or (
            1e-3 <= config.target_update <= 0.1
        )
        assert 0 <= config.eps_end <= 0.2 and 0.05 <= config.eps_fraction <= 0.5
    for name in tuning.SAMPLED_FIELDS:
        assert len({getattr(config, name) for config in configs}) > 1, name
    env = gymnasium.make("CartPole-v1")
    for config in configs[:3]:
        assert build_agent(env, config).gradient_steps == config.gradient_steps
    env.close()


def test_fixed_settings_are_not_sampled():
    fixed = {"lr": 0.5, "hidden": (7,), "target_update": 0.3, "train_interval": 8}
    trial = optuna.create_study().ask()
    config = tuning.sample_config(trial, dict(fixed, double=False, steps=123))
    assert (config.lr, config.hidden, config.target_update, config.train_interval) == (
        0.5,
        (7,),
        0.3,
        8,
    )
    assert not config.double and config.steps == 123 and 1 <= config.gradient_steps <= 8
    assert {"lr", "layers", "width", "target_update_kind", "train_interval", "double"}.isdisjoint(
        trial.params
    )
    everything = {name: getattr(DQNConfig(), name) for name in tuning.SAMPLED_FIELDS}
    untouched = optuna.create_study().ask()
    assert tuning.sample_config(untouched, everything) == DQNConfig(**everything)
    assert untouched.params == {}


def test_a_bad_fixed_setting_is_refused_by_the_config():
    with pytest.raises(ValueError, match="batch_size: expected an integer >= 1, got 0"):
        tuning.sample_config(optuna.create_study().ask(), {"batch_size": 0})


def test_the_command_line_fixes_the_flags_given_and_samples_the_rest():
    assert cli.TUNED_FIELDS == tuning.SAMPLED_FIELDS
    args = cli.build_parser().parse_args(
        ["tune", "CartPole-v1", "--trials", "1", "--steps", "20000", "--double"]
    )
    fixed = cli.fixed_settings(args)
    assert fixed["steps"] == 20000 and fixed["double"] is True and fixed["warmup"] == 1000
    assert set(tuning.SAMPLED_FIELDS) - set(fixed) == set(tuning.SAMPLED_FIELDS) - {"double"}


# --------------------------------------------------------------------------- pruning


def test_the_median_pruner_judges_from_a_third_of_the_steps_on():
    study = optuna.create_study(direction="maximize", pruner=tuning.make_pruner(300))
    for _ in range(tuning.PRUNER_STARTUP_TRIALS):
        study.add_trial(create_trial(value=100.0, intermediate_values={50: 100.0, 150: 100.0}))
    trial = study.ask()
    trial.report(1.0, 50)
    assert not trial.should_prune()  # step 50 is before a third of 300
    trial.report(1.0, 150)
    assert trial.should_prune()


def test_a_trial_behind_the_median_is_pruned_and_stops_training_there():
    study = optuna.create_study(direction="maximize", pruner=tuning.make_pruner(300))
    for _ in range(tuning.PRUNER_STARTUP_TRIALS):
        study.add_trial(create_trial(value=1e3, intermediate_values={150: 1e3, 300: 1e3}))
    fixed = {"steps": 300, "warmup": 100, "hidden": (16,)}
    spec = tuning.TuningSpec("CartPole-v1", fixed, eval_interval=150, eval_episodes=2)
    study.optimize(tuning.objective(spec), n_trials=1)
    trial = study.trials[-1]
    assert trial.state == TrialState.PRUNED
    assert list(trial.intermediate_values) == [150]
    assert trial.user_attrs["steps_trained"] == 150
    assert "pruned at step 150" in tuning.trials_table(study)


# --------------------------------------------------------------------------- the command


def test_tune_help_starts_neither_tensorflow_nor_optuna():
    done = subprocess.run(
        [sys.executable, "-c"]
        + [
            "import sys\n"
            "from kerasdqn.cli import main\n"
            "try:\n"
            "    main(['tune', '--help'])\n"
            "except SystemExit:\n"
            "    pass\n"
            "print('tensorflow' in sys.modules, 'optuna' in sys.modules)\n"
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("False False")
    assert re.search(r"--lr LR\s+Adam learning rate at start \(default: sampled\)", done.stdout)
    assert "--trials TRIALS" in done.stdout


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--storage", "."], "--storage '.' is a directory"),
        (["--storage", "a-file/study.log"], "--storage: "),
        (["--storage", "junk.log"], "--storage 'junk.log': cannot open it as a study"),
        (["--out", "."], "--out '.' is a directory"),
        (["--eval-interval", "500"], "--eval-interval: expected 1 to --steps (300), got 500"),
        (["--batch-size", "0"], "--batch-size: expected an integer >= 1, got 0"),
        (["--trials", "0"], "argument --trials: expected 1 or more, got 0"),
    ],
)
def test_bad_input_exits_with_a_one_line_message(flags, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("")
    (tmp_path / "junk.log").write_text("not a journal\n")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["tune", "CartPole-v1", "--trials", "1", *TINY, *flags])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert message in error and "Traceback" not in error
    assert not (tmp_path / "runs" / "tune" / "CartPole-v1" / "study.log").exists()


def test_an_unknown_environment_is_reported_before_any_file_is_made(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        cli.main(["tune", "NoSuchEnv-v0", "--trials", "1"])
    assert "cannot make environment 'NoSuchEnv-v0'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_without_optuna_the_command_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna raises ImportError
    monkeypatch.delitem(sys.modules, "kerasdqn.tuning")
    monkeypatch.delattr(kerasdqn, "tuning")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["tune", "CartPole-v1", "--trials", "1"])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "kerasdqn tune needs optuna: pip install -e '.[tune]'" in error
    assert "Traceback" not in error


def test_ctrl_c_fails_the_running_trial_keeps_the_study_and_exits_130(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "kerasdqn.cli", "tune", "CartPole-v1", "--trials", "2"]
        + ["--steps", "100000", "--warmup", "100", "--storage", str(tmp_path / "study.log")]
        + ["--out", str(tmp_path / "best.toml")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert "running 2 trials" in process.stdout.readline()
    time.sleep(3)  # inside trial 0
    process.send_signal(signal.SIGINT)
    output, error = process.communicate(timeout=60)
    assert process.returncode == 130, error
    assert "Interrupted by SIGINT: trial 0 is marked failed" in output
    assert "run the same command again to resume it" in output and "Traceback" not in error
    assert [trial.state for trial in load(tmp_path / "study.log").trials] == [TrialState.FAIL]
    assert not (tmp_path / "best.toml").exists()
