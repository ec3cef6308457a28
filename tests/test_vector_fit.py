"""fit on a gymnasium VectorEnv: per-environment streams, exact autoreset handling, schedules
on the summed step count, every environment's episodes logged."""

import gymnasium
import keras
import numpy as np
import pytest
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv
from gymnasium.wrappers import RecordEpisodeStatistics
from gymnasium.wrappers.vector import NormalizeObservation
from gymnasium.wrappers.vector import RecordEpisodeStatistics as VectorRecordEpisodeStatistics
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util.tensor_util import make_ndarray

from kerasdqn.agents.categorical import CategoricalDQNAgent
from kerasdqn.agents.dqn import DQNAgent
from kerasdqn.callbacks import Callback, GameScoreLogger, TensorBoard
from kerasdqn.config import DQNConfig
from kerasdqn.core import Processor
from kerasdqn.errors import OneEnvironmentExpected
from kerasdqn.layers import NoisyDense
from kerasdqn.memory import SequentialMemory
from kerasdqn.policy import (
    BoltzmannQPolicy,
    EpsGreedyQPolicy,
    GreedyQPolicy,
    LinearAnnealedPolicy,
)
from kerasdqn.state import StateWindows
from kerasdqn.training import build_agent


class CountingEnv(gymnasium.Env):
    """Observations ``[env_id, episode, t]``; reward ``t + 1`` for the step out of ``t``;
    each episode lasts ``length`` steps and then terminates, or is truncated if
    ``truncates``."""

    observation_space = gymnasium.spaces.Box(0.0, 1e6, (3,), np.float32)
    action_space = gymnasium.spaces.Discrete(2)

    def __init__(self, env_id: int, length: int, truncates: bool = False) -> None:
        self.env_id, self.length, self.truncates = env_id, length, truncates
        self.episode = -1
        self.t = 0

    def _observation(self):
        return np.array([self.env_id, self.episode, self.t], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode += 1
        self.t = 0
        return self._observation(), {}

    def step(self, action):
        self.t += 1
        done = self.t >= self.length
        terminated, truncated = done and not self.truncates, done and self.truncates
        return self._observation(), float(self.t), terminated, truncated, {"t": self.t}


AUTORESET_MODES = [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP]


def counting_envs(mode=AutoresetMode.NEXT_STEP, specs=((3, False), (4, True))):
    return SyncVectorEnv(
        [
            lambda k=k, n=n, trunc=trunc: CountingEnv(k, n, trunc)
            for k, (n, trunc) in enumerate(specs)
        ],
        autoreset_mode=mode,
    )


def linear_model(nb_actions=2, observation_size=3):
    return keras.Sequential(
        [keras.Input((1, observation_size)), keras.layers.Flatten(), keras.layers.Dense(nb_actions)]
    )


def make_agent(model=None, warmup=10_000, policy=None, **options):
    agent = DQNAgent(
        model or linear_model(),
        policy or EpsGreedyQPolicy(eps=0.5),
        nb_actions=2,
        memory=SequentialMemory(limit=1000, window_length=options.pop("window_length", 1)),
        nb_steps_warmup=warmup,
        batch_size=4,
        seed=0,
        jit_compile=False,
        **options,
    )
    agent.compile(keras.optimizers.Adam(1e-3))
    return agent


def stored_transitions(memory):
    """Every stored transition as ``(state0 obs, reward, state1 obs, terminated)``."""
    batch = memory.batch_at(memory.transition_positions())
    return [
        (tuple(s0[-1]), float(r), tuple(s1[-1]), bool(t))
        for s0, r, s1, t in zip(batch.state0, batch.reward, batch.state1, batch.terminal1)
    ]


# ----------------------------------------------------------------------- the loop


def test_memory_holds_each_environments_transitions_and_none_across_an_autoreset():
    agent = make_agent()
    history = agent.fit(counting_envs(), nb_steps=14, verbose=0)
    assert agent.step == 14
    transitions = stored_transitions(agent.memory)
    assert len(transitions) == 14
    for (env0, episode0, t0), reward, (env1, episode1, t1), terminated in transitions:
        assert (env1, episode1, t1) == (env0, episode0, t0 + 1)  # never across a reset
        assert reward == t1
        assert terminated == (env0 == 0 and t1 == 3)  # env 1's episodes are truncated
    per_env = [sum(1 for tr in transitions if tr[0][0] == k) for k in (0, 1)]
    assert per_env == [7, 7]
    # env 0 ends episodes at vector steps 3 and 7, env 1 at step 4 (its reset steps count not)
    assert history.episode == [0, 1, 2]
    assert history.history["nb_episode_steps"] == [3, 4, 3]
    assert history.history["episode_reward"] == [6.0, 10.0, 6.0]
    assert history.history["nb_steps"] == [5, 7, 11]


def test_truncated_transitions_bootstrap_and_terminated_do_not():
    agent = make_agent()
    agent.fit(counting_envs(), nb_steps=40, verbose=0)
    finals = {tr[0][0]: tr for tr in stored_transitions(agent.memory) if tr[2][2] == 3 + tr[0][0]}
    assert finals[0][3] is True  # terminated: no bootstrap
    assert finals[1][3] is False  # truncated: bootstraps from the stored final observation
    assert finals[1][2][2] == 4


def test_same_step_autoreset_takes_the_final_observation_from_info():
    agent = make_agent()
    history = agent.fit(counting_envs(AutoresetMode.SAME_STEP), nb_steps=14, verbose=0)
    transitions = stored_transitions(agent.memory)
    assert len(transitions) == 14
    for (env0, episode0, t0), _, (env1, episode1, t1), _ in transitions:
        assert (env1, episode1, t1) == (env0, episode0, t0 + 1)
    # No reset steps: env 0 ends at vector steps 3 and 6, env 1 at step 4.
    assert history.history["nb_episode_steps"] == [3, 4, 3]
    assert history.history["nb_steps"] == [5, 8, 11]


def test_nb_max_episode_steps_cuts_each_environment_as_a_truncation():
    agent = make_agent()
    history = agent.fit(
        counting_envs(specs=((50, False), (50, False))),
        nb_steps=20,
        verbose=0,
        nb_max_episode_steps=4,
    )
    assert history.history["nb_episode_steps"] == [4, 4, 4, 4]
    transitions = stored_transitions(agent.memory)
    assert not any(terminated for *_, terminated in transitions)
    assert {tr[0][1] for tr in transitions} == {0, 1, 2}  # fresh resets, episodes counted on
    for (env0, episode0, t0), _, (env1, episode1, t1), _ in transitions:
        assert (env1, episode1, t1) == (env0, episode0, t0 + 1)


def test_gradient_steps_follow_the_schedule_on_the_summed_step_count():
    agent = make_agent(warmup=10, train_interval=4, gradient_steps=2)
    envs = counting_envs(specs=((5, False), (7, True), (6, False)))
    agent.fit(envs, nb_steps=41, verbose=0)
    due = [step for step in range(41) if step > 10 and step % 4 == 0]
    assert int(agent.optimizer.iterations.numpy()) == 2 * len(due)


def test_hard_target_updates_count_environment_steps():
    agent = make_agent(warmup=0, target_model_update=6)
    copies = []
    agent.update_target_model_hard = lambda: copies.append(agent.step)
    agent.fit(counting_envs(), nb_steps=20, verbose=0)
    assert copies == [0, 6, 12, 18]  # as with one environment: steps 0, K, 2K, ...


def test_epsilon_anneals_on_the_summed_step_count():
    policy = LinearAnnealedPolicy(EpsGreedyQPolicy(), "eps", 1.0, 0.0, 0.0, nb_steps=40)
    agent = make_agent(policy=policy)
    agent.fit(counting_envs(specs=((5, False),) * 4), nb_steps=20, verbose=0)
    agent.training = True
    assert policy.get_current_value() == pytest.approx(0.5)


def test_each_environment_gets_its_own_state_window():
    agent = make_agent(
        model=keras.Sequential(
            [keras.Input((2, 3)), keras.layers.Flatten(), keras.layers.Dense(2)]
        ),
        window_length=2,
    )
    seen = []
    forward_batch = agent.forward_batch
    agent.forward_batch = lambda states: (seen.append(states.copy()), forward_batch(states))[1]
    agent.fit(counting_envs(), nb_steps=8, verbose=0)
    first, second = seen[0], seen[1]
    np.testing.assert_array_equal(first[:, 0], 0.0)  # episode start: zeros before
    np.testing.assert_array_equal(second[:, 0], first[:, 1])  # each env's previous frame
    assert second[1, 1, 0] == 1.0 and second[1, 0, 0] == 1.0  # env 1's frames only
    after_reset = seen[4][0]  # env 0 acts again at vector step 5, on a new episode
    np.testing.assert_array_equal(after_reset[0], 0.0)
    assert tuple(after_reset[1]) == (0.0, 1.0, 0.0)


def test_processor_hooks_apply_per_environment():
    class DoubleReward(Processor):
        def process_reward(self, reward):
            return 2 * reward

    agent = make_agent(processor=DoubleReward())
    history = agent.fit(counting_envs(), nb_steps=14, verbose=0)
    assert history.history["episode_reward"] == [12.0, 20.0, 12.0]


class StepLog(Processor):
    """A keras-rl style processor that overrides ``process_step``: it scales rewards by 100,
    tags infos, and logs every observation it is given, with the ``done`` of steps."""

    def __init__(self) -> None:
        self.log = []

    def process_observation(self, observation):
        self.log.append(("reset", tuple(observation)))
        return observation

    def process_step(self, observation, reward, done, info):
        self.log.append(("step", tuple(observation), done))
        return observation, 100.0 * reward, done, {**info, "processed": True}


class InfoLog(Callback):
    """The info of every step, as callbacks get it."""

    def on_train_begin(self, logs=None):
        self.infos = []

    def on_step_end(self, step, logs=None):
        self.infos.append(logs["info"])


@pytest.mark.parametrize("mode", AUTORESET_MODES)
@pytest.mark.parametrize(
    "nb_max_episode_steps, episode_rewards",
    [(None, [600.0]), (2, [300.0, 300.0])],
    ids=["episodes end", "episodes cut"],
)
def test_process_step_sees_each_step_as_with_one_environment(
    mode, nb_max_episode_steps, episode_rewards
):
    runs = {}
    for name, env in {
        "single": CountingEnv(0, 3),
        "vector": SyncVectorEnv([lambda: CountingEnv(0, 3)], autoreset_mode=mode),
    }.items():
        processor, infos = StepLog(), InfoLog()
        history = make_agent(processor=processor).fit(
            env,
            nb_steps=5,
            verbose=0,
            callbacks=[infos],
            nb_max_episode_steps=nb_max_episode_steps,
        )
        runs[name] = processor.log, infos.infos, history.history["episode_reward"]
    assert runs["vector"] == runs["single"]
    log, infos, rewards = runs["vector"]
    assert rewards == episode_rewards
    assert all(info["processed"] for info in infos)
    if nb_max_episode_steps is None:
        # The episode's last observation goes through process_step, with done=True; a
        # reset's through process_observation.
        assert log == [
            ("reset", (0, 0, 0)),
            ("step", (0, 0, 1), False),
            ("step", (0, 0, 2), False),
            ("step", (0, 0, 3), True),
            ("reset", (0, 1, 0)),
            ("step", (0, 1, 1), False),
            ("step", (0, 1, 2), False),
        ]
        assert [info["t"] for info in infos] == [1, 2, 3, 1, 2]


class SplitObservation(gymnasium.ObservationWrapper):
    """CountingEnv's observation ``[env_id, episode, t]`` as a ``Dict`` ``{"where": [env_id,
    episode], "t": [t]}`` or a ``Tuple`` ``([env_id, episode], [t])``."""

    def __init__(self, env, space: str) -> None:
        super().__init__(env)
        where = gymnasium.spaces.Box(0.0, 1e6, (2,), np.float32)
        t = gymnasium.spaces.Box(0.0, 1e6, (1,), np.float32)
        self.space = space
        if space == "dict":
            self.observation_space = gymnasium.spaces.Dict({"where": where, "t": t})
        else:
            self.observation_space = gymnasium.spaces.Tuple((where, t))

    def observation(self, observation):
        where, t = observation[:2], observation[2:]
        return {"where": where, "t": t} if self.space == "dict" else (where, t)


class JoinObservation(Processor):
    """Joins SplitObservation's parts back into ``[env_id, episode, t]``."""

    def process_observation(self, observation):
        if isinstance(observation, dict):
            return np.concatenate([observation["where"], observation["t"]])
        return np.concatenate(observation)


@pytest.mark.parametrize("mode", AUTORESET_MODES)
@pytest.mark.parametrize("space", ["dict", "tuple"])
def test_dict_and_tuple_observations_reach_the_processor_one_environment_at_a_time(mode, space):
    split = SyncVectorEnv(
        [
            lambda k=k, n=n, trunc=trunc: SplitObservation(CountingEnv(k, n, trunc), space)
            for k, (n, trunc) in enumerate(((3, False), (4, True)))
        ],
        autoreset_mode=mode,
    )
    agent = make_agent(processor=JoinObservation())
    history = agent.fit(split, nb_steps=14, verbose=0)
    plain = make_agent()
    plain_history = plain.fit(counting_envs(mode), nb_steps=14, verbose=0)
    assert stored_transitions(agent.memory) == stored_transitions(plain.memory)
    for key in ("episode_reward", "nb_episode_steps", "nb_steps"):
        assert history.history[key] == plain_history.history[key]


def test_verbose_output_covers_every_environment(capsys):
    agent = make_agent()
    agent.fit(counting_envs(), nb_steps=14, verbose=2)
    lines = [line for line in capsys.readouterr().out.splitlines() if "episode:" in line]
    assert len(lines) == 3
    assert "episode steps:   4" in lines[1]


def test_tensorboard_gets_every_environments_episodes(tmp_path):
    agent = make_agent()
    history = agent.fit(
        counting_envs(), nb_steps=14, verbose=0, callbacks=[TensorBoard(str(tmp_path))]
    )
    accumulator = EventAccumulator(str(tmp_path), size_guidance={"tensors": 0})
    accumulator.Reload()
    rewards = accumulator.Tensors("episode/reward")
    assert [event.step for event in rewards] == history.history["nb_steps"]
    assert [float(make_ndarray(event.tensor_proto)) for event in rewards] == (
        history.history["episode_reward"]
    )


@pytest.mark.parametrize("mode", AUTORESET_MODES)
@pytest.mark.parametrize("recorded_by", ["each environment", "the vector environment"])
def test_game_scores_are_logged_in_both_autoreset_modes(mode, recorded_by):
    if recorded_by == "each environment":
        envs = SyncVectorEnv(
            [lambda k=k: RecordEpisodeStatistics(CountingEnv(k, 3)) for k in range(2)],
            autoreset_mode=mode,
        )
    else:
        envs = VectorRecordEpisodeStatistics(counting_envs(mode, specs=((3, False), (3, False))))
    infos = InfoLog()
    history = make_agent().fit(envs, nb_steps=12, verbose=0, callbacks=[GameScoreLogger(), infos])
    assert history.history["game_score"] == [6.0] * 4
    # Callbacks get the info of the step itself, also the step that ends an episode.
    assert [info["t"] for info in infos.infos] == [1, 1, 2, 2, 3, 3] * 2


def test_nb_steps_zero_begins_no_episode_as_with_one_environment():
    single, vector = make_agent(), make_agent()
    single.fit(CountingEnv(0, 3), nb_steps=0, verbose=0)
    envs = counting_envs()
    history = vector.fit(envs, nb_steps=0, verbose=0)
    assert vector.episode == single.episode == 0
    assert history.history == {} and vector.memory.nb_transitions == 0
    assert [env.episode for env in envs.envs] == [-1, -1]  # never reset


def test_checkpoints_resume_on_a_vector_env(tmp_path):
    agent = make_agent(warmup=5)
    agent.fit(counting_envs(), nb_steps=14, verbose=0, checkpoint_dir=str(tmp_path))
    resumed = make_agent(warmup=5)
    resumed.load_checkpoint(str(tmp_path))
    assert resumed.step == 14 and resumed.memory.nb_transitions == 14
    resumed.fit(counting_envs(), nb_steps=10, verbose=0)
    assert resumed.step == 24
    transitions = stored_transitions(resumed.memory)
    assert len(transitions) == 24
    for (env0, episode0, t0), _, (env1, episode1, t1), _ in transitions:
        assert (env1, episode1, t1) == (env0, episode0, t0 + 1)


# ----------------------------------------------------------------------- policies


def test_batch_policies_pick_per_row():
    q_values = np.array([[0.0, 1.0, 0.5], [2.0, 0.0, 1.0]])
    np.testing.assert_array_equal(GreedyQPolicy().select_actions(q_values), [1, 0])
    np.testing.assert_array_equal(EpsGreedyQPolicy(eps=0.0).select_actions(q_values), [1, 0])
    random_actions = EpsGreedyQPolicy(eps=1.0).select_actions(np.zeros((3000, 3)))
    assert set(np.bincount(random_actions) // 100) <= {9, 10}  # about 1000 each
    boltzmann = BoltzmannQPolicy(tau=1.0).select_actions(np.tile(np.log([[1.0, 3.0]]), (4000, 1)))
    assert np.mean(boltzmann) == pytest.approx(0.75, abs=0.03)


# ----------------------------------------------------------------------- real environments


def cartpole_model():
    return keras.Sequential(
        [
            keras.Input((1, 4)),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(2),
        ]
    )


def test_cartpole_on_four_environments_learns():
    keras.utils.set_random_seed(1)
    envs = gymnasium.make_vec("CartPole-v1", num_envs=4, vectorization_mode="sync")
    envs.reset(seed=1)
    policy = LinearAnnealedPolicy(EpsGreedyQPolicy(), "eps", 1.0, 0.05, 0.0, nb_steps=4_000)
    agent = DQNAgent(
        cartpole_model(),
        policy,
        nb_actions=2,
        memory=SequentialMemory(limit=20_000),
        nb_steps_warmup=500,
        target_model_update=500,
        train_interval=1,
        batch_size=64,
        n_step=3,  # 1-step returns end this budget at 122-145 on seeds 1-3, 3-step at 308-337
        seed=1,
    )
    agent.compile(keras.optimizers.Adam(1e-3))
    history = agent.fit(envs, nb_steps=16_000, verbose=0)
    envs.close()
    assert len(history.history["episode_reward"]) > 60
    test_env = gymnasium.make("CartPole-v1")
    test_env.reset(seed=2)
    rewards = agent.test(test_env, nb_episodes=5, visualize=False, verbose=0)
    assert np.mean(rewards.history["episode_reward"]) >= 150


def test_async_vector_env_and_make_vec_work():
    for envs in (
        AsyncVectorEnv([lambda: gymnasium.make("CartPole-v1")] * 2),
        gymnasium.make_vec("CartPole-v1", num_envs=3),
    ):
        agent = DQNAgent(
            cartpole_model(),
            nb_actions=2,
            memory=SequentialMemory(limit=1000),
            nb_steps_warmup=50,
            batch_size=8,
            seed=0,
        )
        agent.compile(keras.optimizers.Adam(1e-3))
        history = agent.fit(envs, nb_steps=300, verbose=0)
        envs.close()
        assert agent.step == 300 and agent.memory.nb_transitions == 300
        assert sum(history.history["nb_episode_steps"]) <= 300
        assert len(set(history.episode)) == len(history.episode)  # one index per episode


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_discrete_observations_are_split_per_environment(mode):
    """FrozenLake's observations are one integer each, batched as a MultiDiscrete array."""
    envs = gymnasium.make_vec("FrozenLake-v1", num_envs=2, vectorization_mode=mode)
    config = DQNConfig(memory=1000, warmup=50, hidden=(16,), seed=0)
    agent = build_agent(gymnasium.make("FrozenLake-v1"), config)
    history = agent.fit(envs, nb_steps=200, verbose=0)
    envs.close()
    assert agent.step == 200 and agent.memory.nb_transitions == 200
    batch = agent.memory.sample_batch(64)
    assert set(np.unique(batch.state0)) <= set(range(16))  # whole cells, one per state
    assert len(history.episode) > 2


def test_noisy_and_distributional_agents_act_on_batches():
    noisy = keras.Sequential([keras.Input((1, 3)), keras.layers.Flatten(), NoisyDense(2, seed=0)])
    agent = make_agent(model=noisy, policy=GreedyQPolicy(), warmup=4)
    agent.fit(counting_envs(), nb_steps=20, verbose=0)
    assert agent.step == 20
    categorical = CategoricalDQNAgent(
        linear_model(2 * 5),
        nb_actions=2,
        memory=SequentialMemory(limit=100),
        nb_atoms=5,
        v_min=-1.0,
        v_max=1.0,
        batch_size=4,
        nb_steps_warmup=4,
        seed=0,
        jit_compile=False,
    )
    categorical.compile(keras.optimizers.Adam(1e-3))
    categorical.fit(counting_envs(), nb_steps=20, verbose=0)
    assert categorical.memory.nb_transitions == 20


# ----------------------------------------------------------------------- bad input


def test_bad_vector_envs_and_options_are_refused_clearly():
    agent = make_agent()
    with pytest.raises(ValueError, match="autoreset mode"):
        agent.fit(counting_envs(AutoresetMode.DISABLED), nb_steps=5)
    with pytest.raises(ValueError, match="nb_actions=2"):
        agent.fit(gymnasium.make_vec("Acrobot-v1", num_envs=2), nb_steps=5)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        agent.fit(gymnasium.make_vec("CartPole-v1", num_envs=2), nb_steps=5)
    with pytest.raises(ValueError, match="action_repetition"):
        agent.fit(counting_envs(), nb_steps=5, action_repetition=2)
    with pytest.raises(ValueError, match="nb_max_episode_steps"):
        agent.fit(gymnasium.make_vec("CartPole-v1", num_envs=2), nb_steps=5, nb_max_episode_steps=3)
    normalized = NormalizeObservation(counting_envs())  # refuses to reset one env alone
    with pytest.raises(ValueError, match="nb_max_episode_steps: the NormalizeObservation wrapper"):
        agent.fit(normalized, nb_steps=5, nb_max_episode_steps=3)
    assert agent.step == 0
    with pytest.raises(OneEnvironmentExpected, match="^env: test plays one environment"):
        agent.test(counting_envs())


class NanEnv(CountingEnv):
    """A CountingEnv whose observation at ``nan_at``, an ``(episode, t)`` pair, holds a NaN."""

    def __init__(self, env_id: int, length: int, nan_at: tuple) -> None:
        super().__init__(env_id, length)
        self.nan_at = nan_at

    def _observation(self):
        observation = super()._observation()
        if (self.episode, self.t) == self.nan_at:
            observation[2] = np.nan
        return observation


@pytest.mark.parametrize("mode", AUTORESET_MODES)
@pytest.mark.parametrize(
    "nan_at, where",
    [
        ((0, 2), r"step\(\): the observation at step 3"),
        ((0, 3), r"step\(\): the observation at step 5"),
        ((1, 0), r"reset\(\): the observation before step 6"),
    ],
    ids=["mid-episode", "episode's last", "next episode's first"],
)
def test_a_non_finite_observation_stops_training_naming_the_environment(mode, nan_at, where):
    envs = SyncVectorEnv(
        [lambda: CountingEnv(0, 3), lambda: NanEnv(1, 3, nan_at)], autoreset_mode=mode
    )
    agent = make_agent()
    with pytest.raises(
        FloatingPointError,
        match=rf"^env SyncVectorEnv, {where} in environment 1 is an array of shape \(3,\) "
        r"and dtype float32 holding non-finite values .*; training stopped",
    ):
        agent.fit(envs, nb_steps=20, verbose=0)
    stored = stored_transitions(agent.memory)
    assert stored and all(np.isfinite(s0 + s1).all() for s0, _, s1, _ in stored)


def test_state_windows_remember_only_acting_rows():
    windows = StateWindows(2, window_length=2)
    first = windows.observe(np.array([[1.0], [2.0]]), np.array([True, False]))
    second = windows.observe(np.array([[3.0], [4.0]]), np.array([True, True]))
    np.testing.assert_array_equal(first[:, :, 0], [[0, 1], [0, 2]])
    np.testing.assert_array_equal(second[:, :, 0], [[1, 3], [0, 4]])
