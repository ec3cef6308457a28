"""The ``kerasdqn`` command (train, test, plot, videos) and scripts/train_cartpole.py, run for
real on short CartPole trainings."""

import logging
import re
import subprocess
import sys
from pathlib import Path

import gymnasium
import h5py
import numpy as np
import pytest
from matplotlib.image import imread

from kerasdqn import plotting
from kerasdqn.cli import main
from kerasdqn.weights import load_model_weights

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``kerasdqn train CartPole-v1 --steps 2000``: its weights file and log directory."""
    directory = tmp_path_factory.mktemp("train")
    weights, logdir = directory / "weights" / "dqn.h5", directory / "runs" / "cartpole"
    main(
        ["train", "CartPole-v1", "--steps", "2000", "--episodes", "2", "--verbose", "0"]
        + ["--weights", str(weights), "--logdir", str(logdir)]
    )
    return weights, logdir


def test_train_writes_hdf5_weights_and_tensorboard_events(trained):
    weights, logdir = trained
    with h5py.File(weights, "r") as handle:
        names = [
            name.decode() if isinstance(name, bytes) else name
            for name in handle.attrs["layer_names"]
        ]
        assert len(names) == 4 and names[0].startswith("flatten") and names[-1] == "q_values"
        assert handle["q_values"]["q_values/kernel:0"].shape == (256, 2)
    assert plotting.event_files(logdir)
    scalars = plotting.read_scalars(logdir)
    reward_steps, rewards = scalars["episode/reward"]
    assert len(rewards) > 10 and reward_steps[-1] <= 2000 and rewards.min() >= 1
    assert len(scalars["train/loss"][0]) > 0


def test_train_uses_env_id_paths_by_default(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    main(["train", "FrozenLake-v1", "--steps", "300", "--warmup", "100", "--episodes", "1"])
    assert (tmp_path / "weights" / "dqn_FrozenLake-v1.h5").is_file()
    assert plotting.event_files(tmp_path / "runs" / "FrozenLake-v1")
    assert "Trained 300 steps" in capsys.readouterr().out


def test_test_command_prints_each_episode_reward_in_a_subprocess(trained, tmp_path):
    weights, _ = trained
    result = subprocess.run(
        [sys.executable, "-m", "kerasdqn.cli", "test", "CartPole-v1", "--weights", str(weights)]
        + ["--episodes", "3"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    rewards = [float(reward) for reward in _episode_rewards(result.stdout)]
    assert len(rewards) == 3 and min(rewards) >= 1
    assert f"Mean reward over 3 episodes: {np.mean(rewards):.1f}" in result.stdout


def _episode_rewards(output: str) -> list[str]:
    return [
        line.split("reward: ")[1].split(",")[0]
        for line in output.splitlines()
        if line.startswith("Episode ")
    ]


def test_test_record_video_writes_one_mp4_per_episode(trained, tmp_path, capsys):
    pytest.importorskip("moviepy")
    weights, _ = trained
    videos = tmp_path / "videos"
    main(["test", "CartPole-v1", "--weights", str(weights), "--episodes", "2"])
    played = _episode_rewards(capsys.readouterr().out)
    main(
        ["test", "CartPole-v1", "--weights", str(weights), "--episodes", "2"]
        + ["--record-video", str(videos)]
    )
    assert _episode_rewards(capsys.readouterr().out) == played
    files = sorted(videos.glob("*.mp4"))
    assert [file.name for file in files] == [
        "CartPole-v1-episode-0.mp4",
        "CartPole-v1-episode-1.mp4",
    ]
    for file in files:
        assert file.read_bytes()[4:8] == b"ftyp"  # an MP4 container
        assert file.stat().st_size > 1000


def test_render_without_a_display_says_so_and_plays(trained, monkeypatch, caplog, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    weights, _ = trained
    with caplog.at_level(logging.WARNING):
        main(["test", "CartPole-v1", "--weights", str(weights), "--episodes", "1", "--render"])
    assert "--render: no display found" in caplog.text
    assert len(_episode_rewards(capsys.readouterr().out)) == 1


def test_plot_writes_a_png_of_rewards_and_loss(trained, tmp_path, capsys):
    _, logdir = trained
    output = tmp_path / "plots" / "curve.png"
    main(["plot", str(logdir), "-o", str(output), "--window", "5"])
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, channels = imread(output).shape
    assert 600 <= width <= 2000 and 400 <= height <= 2000 and channels in (3, 4)
    assert f"Wrote {output}" in capsys.readouterr().out


def test_moving_average_averages_the_last_window_values():
    np.testing.assert_allclose(plotting.moving_average([1, 2, 3, 4], 2), [1, 1.5, 2.5, 3.5])
    np.testing.assert_allclose(plotting.moving_average([4, 2, 0], 10), [4, 3, 2])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "NoSuchEnv-v0"], "cannot make environment 'NoSuchEnv-v0'"),
        (["train", "Pendulum-v1"], "DQN needs a Discrete one"),
        (["test", "CartPole-v1", "--weights", "missing.h5"], "'missing.h5': no such file"),
        (["plot", "."], "holds no TensorBoard event files"),
        (["plot", "no-such-dir"], "is not a directory"),
        (
            ["train", "CartPole-v1", "--memory", str(10**13), "--steps", "10"],
            "--memory: 10000000000000 observations of shape (4,) and dtype float32 need",
        ),
    ],
)
def test_bad_input_exits_with_a_clear_message(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert f"kerasdqn {argv[0]}: error: " in error and message in error
    assert "Traceback" not in error


def test_test_with_another_architecture_names_the_fix(trained, capsys):
    weights, _ = trained
    with pytest.raises(SystemExit):
        main(["test", "CartPole-v1", "--weights", str(weights), "--hidden", "64"])
    error = capsys.readouterr().err
    assert "the same --hidden and --dueling flags" in error and "2 actions" in error


def test_test_with_a_checkpoint_as_weights_says_what_the_file_is(tmp_path, capsys):
    checkpoints = tmp_path / "checkpoints"
    main(
        ["train", "CartPole-v1", "--steps", "300", "--warmup", "100", "--episodes", "1"]
        + ["--verbose", "0", "--weights", str(tmp_path / "dqn.h5"), "--logdir", str(tmp_path)]
        + ["--checkpoint-dir", str(checkpoints), "--checkpoint-interval", "200"]
    )
    with pytest.raises(SystemExit):
        main(["test", "CartPole-v1", "--weights", str(checkpoints / "checkpoint.h5")])
    error = capsys.readouterr().err
    assert "it is a training checkpoint: resume from it with load_checkpoint" in error
    assert "--hidden" not in error  # the network is not what is wrong


def test_plot_points_at_the_runs_inside_a_parent_directory(trained, capsys):
    _, logdir = trained
    with pytest.raises(SystemExit):
        main(["plot", str(logdir.parent)])
    assert "these runs inside it do: cartpole" in capsys.readouterr().err


def test_script_build_model_loads_the_weights_the_script_saves(tmp_path, monkeypatch):
    weights = tmp_path / "dqn_cartpole.h5"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train_cartpole.py"), "--steps", "1500"]
        + ["--episodes", "1", "--verbose", "0", "--weights", str(weights)]
        + ["--logdir", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Trained 1500 steps" in result.stdout
    assert "Greedy evaluation over 1 episodes" in result.stdout

    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    from train_cartpole import build_model

    model = build_model(gymnasium.make("CartPole-v1"))
    load_model_weights(model, weights)
    with h5py.File(weights, "r") as handle:
        kernel = np.asarray(handle["q_values"]["q_values/kernel:0"])
    np.testing.assert_array_equal(model.get_layer("q_values").kernel.numpy(), kernel)


def test_the_shipped_pretrained_weights_balance_the_pole(monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    from train_cartpole import main

    main(
        [
            "--test",
            "--weights",
            str(ROOT / "weights" / "pretrained_cartpole.h5"),
            "--episodes",
            "3",
            "--seed",
            "7",
        ]
    )
    rewards = [float(value) for value in re.findall(r"reward: ([\d.]+)", capsys.readouterr().out)]
    assert len(rewards) == 3
    assert np.mean(rewards) >= 475
