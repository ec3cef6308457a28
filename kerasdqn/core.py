"""The agent-environment loop (``Agent.fit`` and ``Agent.test``) and the ``Processor`` hooks.

An agent implements ``forward(observation) -> action`` (act), ``backward(reward, terminal,
truncated) -> metrics`` (store the step and learn) and ``finish_episode(observation)`` (store
an episode's last observation). The loop here drives them against a gymnasium environment:

    for each step:
        action = agent.forward(observation)
        observation, reward, terminated, truncated = env.step(action)
        agent.backward(reward, terminal=terminated, truncated=truncated)
        if terminated or truncated: agent.finish_episode(observation); reset

The environment is held to gymnasium's contract: checked once before the first ``reset``
(``Agent.check_env``), then each value where it enters the loop (``reset``'s pair, ``step``'s
five values, numeric finite observations of the expected shape, real finite rewards), so a
misbehaving environment is stopped at the value that broke it with an error naming it, the
method and the step (see ``kerasdqn._env_checks``).

Episode ends, in the words used throughout kerasdqn: an episode *terminated* when the MDP
reached a terminal state (gymnasium's ``terminated``: no future value; keras-rl's ``terminal``
means the same); it was *truncated* when it was cut off, e.g. by a time limit (gymnasium's
``truncated``: the future value still counts); it *ended* in either case (keras-rl's and
``Processor.process_step``'s ``done``). keras-rl treated both as terminal; kerasdqn bootstraps
through truncation.
"""

from __future__ import annotations

import os
import warnings

import gymnasium
import numpy as np

from kerasdqn._checks import check_int
from kerasdqn._env_checks import EnvContract, check_observation_space, check_one_env
from kerasdqn._signals import StopRequest
from kerasdqn.callbacks import (
    CallbackList,
    History,
    MetricMeans,
    TestLogger,
    TrainEpisodeLogger,
    TrainingCheckpoint,
    TrainIntervalLogger,
    Visualizer,
    checked_checkpoint_target,
)


class Processor:
    """Adapts between the environment and the agent (keras-rl's hooks); override what you need.

    ``process_observation`` sees every observation, ``process_reward`` every reward,
    ``process_action`` every action before the environment gets it, and
    ``process_state_batch`` every batch of stacked states before the network sees it.
    """

    def process_step(self, observation, reward, done, info):
        """Process one environment step; ``done`` is ``terminated or truncated``."""
        return (
            self.process_observation(observation),
            self.process_reward(reward),
            done,
            self.process_info(info),
        )

    def process_observation(self, observation):
        return observation

    def process_reward(self, reward):
        return reward

    def process_info(self, info):
        return info

    def process_action(self, action):
        return action

    def process_state_batch(self, batch):
        return batch

    @property
    def metrics_names(self) -> list[str]:
        return []

    @property
    def metrics(self) -> list[float]:
        return []


class Episode:
    """What a training or test loop tracks about one episode in progress."""

    def __init__(self, index: int, observation, nb_metrics: int) -> None:
        self.index = index
        self.observation = observation
        self.step = 0
        self.reward = 0.0
        self.metric_means = MetricMeans(nb_metrics)

    def record(self, reward: float, metrics: np.ndarray) -> None:
        self.reward += reward
        self.metric_means.add(metrics)


class Agent:
    """Base class of agents: the ``fit``/``test`` loop over a gymnasium environment.

    Args:
        processor: optional hooks between the environment and the agent.
        seed: seeds the agent's random generator (exploration, replay sampling, random
            starts). Without it, the generator is seeded from NumPy's global state.

    Attributes:
        step: training steps taken so far. It continues across ``fit`` calls (unlike
            keras-rl's), so warm-up, annealing and target-update schedules never restart.
        episode: training episodes begun so far, continuing likewise.
        training: whether the agent is inside ``fit``.
        stop_training: set it to True (from a callback) to end ``fit`` after the current
            step, as Keras's callbacks do with ``model.stop_training``.
    """

    def __init__(self, processor: Processor | None = None, seed: int | None = None) -> None:
        if processor is not None and not isinstance(processor, Processor):
            raise TypeError(f"processor: expected a kerasdqn.core.Processor, got {processor!r}")
        if seed is not None:
            check_int("seed", seed, minimum=0)
        else:
            # Drawn from NumPy's global state, so np.random.seed makes runs repeatable.
            seed = int(np.random.randint(2**31))
        self.rng = np.random.default_rng(seed)
        self.processor = processor
        self.training = False
        self.stop_training = False
        self.step = 0
        self.episode = 0
        self.compiled = False
        self.history: History | None = None  # the History of the latest fit

    # --------------------------------------------------------------- to implement

    def forward(self, observation) -> int:
        """The action to take on ``observation``."""
        raise NotImplementedError

    def backward(self, reward: float, terminal: bool, truncated: bool = False) -> np.ndarray:
        """Take in the outcome of the last action; return the step's metrics (NaN if none)."""
        raise NotImplementedError

    def finish_episode(self, observation) -> None:
        """Take in the last observation of an episode (no action follows it)."""

    def reset_states(self) -> None:
        """Forget everything about the previous episode."""

    def check_env(self, env) -> None:
        """Raise a clear error if this agent cannot run on ``env``; ``fit`` and ``test`` call it
        before touching ``env``.

        This base check refuses an observation space the agent cannot take without a
        ``Processor``: one without a shape (``Dict``, ``Tuple``), or one whose shape is not
        ``expected_observation_shape()``. Agents extend it and call ``super().check_env(env)``.
        """
        check_observation_space(env, self.processor is not None, self.expected_observation_shape())

    def expected_observation_shape(self) -> tuple | None:
        """The shape each raw observation must have when there is no ``Processor`` (a None in
        it: any size there), or None where the agent does not know it; then the observation
        space's shape is checked instead."""
        return None

    @property
    def metrics_names(self) -> list[str]:
        return []

    def _on_train_begin(self) -> None:
        pass

    def _on_train_end(self) -> None:
        pass

    def _on_test_begin(self) -> None:
        pass

    def _on_test_end(self) -> None:
        pass

    def save_checkpoint(self, filepath, pending_observation=None) -> None:
        """Write everything training depends on (see ``DQNAgent.save_checkpoint``)."""
        raise NotImplementedError

    # --------------------------------------------------------------- the loop

    def fit(
        self,
        env,
        nb_steps: int,
        action_repetition: int = 1,
        callbacks: list | None = None,
        verbose: int = 1,
        visualize: bool = False,
        nb_max_start_steps: int = 0,
        start_step_policy=None,
        log_interval: int = 10000,
        nb_max_episode_steps: int | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_interval: int | None = None,
    ) -> History:
        """Train for ``nb_steps`` more environment steps; return the episodes' History.

        Args:
            env: a gymnasium environment (``reset`` gives ``(obs, info)``, ``step`` five values).
            nb_steps: how many steps to train, counted from where the agent's ``step`` is.
            action_repetition: repeat each action that many times, summing the rewards.
            callbacks: more callbacks (kerasdqn's or Keras's).
            verbose: 0 silent, 1 a progress bar per ``log_interval`` steps, 2 a line per episode.
            visualize: render the environment after each action.
            nb_max_start_steps: at each episode start, take up to that many (uniformly drawn)
                steps with ``start_step_policy`` (random actions if None), not recorded.
            log_interval: steps per progress bar with ``verbose=1``.
            nb_max_episode_steps: cut episodes off after that many steps, as a time limit:
                the cut is a truncation, so the last transition still bootstraps.
            checkpoint_dir: write ``checkpoint.h5`` there (atomically) every
                ``checkpoint_interval`` steps, when training ends and when it is interrupted.
            checkpoint_interval: steps between checkpoints (None: only at the end).

        Ctrl-C or SIGTERM stops at the end of the current step, saves a checkpoint if
        ``checkpoint_dir`` is set, runs the callbacks' ``on_train_end`` and returns the History
        so far.

        ``env`` may be a gymnasium ``VectorEnv`` (``SyncVectorEnv``, ``AsyncVectorEnv``,
        ``gymnasium.make_vec``): one network call then acts for all its environments, each
        environment's transitions are stored as their own stream, and ``nb_steps`` and every
        schedule count environment steps summed over the environments, so gradient steps
        per environment step stay ``gradient_steps / train_interval`` (see
        ``kerasdqn.vector``). ``action_repetition``, ``visualize`` and the random start steps
        are then not available.
        """
        if isinstance(env, gymnasium.vector.VectorEnv):
            return self._fit_vector(
                env,
                nb_steps,
                callbacks,
                verbose,
                log_interval,
                nb_max_episode_steps,
                (checkpoint_dir, checkpoint_interval),
                (action_repetition, visualize, nb_max_start_steps, start_step_policy),
            )
        loop = self._loop(
            env,
            "fit",
            callbacks,
            action_repetition,
            nb_max_start_steps,
            start_step_policy,
            nb_max_episode_steps,
        )
        nb_steps = check_int("nb_steps", nb_steps, minimum=0)
        log_interval = check_int("log_interval", log_interval, minimum=1)
        verbose = check_int("verbose", verbose, minimum=0)
        loop.callbacks += _checkpoint_callbacks(checkpoint_dir, checkpoint_interval)
        history = self.history = History()  # as Keras's fit sets model.history
        loop.callbacks = self._callback_list(
            loop, _train_logger(verbose, log_interval), visualize, history, {"nb_steps": nb_steps}
        )
        self.training = True
        self.stop_training = False
        self._on_train_begin()
        loop.callbacks.on_train_begin()
        interruption = self._train_until(loop, self.step + nb_steps)
        loop.callbacks.on_train_end(
            {"did_abort": interruption is not None, "interrupted_by": interruption}
        )
        self._on_train_end()
        self.training = False
        return history

    def _fit_vector(
        self,
        env,
        nb_steps,
        callbacks,
        verbose,
        log_interval,
        nb_max_episode_steps,
        checkpointing,
        single_env_options,
    ) -> History:
        """``fit`` on a vector environment: check the arguments, then run
        ``kerasdqn.vector``'s loop."""
        from kerasdqn import vector  # it builds on this module, so it is imported on use

        self._check_ready("fit", callbacks)
        vector.check_vector_options(*single_env_options, nb_max_episode_steps, env)
        vector.check_vector_env(self, env)
        nb_steps = check_int("nb_steps", nb_steps, minimum=0)
        log_interval = check_int("log_interval", log_interval, minimum=1)
        verbose = check_int("verbose", verbose, minimum=0)
        chosen = list(callbacks or []) + _checkpoint_callbacks(*checkpointing)
        logger = _train_logger(verbose, log_interval)
        return vector.fit_vector(self, env, nb_steps, chosen, logger, nb_max_episode_steps)

    def _train_until(self, loop: _Loop, end_step: int) -> str | None:
        """Take training steps until ``end_step``, a signal or a callback's
        ``agent.stop_training = True``; return the signal's name if one stopped it early
        (``'SIGINT'`` for Ctrl-C, ``'SIGTERM'``), else None."""
        interruption = None
        with StopRequest() as stop:
            try:
                while self.step < end_step and not (stop.requested or self.stop_training):
                    self._train_step(loop)
            except KeyboardInterrupt:
                interruption = "SIGINT"
            if loop.episode is not None:
                # Close the unfinished episode, so no stored transition crosses into the next.
                self.finish_episode(loop.episode.observation)
        return interruption or stop.signal_name

    def test(
        self,
        env,
        nb_episodes: int = 1,
        action_repetition: int = 1,
        callbacks: list | None = None,
        visualize: bool = True,
        nb_max_episode_steps: int | None = None,
        nb_max_start_steps: int = 0,
        start_step_policy=None,
        verbose: int = 1,
    ) -> History:
        """Play ``nb_episodes`` episodes with the test policy, without learning.

        Returns a History with ``episode_reward``, ``nb_episode_steps`` and ``nb_steps`` (the
        episode's steps, as in keras-rl's test) per episode. The replay memory and the step
        counter are left untouched. ``env`` is one environment, not a ``VectorEnv``.
        """
        check_one_env("env", env, "test")
        loop = self._loop(
            env,
            "test",
            callbacks,
            action_repetition,
            nb_max_start_steps,
            start_step_policy,
            nb_max_episode_steps,
        )
        nb_episodes = check_int("nb_episodes", nb_episodes, minimum=0)
        verbose = check_int("verbose", verbose, minimum=0)
        history = History()
        logger = TestLogger() if verbose >= 1 else None
        loop.callbacks = self._callback_list(
            loop, logger, visualize, history, {"nb_episodes": nb_episodes}
        )
        self.training = False
        self._on_test_begin()
        loop.callbacks.on_train_begin()
        for index in range(nb_episodes):
            loop.episode = self._begin_episode(loop, index)
            while not self._run_step(loop):
                pass
            self._end_episode(loop)
        loop.callbacks.on_train_end()
        self._on_test_end()
        return history

    def _loop(
        self,
        env,
        method,
        callbacks,
        action_repetition,
        nb_max_start_steps,
        start_step_policy,
        nb_max_episode_steps,
    ) -> _Loop:
        """Check the arguments ``fit`` and ``test`` share; gather them."""
        self._check_ready(method, callbacks)
        check_int("action_repetition", action_repetition, minimum=1)
        check_int("nb_max_start_steps", nb_max_start_steps, minimum=0)
        if start_step_policy is not None and not callable(start_step_policy):
            raise TypeError(
                "start_step_policy: expected None or a function observation -> action, "
                f"got {start_step_policy!r}"
            )
        if nb_max_episode_steps is not None:
            check_int("nb_max_episode_steps", nb_max_episode_steps, minimum=1)
        self.check_env(env)
        return _Loop(
            env,
            EnvContract.for_agent(env, self),
            list(callbacks or []),
            action_repetition,
            nb_max_start_steps,
            start_step_policy,
            nb_max_episode_steps,
        )

    def _check_ready(self, method: str, callbacks) -> None:
        """Raise unless the agent is compiled and ``callbacks`` is a list (or None)."""
        if not self.compiled:
            raise RuntimeError(
                f"{method}: the agent is not compiled yet; call agent.compile(optimizer) first"
            )
        if callbacks is not None and not isinstance(callbacks, list | tuple):
            raise TypeError(f"callbacks: expected a list of callbacks, got {callbacks!r}")

    def _callback_list(self, loop, logger, visualize, history, params) -> CallbackList:
        chosen = list(loop.callbacks)
        chosen += [logger] if logger is not None else []
        chosen += [Visualizer()] if visualize else []
        chosen.append(history)
        return CallbackList(chosen, self, loop.env, params)

    def _train_step(self, loop: _Loop) -> None:
        """One training step, beginning or ending an episode as needed."""
        if loop.episode is None:
            loop.episode = self._begin_episode(loop, self.episode)
            self.episode += 1
        if self._run_step(loop):
            self._end_episode(loop)
            loop.episode = None

    def _begin_episode(self, loop: _Loop, index: int) -> Episode:
        loop.callbacks.on_episode_begin(index)
        self.reset_states()
        loop.contract.episode = index
        observation = self._reset(loop)
        nb_random_steps = 0
        if loop.nb_max_start_steps:
            nb_random_steps = int(self.rng.integers(loop.nb_max_start_steps + 1))
        for _ in range(nb_random_steps):
            if loop.start_step_policy is None:
                action = int(self.rng.integers(loop.env.action_space.n))
            else:
                action = loop.start_step_policy(observation)
            action = self.processor.process_action(action) if self.processor else action
            loop.callbacks.on_action_begin(action)
            observation, _, terminated, truncated, _ = self._env_step(loop, action)
            loop.callbacks.on_action_end(action)
            if terminated or truncated:
                _warn_start_steps(nb_random_steps)
                observation = self._reset(loop)
                break
        return Episode(index, observation, len(self.metrics_names))

    def _reset(self, loop: _Loop):
        """One ``env.reset``: its observation, processed and held to the contract."""
        observation = loop.contract.reset_observation(loop.env.reset())
        if self.processor is not None:
            observation = self.processor.process_observation(observation)
        loop.contract.observation(observation, "reset")
        return observation

    def _env_step(self, loop: _Loop, action):
        """One ``env.step``: its five values, processed and held to the contract (see
        ``kerasdqn._env_checks``), the reward as a float."""
        result = loop.contract.step_result(loop.env.step(action))
        observation, reward, terminated, truncated, info = result
        if self.processor is not None:
            observation, reward, _, info = self.processor.process_step(
                observation, reward, terminated or truncated, info
            )
        reward = loop.contract.step_values(observation, reward)
        return observation, reward, bool(terminated), bool(truncated), info

    def _run_step(self, loop: _Loop) -> bool:
        """Act once, learn from it, and say whether the episode ended."""
        episode, callbacks = loop.episode, loop.callbacks
        callbacks.on_step_begin(episode.step)
        action = self.forward(episode.observation)
        env_action = self.processor.process_action(action) if self.processor else action
        reward = 0.0
        for _ in range(loop.action_repetition):
            callbacks.on_action_begin(env_action)
            observation, step_reward, terminated, truncated, info = self._env_step(loop, env_action)
            callbacks.on_action_end(env_action)
            reward += step_reward
            if terminated or truncated:
                break
        if loop.nb_max_episode_steps is not None and episode.step + 1 >= loop.nb_max_episode_steps:
            truncated = True
        metrics = self.backward(reward, terminal=terminated, truncated=truncated)
        episode.record(reward, metrics)
        callbacks.on_step_end(
            episode.step,
            {
                "action": action,
                "observation": observation,
                "reward": reward,
                "metrics": metrics,
                "episode": episode.index,
                "info": info,
            },
        )
        episode.step += 1
        if self.training:
            self.step += 1
        episode.observation = observation
        return terminated or truncated

    def _end_episode(self, loop: _Loop) -> None:
        episode = loop.episode
        self.finish_episode(episode.observation)
        loop.callbacks.on_episode_end(episode.index, self.episode_logs(episode))

    def episode_logs(self, episode: Episode) -> dict:
        """The logs of an episode that just ended: ``episode_reward``, ``nb_episode_steps``,
        ``nb_steps`` (the agent's step count when training, the episode's steps when testing)
        and, when training, the episode's mean loss and metrics."""
        logs = {
            "episode_reward": episode.reward,
            "nb_episode_steps": episode.step,
            "nb_steps": self.step if self.training else episode.step,
        }
        if self.training:
            means = episode.metric_means.means()
            logs.update((name, float(value)) for name, value in zip(self.metrics_names, means))
        return logs


class _Loop:
    """The options of one ``fit`` or ``test`` call, the contract its environment is held to,
    and the episode in progress."""

    def __init__(
        self,
        env,
        contract: EnvContract,
        callbacks,
        action_repetition,
        nb_max_start_steps,
        start_step_policy,
        nb_max_episode_steps,
    ) -> None:
        self.env = env
        self.contract = contract
        self.callbacks = callbacks
        self.action_repetition = action_repetition
        self.nb_max_start_steps = nb_max_start_steps
        self.start_step_policy = start_step_policy
        self.nb_max_episode_steps = nb_max_episode_steps
        self.episode: Episode | None = None


def _train_logger(verbose: int, log_interval: int):
    """keras-rl's progress output for ``verbose``: none, a bar per interval, a line per episode."""
    if verbose == 1:
        return TrainIntervalLogger(log_interval)
    return TrainEpisodeLogger() if verbose >= 2 else None


def check_checkpoint_arguments(checkpoint_dir, checkpoint_interval) -> None:
    """Raise naming the argument unless ``fit``'s ``checkpoint_dir`` and
    ``checkpoint_interval`` are usable: no interval without a directory, a directory path
    where files can be written, an interval of at least 1."""
    if _checkpoint_dir_given(checkpoint_dir, checkpoint_interval):
        checked_checkpoint_target(checkpoint_dir, checkpoint_interval)


def _checkpoint_callbacks(checkpoint_dir, checkpoint_interval) -> list:
    """``fit``'s checkpoint arguments as the callback they stand for (none without a dir)."""
    if not _checkpoint_dir_given(checkpoint_dir, checkpoint_interval):
        return []
    return [TrainingCheckpoint(checkpoint_dir, checkpoint_interval)]


def _checkpoint_dir_given(checkpoint_dir, checkpoint_interval) -> bool:
    """Whether ``checkpoint_dir`` is given, after refusing an interval without one and a
    directory that is not a path (the callback checks the rest)."""
    if checkpoint_dir is None:
        if checkpoint_interval is not None:
            raise ValueError("checkpoint_interval: set checkpoint_dir too")
        return False
    if not isinstance(checkpoint_dir, str | os.PathLike):
        raise TypeError(f"checkpoint_dir: expected a directory path, got {checkpoint_dir!r}")
    return True


def _warn_start_steps(nb_random_steps: int) -> None:
    warnings.warn(
        f"The episode ended within its {nb_random_steps} random start steps; consider a "
        "smaller nb_max_start_steps.",
        stacklevel=3,
    )
