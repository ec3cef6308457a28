"""Ape-X actors: each steps its own vector environment with its own epsilon and sends chunks of
transitions, with the initial priorities it computed for them, to the learner.

An actor (Horgan et al., 2018, "Distributed Prioritized Experience Replay", ICLR) holds a copy
of the online and target networks, refreshed from the weights the learner publishes. It acts
epsilon-greedily with the ``i``-th epsilon of the ladder ``eps_i = 0.4^(1 + 7 i / (N - 1))``
and computes each transition's priority ``|n-step TD error|`` itself, so that the learner's
replay starts from informed priorities instead of the maximum.

A transition leaves the actor once its n-step return is known: ``n`` transitions of the same
episode follow it, or the episode ended within ``n`` steps. The rest wait for the next chunk.
The chunk holds plain 1-step transitions (the learner's memory builds n-step returns from them
at sample time) and, for each, the priority of the n-step transition starting there.

Frame stacks (``window_length > 1``, Atari): the actor stacks each environment's last frames
to act and to compute priorities, as ``fit`` does, but sends single frames: the learner's
memory stores each frame once and rebuilds the same windows by index.

``ActorWorker`` is a plain class; ``kerasdqn.distributed.apex`` runs it as a Ray actor.
"""

from __future__ import annotations

import functools
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium
import keras
import numpy as np

from kerasdqn._checks import check_bool, check_float, check_int
from kerasdqn.envs import make_env
from kerasdqn.inference import make_q_function
from kerasdqn.layers import DuelingCombine, NoisyDense
from kerasdqn.state import StateWindows
from kerasdqn.vector import env_info

EnvSource = str | Callable[[], gymnasium.Env]


def epsilon_ladder(nb_actors: int, base: float = 0.4, exponent: float = 7.0) -> list[float]:
    """Ape-X's exploration ladder: actor ``i`` of ``N`` gets ``base^(1 + exponent i / (N - 1))``
    (``base`` itself for a single actor), from 0.4 down to 0.4^8 ~ 0.00066 by default."""
    nb_actors = check_int("nb_actors", nb_actors, minimum=1)
    base = check_float("base", base, 0.0, 1.0)
    exponent = check_float("exponent", exponent, 0.0)
    if nb_actors == 1:
        return [base]
    return [base ** (1 + exponent * i / (nb_actors - 1)) for i in range(nb_actors)]


@dataclass(frozen=True)
class ActorSettings:
    """What one actor is: its place in the layout, its exploration and its chunks.

    ``index``: the actor's number, 0 to N - 1; its environments write replay streams
    ``index * nb_envs + k``. ``epsilon``: its fixed exploration rate. ``nb_envs``:
    environments in its vector environment. ``chunk_steps``: vector steps per chunk.
    ``n_step`` and ``gamma``: those of the learner's agent, for the priorities.
    ``double``: Double DQN's bootstrap (as the learner's agent). ``seed``: its environments'
    and exploration's seed. ``window_length`` and ``ignore_episode_boundaries``: the frames
    stacked into a state, as the learner's memory stacks them.
    """

    index: int
    epsilon: float
    nb_envs: int = 1
    chunk_steps: int = 50
    n_step: int = 1
    gamma: float = 0.99
    double: bool = False
    seed: int = 0
    window_length: int = 1
    ignore_episode_boundaries: bool = False

    def __post_init__(self) -> None:
        check_int("index", self.index, minimum=0)
        check_float("epsilon", self.epsilon, 0.0, 1.0)
        check_int("nb_envs", self.nb_envs, minimum=1)
        check_int("chunk_steps", self.chunk_steps, minimum=1)
        check_int("n_step", self.n_step, minimum=1)
        check_float("gamma", self.gamma, 0.0, 1.0)
        check_bool("double", self.double)
        check_int("seed", self.seed, minimum=0)
        check_int("window_length", self.window_length, minimum=1)
        check_bool("ignore_episode_boundaries", self.ignore_episode_boundaries)

    @property
    def streams(self) -> list[int]:
        """The replay streams this actor's environments write."""
        return [self.index * self.nb_envs + k for k in range(self.nb_envs)]


@dataclass
class Chunk:
    """Transitions an actor sends, in order per stream, with their initial priorities.

    ``observation``, ``action``, ``reward``, ``next_observation``, ``terminated``,
    ``truncated``, ``stream`` and ``td_error`` have one row per transition (single frames
    when states stack several); ``episodes`` lists ``(stream, reward, length, game_score)``
    of the episodes that ended (``game_score``: the real score of the game the episode
    ended, where the environment reports one in ``info['episode']['r']``, else None);
    ``env_steps`` counts the transitions stepped (sent or still waiting);
    ``weights_version`` names the published weights the actor acted with; ``instance`` tells
    a restarted actor from its predecessor.
    """

    observation: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_observation: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    stream: np.ndarray
    td_error: np.ndarray
    episodes: list[tuple[int, float, int, float | None]] = field(default_factory=list)
    env_steps: int = 0
    weights_version: int = -1
    instance: str = ""

    def __len__(self) -> int:
        return len(self.action)


def make_env_factory(env: EnvSource) -> Callable[[], gymnasium.Env]:
    """A function making the environment: ``kerasdqn.envs.make_env(env)`` for an id (an
    Atari game gets ``make_atari``'s pipeline), else ``env``."""
    if isinstance(env, str):
        return functools.partial(make_env, env, 0)
    if not callable(env):
        raise TypeError(
            f"env: expected a gymnasium environment id or a picklable function making the "
            f"environment, got {env!r}"
        )
    return env


def n_step_targets(
    rewards: np.ndarray, ends: np.ndarray, n_step: int, gamma: float
) -> tuple[np.ndarray, np.ndarray]:
    """For each start ``j`` of one stream's transitions: the discounted reward sum over up to
    ``n_step`` steps, stopping after the first transition that ends an episode (``ends``),
    and the index of the transition whose ``next_observation`` it bootstraps from."""
    count = len(rewards)
    returns = np.zeros(count, dtype=np.float64)
    last = np.arange(count)
    going_on = np.ones(count, dtype=np.bool_)
    for k in range(n_step):
        index = np.minimum(np.arange(count) + k, count - 1)
        going_on &= np.arange(count) + k < count
        returns[going_on] += gamma**k * rewards[index[going_on]]
        last[going_on] = index[going_on]
        going_on &= ~ends[index]
    return returns, last


def actor_seed(seed: int, start_step: int, restarted: bool) -> int:
    """The seed of an actor's environments and exploration: ``seed`` for the actors a run
    starts with, so runs repeat; one drawn from ``seed`` and ``start_step`` for the actors a
    resumed or continued run starts, and from fresh entropy too for an actor Ray restarted
    after a crash. Otherwise those would play again the very episodes the first actors
    played, and put them into the replay a second time."""
    if start_step == 0 and not restarted:
        return seed
    entropy = [seed, start_step] + ([secrets.randbits(64)] if restarted else [])
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def _restarted_by_ray() -> bool:
    """Whether this process is a Ray actor that Ray restarted after its predecessor died."""
    try:
        import ray
    except ImportError:
        return False
    if not ray.is_initialized():
        return False
    context = ray.get_runtime_context()
    return context.get_actor_id() is not None and context.was_current_actor_reconstructed


class ActorWorker:
    """One Ape-X actor: networks rebuilt from the model's JSON, a ``SyncVectorEnv``, a fixed
    epsilon, and a buffer of transitions waiting for their n-step return.

    Args:
        env: a gymnasium id or a picklable function making one environment.
        model_json: the online network's architecture, ``model.to_json()``.
        settings: the actor's ``ActorSettings``.
        weights: the initial ``(online, target)`` weight lists (default: those of the first
            published version ``run_chunk`` is given).
        custom_objects: custom layers the architecture needs besides kerasdqn's own.
        start_step: the run's environment steps when the actor is started; with the seed it
            picks the actor's random streams (see ``actor_seed``).
    """

    def __init__(
        self,
        env: EnvSource,
        model_json: str,
        settings: ActorSettings,
        weights: tuple[list, list] | None = None,
        custom_objects: dict | None = None,
        start_step: int = 0,
    ) -> None:
        self.settings = settings
        self.instance = uuid.uuid4().hex
        seed = actor_seed(settings.seed, start_step, _restarted_by_ray())
        objects = {"DuelingCombine": DuelingCombine, "NoisyDense": NoisyDense}
        objects.update(custom_objects or {})
        self.models = [keras.models.model_from_json(model_json, objects) for _ in range(2)]
        self.q_functions = [make_q_function(model) for model in self.models]
        self.input_dtype = self.models[0].inputs[0].dtype
        self.weights_version = -1
        if weights is not None:
            self.set_weights(weights, version=-1)
        factory = make_env_factory(env)
        self.envs = gymnasium.vector.SyncVectorEnv([factory] * settings.nb_envs)
        self.rng = np.random.default_rng(seed)
        self.observations, _ = self.envs.reset(seed=seed)
        self.resetting = np.zeros(settings.nb_envs, dtype=np.bool_)
        self.windows = StateWindows(
            settings.nb_envs, settings.window_length, settings.ignore_episode_boundaries
        )
        self.waiting: list[list[tuple]] = [[] for _ in range(settings.nb_envs)]
        self.episode_reward = np.zeros(settings.nb_envs)
        self.episode_length = np.zeros(settings.nb_envs, dtype=np.int64)

    def set_weights(self, weights: tuple[list, list], version: int) -> None:
        """Act and compute priorities with these ``(online, target)`` weights from now on."""
        for model, q_function, values in zip(self.models, self.q_functions, weights):
            model.set_weights(values)
            q_function.refresh()
        self.weights_version = version

    def q_values(self, states: np.ndarray, target: bool = False) -> np.ndarray:
        """Q values of a batch of states ``(batch, window_length) + observation_shape``."""
        return self.q_functions[int(target)](np.asarray(states, dtype=self.input_dtype))

    def run_chunk(self, version: int, weights: tuple[list, list] | None = None) -> Chunk:
        """Take ``chunk_steps`` vector steps, first switching to ``weights``, the published
        ``(online, target)`` weights of ``version``, if given and not those acted with."""
        if weights is not None and version != self.weights_version:
            self.set_weights(weights, version)
        episodes: list[tuple[int, float, int]] = []
        env_steps = sum(self._step(episodes) for _ in range(self.settings.chunk_steps))
        chunk = self._ready_transitions()
        chunk.episodes, chunk.env_steps = episodes, env_steps
        chunk.weights_version, chunk.instance = self.weights_version, self.instance
        return chunk

    def _step(self, episodes: list) -> int:
        """One vector step; returns how many environments took a transition (gymnasium's
        NEXT_STEP autoreset: the step after an episode's end only resets)."""
        states = self.windows.observe(self.observations, ~self.resetting)
        actions = self._actions(states)
        next_observations, rewards, terminated, truncated, infos = self.envs.step(actions)
        transitions = 0
        for k in range(self.settings.nb_envs):
            if self.resetting[k]:
                self.resetting[k] = False
                self.windows.reset(k)
                continue
            ended = bool(terminated[k] or truncated[k])
            self.waiting[k].append(
                (
                    self.observations[k],
                    int(actions[k]),
                    float(rewards[k]),
                    next_observations[k],
                    bool(terminated[k]),
                    bool(truncated[k]),
                    states[k],
                )
            )
            transitions += 1
            self.episode_reward[k] += rewards[k]
            self.episode_length[k] += 1
            if ended:
                episodes.append(self._episode_end(k, infos))
                self.windows.end_episode(k, next_observations[k])
                self.resetting[k] = True
        self.observations = next_observations
        return transitions

    def _episode_end(self, k: int, infos: dict) -> tuple[int, float, int, float | None]:
        """Environment ``k``'s ended episode as ``Chunk.episodes`` reports it; its counters
        start again."""
        record = env_info(infos, k).get("episode")
        game_score = float(record["r"]) if isinstance(record, dict) and "r" in record else None
        episode = (
            self.settings.streams[k],
            float(self.episode_reward[k]),
            int(self.episode_length[k]),
            game_score,
        )
        self.episode_reward[k], self.episode_length[k] = 0.0, 0
        return episode

    def _actions(self, states: np.ndarray) -> np.ndarray:
        """Epsilon-greedy actions for every environment."""
        greedy = np.argmax(self.q_values(states), axis=1)
        explore = self.rng.random(len(greedy)) < self.settings.epsilon
        random_actions = self.rng.integers(0, self.envs.single_action_space.n, len(greedy))
        return np.where(explore, random_actions, greedy)

    def _ready_transitions(self) -> Chunk:
        """Take out of the buffers every transition whose n-step return is complete, with
        its priority."""
        parts = []
        for k, waiting in enumerate(self.waiting):
            ready = self._ready_count(waiting)
            if ready:
                parts.append((self.settings.streams[k], waiting, ready))
            self.waiting[k] = waiting[ready:]
        return self._chunk_of(parts)

    def _ready_count(self, waiting: list[tuple]) -> int:
        """How many of a stream's oldest waiting transitions know their n-step return."""
        n = self.settings.n_step
        ends = [t[4] or t[5] for t in waiting]
        ready = max(0, len(waiting) - n + 1)
        while ready < len(waiting) and any(ends[ready : ready + n]):
            ready += 1
        return ready

    def _chunk_of(self, parts: list[tuple[int, list, int]]) -> Chunk:
        """The chunk of the ready transitions of each ``(stream, waiting, ready)``."""
        columns: list[list] = [[] for _ in range(8)]
        for stream, waiting, ready in parts:
            # The stacked states are for the TD errors only: the chunk carries single frames.
            *sent, states = [np.asarray(column) for column in zip(*waiting)]
            errors = self._td_errors(*sent, states)[:ready]
            for column, values in zip(columns, sent, strict=False):
                column.append(values[:ready])
            columns[6].append(np.full(ready, stream, dtype=np.int64))
            columns[7].append(errors)
        if not parts:
            return _empty_chunk(self.observations.shape[1:], self.observations.dtype)
        return Chunk(*[np.concatenate(column) for column in columns])

    def _td_errors(
        self, observation, action, reward, next_observation, terminated, truncated, state
    ):
        """``r_0 + ... + gamma^(m-1) r_(m-1) + gamma^m (1 - terminated) V(s_m) - Q(s_0, a_0)``
        for the transitions of one stream, ``m <= n_step`` as far as they reach; ``state``
        holds the stacked states the actions were taken in (``observation`` their newest
        frames)."""
        settings = self.settings
        returns, last = n_step_targets(
            reward, terminated | truncated, settings.n_step, settings.gamma
        )
        steps = last - np.arange(len(reward)) + 1
        # The state bootstrapped from: state ``last``'s window moved on by its next frame.
        bootstrap = np.concatenate([state[last, 1:], next_observation[last, np.newaxis]], axis=1)
        next_target = self.q_values(bootstrap, target=True)
        if settings.double:
            choice = np.argmax(self.q_values(bootstrap), axis=1)
        else:
            choice = np.argmax(next_target, axis=1)
        values = next_target[np.arange(len(choice)), choice]
        targets = returns + settings.gamma**steps * (1.0 - terminated[last]) * values
        q_taken = self.q_values(state)[np.arange(len(action)), action]
        return (targets - q_taken).astype(np.float32)

    def close(self) -> None:
        self.envs.close()


def _empty_chunk(shape: tuple, dtype: Any) -> Chunk:
    empty = np.zeros((0,) + tuple(shape), dtype=dtype)
    flags = np.zeros(0, dtype=np.bool_)
    return Chunk(
        empty,
        np.zeros(0, np.int64),
        np.zeros(0),
        empty.copy(),
        flags,
        flags.copy(),
        np.zeros(0, np.int64),
        np.zeros(0, np.float32),
    )
