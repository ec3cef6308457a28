"""The agent-environment loop (``Agent.fit`` and ``Agent.test``) and the ``Processor`` hooks.

An agent implements ``forward(observation) -> action`` (act), ``backward(reward, terminal,
truncated) -> metrics`` (store the step and learn) and ``finish_episode(observation)`` (store
an episode's last observation). The loop here drives them against a gymnasium environment:

    for each step:
        action = agent.forward(observation)
        observation, reward, terminated, truncated = env.step(action)
        agent.backward(reward, terminal=terminated, truncated=truncated)
        if terminated or truncated: agent.finish_episode(observation); reset

gymnasium separates *terminated* (the MDP reached a terminal state: no future value) from
*truncated* (the episode was cut off, e.g. by a time limit: the future value still counts).
keras-rl treated both as terminal; kerasdqn bootstraps through truncation.
"""

from __future__ import annotations

import math
import timeit
import warnings

import numpy as np

from kerasdqn._checks import check_int
from kerasdqn._signals import StopRequest
from kerasdqn.callbacks import (
    CallbackList,
    History,
    TestLogger,
    TrainEpisodeLogger,
    TrainIntervalLogger,
    Visualizer,
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


class _Episode:
    """What the loop tracks about the episode in progress."""

    def __init__(self, index: int, observation) -> None:
        self.index = index
        self.observation = observation
        self.step = 0
        self.reward = 0.0
        self.metric_sums: np.ndarray | None = None
        self.metric_count = 0
        self.start_time = timeit.default_timer()

    def record(self, reward: float, metrics: np.ndarray) -> None:
        self.reward += reward
        if len(metrics) and not math.isnan(metrics[0]):
            self.metric_sums = (
                metrics.copy() if self.metric_sums is None else (self.metric_sums + metrics)
            )
            self.metric_count += 1


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
        self.step = 0
        self.episode = 0
        self.compiled = False

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
        """Raise a clear error if this agent cannot run on ``env``."""

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

        Ctrl-C or SIGTERM stops at the end of the current step, runs the callbacks'
        ``on_train_end`` and returns the History so far.
        """
        self._check_loop_arguments(
            env,
            "fit",
            action_repetition,
            nb_max_start_steps,
            nb_max_episode_steps,
            start_step_policy,
        )
        nb_steps = check_int("nb_steps", nb_steps, minimum=0)
        log_interval = check_int("log_interval", log_interval, minimum=1)
        logger = {1: TrainIntervalLogger(log_interval), 2: TrainEpisodeLogger()}.get(verbose)
        history = History()
        callbacks = self._callback_list(
            callbacks, logger, visualize, history, env, {"nb_steps": nb_steps}, training=True
        )
        self.training = True
        self._on_train_begin()
        callbacks.on_train_begin()
        end_step = self.step + nb_steps
        episode = None
        did_abort = False
        with StopRequest() as stop:
            try:
                while self.step < end_step and not stop.requested:
                    if episode is None:
                        episode = self._begin_episode(
                            env, callbacks, self.episode, nb_max_start_steps, start_step_policy
                        )
                        self.episode += 1
                    if self._run_step(
                        env, episode, callbacks, action_repetition, nb_max_episode_steps
                    ):
                        self._end_episode(episode, callbacks)
                        episode = None
            except KeyboardInterrupt:
                did_abort = True
            if episode is not None:
                # Close the unfinished episode, so no stored transition crosses into the next.
                self.finish_episode(episode.observation)
            did_abort = did_abort or stop.requested
        callbacks.on_train_end({"did_abort": did_abort})
        self._on_train_end()
        self.training = False
        return history

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
        counter are left untouched.
        """
        self._check_loop_arguments(
            env,
            "test",
            action_repetition,
            nb_max_start_steps,
            nb_max_episode_steps,
            start_step_policy,
        )
        nb_episodes = check_int("nb_episodes", nb_episodes, minimum=0)
        history = History()
        callbacks = self._callback_list(
            callbacks,
            TestLogger() if verbose >= 1 else None,
            visualize,
            history,
            env,
            {"nb_episodes": nb_episodes},
            training=False,
        )
        self.training = False
        self._on_test_begin()
        callbacks.on_train_begin()
        for index in range(nb_episodes):
            episode = self._begin_episode(
                env, callbacks, index, nb_max_start_steps, start_step_policy
            )
            while not self._run_step(
                env, episode, callbacks, action_repetition, nb_max_episode_steps
            ):
                pass
            self._end_episode(episode, callbacks)
        callbacks.on_train_end()
        self._on_test_end()
        return history

    def _check_loop_arguments(
        self,
        env,
        method,
        action_repetition,
        nb_max_start_steps,
        nb_max_episode_steps,
        start_step_policy=None,
    ) -> None:
        if not self.compiled:
            raise RuntimeError(
                f"{method}: the agent is not compiled yet; call agent.compile(optimizer) first"
            )
        check_int("action_repetition", action_repetition, minimum=1)
        if start_step_policy is not None and not callable(start_step_policy):
            raise TypeError(
                f"start_step_policy: expected None or a function observation -> action, "
                f"got {start_step_policy!r}"
            )
        check_int("nb_max_start_steps", nb_max_start_steps, minimum=0)
        if nb_max_episode_steps is not None:
            check_int("nb_max_episode_steps", nb_max_episode_steps, minimum=1)
        self.check_env(env)

    def _callback_list(self, callbacks, logger, visualize, history, env, params, training):
        if callbacks is not None and not isinstance(callbacks, list | tuple):
            raise TypeError(f"callbacks: expected a list of callbacks, got {callbacks!r}")
        chosen = list(callbacks or [])
        chosen += self._own_callbacks() if training else []
        chosen += [logger] if logger is not None else []
        chosen += [Visualizer()] if visualize else []
        chosen.append(history)
        return CallbackList(chosen, self, env, params)

    def _own_callbacks(self) -> list:
        """Callbacks the agent itself needs during ``fit`` (e.g. target-network updates)."""
        return []

    def _begin_episode(self, env, callbacks, index, nb_max_start_steps, start_step_policy):
        callbacks.on_episode_begin(index)
        self.reset_states()
        observation = self._reset(env)
        nb_random_steps = 0
        if nb_max_start_steps:
            nb_random_steps = int(self.rng.integers(nb_max_start_steps + 1))
        for _ in range(nb_random_steps):
            if start_step_policy is None:
                action = int(self.rng.integers(env.action_space.n))
            else:
                action = start_step_policy(observation)
            action = self.processor.process_action(action) if self.processor else action
            callbacks.on_action_begin(action)
            observation, _, terminated, truncated, _ = self._env_step(env, action)
            callbacks.on_action_end(action)
            if terminated or truncated:
                _warn_start_steps(nb_random_steps)
                observation = self._reset(env)
                break
        return _Episode(index, observation)

    def _reset(self, env):
        observation, _ = env.reset()
        if self.processor is not None:
            observation = self.processor.process_observation(observation)
        return observation

    def _env_step(self, env, action):
        """One ``env.step``, processed and checked for non-finite numbers."""
        result = env.step(action)
        if len(result) != 5:
            raise TypeError(
                f"env: step() returned {len(result)} values; kerasdqn needs gymnasium's five "
                "(observation, reward, terminated, truncated, info)"
            )
        observation, reward, terminated, truncated, info = result
        if self.processor is not None:
            observation, reward, _, info = self.processor.process_step(
                observation, reward, terminated or truncated, info
            )
        _check_finite(observation, reward, self.step)
        return observation, float(reward), bool(terminated), bool(truncated), info

    def _run_step(self, env, episode, callbacks, action_repetition, nb_max_episode_steps) -> bool:
        """Act once, learn from it, and say whether the episode ended."""
        callbacks.on_step_begin(episode.step)
        action = self.forward(episode.observation)
        env_action = self.processor.process_action(action) if self.processor else action
        reward = 0.0
        for _ in range(action_repetition):
            callbacks.on_action_begin(env_action)
            observation, step_reward, terminated, truncated, info = self._env_step(env, env_action)
            callbacks.on_action_end(env_action)
            reward += step_reward
            if terminated or truncated:
                break
        if nb_max_episode_steps is not None and episode.step + 1 >= nb_max_episode_steps:
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

    def _end_episode(self, episode, callbacks) -> None:
        self.finish_episode(episode.observation)
        logs = {
            "episode_reward": episode.reward,
            "nb_episode_steps": episode.step,
            "nb_steps": self.step if self.training else episode.step,
        }
        if self.training:
            names = self.metrics_names
            if episode.metric_count:
                means = episode.metric_sums / episode.metric_count
            else:
                means = np.full(len(names), np.nan)
            logs.update((name, float(value)) for name, value in zip(names, means))
        callbacks.on_episode_end(episode.index, logs)


def _check_finite(observation, reward, step: int) -> None:
    if not math.isfinite(reward):
        raise FloatingPointError(f"env: the reward at step {step} is {reward}; training stopped")
    array = np.asarray(observation)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise FloatingPointError(
            f"env: the observation at step {step} holds non-finite values ({array}); "
            "training stopped"
        )


def _warn_start_steps(nb_random_steps: int) -> None:
    warnings.warn(
        f"The episode ended within its {nb_random_steps} random start steps; consider a "
        "smaller nb_max_start_steps.",
        stacklevel=3,
    )
