"""Callbacks: loggers, History, FileLogger, checkpoints, Keras callbacks, visualization."""

import json
import re

import h5py
import keras
import numpy as np
import pytest

from kerasdqn import (
    Callback,
    DQNAgent,
    FileLogger,
    ModelIntervalCheckpoint,
    SequentialMemory,
    build_mlp,
)


@pytest.fixture
def agent():
    agent = DQNAgent(
        build_mlp((1, 4), 2, (8,)),
        nb_actions=2,
        memory=SequentialMemory(1000),
        nb_steps_warmup=20,
        seed=0,
    )
    agent.compile("adam", metrics=["mae"])
    return agent


def test_verbose_1_shows_a_progress_bar_per_interval_and_a_summary(agent, cartpole, capsys):
    agent.fit(cartpole, nb_steps=300, verbose=1, log_interval=100)
    output = capsys.readouterr().out
    assert "Training for 300 steps ..." in output
    for interval, steps in [(1, 0), (2, 100), (3, 200)]:
        assert f"Interval {interval} ({steps} steps performed)" in output
    assert re.search(r"\d+ episodes - episode_reward: [\d.]+ \[[\d.]+, [\d.]+\] - loss: ", output)
    assert "steps/s" in output
    assert re.search(r"done, took [\d.]+ seconds", output)


def test_verbose_2_prints_keras_rl_episode_lines(agent, cartpole, capsys):
    history = agent.fit(cartpole, nb_steps=200, verbose=2)
    lines = [line for line in capsys.readouterr().out.splitlines() if "episode:" in line]
    assert len(lines) == len(history.history["episode_reward"])
    first = history.history
    assert re.match(
        rf"\s*{first['nb_steps'][0]}/200: episode: 1, duration: [\d.]+s, episode steps: "
        rf"\s*{first['nb_episode_steps'][0]}, steps per second: \s*\d+, episode reward: "
        rf"\s*{first['episode_reward'][0]:.3f}, mean reward: \s*1\.000 \[ 1\.000,  1\.000\], "
        r"mean action: [\d.]+ \[[\d.]+, [\d.]+\],  loss: (--|[\d.]+), mae: (--|[\d.]+), "
        r"mean_q: (--|[\d.-]+)$",
        lines[0],
    )
    assert re.search(r"loss: [\d.]+, mae: [\d.]+, mean_q: [\d.-]+$", lines[-1])


def test_verbose_0_prints_nothing(agent, cartpole, capsys):
    agent.fit(cartpole, nb_steps=50, verbose=0)
    agent.test(cartpole, nb_episodes=1, visualize=False, verbose=0)
    assert capsys.readouterr().out == ""


def test_history_holds_one_value_per_episode_for_every_key(agent, cartpole):
    history = agent.fit(cartpole, nb_steps=300, verbose=0)
    counts = {key: len(values) for key, values in history.history.items()}
    assert set(counts) == {
        "episode_reward",
        "nb_episode_steps",
        "nb_steps",
        "loss",
        "mae",
        "mean_q",
    }
    assert len(set(counts.values())) == 1
    assert history.episode == list(range(counts["loss"]))
    assert np.diff(history.history["nb_steps"]).tolist() == history.history["nb_episode_steps"][1:]


def test_file_logger_writes_episode_logs_as_json(agent, cartpole, tmp_path):
    path = tmp_path / "log.json"
    history = agent.fit(cartpole, nb_steps=200, verbose=0, callbacks=[FileLogger(path)])
    data = json.loads(path.read_text())
    assert data["episode_reward"] == history.history["episode_reward"]
    assert data["episode"] == list(range(len(history.history["episode_reward"])))
    assert all(value is None for value in data["loss"][:1])  # warm-up: no loss yet
    assert all(duration > 0 for duration in data["duration"])


def test_file_logger_columns_line_up_when_some_episodes_lack_a_key(tmp_path):
    """With a life lost as an episode's end, only the episodes that end a game carry a
    game_score: the column holds null for the others, one entry per episode."""
    logger = FileLogger(str(tmp_path / "log.json"))
    logger.on_train_begin()
    episodes = [
        {"episode_reward": 1.0},
        {"episode_reward": 2.0, "game_score": 7.0},
        {"episode_reward": 0.0},
        {"episode_reward": 3.0, "game_score": 4.0},
    ]
    for index, logs in enumerate(episodes):
        logger.on_episode_begin(index)
        logger.on_episode_end(index, logs)
    logger.on_train_end()
    with open(tmp_path / "log.json") as handle:
        data = json.load(handle)
    assert data["episode"] == [0, 1, 2, 3]
    assert data["game_score"] == [None, 7.0, None, 4.0]
    assert {len(column) for column in data.values()} == {4}


def test_model_interval_checkpoint_saves_every_interval(agent, cartpole, tmp_path):
    pattern = str(tmp_path / "weights_{step}.h5f")
    agent.fit(
        cartpole, nb_steps=100, verbose=0, callbacks=[ModelIntervalCheckpoint(pattern, interval=40)]
    )
    saved = sorted(path.name for path in tmp_path.iterdir())
    assert saved == ["weights_40.h5f", "weights_80.h5f"]
    with h5py.File(tmp_path / "weights_80.h5f", "r") as handle:
        assert "layer_names" in handle.attrs


def test_model_interval_checkpoint_formats_the_step_and_the_step_logs(agent, cartpole, tmp_path):
    pattern = str(tmp_path / "w_{step:05d}_{episode}_{reward:.0f}.h5f")
    agent.fit(
        cartpole, nb_steps=40, verbose=0, callbacks=[ModelIntervalCheckpoint(pattern, interval=20)]
    )
    names = sorted(path.name for path in tmp_path.iterdir())
    assert len(names) == 2
    assert re.fullmatch(r"w_00020_\d+_1\.h5f", names[0])  # CartPole pays 1 a step
    assert re.fullmatch(r"w_00040_\d+_1\.h5f", names[1])


def test_checkpoint_directory_must_exist_before_training_starts(agent, cartpole, tmp_path):
    callback = ModelIntervalCheckpoint(str(tmp_path / "missing" / "w.h5"), interval=10)
    with pytest.raises(FileNotFoundError, match="filepath: the directory"):
        agent.fit(cartpole, nb_steps=100, verbose=0, callbacks=[callback])
    assert agent.step == 0


def test_callbacks_see_every_hook_in_order(agent, cartpole):
    class Recorder(Callback):
        def __init__(self):
            super().__init__()
            self.events = []

        def on_train_begin(self, logs=None):
            self.events.append("train_begin")

        def on_episode_begin(self, episode, logs=None):
            self.events.append("episode_begin")

        def on_step_begin(self, step, logs=None):
            self.events.append("step_begin")

        def on_action_begin(self, action, logs=None):
            self.events.append("action_begin")

        def on_action_end(self, action, logs=None):
            self.events.append("action_end")

        def on_step_end(self, step, logs=None):
            assert set(logs) == {"action", "observation", "reward", "metrics", "episode", "info"}
            self.events.append("step_end")

        def on_episode_end(self, episode, logs=None):
            self.events.append("episode_end")

        def on_train_end(self, logs=None):
            self.events.append(("train_end", logs["did_abort"]))

    recorder = Recorder()
    agent.fit(cartpole, nb_steps=30, verbose=0, callbacks=[recorder])
    events = recorder.events
    assert events[:6] == [
        "train_begin",
        "episode_begin",
        "step_begin",
        "action_begin",
        "action_end",
        "step_end",
    ]
    assert events.count("step_begin") == events.count("step_end") == 30
    assert events[-1] == ("train_end", False)
    assert recorder.agent is agent and recorder.env is cartpole


def test_plain_keras_callbacks_get_epochs_for_episodes(agent, cartpole):
    class EpisodeCounter(keras.callbacks.Callback):
        episodes = 0

        def on_epoch_end(self, epoch, logs=None):
            EpisodeCounter.episodes += 1

    history = agent.fit(cartpole, nb_steps=150, verbose=0, callbacks=[EpisodeCounter()])
    assert EpisodeCounter.episodes == len(history.history["episode_reward"]) > 0


def test_visualize_without_render_mode_warns_once_and_plays_on(agent, cartpole):
    with pytest.warns(UserWarning, match="without a render mode") as caught:
        history = agent.test(cartpole, nb_episodes=2, visualize=True, verbose=0)
    assert len(caught) == 1
    assert len(history.history["episode_reward"]) == 2
