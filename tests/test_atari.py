"""Atari from pixels, for real (ale-py's ROMs, short runs): keras-rl's dqn_atari.py example on
today's stack, make_atari's preprocessing (frames, no-op starts, FIRE, reward clipping, a life
lost as an episode's end), the game score in History and TensorBoard, the replay cost of 84x84
frames, and ``kerasdqn train ALE/Pong-v5`` and scripts/train_atari.py end to end."""

import json
import subprocess
import sys
from pathlib import Path

import gymnasium
import keras
import numpy as np
import pytest

from kerasdqn import DQNAgent, EpsGreedyQPolicy, Processor, SequentialMemory
from kerasdqn.callbacks import GameScoreLogger
from kerasdqn.cli import main
from kerasdqn.config import DQNConfig
from kerasdqn.envs import (
    LifeLossEpisodes,
    is_atari_id,
    make_atari,
    make_env,
    register_atari_envs,
)
from kerasdqn.errors import UsageError
from kerasdqn.networks import nature_cnn
from kerasdqn.plotting import read_scalars
from kerasdqn.presets import available_presets, preset_path, read_preset
from kerasdqn.training import build_agent, make_evaluation_env

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ keras-rl's example


def keras_rl_dqn_atari(env_name, mode, workdir, weights=None, nb_steps=2000):
    """keras-rl's examples/dqn_atari.py with only the changes today's stack forces (each
    marked "now:"), and a run scaled down to ``nb_steps`` steps: a memory of 2,000 entries, a
    warm-up of 1,500 steps, a target copy every 500 steps, checkpoints every 1,000 steps and
    one test episode. Returns the agent, its fit/test History and its initial weights."""
    import keras.backend as K
    from keras.layers import Activation, Convolution2D, Dense, Flatten, Permute
    from keras.models import Sequential
    from keras.optimizers import Adam
    from PIL import Image

    from kerasdqn.agents.dqn import DQNAgent  # now: kerasdqn instead of rl
    from kerasdqn.callbacks import FileLogger, ModelIntervalCheckpoint
    from kerasdqn.core import Processor
    from kerasdqn.memory import SequentialMemory
    from kerasdqn.policy import EpsGreedyQPolicy, LinearAnnealedPolicy

    INPUT_SHAPE = (84, 84)
    WINDOW_LENGTH = 4

    class AtariProcessor(Processor):
        def process_observation(self, observation):
            assert observation.ndim == 3  # (height, width, channel)
            img = Image.fromarray(observation)
            img = img.resize(INPUT_SHAPE).convert("L")  # resize and convert to grayscale
            processed_observation = np.array(img)
            assert processed_observation.shape == INPUT_SHAPE
            return processed_observation.astype("uint8")  # saves storage in experience memory

        def process_state_batch(self, batch):
            processed_batch = batch.astype("float32") / 255.0
            return processed_batch

        def process_reward(self, reward):
            return np.clip(reward, -1.0, 1.0)

    register_atari_envs()  # now: gymnasium registers ale-py's games on request
    env = gymnasium.make(env_name)
    np.random.seed(123)
    env.reset(seed=123)  # now: env.seed(123) is gone
    nb_actions = int(env.action_space.n)  # now: int(n), gymnasium's n is a NumPy integer

    input_shape = (WINDOW_LENGTH,) + INPUT_SHAPE
    model = Sequential()
    if K.image_data_format() == "channels_last":  # now: image_dim_ordering() == 'tf'
        model.add(Permute((2, 3, 1), input_shape=input_shape))
    else:
        model.add(Permute((1, 2, 3), input_shape=input_shape))
    model.add(Convolution2D(32, (8, 8), strides=(4, 4)))
    model.add(Activation("relu"))
    model.add(Convolution2D(64, (4, 4), strides=(2, 2)))
    model.add(Activation("relu"))
    model.add(Convolution2D(64, (3, 3), strides=(1, 1)))
    model.add(Activation("relu"))
    model.add(Flatten())
    model.add(Dense(512))
    model.add(Activation("relu"))
    model.add(Dense(nb_actions))
    model.add(Activation("linear"))

    memory = SequentialMemory(limit=2000, window_length=WINDOW_LENGTH)
    processor = AtariProcessor()
    policy = LinearAnnealedPolicy(
        EpsGreedyQPolicy(),
        attr="eps",
        value_max=1.0,
        value_min=0.1,
        value_test=0.05,
        nb_steps=nb_steps // 2,
    )
    dqn = DQNAgent(
        model=model,
        nb_actions=nb_actions,
        policy=policy,
        memory=memory,
        processor=processor,
        nb_steps_warmup=1500,
        gamma=0.99,
        target_model_update=500,
        train_interval=4,
        delta_clip=1.0,
    )
    dqn.compile(Adam(learning_rate=0.00025), metrics=["mae"])  # now: learning_rate, not lr
    initial_weights = [w.copy() for w in dqn.model.get_weights()]  # for the test to compare

    weights_filename = str(workdir / f"dqn_{env_name.replace('/', '_')}_weights.h5f")
    if mode == "train":
        checkpoint_weights_filename = str(workdir / "dqn_weights_{step}.h5f")
        log_filename = str(workdir / "dqn_log.json")
        callbacks = [ModelIntervalCheckpoint(checkpoint_weights_filename, interval=1000)]
        callbacks += [FileLogger(log_filename, interval=100)]
        history = dqn.fit(env, callbacks=callbacks, nb_steps=nb_steps, log_interval=10000)
        dqn.save_weights(weights_filename, overwrite=True)
        dqn.test(env, nb_episodes=1, visualize=False)
    else:
        dqn.load_weights(weights or weights_filename)
        history = dqn.test(env, nb_episodes=1, visualize=False)
    env.close()
    return dqn, history, initial_weights


@pytest.mark.filterwarnings("ignore:Do not pass an `input_shape`")  # the example passes one
def test_keras_rl_dqn_atari_example_trains_saves_loads_and_tests(tmp_path):
    """On Pong rather than the example's Breakout: the example plays the raw game, where an
    untrained greedy player never presses FIRE to launch Breakout's ball, so its test game
    would run to the 27,000-step limit."""
    keras.utils.set_random_seed(123)
    agent, history, initial = keras_rl_dqn_atari("ALE/Pong-v5", "train", tmp_path)
    assert agent.step == 2000 and len(history.history["episode_reward"]) >= 1
    log = json.loads((tmp_path / "dqn_log.json").read_text())
    losses = [loss for loss in log["loss"] if loss is not None]
    assert losses and np.all(np.isfinite(losses))  # it learned after the warm-up
    trained = agent.model.get_weights()
    assert all(not np.array_equal(a, b) for a, b in zip(trained, initial))  # every layer moved
    assert (tmp_path / "dqn_weights_1000.h5f").is_file()
    assert (tmp_path / "dqn_weights_2000.h5f").is_file()
    loaded, test_history, _ = keras_rl_dqn_atari("ALE/Pong-v5", "test", tmp_path)
    for restored, saved in zip(loaded.model.get_weights(), trained):
        np.testing.assert_array_equal(restored, saved)
    assert len(test_history.history["episode_reward"]) == 1


# ------------------------------------------------------------------ replay of 84x84 frames


def test_an_84x84_uint8_memory_costs_7067_bytes_an_entry_7_07_gb_for_a_million():
    memory = SequentialMemory(limit=1000, window_length=4)
    frames = np.random.default_rng(0).integers(0, 256, (50, 84, 84), dtype=np.uint8)
    for step, frame in enumerate(frames):
        memory.append(frame, step % 6, 1.0, terminal=False)
    per_entry = memory.nbytes / memory.limit
    # the frame (84 * 84 uint8), the action (int32), the reward (float32), three flags (bool)
    assert per_entry == 84 * 84 + 4 + 4 + 3 == 7067
    assert per_entry * 1_000_000 <= 7.5e9
    batch = memory.sample_batch(8)
    assert batch.state0.dtype == np.uint8 and batch.state0.shape == (8, 4, 84, 84)


# ------------------------------------------------------------------ make_atari


def test_make_atari_gives_84x84_grey_uint8_frames():
    env = make_atari("ALE/Pong-v5", seed=0)
    try:
        assert env.observation_space == gymnasium.spaces.Box(0, 255, (84, 84), np.uint8)
        assert env.action_space == gymnasium.spaces.Discrete(6)
        observation, *_ = env.step(0)
        assert observation.shape == (84, 84) and observation.dtype == np.uint8
        assert env.unwrapped._frameskip == 1  # AtariPreprocessing does the skipping
    finally:
        env.close()
    small = make_atari("PongNoFrameskip-v4", seed=0, screen_size=42)
    assert small.observation_space.shape == (42, 42)
    small.close()


def frames_after_reset(env, seed):
    return env.reset(seed=seed)[1]["episode_frame_number"]


def test_no_op_starts_take_1_to_noop_max_frames_and_depend_on_the_seed():
    env = make_atari("ALE/Pong-v5", seed=0, fire_reset=False)
    starts = [frames_after_reset(env, seed) for seed in range(10)]
    assert all(1 <= frames <= 30 for frames in starts) and len(set(starts)) > 3
    assert frames_after_reset(env, 3) == starts[3]
    env.close()
    without = make_atari("ALE/Pong-v5", seed=0, noop_max=0, fire_reset=False)
    assert frames_after_reset(without, 0) == 0
    without.close()


def lives_after_noops(env, steps=300):
    return min(env.step(0)[4]["lives"] for _ in range(steps))


def test_fire_on_reset_launches_breakouts_ball():
    fired = make_atari("ALE/Breakout-v5", seed=0, noop_max=0)
    assert frames_after_reset(fired, 0) == 4  # one FIRE step of 4 frames
    assert lives_after_noops(fired) < 5  # the ball flew and the still paddle missed it
    waiting = make_atari("ALE/Breakout-v5", seed=0, noop_max=0, fire_reset=False)
    assert lives_after_noops(waiting) == 5  # no FIRE, no ball, no life lost
    fired.close(), waiting.close()


def test_fire_after_a_lost_life_launches_the_next_ball_so_a_still_player_loses_the_game():
    """A greedy agent that never presses FIRE used to sit out Breakout's 27,000-step limit
    after its first lost ball; now each ball is launched for it, and the still paddle misses
    all five."""
    env = make_atari("ALE/Breakout-v5", seed=0, noop_max=0)
    steps, terminated, truncated = 0, False, False
    while not (terminated or truncated) and steps < 2_000:
        _, _, terminated, truncated, info = env.step(0)  # NOOP
        steps += 1
    assert terminated and info["lives"] == 0
    assert info["episode"]["l"] == steps + 5  # the game's steps: FIRE after reset and 4 lives
    env.close()


def play_random_game(env, seed=0):
    """Random actions until the game ends: the rewards and the info of the last step."""
    rng, rewards = np.random.default_rng(seed), []
    while True:
        _, reward, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
        rewards.append(reward)
        if terminated or truncated:
            return np.array(rewards), info


def test_rewards_are_clipped_to_their_sign_and_the_game_score_is_not():
    clipped_rewards, clipped_info = play_random_game(make_atari("ALE/SpaceInvaders-v5", seed=3))
    rewards, info = play_random_game(make_atari("ALE/SpaceInvaders-v5", 3, clip_rewards=False))
    assert rewards.max() > 1  # invaders are worth 5 to 30 points
    np.testing.assert_array_equal(clipped_rewards, np.sign(rewards))
    assert clipped_info["episode"]["r"] == info["episode"]["r"] == rewards.sum()


def test_the_cli_scores_atari_games_by_their_real_score_and_trains_on_clipped_rewards():
    """``kerasdqn train``/``test`` play their greedy and evaluation games on
    ``make_evaluation_env``: unclipped, where training's ``make_env`` clips."""
    clipped, _ = play_random_game(make_env("ALE/SpaceInvaders-v5", seed=3))
    rewards, info = play_random_game(make_evaluation_env("ALE/SpaceInvaders-v5", seed=3))
    assert rewards.max() > 1 and rewards.sum() == info["episode"]["r"]
    np.testing.assert_array_equal(clipped, np.sign(rewards))


def test_a_processor_scaling_frames_to_floats_for_the_uint8_network_is_refused():
    """keras-rl's AtariProcessor divides by 255 in process_state_batch; cast back to the
    nature_cnn's uint8 every frame would be black. The agent says so instead."""

    class ScalingProcessor(Processor):
        def process_state_batch(self, batch):
            return batch.astype("float32") / 255.0

    agent = DQNAgent(
        nature_cnn(nb_actions=6),
        nb_actions=6,
        memory=SequentialMemory(100, window_length=4),
        processor=ScalingProcessor(),
    )
    with pytest.raises(TypeError, match="processor: process_state_batch returned float32 .* uint8"):
        agent.forward(np.zeros((84, 84), np.uint8))


def test_a_lost_life_ends_the_episode_while_the_game_and_its_score_go_on():
    env = make_atari("ALE/Breakout-v5", seed=0, terminal_on_life_loss=True, clip_rewards=False)
    lives, frames, total = [], [], 0.0
    while True:
        rewards, info = play_random_game(env, seed=len(lives))
        total += rewards.sum()
        lives.append(info["lives"])
        if "episode" in info:
            break
        frames.append(env.reset()[1]["episode_frame_number"])
    assert lives == [4, 3, 2, 1, 0]  # five episodes, one per life, in one game
    assert frames == sorted(frames) and frames[0] > 30  # resets continued the game
    assert info["episode"]["r"] == total
    env.close()


def test_atari_ids_are_routed_to_make_atari_and_others_are_not():
    assert is_atari_id("ALE/Pong-v5") and is_atari_id("ale_py:ALE/Pong-v5")
    assert is_atari_id("BreakoutNoFrameskip-v4") and not is_atari_id("CartPole-v1")
    for env_id in ("ALE/Pong-v5", "ale_py:ALE/Pong-v5"):
        env = make_env(env_id, seed=0)
        assert env.observation_space.shape == (84, 84)
        env.close()
    with pytest.raises(UsageError, match="not an Atari game"):
        make_atari("CartPole-v1", seed=0)
    with pytest.raises(UsageError, match="Pongg"):
        make_env("ALE/Pongg-v5", seed=0)
    with pytest.raises(ValueError, match="noop_max: expected an integer >= 0, got -1"):
        make_atari("ALE/Pong-v5", seed=0, noop_max=-1)


def frames_per_step(env):
    """The game frames one ``step`` plays, from a fresh game."""
    start = env.reset(seed=0)[1]["episode_frame_number"]
    return env.step(0)[4]["episode_frame_number"] - start


@pytest.mark.filterwarnings("ignore:.*is out of date")  # the v0 ids, still registered
@pytest.mark.parametrize(
    "env_id", ["Breakout-v4", "Breakout-v0", "BreakoutNoFrameskip-v4", "BreakoutNoFrameskip-v0"]
)
def test_ale_py_v0_and_v4_ids_get_make_ataris_preprocessing_and_frame_skip(env_id):
    assert is_atari_id(env_id) and is_atari_id(f"ale_py:{env_id}")
    env = make_env(env_id, seed=0)
    assert env.observation_space.shape == (84, 84)
    assert frames_per_step(env) == 4  # not v4's own 2 to 4 frames, then 4 times that
    env.close()


@pytest.mark.filterwarnings("ignore:.*is out of date")
def test_look_alike_ids_of_other_environments_are_not_atari_games():
    assert not is_atari_id("CartPole-v0") and not is_atari_id("FrozenLake-v1")
    assert make_env("CartPole-v0", seed=0).observation_space.shape == (4,)


def test_a_v4_id_is_an_atari_game_in_a_fresh_process_too():
    code = "from kerasdqn.envs import make_env; print(make_env('Pong-v4', 0).observation_space)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "Box(0, 255, (84, 84), uint8)"


def test_retired_deterministic_ids_are_refused_naming_the_id_to_use():
    with pytest.raises(UsageError, match="BreakoutNoFrameskip-v4 with make_atari's frame_skip=4"):
        make_env("BreakoutDeterministic-v4", seed=0)


def test_numpy_integer_seeds_work_and_other_seeds_are_refused_naming_seed():
    numpy_seeded, seeded = (make_atari("ALE/Pong-v5", seed) for seed in (np.int64(3), 3))
    starts = [
        [env.reset()[1]["episode_frame_number"] for _ in range(5)] for env in (numpy_seeded, seeded)
    ]
    assert starts[0] == starts[1]  # the same no-op starts as seed 3's
    numpy_seeded.close(), seeded.close()
    with pytest.raises(TypeError, match=r"seed: expected an integer, got 1\.5"):
        make_atari("ALE/Pong-v5", seed=1.5)
    with pytest.raises(ValueError, match="seed: expected an integer >= 0, got -1"):
        make_env("ALE/Pong-v5", seed=-1)


def test_frames_too_small_for_the_nature_cnn_are_refused_when_the_agent_is_built():
    env = make_atari("ALE/Pong-v5", seed=0, screen_size=32)  # fine for a network of your own
    assert env.observation_space.shape == (32, 32)
    with pytest.raises(ValueError, match="frames are 32x32 pixels, smaller than the 36x36"):
        build_agent(env, DQNConfig(memory=100))
    env.close()


def test_without_ale_py_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ale_py", None)  # what an environment without it sees
    with pytest.raises(UsageError, match=r"pip install -e '\.\[atari\]'"):
        make_env("ALE/Pong-v5", seed=0)


# ------------------------------------------------------------------ the game score in fit


def random_fit(clip_rewards, log_dir, nb_steps=900):
    """A never-learning Nature-CNN agent acting at random on Space Invaders, a life per
    episode, with ``GameScoreLogger``: its History."""
    env = make_atari(
        "ALE/SpaceInvaders-v5", seed=0, terminal_on_life_loss=True, clip_rewards=clip_rewards
    )
    agent = DQNAgent(
        nature_cnn(nb_actions=6),
        nb_actions=6,
        policy=EpsGreedyQPolicy(eps=1.0),
        memory=SequentialMemory(limit=1000, window_length=4),
        nb_steps_warmup=10**6,
        seed=0,
    )
    agent.compile("adam")
    logger = GameScoreLogger(log_dir=log_dir)
    history = agent.fit(env, nb_steps=nb_steps, callbacks=[logger], verbose=0)
    logger.close()
    env.close()
    return history.history


def test_the_whole_games_real_score_reaches_history_and_tensorboard(tmp_path):
    clipped = random_fit(True, tmp_path / "clipped")
    real = random_fit(False, tmp_path / "real")  # the same random actions, rewards unclipped
    scores = clipped["game_score"]
    assert len(scores) >= 2 and len(clipped["episode_reward"]) >= 3 * len(scores)  # 3 lives
    for game, score in enumerate(scores):
        assert score == sum(real["episode_reward"][3 * game : 3 * game + 3])
        assert score > sum(clipped["episode_reward"][3 * game : 3 * game + 3])
    steps, values = read_scalars(tmp_path / "clipped")["charts/game_score"]
    np.testing.assert_allclose(values, scores)
    game_ends = [clipped["nb_steps"][3 * game + 2] for game in range(len(scores))]
    np.testing.assert_array_equal(steps, game_ends)


# ------------------------------------------------------------------ the preset


def test_the_pong_preset_is_found_by_its_id_and_says_it_is_unmeasured():
    assert "ALE/Pong-v5" in available_presets()
    assert all(preset_path(env_id) is not None for env_id in available_presets())
    config = DQNConfig(**read_preset(preset_path("ALE/Pong-v5")))
    assert (config.lr, config.adam_epsilon, config.target_update) == (6.25e-5, 1.5e-4, 8000)
    assert (config.memory, config.batch_size, config.train_interval) == (10**6, 32, 4)
    text = preset_path("ALE/Pong-v5").read_text()
    assert "dopamine/jax/agents/dqn/configs/dqn.gin" in text
    assert 'measured = "not measured at full scale"' in text


# ------------------------------------------------------------------ command line and script


@pytest.fixture(scope="module")
def pong_weights(tmp_path_factory):
    """``kerasdqn train ALE/Pong-v5 --steps 300`` (the preset, a small memory): its weights."""
    directory = tmp_path_factory.mktemp("pong")
    weights = directory / "weights" / "dqn_pong.h5"
    code = main(
        ["train", "ALE/Pong-v5", "--steps", "300", "--memory", "1000", "--warmup", "100"]
        + ["--episodes", "1", "--eval-interval", "0", "--verbose", "0"]
        + ["--weights", str(weights), "--logdir", str(directory / "runs")]
    )
    assert code == 0
    return weights


def test_kerasdqn_train_pong_builds_the_nature_cnn_and_writes_its_weights(pong_weights, capsys):
    env = make_env("ALE/Pong-v5", seed=0)
    preset = read_preset(preset_path("ALE/Pong-v5"))
    agent = build_agent(env, DQNConfig(**dict(preset, memory=100)))
    env.close()
    assert agent.memory.window_length == 4 and agent.model.inputs[0].dtype == "uint8"
    fresh = [w.copy() for w in agent.model.get_weights()]
    agent.load_weights(pong_weights)  # refuses a file of another architecture
    kernel = agent.model.get_layer("conv_8x8").kernel
    assert tuple(kernel.shape) == (8, 8, 4, 32)
    assert any(not np.array_equal(a, b) for a, b in zip(fresh, agent.model.get_weights()))


def train_atari_script():
    """The module scripts/train_atari.py."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import train_atari
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    return train_atari


def test_train_atari_script_plays_greedy_games_with_saved_weights(pong_weights, capsys):
    script_main = train_atari_script().main
    assert script_main(["--test", "--weights", str(pong_weights), "--episodes", "1"]) == 0
    output = capsys.readouterr().out
    assert "Episode 1: reward: -" in output  # an untrained Pong player loses
    assert "Mean reward over 1 episodes: -" in output
    with pytest.raises(SystemExit, match="no such file"):
        script_main(["--test", "--weights", str(pong_weights) + ".missing"])


@pytest.mark.parametrize(
    "flags",
    [
        ["--noop-max", "-1"],
        ["--batch-size", "0"],
        ["--gamma", "1.5"],
        ["--checkpoint-interval", "0"],
        ["--threads", "-1"],
    ],
)
def test_train_atari_script_refuses_bad_numbers_as_usage_errors_naming_the_flag(flags, capsys):
    with pytest.raises(SystemExit) as stop:
        train_atari_script().parse_args(flags)
    assert stop.value.code == 2  # argparse's usage error, before TensorFlow starts
    assert flags[0] in capsys.readouterr().err.splitlines()[-1]


def wrapped_in(env, wrapper_class) -> bool:
    """Whether ``wrapper_class`` is among ``env``'s wrappers."""
    while isinstance(env, gymnasium.Wrapper):
        if isinstance(env, wrapper_class):
            return True
        env = env.env
    return False


def test_train_atari_script_acts_on_n_envs_games_made_with_its_flags(tmp_path, monkeypatch):
    fitted_on, fit = [], DQNAgent.fit

    def recording_fit(agent, env, *args, **kwargs):
        fitted_on.append(env)
        return fit(agent, env, *args, **kwargs)

    monkeypatch.setattr(DQNAgent, "fit", recording_fit)
    code = train_atari_script().main(
        ["--n-envs", "2", "--terminal-on-life-loss", "--steps", "8", "--memory", "100"]
        + ["--warmup", "1000", "--episodes", "0", "--eval-interval", "0", "--verbose", "0"]
        + ["--weights", str(tmp_path / "dqn.h5"), "--logdir", str(tmp_path / "runs")]
    )
    assert code == 0
    (env,) = fitted_on
    assert env.num_envs == 2
    assert all(wrapped_in(game, LifeLossEpisodes) for game in env.envs)
