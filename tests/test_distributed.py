"""Ape-X on Ray: the epsilon ladder, the actors' chunks and priorities, the learner's replay,
and whole runs on a two-CPU Ray started here (solving CartPole, an actor killed mid-run, a
checkpoint resumed, the command line)."""

import os
from dataclasses import replace

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import re  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gymnasium  # noqa: E402
import h5py  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

ray = pytest.importorskip("ray")

from kerasdqn import DQNAgent  # noqa: E402
from kerasdqn.callbacks import Callback, GameScoreLogger, TensorBoard  # noqa: E402
from kerasdqn.config import DQNConfig  # noqa: E402
from kerasdqn.core import Processor  # noqa: E402
from kerasdqn.distributed import (  # noqa: E402
    ActorSettings,
    ActorWorker,
    ApeX,
    Learner,
    build_apex_agent,
    epsilon_ladder,
)
from kerasdqn.distributed.actor import actor_seed, n_step_targets  # noqa: E402
from kerasdqn.evaluation import EvalCallback  # noqa: E402
from kerasdqn.memory import PrioritizedMemory, SequentialMemory  # noqa: E402

# The preset's network and learning settings over 30,000 steps: greedy mean 500 for seeds 0,
# 1 and 2 when measured (about 45 s each on two busy cores).
CARTPOLE = DQNConfig(steps=30_000, warmup=500, memory=50_000)


class Chain(gymnasium.Env):
    """Reward 1 on every step; the episode terminates after 3 steps; the observation is the
    step count."""

    observation_space = gymnasium.spaces.Box(0, 10, (1,), np.float32)
    action_space = gymnasium.spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        return np.array([self.t], np.float32), 1.0, self.t == 3, False, {}


def constant_q_model(q_values) -> keras.Model:
    """A network whose Q values are ``q_values`` in every state (zero kernel, that bias)."""
    model = keras.Sequential(
        [keras.Input((1, 1)), keras.layers.Flatten(), keras.layers.Dense(len(q_values))]
    )
    model.layers[-1].set_weights([np.zeros((1, len(q_values))), np.asarray(q_values)])
    return model


def chain_actor(index=0, chunk_steps=5) -> ActorWorker:
    model = constant_q_model([0.0, 2.0])
    settings = ActorSettings(index=index, epsilon=0.0, chunk_steps=chunk_steps, n_step=2, gamma=0.9)
    return ActorWorker(Chain, model.to_json(), settings, (model.get_weights(),) * 2)


# ------------------------------------------------------------------ pieces, without Ray


def test_epsilon_ladder_follows_apex_formula():
    ladder = epsilon_ladder(4)
    expected = [0.4, 0.4 ** (1 + 7 / 3), 0.4 ** (1 + 14 / 3), 0.4**8]
    np.testing.assert_allclose(ladder, expected)
    assert epsilon_ladder(1) == [0.4]


def test_epsilon_ladder_refuses_no_actors():
    with pytest.raises(ValueError, match="nb_actors"):
        epsilon_ladder(0)


def test_n_step_targets_stop_at_episode_end():
    rewards = np.array([1.0, 1.0, 1.0, 1.0])
    ends = np.array([False, False, True, False])
    returns, last = n_step_targets(rewards, ends, n_step=2, gamma=0.5)
    np.testing.assert_allclose(returns, [1.5, 1.5, 1.0, 1.0])
    np.testing.assert_array_equal(last, [1, 2, 2, 3])


def test_actor_chunk_holds_ready_transitions_with_n_step_td_errors():
    chunk = chain_actor().run_chunk(version=-1)
    # Steps 1-3 are the episode, step 4 only resets (NEXT_STEP autoreset), step 5 starts the
    # next episode: its 2-step return is not known yet, so it waits.
    assert chunk.env_steps == 4
    assert len(chunk) == 3
    np.testing.assert_array_equal(chunk.observation[:, 0], [0, 1, 2])
    np.testing.assert_array_equal(chunk.action, [1, 1, 1])
    np.testing.assert_array_equal(chunk.terminated, [False, False, True])
    # Q = (0, 2) everywhere, greedy action 1, gamma 0.9, n = 2:
    # t0: 1 + 0.9 + 0.81 * 2 - 2;  t1: 1 + 0.9 (then terminal) - 2;  t2: 1 - 2
    np.testing.assert_allclose(chunk.td_error, [1.52, -0.1, -1.0], rtol=1e-5)
    assert chunk.episodes == [(0, 3.0, 3, None)]


def test_actor_sends_waiting_transition_in_next_chunk():
    actor = chain_actor(chunk_steps=5)
    actor.run_chunk(version=-1)
    chunk = actor.run_chunk(version=-1)
    # Steps 6-10: the waiting t0 leads, then t1, t2, a reset step, t0 and t1 of the third
    # episode; t0's 2-step return is known, t1 waits.
    np.testing.assert_array_equal(chunk.observation[:, 0], [0, 1, 2, 0])
    assert [len(waiting) for waiting in actor.waiting] == [1]


class PixelChain(Chain):
    """``Chain`` seen as 2x2 grey frames: every pixel of step ``t``'s frame is ``t``."""

    observation_space = gymnasium.spaces.Box(0, 255, (2, 2), np.uint8)

    def reset(self, seed=None, options=None):
        observation, info = super().reset(seed=seed)
        return self._frame(observation), info

    def step(self, action):
        observation, *outcome = super().step(action)
        return (self._frame(observation), *outcome)

    def _frame(self, observation):
        return np.full((2, 2), observation[0], dtype=np.uint8)


def frame_sum_model(window_length: int) -> keras.Model:
    """Q(s, 0) = 0 and Q(s, 1) = 0.5 + the sum of the step counts of the stacked frames."""
    model = keras.Sequential(
        [
            keras.Input((window_length, 2, 2), dtype="uint8"),
            keras.layers.Rescaling(1.0),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ]
    )
    kernel = np.zeros((window_length * 4, 2))
    kernel[:, 1] = 0.25  # four pixels per frame
    model.layers[-1].set_weights([kernel, np.array([0.0, 0.5])])
    return model


def pixel_actor(window_length=3, index=0, env=PixelChain) -> ActorWorker:
    model = frame_sum_model(window_length)
    settings = ActorSettings(
        index=index, epsilon=0.0, chunk_steps=5, gamma=0.9, window_length=window_length
    )
    return ActorWorker(env, model.to_json(), settings, (model.get_weights(),) * 2)


def test_actor_stacks_frames_to_act_and_sends_single_frames():
    chunk = pixel_actor(window_length=3).run_chunk(version=-1)
    assert chunk.observation.shape == (4, 2, 2) and chunk.observation.dtype == np.uint8
    # Steps 1-3 are the first episode, step 4 resets, step 5 begins the second one.
    np.testing.assert_array_equal(chunk.observation[:, 0, 0], [0, 1, 2, 0])
    np.testing.assert_array_equal(chunk.next_observation[:, 0, 0], [1, 2, 3, 1])
    # States (frames before the episode are zeros) and their Q(s, 1) = 0.5 + sum:
    # [0,0,0] 0.5 -> [0,0,1] 1.5 -> [0,1,2] 3.5 -> [1,2,3] terminal; gamma 0.9, 1-step.
    # t0: 1 + 0.9 * 1.5 - 0.5;  t1: 1 + 0.9 * 3.5 - 1.5;  t2: 1 - 3.5;  the second
    # episode's first step starts from zeros again: 1 + 0.9 * 1.5 - 0.5.
    np.testing.assert_allclose(chunk.td_error, [1.85, 2.65, -2.5, 1.85], rtol=1e-5)


def test_actor_reports_the_game_score_the_environment_records():
    def make():
        return gymnasium.wrappers.RecordEpisodeStatistics(PixelChain())

    chunk = pixel_actor(window_length=2, env=make).run_chunk(version=-1)
    assert chunk.episodes == [(0, 3.0, 3, 3.0)]


def test_learner_rebuilds_the_actors_frame_stacks_from_single_frames():
    memory = PrioritizedMemory(limit=100, window_length=3)
    agent = DQNAgent(frame_sum_model(3), nb_actions=2, memory=memory, gamma=0.9)
    agent.compile("adam")
    learner = Learner(agent)
    for index in (0, 1):  # two actors' streams, interleaved in the replay
        actor = pixel_actor(window_length=3, index=index)
        learner.ingest(actor.run_chunk(version=-1))
        learner.ingest(actor.run_chunk(version=-1))
    batch = memory.sample_batch(64, step=0)
    # A state ending on step t's frame holds steps t-2, t-1, t (zeros before the episode).
    newest = batch.state0[:, -1, 0, 0].astype(int)[:, np.newaxis]
    window = np.array([-2, -1, 0])
    np.testing.assert_array_equal(batch.state0[:, :, 0, 0], np.maximum(newest + window, 0))
    np.testing.assert_array_equal(batch.state1[:, :, 0, 0], np.maximum(newest + 1 + window, 0))


def test_actor_settings_name_their_streams():
    assert ActorSettings(index=2, epsilon=0.1, nb_envs=3).streams == [6, 7, 8]
    with pytest.raises(ValueError, match="epsilon"):
        ActorSettings(index=0, epsilon=1.5)


def chain_agent(memory) -> DQNAgent:
    agent = DQNAgent(constant_q_model([0.0, 2.0]), nb_actions=2, memory=memory, n_step=2, gamma=0.9)
    agent.compile("adam")
    return agent


def test_learner_stores_streams_with_actor_priorities():
    memory = PrioritizedMemory(limit=100, alpha=1.0, epsilon=1e-6)
    learner = Learner(chain_agent(memory))
    learner.ingest(chain_actor(index=0).run_chunk(version=-1))
    learner.ingest(chain_actor(index=1).run_chunk(version=-1))
    assert memory.nb_transitions == 6
    assert learner.agent.step == 8
    priorities = np.sort(memory.priorities[memory.priorities > 0])
    np.testing.assert_allclose(priorities, np.repeat([0.1, 1.0, 1.52], 2), rtol=1e-4)
    assert memory.newest_transition(1) != memory.newest_transition(0)


def test_newest_transition_of_an_unwritten_stream_is_refused():
    memory = PrioritizedMemory(limit=10)
    with pytest.raises(ValueError, match="stream 3"):
        memory.newest_transition(3)


def test_learner_refuses_uniform_memory():
    with pytest.raises(TypeError, match="PrioritizedMemory"):
        Learner(chain_agent(SequentialMemory(limit=100)))


def test_importing_kerasdqn_does_not_import_ray():
    code = "import sys, kerasdqn; print('ray' in sys.modules)"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert output.stdout.strip() == "False"


# ------------------------------------------------------------------ refused before Ray starts


def small_apex_agent(env_id="CartPole-v1", **config) -> DQNAgent:
    config = DQNConfig(hidden=(16,), memory=1000, warmup=100, **config)
    return build_apex_agent(gymnasium.make(env_id), config)


@pytest.mark.parametrize("distributional", ["c51", "qr"])
def test_distributional_agents_are_refused_naming_the_agent(distributional):
    # The actors act on the network's outputs as Q values: a C51 or QR-DQN network's
    # nb_actions * atoms outputs would give them actions the environment does not have.
    agent = small_apex_agent(distributional=distributional)
    expected = "agent: Ape-X supports a DQNAgent with scalar Q values"
    with pytest.raises(TypeError, match=expected):
        Learner(agent)
    with pytest.raises(TypeError, match=expected):
        ApeX(agent, "CartPole-v1", nb_actors=1)


def test_an_env_the_agent_cannot_play_is_refused_naming_env():
    agent = small_apex_agent()  # CartPole: 4 numbers observed, 2 actions
    with pytest.raises(ValueError, match=r"env Acrobot-v1: .* 3 actions .* nb_actions=2"):
        ApeX(agent, "Acrobot-v1", nb_actors=1)
    with pytest.raises(ValueError, match=r"env Chain: observations have shape \(1,\)"):
        ApeX(agent, Chain, nb_actors=1)


def test_an_agent_with_a_processor_is_refused_naming_it():
    """The actors would neither process what they observe nor the rewards they send."""
    agent = small_apex_agent()
    agent.processor = Processor()
    with pytest.raises(ValueError, match="agent: Ape-X actors do not apply a Processor"):
        ApeX(agent, "CartPole-v1", nb_actors=1)


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        ({"actor_cpus": "1"}, TypeError, "actor_cpus: expected a number"),
        ({"actor_cpus": True}, TypeError, "actor_cpus: expected a number"),
        ({"actor_cpus": float("inf")}, ValueError, "actor_cpus: expected a finite number"),
        ({"actor_cpus": 0}, ValueError, r"actor_cpus: expected a number in \(0.0"),
        ({"custom_objects": [1, 2]}, TypeError, "custom_objects: expected a dict of names"),
        ({"ordered": "yes"}, TypeError, "ordered: expected True or False"),
    ],
)
def test_bad_actor_options_are_refused_naming_them(arguments, error, message):
    with pytest.raises(error, match=message):
        ApeX(small_apex_agent(), "CartPole-v1", nb_actors=1, **arguments)


@pytest.mark.filterwarnings("ignore:.*CartPole-v0 is out of date")
def test_checkpoint_of_another_env_id_is_refused_naming_both(tmp_path):
    agent = small_apex_agent()
    ApeX(agent, "CartPole-v1", nb_actors=1).save_checkpoint(tmp_path)
    # CartPole-v0 has the same spaces: everything would load and the run go on, on v0.
    other = ApeX(small_apex_agent(), "CartPole-v0", nb_actors=1)
    with pytest.raises(ValueError, match="env: .* a run on 'CartPole-v1', not 'CartPole-v0'"):
        other.load_checkpoint(tmp_path)
    assert other.agent.step == 0


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        ({"checkpoint_interval": 100}, ValueError, "checkpoint_interval: set checkpoint_dir too"),
        ({"callbacks": "not a list"}, TypeError, "callbacks: expected a list of callbacks"),
        ({"verbose": -3}, ValueError, "verbose: expected an integer >= 0"),
        ({"checkpoint_dir": 123}, TypeError, "checkpoint_dir: expected a directory path"),
        ({"checkpoint_dir": "CKPT", "checkpoint_interval": 0}, ValueError, "checkpoint_interval"),
    ],
)
def test_fit_checks_its_arguments_before_starting_the_actors(
    arguments, error, message, tmp_path, monkeypatch
):
    apex = ApeX(small_apex_agent(), "CartPole-v1", nb_actors=1)
    if "checkpoint_dir" in arguments and isinstance(arguments["checkpoint_dir"], str):
        arguments["checkpoint_dir"] = tmp_path / arguments["checkpoint_dir"]

    def start_actors():
        pytest.fail("the actors were started before the arguments were checked")

    monkeypatch.setattr(apex, "start_actors", start_actors)
    with pytest.raises(error, match=message):
        apex.fit(100, **arguments)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--envs-per-actor", "4"], "--envs-per-actor: only used with --actors N"),
        (["--ray-address", "auto"], "--ray-address: only used with --actors N"),
        (["--ordered"], "--ordered: only used with --actors N"),
        (["--actors", "1", "--distributional", "qr"], "--distributional qr: --actors (Ape-X)"),
        (
            ["--actors", "1", "--preset", "rainbow"],
            "--distributional c51 (set by the preset rainbow): --actors (Ape-X) supports only "
            "scalar Q values",
        ),
    ],
)
def test_command_line_refuses_flags_ape_x_would_ignore_or_cannot_run(
    flags, message, monkeypatch, capsys
):
    from kerasdqn import cli

    def start_tensorflow(show_log):
        pytest.fail("TensorFlow (and then Ray) was started before the flags were checked")

    monkeypatch.setattr(cli, "start_tensorflow", start_tensorflow)
    with pytest.raises(SystemExit) as stop:
        cli.main(["train", "CartPole-v1", *flags])
    assert stop.value.code == 2
    assert f"kerasdqn train: error: {message}" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--resume"], "--resume: set --checkpoint-dir"),
        (["--resume", "--checkpoint-dir", "no-such-run"], "--resume: .*no-such-run"),
    ],
    ids=["no checkpoint dir", "no checkpoint"],
)
def test_a_resume_with_nothing_to_resume_fails_before_ray_starts(
    flags, message, monkeypatch, capsys, tmp_path
):
    from kerasdqn import cli
    from kerasdqn.distributed import training

    def init_ray(address=None):
        pytest.fail("Ray was started before --resume was checked")

    monkeypatch.setattr(training, "init_ray", init_ray)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        cli.main(["train", "CartPole-v1", "--actors", "2", "--steps", "100", *flags])
    assert stop.value.code == 2
    assert re.search(f"kerasdqn train: error: {message}", capsys.readouterr().err)


# ------------------------------------------------------------------ on Ray


@pytest.fixture(scope="module")
def ray_here():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def cartpole_apex(config=CARTPOLE, nb_actors=2, **options) -> ApeX:
    keras.utils.set_random_seed(config.seed)
    agent = build_apex_agent(gymnasium.make("CartPole-v1"), config)
    return ApeX(agent, "CartPole-v1", nb_actors=nb_actors, **options)


def greedy_rewards(agent: DQNAgent, episodes: int) -> list[float]:
    env = gymnasium.make("CartPole-v1")
    env.reset(seed=123)
    history = agent.test(env, nb_episodes=episodes, visualize=False, verbose=0)
    return history.history["episode_reward"]


def test_two_actors_solve_cartpole(ray_here):
    # Taken in turn, the actors' chunks reach the learner at the same points in every run, so
    # the run repeats (measured: solved at step 15,038 in each of two runs). It stops at the
    # first evaluation that plays 500 five times over, as a user's would, with room to get
    # there: the learning rate decays over the whole budget, not over half of it.
    config = replace(CARTPOLE, steps=2 * CARTPOLE.steps)
    apex = cartpole_apex(config, ordered=True)
    eval_env = gymnasium.make("CartPole-v1")
    eval_env.reset(seed=7)
    evaluation = EvalCallback(eval_env, eval_interval=2500, nb_episodes=5, reward_threshold=500)
    try:
        history = apex.fit(config.steps, callbacks=[evaluation])
    finally:
        apex.close()
    assert evaluation.stopped_early, [result["mean_reward"] for result in evaluation.evaluations]
    assert set(history.history["actor"]) == {0, 1}
    # On episodes the evaluation did not play, most games still reach the cap, though not
    # every one: in three runs, one held-out game of ten ended at 114, and two at 399 and 486.
    held_out = greedy_rewards(apex.agent, 10)
    assert np.median(held_out) >= 475, held_out
    # One evaluation at the chunk that passes each multiple of 2,500 steps; the last stopped it.
    steps = [result["step"] for result in evaluation.evaluations]
    assert [step // 2500 for step in steps] == list(range(1, len(steps) + 1))
    assert len(steps) == apex.agent.step // 2500


def ordered_run(seed: int) -> tuple[list, list[np.ndarray]]:
    """A short two-actor run taking chunks in turn: its episodes and the learner's weights."""
    config = DQNConfig(steps=3000, hidden=(16,), warmup=500, gradient_steps=16, seed=seed)
    apex = cartpole_apex(config, seed=seed, ordered=True)
    try:
        history = apex.fit(config.steps)
    finally:
        apex.close()
    episodes = list(zip(history.history["actor"], history.history["episode_reward"]))
    return episodes, apex.agent.model.get_weights()


def test_a_seed_repeats_an_ordered_run_exactly(ray_here):
    episodes, weights = ordered_run(seed=0)
    again, weights_again = ordered_run(seed=0)
    assert again == episodes and {actor for actor, _ in episodes} == {0, 1}
    for kernel, kernel_again in zip(weights, weights_again, strict=True):
        np.testing.assert_array_equal(kernel, kernel_again)
    other_seed, _ = ordered_run(seed=1)
    assert other_seed != episodes


def test_an_evaluation_reaching_its_threshold_stops_the_run(ray_here):
    apex = cartpole_apex(DQNConfig(steps=20_000, hidden=(16,), warmup=500))
    eval_env = gymnasium.make("CartPole-v1")
    evaluation = EvalCallback(eval_env, eval_interval=1000, nb_episodes=1, reward_threshold=0)
    try:
        apex.fit(20_000, callbacks=[evaluation])
    finally:
        apex.close()
    assert evaluation.stopped_early
    assert 1000 <= apex.agent.step <= 1050  # the chunk (50 steps) that evaluated was the last


class KillActor(Callback):
    """Kills one actor (Ray restarts it) at the first episode end after ``after_step``."""

    def __init__(self, apex: ApeX, index: int, after_step: int) -> None:
        super().__init__()
        self.apex, self.index, self.after_step = apex, index, after_step
        self.killed_at_episode = None

    def on_episode_end(self, episode, logs=None):
        if self.killed_at_episode is None and logs["nb_steps"] >= self.after_step:
            ray.kill(self.apex.actors[self.index], no_restart=False)
            self.killed_at_episode = episode


def test_killed_actor_is_restarted_and_the_run_goes_on(ray_here):
    apex = cartpole_apex(DQNConfig(steps=20_000, hidden=(16,), warmup=500, gradient_steps=16))
    killer = KillActor(apex, index=0, after_step=1000)
    try:
        apex.fit(2000, callbacks=[killer])
        assert killer.killed_at_episode is not None
        deadline = time.monotonic() + 240  # Ray starts a new process for the killed actor
        while not apex.restarts and time.monotonic() < deadline:
            apex.fit(200)  # while the other actor goes on
        step = apex.agent.step
        history = apex.fit(2000)
    finally:
        apex.close()
    assert apex.restarts == 1, f"{apex.restarts} restarts seen"
    assert apex.agent.step >= step + 2000
    assert set(history.history["actor"]) == {0, 1}  # the restarted actor contributes


class ChunkLog:
    """Records, for each chunk the learner stores, its actor's process (``instance``), the
    weights version it was played with, and the version published when it arrived."""

    def __init__(self, apex: ApeX) -> None:
        self.apex, self.chunks = apex, []
        self.first_observations: dict[str, np.ndarray] = {}  # of each process's first chunk
        ingest = apex.learner.ingest

        def logged_ingest(chunk):
            self.chunks.append((chunk.instance, chunk.weights_version, apex.weights_version))
            self.first_observations.setdefault(chunk.instance, chunk.observation[:10].copy())
            ingest(chunk)

        apex.learner.ingest = logged_ingest

    def first_chunks(self) -> dict[str, tuple[int, int]]:
        """Each actor process's first chunk: ``instance -> (its version, the published one)``."""
        first = {}
        for instance, version, published in self.chunks:
            first.setdefault(instance, (version, published))
        return first


def test_a_restarted_actor_plays_its_first_chunk_with_the_current_weights(ray_here):
    # Weights are published once, when the actors start: the killed actor had the current
    # version, and Ray reruns the request it was given on the restarted one.
    config = DQNConfig(steps=20_000, hidden=(16,), warmup=500)
    apex = cartpole_apex(config, nb_actors=1, publish_interval=1_000_000)
    chunks = ChunkLog(apex)
    killer = KillActor(apex, index=0, after_step=300)
    try:
        apex.fit(600, callbacks=[killer])
        deadline = time.monotonic() + 240  # Ray starts a new process for the killed actor
        while not apex.restarts and time.monotonic() < deadline:
            apex.fit(100)
    finally:
        apex.close()
    assert apex.restarts == 1 and apex.weights_version == 1
    first_chunks = chunks.first_chunks()
    assert len(first_chunks) == 2  # the first process and the restarted one
    # Not -1: the restarted process's networks, freshly initialised, never acted.
    assert list(first_chunks.values()) == [(1, 1), (1, 1)]
    # Nor does it play again the episodes its predecessor played first: its seed differs.
    first, restarted = chunks.first_observations.values()
    assert not np.array_equal(first, restarted)


def test_fit_after_close_starts_new_actors_without_counting_restarts(ray_here):
    apex = cartpole_apex(DQNConfig(steps=2000, hidden=(16,), warmup=100), nb_actors=1)
    chunks = ChunkLog(apex)
    try:
        apex.fit(200)
    finally:
        apex.close()
    try:
        apex.fit(200)
    finally:
        apex.close()
    assert apex.stats["restarts"] == 0 and apex.restarts == 0
    # Two actor processes, one per fit, and the second too acted only with published weights.
    assert len(chunks.first_chunks()) == 2
    assert all(version >= 1 for _, version, _ in chunks.chunks)
    # The second fit's actor starts from other seeds, not the first fit's episodes again.
    first, second = chunks.first_observations.values()
    assert not np.array_equal(first, second)


def test_actors_seeds_repeat_a_run_and_differ_when_it_continues_or_restarts():
    assert actor_seed(7, start_step=0, restarted=False) == 7  # the same runs from a seed
    resumed = actor_seed(7, start_step=5_000, restarted=False)
    assert resumed != 7 and resumed == actor_seed(7, start_step=5_000, restarted=False)
    restarts = {actor_seed(7, start_step=5_000, restarted=True) for _ in range(3)}
    assert len(restarts | {resumed}) == 4  # a crash's replacement draws fresh entropy


def scalar_values(log_dir, tag: str) -> list[float]:
    """The values TensorBoard reads back for ``tag`` under ``log_dir``, in order."""
    from test_tensorboard import read_scalars

    return [value for _, value in read_scalars(log_dir).get(tag, [])]


def test_more_actors_than_cpus_share_them_and_all_run(ray_here):
    """Three actors on Ray's two CPUs: each gets two thirds of one by default, so Ray starts
    all three (with a whole CPU each, the third would wait for ever). Asking for a whole CPU
    each is refused, naming actor_cpus."""
    apex = cartpole_apex(DQNConfig(hidden=(16,)), nb_actors=3)
    try:
        apex.start_actors()
        states = np.zeros((1, 1, 4), np.float32)
        answers = ray.get([actor.q_values.remote(states) for actor in apex.actors], timeout=300)
    finally:
        apex.close()
    assert len(answers) == 3 and all(answer.shape == (1, 2) for answer in answers)
    greedy = cartpole_apex(DQNConfig(hidden=(16,)), nb_actors=3, actor_cpus=1.0)
    with pytest.raises(ValueError, match="actor_cpus: 3 actors .* need 3, but the Ray cluster"):
        greedy.fit(100)
    assert greedy.actors == []


def test_tensorboard_logs_the_actors_epsilons_and_the_learners_curves(ray_here, tmp_path):
    apex = cartpole_apex(DQNConfig(steps=2000, hidden=(16,), warmup=100), nb_actors=1)
    tensorboard = TensorBoard(log_dir=tmp_path)
    try:
        history = apex.fit(300, callbacks=[tensorboard])
    finally:
        apex.close()
        tensorboard.close()
    epsilons = scalar_values(tmp_path, "episode/epsilon")
    # One actor: epsilon 0.4, not the learner's policy's (the learner does not act).
    assert len(epsilons) == len(history.history["episode_reward"]) > 0
    np.testing.assert_allclose(epsilons, 0.4)
    # The learner's training curves, from the gradient steps the chunks brought.
    for tag in ("train/loss", "train/mean_q"):
        values = scalar_values(tmp_path, tag)
        assert values and np.all(np.isfinite(values)), tag


def test_game_scores_the_actors_report_reach_tensorboard(ray_here, tmp_path):
    # CartPole reporting each game's score in info['episode'], as Atari games do. (Defined
    # here, the function travels to the actor by value, not as a test module to import.)
    def cartpole_with_scores():
        return gymnasium.wrappers.RecordEpisodeStatistics(gymnasium.make("CartPole-v1"))

    keras.utils.set_random_seed(0)
    agent = build_apex_agent(cartpole_with_scores(), DQNConfig(hidden=(16,), warmup=100))
    apex = ApeX(agent, cartpole_with_scores, nb_actors=1)
    scores = GameScoreLogger(log_dir=tmp_path)
    try:
        history = apex.fit(300, callbacks=[scores])
    finally:
        apex.close()
        scores.close()
    logged = scalar_values(tmp_path, "charts/game_score")
    # A CartPole game is one episode, and its score is its reward.
    assert logged == history.history["game_score"] == history.history["episode_reward"]
    assert len(logged) > 0
    assert not agent.training  # as after Agent.fit


def test_an_env_function_the_workers_cannot_import_fails_fast_naming_the_module(
    ray_here, tmp_path, monkeypatch
):
    # Importable here (its folder is on this process's path), not in Ray's workers: each
    # actor would fail to start and be restarted without end.
    (tmp_path / "my_envs.py").write_text(
        "import gymnasium\n\ndef cartpole():\n    return gymnasium.make('CartPole-v1')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import my_envs

    apex = ApeX(small_apex_agent(), my_envs.cartpole, nb_actors=1)
    try:
        with pytest.raises(RuntimeError, match="env: the Ray workers .* No module named 'my_envs'"):
            apex.fit(100)
    finally:
        apex.close()
    assert apex.agent.step == 0


def test_checkpoint_resumes_the_run(ray_here, tmp_path):
    config = DQNConfig(steps=3000, hidden=(32,), warmup=500, train_interval=64, gradient_steps=16)
    apex = cartpole_apex(config)
    try:
        apex.fit(1500, checkpoint_dir=tmp_path)
    finally:
        apex.close()
    saved_step, saved_updates = apex.agent.step, apex.learner.updates
    saved_transitions = apex.agent.memory.nb_transitions
    resumed = cartpole_apex(replace(config, steps=6000))  # a longer run than it started as
    resumed.load_checkpoint(tmp_path)
    assert resumed.agent.memory.beta_steps == 3000  # its schedule goes on as it was saved
    assert resumed.agent.step == saved_step
    assert resumed.learner.updates == saved_updates
    assert resumed.agent.memory.nb_transitions == saved_transitions
    np.testing.assert_array_equal(
        resumed.agent.model.get_weights()[0], apex.agent.model.get_weights()[0]
    )
    try:
        resumed.fit(1000)
    finally:
        resumed.close()
    assert resumed.agent.step >= saved_step + 1000
    assert resumed.learner.updates > saved_updates


def test_actors_play_atari_on_stacked_frames(ray_here):
    pytest.importorskip("ale_py")
    from kerasdqn.envs import make_env

    config = DQNConfig(steps=400, warmup=100, memory=1_000, train_interval=16, xla=False)
    keras.utils.set_random_seed(0)
    # A small convolutional network on make_atari's uint8 frames keeps the run short.
    model = keras.Sequential(
        [
            keras.Input((4, 84, 84), dtype="uint8"),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Permute((2, 3, 1)),
            keras.layers.Conv2D(8, 12, strides=12, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(6),
        ]
    )
    agent = build_apex_agent(make_env("ALE/Pong-v5", seed=0), config, model)
    apex = ApeX(agent, "ALE/Pong-v5", nb_actors=2, chunk_steps=25)
    try:
        apex.fit(400)
    finally:
        apex.close()
    memory = agent.memory
    assert memory.window_length == 4 and memory.nb_transitions >= 350
    assert apex.learner.updates > 0
    batch = memory.sample_batch(32, step=agent.step)
    assert batch.state0.shape == (32, 4, 84, 84) and batch.state0.dtype == np.uint8
    # Consecutive states of a stream share frames: s1 is s0 moved on by one frame.
    np.testing.assert_array_equal(batch.state1[:, :-1], batch.state0[:, 1:])


class CtrlC(Callback):
    """Sends this process SIGINT at the first episode end after ``after_step``, and keeps
    ``on_train_end``'s logs."""

    def __init__(self, after_step: int) -> None:
        super().__init__()
        self.after_step, self.sent_at, self.end_logs = after_step, None, None

    def on_episode_end(self, episode, logs=None):
        if self.sent_at is None and logs["nb_steps"] >= self.after_step:
            self.sent_at = logs["nb_steps"]
            os.kill(os.getpid(), signal.SIGINT)

    def on_train_end(self, logs=None):
        self.end_logs = logs


def test_ctrl_c_stops_at_the_next_chunk_and_still_writes_the_checkpoint(ray_here, tmp_path):
    apex = cartpole_apex(DQNConfig(steps=50_000, hidden=(16,), warmup=500))
    ctrl_c = CtrlC(after_step=1000)
    try:
        apex.fit(50_000, callbacks=[ctrl_c], checkpoint_dir=tmp_path)
    finally:
        apex.close()
    assert ctrl_c.end_logs == {"did_abort": True, "interrupted_by": "SIGINT"}
    assert ctrl_c.sent_at <= apex.agent.step < ctrl_c.sent_at + 1000  # a chunk or two more
    with h5py.File(tmp_path / "checkpoint.h5", "r") as handle:
        assert int(handle.attrs["step"]) == apex.agent.step


def test_checkpoint_of_other_actor_settings_is_refused(ray_here, tmp_path):
    config = DQNConfig(steps=1000, hidden=(16,), warmup=100)
    apex = cartpole_apex(config)
    apex.save_checkpoint(tmp_path)
    other = ApeX(apex.agent, "CartPole-v1", nb_actors=3)
    with pytest.raises(ValueError, match="actor settings"):
        other.load_checkpoint(tmp_path)


def test_command_line_trains_with_actors_on_a_running_cluster(ray_here, tmp_path):
    address = ray.get_runtime_context().gcs_address
    command = [
        sys.executable, "-m", "kerasdqn.cli", "train", "CartPole-v1", "--actors", "2",
        "--ray-address", address, "--steps", "2000", "--hidden", "32", "--warmup", "500",
        "--episodes", "2", "--eval-interval", "1000", "--eval-episodes", "2", "--verbose", "0",
        "--no-preset",
        "--logdir", str(tmp_path / "runs"), "--weights", str(tmp_path / "w.h5"),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Trained" in result.stdout
    assert "Greedy evaluation over 2 episodes" in result.stdout
    assert (tmp_path / "w.h5").is_file()
    assert (tmp_path / "w_best.h5").is_file()  # evaluations during training keep the best
