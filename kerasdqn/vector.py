"""``fit`` on a gymnasium ``VectorEnv``: one network call acts for all environments, and each
environment's transitions go into the replay memory as their own stream.

    observations = env.reset()
    repeat:
        actions = agent.forward_batch(states of all environments)   # one network call
        observations, rewards, terminated, truncated = env.step(actions)
        for each environment k, in order:
            if its step was an autoreset: begin its new episode (no transition, not counted)
            else: store (s, a, r, s', terminated, truncated) as stream k, learn when due,
                  copy the target network when due, agent.step += 1, log the episode if it
                  ended

Autoreset: in gymnasium 1.x's default ``NEXT_STEP`` mode, the ``step`` after an environment's
episode ended resets it, ignores its action and returns the new episode's first observation
with reward 0: that step is not a transition and is not counted. In ``SAME_STEP`` mode the
ending step already returns the next episode's first observation; the episode's last one is
in ``info['final_obs']`` and the ending step's own info in ``info['final_info']``, and the
transition takes those. Other modes are refused.

Each environment's values enter as one environment's do in ``kerasdqn.core``: a step's
observation, reward, ``done`` (the environment's ``terminated or truncated``) and info go
through ``Processor.process_step``, a reset's observation through ``process_observation``
(``Dict`` and ``Tuple`` observations are split per environment first), and both are then
held to the contract of ``kerasdqn._env_checks`` (finite observations, of the agent's shape
without a processor), whose errors also name the environment's index.

Counting: ``nb_steps`` and ``agent.step`` count environment steps summed over the
environments (real transitions only), and every schedule is defined on that count: warm-up,
the policy's annealing, learning every ``train_interval`` steps with ``gradient_steps``
gradient steps each time (so one vector step of N environments may owe several), and the hard
target copy every ``target_model_update`` steps (a soft update follows each gradient step, as
with one environment). Gradient steps per environment step are therefore
``gradient_steps / train_interval`` whatever the number of environments.

Transitions of one vector step are handled in environment order, each one exactly as the
single-environment loop handles a step: learning that falls due at environment k's transition
samples a memory holding environments 0..k's transitions of that step. Callbacks see every
transition (``on_step_begin`` / ``on_step_end``, whose logs add ``stream``, the environment's
index) and every episode of every environment (``on_episode_begin`` / ``on_episode_end`` with
a global, increasing episode index), so ``History``, the progress output and TensorBoard
cover all of them.
"""

from __future__ import annotations

from collections.abc import Iterator

import gymnasium
import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorEnv, VectorWrapper
from gymnasium.vector.utils import iterate
from gymnasium.wrappers.vector import NormalizeObservation

from kerasdqn._checks import check_int
from kerasdqn._env_checks import EnvContract, env_name, shape_matches
from kerasdqn._signals import StopRequest
from kerasdqn.callbacks import CallbackList, History
from kerasdqn.core import Episode
from kerasdqn.state import StateWindows

SUPPORTED_AUTORESET_MODES = (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP)


def is_vector_env(env) -> bool:
    """Whether ``env`` is a gymnasium vector environment (``fit`` then runs this loop)."""
    return isinstance(env, VectorEnv)


def autoreset_mode(env: VectorEnv) -> AutoresetMode:
    """``env``'s autoreset mode (gymnasium's default, ``NEXT_STEP``, when it does not say);
    ``ValueError`` naming the mode if this loop cannot handle it."""
    mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
    try:
        mode = AutoresetMode(mode)
    except ValueError:
        mode = None
    if mode not in SUPPORTED_AUTORESET_MODES:
        raise ValueError(
            f"env {env_name(env)}: autoreset mode {env.metadata.get('autoreset_mode')!r} is "
            "not supported; fit handles AutoresetMode.NEXT_STEP (gymnasium's default) and "
            "AutoresetMode.SAME_STEP"
        )
    return mode


def check_vector_env(agent, env: VectorEnv) -> None:
    """Raise a clear error, before ``env`` is touched, unless ``agent`` can train on it: a
    batch-acting agent with a multi-stream memory, a Discrete single action space of the
    agent's ``nb_actions``, single observations of the shape the agent takes (without a
    ``Processor``), and a supported autoreset mode."""
    name = env_name(env)
    memory = getattr(agent, "memory", None)
    if not callable(getattr(agent, "forward_batch", None)) or not callable(
        getattr(memory, "append_transition", None)
    ):
        raise TypeError(
            f"env {name}: fit on a VectorEnv needs an agent that acts on batches "
            "(forward_batch) with a memory that takes whole transitions (append_transition), "
            f"such as DQNAgent with SequentialMemory; {type(agent).__name__} has not"
        )
    space = env.single_action_space
    if not isinstance(space, gymnasium.spaces.Discrete):
        raise ValueError(
            f"env {name}: DQN needs a Discrete action space per environment, got {space!r}"
        )
    if int(space.n) != agent.nb_actions:
        raise ValueError(
            f"env {name}: each environment has {int(space.n)} actions but the agent was built "
            f"with nb_actions={agent.nb_actions}"
        )
    shape = getattr(env.single_observation_space, "shape", None)
    expected = agent.expected_observation_shape()
    if agent.processor is None and (shape is None or not shape_matches(tuple(shape), expected)):
        raise ValueError(
            f"env {name}: each environment's observations have shape {shape} but the agent "
            f"takes observations of shape {expected}"
        )
    autoreset_mode(env)


def check_vector_options(
    action_repetition, visualize, nb_max_start_steps, start_step_policy, nb_max_episode_steps, env
) -> None:
    """Refuse the ``fit`` options a vector environment does not take, naming each."""
    refused = {
        "action_repetition": action_repetition != 1,
        "visualize": bool(visualize),
        "nb_max_start_steps": nb_max_start_steps != 0,
        "start_step_policy": start_step_policy is not None,
    }
    for name, given in refused.items():
        if given:
            raise ValueError(
                f"{name}: not supported when fit's env is a VectorEnv; leave it at its default"
            )
    if nb_max_episode_steps is not None:
        check_int("nb_max_episode_steps", nb_max_episode_steps, minimum=1)
        refusing = _refuses_partial_resets(env)
        if refusing is not None:
            raise ValueError(
                f"nb_max_episode_steps: {refusing} cannot reset one of the environments "
                "alone; make the environments with a time limit instead, e.g. "
                "gymnasium.make_vec(env_id, num_envs, max_episode_steps=...)"
            )


def _refuses_partial_resets(env: VectorEnv) -> str | None:
    """The name of what, in ``env``, cannot reset some of its environments alone (which
    ``nb_max_episode_steps`` needs): a vector environment other than gymnasium's two, or a
    wrapper that refuses a ``reset_mask`` (``NormalizeObservation``); None if nothing does."""
    while isinstance(env, VectorWrapper):
        if isinstance(env, NormalizeObservation):
            return f"the {type(env).__name__} wrapper"
        env = env.env
    return None if isinstance(env, SyncVectorEnv | AsyncVectorEnv) else type(env).__name__


def fit_vector(
    agent, env: VectorEnv, nb_steps: int, callbacks: list, logger, nb_max_episode_steps
) -> History:
    """Train ``agent`` on ``env`` for ``nb_steps`` more environment steps summed over its
    environments (``Agent.fit`` checks the arguments and calls this); return the History."""
    history = agent.history = History()
    chosen = list(callbacks) + ([logger] if logger is not None else []) + [history]
    callback_list = CallbackList(chosen, agent, env, {"nb_steps": nb_steps})
    loop = VectorLoop(agent, env, callback_list, nb_max_episode_steps)
    agent.training = True
    agent.stop_training = False
    agent._on_train_begin()
    callback_list.on_train_begin()
    interruption = loop.train_until(agent.step + nb_steps)
    callback_list.on_train_end(
        {"did_abort": interruption is not None, "interrupted_by": interruption}
    )
    agent._on_train_end()
    agent.training = False
    return history


class StreamContract(EnvContract):
    """The contract of one environment (``kerasdqn._env_checks``), held by each environment
    of a vector environment in turn: the same checks and messages, which also name the
    environment (``index``) whose value broke it."""

    index = 0

    @classmethod
    def for_vector_env(cls, env: VectorEnv, agent) -> StreamContract:
        """Each observation of the agent's shape (any shape with a processor)."""
        if agent.processor is not None:
            return cls(env, agent, None)
        expected = tuple(agent.expected_observation_shape())
        return cls(env, agent, expected, "the shape the agent takes")

    def _where(self, method: str) -> str:
        return f"{super()._where(method)} in environment {self.index}"


class VectorLoop:
    """The episodes in progress in each environment of one ``fit`` on a vector environment,
    and the steps that move them on (see the module docstring)."""

    def __init__(self, agent, env: VectorEnv, callbacks: CallbackList, nb_max_episode_steps):
        self.agent = agent
        self.env = env
        self.callbacks = callbacks
        self.nb_envs = int(env.num_envs)
        self.nb_max_episode_steps = nb_max_episode_steps
        self.same_step = autoreset_mode(env) is AutoresetMode.SAME_STEP
        self.contract = StreamContract.for_vector_env(env, agent)
        memory = agent.memory
        self.windows = StateWindows(
            self.nb_envs, memory.window_length, getattr(memory, "ignore_episode_boundaries", False)
        )
        self.episodes: list = [None] * self.nb_envs
        self.resetting = np.zeros(self.nb_envs, dtype=bool)  # next step is an autoreset
        self.observations: np.ndarray | None = None

    def train_until(self, end_step: int) -> str | None:
        """Vector steps until ``agent.step`` reaches ``end_step``, a signal or a callback's
        ``agent.stop_training``; return the signal's name if one stopped it early."""
        agent = self.agent
        interruption = None
        with StopRequest() as stop:

            def due() -> bool:
                return agent.step < end_step and not (stop.requested or agent.stop_training)

            try:
                # As with one environment, no episode begins unless a step is due.
                if due():
                    self._begin_all()
                    while due():
                        self.vector_step(end_step)
            except KeyboardInterrupt:
                interruption = "SIGINT"
            if self.observations is not None:
                # Close every unfinished episode, so no stored transition links into the next.
                for index in range(self.nb_envs):
                    agent.memory.end_episode(index)
        return interruption or stop.signal_name

    def _begin_all(self) -> None:
        """Reset every environment and begin an episode in each, streams starting afresh."""
        observations, _ = self.env.reset()
        if self.agent.processor is None:
            self._check_shape(np.asarray(observations))
        current = [
            self._reset_observation(index, observation)
            for index, observation in enumerate(self._split(observations))
        ]
        self.observations = np.stack(current)
        for index in range(self.nb_envs):
            self.agent.memory.end_episode(index)
            self._begin_episode(index, current[index])

    def vector_step(self, end_step: int) -> None:
        """Act in every environment with one network call, step them all, and take in each
        environment's outcome until ``agent.step`` reaches ``end_step``."""
        agent, callbacks = self.agent, self.callbacks
        acting = ~self.resetting
        actions = agent.forward_batch(self.windows.observe(self.observations, acting))
        env_actions = self._env_actions(actions)
        for index in np.flatnonzero(acting):
            callbacks.on_action_begin(env_actions[index])
        observations, rewards, terminated, truncated, infos = self.env.step(env_actions)
        self._check_rewards(rewards)
        for index in np.flatnonzero(acting):
            callbacks.on_action_end(env_actions[index])
        current = list(self.observations)  # where each environment is, processed
        cut = np.zeros(self.nb_envs, dtype=bool)
        for index, observation in enumerate(self._split(observations)):
            if agent.step >= end_step or agent.stop_training:
                return
            if self.resetting[index]:
                current[index] = self._reset_observation(index, observation)
                self._begin_episode(index, current[index])
                continue
            outcome = (rewards[index], bool(terminated[index]), bool(truncated[index]))
            cut[index] = self._cuts(index, outcome)
            current[index] = self._transition(
                index, actions[index], observation, outcome, infos, cut[index]
            )
        self.observations = np.stack(current)
        if cut.any():
            self._reset_cut(cut)

    def _cuts(self, index: int, outcome) -> bool:
        """Whether ``nb_max_episode_steps`` cuts environment ``index``'s episode at this step
        (the environment itself then needs a reset)."""
        _, terminated, truncated = outcome
        return (
            self.nb_max_episode_steps is not None
            and self.episodes[index].step + 1 >= self.nb_max_episode_steps
            and not (terminated or truncated)
        )

    def _transition(self, index: int, action, observation, outcome, infos, cut: bool) -> np.ndarray:
        """Take in environment ``index``'s real step: its raw ``observation`` and ``outcome``
        ``(reward, terminated, truncated)``, which ``cut`` makes a truncation. Return the
        (processed) observation the environment is now at: the next episode's first after
        an ending step in ``SAME_STEP`` mode, else the step's."""
        agent, episode = self.agent, self.episodes[index]
        reward, terminated, truncated = outcome
        self.callbacks.on_step_begin(episode.step)
        info = env_info(infos, index)
        restarted = self.same_step and (terminated or truncated)
        if restarted:  # the step returned the next episode's first observation
            first_observation, observation, info = observation, info["final_obs"], ending_info(info)
        next_observation, reward, info = self._step_values(
            index, observation, reward, terminated or truncated, info
        )
        truncated = truncated or cut
        ended = terminated or truncated
        metrics = agent.backward_transition(
            index, episode.observation, action, reward, next_observation, terminated, truncated
        )
        episode.record(reward, metrics)
        self.callbacks.on_step_end(
            episode.step,
            {
                "action": action,
                "observation": next_observation,
                "reward": reward,
                "metrics": metrics,
                "episode": episode.index,
                "info": info,
                "stream": index,
            },
        )
        episode.step += 1
        agent.step += 1
        episode.observation = next_observation
        if not ended:
            return next_observation
        self._end_episode(index)
        if restarted:
            first_observation = self._reset_observation(index, first_observation)
            self._begin_episode(index, first_observation)
            return first_observation
        self.resetting[index] = not cut
        return next_observation

    def _reset_cut(self, cut: np.ndarray) -> None:
        """Reset the environments whose episodes ``nb_max_episode_steps`` cut, and begin
        their next episodes."""
        observations, _ = self.env.reset(options={"reset_mask": cut})
        observations = list(self._split(observations))
        for index in np.flatnonzero(cut):
            observation = self._reset_observation(index, observations[index])
            self.observations[index] = observation
            self._begin_episode(index, observation)

    def _begin_episode(self, index: int, observation) -> None:
        agent = self.agent
        episode = Episode(agent.episode, observation, len(agent.metrics_names))
        agent.episode += 1
        self.callbacks.on_episode_begin(episode.index)
        self.windows.reset(index)
        self.episodes[index] = episode
        self.resetting[index] = False

    def _end_episode(self, index: int) -> None:
        episode = self.episodes[index]
        self.windows.end_episode(index, episode.observation)
        self.callbacks.on_episode_end(episode.index, self.agent.episode_logs(episode))
        self.episodes[index] = None

    # ------------------------------------------------------------- values in and out

    def _env_actions(self, actions: np.ndarray) -> np.ndarray:
        processor = self.agent.processor
        if processor is None:
            return actions
        return np.array([processor.process_action(action) for action in actions])

    def _split(self, observations) -> Iterator:
        """A batch of observations (an array, or a dict or tuple of them for ``Dict`` and
        ``Tuple`` spaces) as each environment's own, in order. It is split along the batched
        space (``Discrete`` observations are batched as ``MultiDiscrete``)."""
        return iterate(self.env.observation_space, observations)

    def _reset_observation(self, index: int, observation) -> np.ndarray:
        """Environment ``index``'s raw observation from a reset, as the single-environment
        loop takes one: through ``Processor.process_observation``, then held to the contract
        (a copy, which later steps of the environment cannot change)."""
        processor = self.agent.processor
        if processor is not None:
            observation = processor.process_observation(observation)
        self.contract.index = index
        self.contract.observation(observation, "reset")
        return np.array(observation)

    def _step_values(
        self, index: int, observation, reward, done: bool, info: dict
    ) -> tuple[np.ndarray, float, dict]:
        """Environment ``index``'s raw step, as the single-environment loop takes one: through
        ``Processor.process_step`` (``done``: the environment's ``terminated or truncated``;
        the ``done`` it returns is not used), then held to the contract. Return the
        observation (a copy), the reward as a float, and the info."""
        processor = self.agent.processor
        if processor is not None:
            observation, reward, _, info = processor.process_step(observation, reward, done, info)
        self.contract.index = index
        reward = self.contract.step_values(observation, reward)
        return np.array(observation), reward, info

    def _check_shape(self, observations: np.ndarray) -> None:
        expected = self.agent.expected_observation_shape()
        if self.agent.processor is None and not shape_matches(observations.shape[1:], expected):
            raise ValueError(
                f"env {env_name(self.env)}: reset returned observations of shape "
                f"{observations.shape} for {self.nb_envs} environments; the agent takes "
                f"observations of shape {expected}"
            )

    def _check_rewards(self, rewards) -> None:
        rewards = np.asarray(rewards)
        if rewards.shape != (self.nb_envs,) or not np.all(np.isfinite(rewards)):
            raise FloatingPointError(
                f"env {env_name(self.env)}: step returned rewards {rewards!r} at step "
                f"{self.agent.step}; expected {self.nb_envs} finite numbers"
            )


def ending_info(info: dict) -> dict:
    """In ``SAME_STEP`` mode, the info of the step that ended an environment's episode, out
    of that environment's ``env_info``: the ending step's own (``final_info``) over the rest,
    which holds the next episode's reset info and what vector wrappers add about the step
    (such as ``RecordEpisodeStatistics``'s ``episode``)."""
    merged = {key: value for key, value in info.items() if key not in ("final_obs", "final_info")}
    merged.update(info.get("final_info", {}))
    return merged


def env_info(infos: dict, index: int) -> dict:
    """Environment ``index``'s own info out of a vector environment's batched ``infos``: the
    keys it set (those whose ``_key`` mask is True for it), with its values."""
    single = {}
    for key, value in infos.items():
        if key.startswith("_"):
            continue
        mask = infos.get(f"_{key}")
        if mask is not None and not mask[index]:
            continue
        single[key] = env_info(value, index) if isinstance(value, dict) else value[index]
    return single
