"""The command a user runs every day: quick answers, quiet start-up, plain output in logs,
honest interruption and resumption from the command line."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "train_cartpole.py"


def python(code: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, **kwargs
    )


def kerasdqn(*args, cwd, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "kerasdqn.cli", *map(str, args)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def test_help_version_and_bad_flags_answer_without_starting_tensorflow():
    done = python(
        "import sys\n"
        "from kerasdqn.cli import main\n"
        "for argv in (['--version'], ['train', '--help'], "
        "['train', 'CartPole-v1', '--batch-size', '0']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as stop:\n"
        "        print('exit', stop.code)\n"
        "print('tensorflow' in sys.modules)\n"
    )
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "kerasdqn 0.1.0"
    assert lines[-1] == "False"
    assert lines.count("exit 0") == 2 and "exit 2" in lines
    assert "kerasdqn train: error: --batch-size: expected an integer >= 1, got 0" in done.stderr


def test_a_run_into_a_pipe_prints_plain_lines_and_no_tensorflow_noise(tmp_path):
    process = kerasdqn(
        "train",
        "CartPole-v1",
        "--steps",
        "600",
        "--warmup",
        "100",
        "--episodes",
        "1",
        cwd=tmp_path,
    )
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert "\x1b[" not in stdout and "\r" not in stdout
    assert "Interval 1: steps 0-600" in stdout
    assert "I0000" not in stderr and "E0000" not in stderr and "cuInit" not in stderr


def test_plot_writes_its_default_image_inside_the_log_directory(tmp_path):
    process = kerasdqn(
        "train",
        "CartPole-v1",
        "--steps",
        "300",
        "--warmup",
        "100",
        "--episodes",
        "0",
        cwd=tmp_path,
    )
    process.communicate(timeout=300)
    plot = kerasdqn("plot", "runs/CartPole-v1", cwd=tmp_path)
    stdout, stderr = plot.communicate(timeout=120)
    assert plot.returncode == 0, stderr
    assert (tmp_path / "runs" / "CartPole-v1" / "curve.png").is_file()
    assert sorted(os.listdir(tmp_path)) == ["runs", "weights"]


def interrupt_when_training(process: subprocess.Popen, signal_number: int) -> None:
    """Send the signal once the run reports it is training, then a little later."""
    lines = iter(process.stdout.readline, "")
    assert any(line.startswith("Training for") for line in lines)
    time.sleep(3.0)
    process.send_signal(signal_number)


def test_ctrl_c_reports_the_steps_done_exits_130_and_resume_finishes_the_run(tmp_path):
    common = ["--steps", "30000", "--warmup", "100", "--episodes", "1", "--verbose", "2"]
    checkpoints = tmp_path / "checkpoints"
    first = kerasdqn("train", "CartPole-v1", *common, "--checkpoint-dir", checkpoints, cwd=tmp_path)
    interrupt_when_training(first, signal.SIGINT)
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 130, stderr
    with h5py.File(checkpoints / "checkpoint.h5", "r") as handle:
        done = int(handle.attrs["step"])
    assert 0 < done < 30000
    assert f"Interrupted by SIGINT after {done} of 30000 steps" in stdout
    assert "no greedy evaluation" in stdout and "Greedy evaluation" not in stdout
    assert f"Checkpoint:  {checkpoints / 'checkpoint.h5'} (continue with --resume)" in stdout

    second = kerasdqn(
        "train",
        "CartPole-v1",
        "--steps",
        "30000",
        "--warmup",
        "100",
        "--episodes",
        "1",
        "--verbose",
        "0",
        "--checkpoint-dir",
        checkpoints,
        "--resume",
        cwd=tmp_path,
    )
    stdout, stderr = second.communicate(timeout=600)
    assert second.returncode == 0, stderr
    assert f"Trained {30000 - done} steps" in stdout
    with h5py.File(checkpoints / "checkpoint.h5", "r") as handle:
        assert int(handle.attrs["step"]) == 30000


def test_sigterm_stops_the_script_with_exit_status_143(tmp_path):
    script = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--steps", "30000", "--warmup", "100", "--verbose", "2"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    interrupt_when_training(script, signal.SIGTERM)
    stdout, stderr = script.communicate(timeout=300)
    assert script.returncode == 143, stderr
    assert "Interrupted by SIGTERM after" in stdout
    assert (tmp_path / "weights" / "dqn_CartPole-v1.h5").is_file()


def test_resume_without_a_checkpoint_says_what_is_missing(tmp_path):
    process = kerasdqn(
        "train", "CartPole-v1", "--resume", "--checkpoint-dir", tmp_path / "none", cwd=tmp_path
    )
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2
    assert "--resume: no checkpoint at" in stderr


def test_export_writes_a_savedmodel_of_the_shipped_weights_and_refuses_to_overwrite(tmp_path):
    from kerasdqn.cli import main

    weights = ROOT / "weights" / "pretrained_cartpole.h5"
    out = tmp_path / "exported"
    argv = ["export", "CartPole-v1", "--weights", str(weights), "--out", str(out)]
    assert main(argv) == 0
    assert (out / "saved_model.pb").is_file()
    done = subprocess.run(
        [sys.executable, "-m", "kerasdqn.cli", *argv], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert "already exists; pass overwrite=True" in done.stderr


def test_training_evaluates_on_the_way_keeps_the_best_weights_and_logs_them(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from kerasdqn.training import best_weights_path

    weights = tmp_path / "weights" / "dqn.h5"
    process = kerasdqn(
        "train",
        "CartPole-v1",
        "--steps",
        "600",
        "--warmup",
        "100",
        "--eval-interval",
        "300",
        "--eval-episodes",
        "2",
        "--episodes",
        "1",
        "--logdir",
        tmp_path / "runs",
        "--weights",
        weights,
        cwd=tmp_path,
    )
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert "Eval at step 300: mean reward" in stdout and "Eval at step 600" in stdout
    assert "Best evaluation during training: mean" in stdout
    best = Path(best_weights_path(str(weights)))
    assert best == tmp_path / "weights" / "dqn_best.h5" and best.is_file()
    with h5py.File(best) as handle:
        assert len(handle.keys()) > 0
    steps = []
    for event_file in (tmp_path / "runs").iterdir():
        events = EventAccumulator(str(event_file), size_guidance={"tensors": 0}).Reload()
        if "eval/mean_reward" in events.Tags()["tensors"]:
            steps += [event.step for event in events.Tensors("eval/mean_reward")]
    assert steps == [300, 600]


def test_eval_interval_zero_turns_evaluation_during_training_off(tmp_path):
    process = kerasdqn(
        "train",
        "CartPole-v1",
        "--steps",
        "300",
        "--warmup",
        "100",
        "--eval-interval",
        "0",
        "--episodes",
        "1",
        "--logdir",
        tmp_path / "runs",
        "--weights",
        tmp_path / "dqn.h5",
        cwd=tmp_path,
    )
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert "Eval at step" not in stdout and "Best evaluation" not in stdout
    assert sorted(path.name for path in tmp_path.iterdir()) == ["dqn.h5", "runs"]


def test_n_envs_trains_on_a_vector_env_and_counts_the_steps_of_all(tmp_path):
    process = kerasdqn(
        "train",
        "CartPole-v1",
        "--n-envs",
        "4",
        "--steps",
        "800",
        "--warmup",
        "200",
        "--episodes",
        "1",
        "--eval-interval",
        "0",
        "--verbose",
        "2",
        "--no-preset",
        cwd=tmp_path,
    )
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert "Trained 800 steps" in stdout
    assert "Greedy evaluation over 1 episodes" in stdout
    assert (tmp_path / "weights" / "dqn_CartPole-v1.h5").is_file()


def test_n_envs_with_actors_is_refused_naming_the_flag_to_use(tmp_path):
    pytest.importorskip("ray")
    process = kerasdqn(
        "train", "CartPole-v1", "--n-envs", "2", "--actors", "2", "--no-preset", cwd=tmp_path
    )
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 2
    assert "--n-envs" in stderr and "--envs-per-actor" in stderr
