"""``ApeX``: N Ray actors feeding one learner's prioritized replay (Horgan et al., 2018).

The driver process is the learner. It keeps one chunk request outstanding per actor and
handles whichever chunk arrives first (``ray.wait``; with ``ordered=True``, the oldest
request's chunk, so that a run repeats): store it, train what the ratio owes,
publish the weights through Ray's object store every ``publish_interval`` gradient steps, ask
that actor for its next chunk. Actors are started with ``max_restarts=-1`` and
``max_task_retries=-1``: one that dies is restarted by Ray, which runs the chunk request again
on it; its replay streams' episodes end where they stood (their waiting transitions are lost)
and it continues with the current weights.

    ray.init()                          # or ray.init(address="auto") on a cluster
    apex = ApeX(agent, "CartPole-v1", nb_actors=4)
    history = apex.fit(nb_steps=50_000)
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict

import keras
import numpy as np

from kerasdqn._checks import check_bool, check_float, check_int
from kerasdqn._files import atomic_path
from kerasdqn._signals import StopRequest
from kerasdqn.agents.dqn import DQNAgent
from kerasdqn.callbacks import CallbackList, History
from kerasdqn.core import check_checkpoint_arguments
from kerasdqn.distributed._ray import init_ray, require_ray
from kerasdqn.distributed.actor import (
    ActorSettings,
    ActorWorker,
    Chunk,
    EnvSource,
    epsilon_ladder,
    make_env_factory,
)
from kerasdqn.distributed.learner import Learner

STATE_NAME = "apex.json"  # beside the agent's checkpoint.h5 in a checkpoint directory


class ApeX:
    """Ape-X training of a ``DQNAgent`` whose memory is a ``PrioritizedMemory``. The actors act
    on scalar Q values, so distributional agents (C51, QR-DQN) are refused.

    Args:
        agent: the compiled learner agent; its ``gamma``, ``n_step``,
            ``enable_double_dqn``, ``nb_steps_warmup``, ``target_model_update``, ratio
            ``gradient_steps / train_interval`` (gradient steps per environment step) and its
            memory's ``window_length`` (the frames stacked into a state) apply.
        env: a gymnasium id (made by ``kerasdqn.envs.make_env``: an Atari game gets
            ``make_atari``'s pipeline) or a picklable function making one environment. Each
            actor makes its own; one is made here first and checked against the agent
            (``agent.check_env``), so a bad id or a mismatched environment fails now.
        nb_actors: actor processes, each with epsilon ``0.4^(1 + 7 i / (N - 1))``.
        envs_per_actor: environments in each actor's ``SyncVectorEnv``.
        chunk_steps: vector steps an actor takes per chunk it sends.
        publish_interval: gradient steps between two weight publications.
        seed: actor ``i`` seeds its environments and exploration with ``seed + 1000 i``.
        actor_cpus: CPUs Ray reserves for each actor (fractions share a core). None (the
            default): one each if the Ray cluster has them, else an equal share of its CPUs,
            so that every actor runs. A number the cluster cannot give ``nb_actors`` times
            is refused when the actors start: Ray would never schedule the ones past it.
        custom_objects: custom layers the network needs, for the actors' copies (a dict of
            names to classes or functions).
        ordered: take the actors' chunks in the order they were asked for (round robin)
            instead of as they arrive. The learner then sees the same chunks, trains and
            publishes at the same points in every run with the same seeds (``seed`` here,
            and Keras's global seed, ``keras.utils.set_random_seed``, set before the agent is
            built), so on the same machines the run repeats exactly, until an actor is
            restarted (a restarted actor draws a new seed). The price is waiting for the
            slowest actor: one that stalls stalls the run. False (the default) is Ape-X's
            layout, where which chunk comes first depends on the machines' load. It is not
            saved in checkpoints: a resumed run takes chunks as this ``ApeX`` says.

    The agent may not have a ``Processor``: the actors act on the environment's observations
    and rewards as they are (use gymnasium wrappers, or ``make_atari`` for Atari games).
    """

    def __init__(
        self,
        agent: DQNAgent,
        env: EnvSource,
        nb_actors: int = 2,
        envs_per_actor: int = 1,
        chunk_steps: int = 50,
        publish_interval: int = 100,
        seed: int = 0,
        actor_cpus: float | None = None,
        custom_objects: dict | None = None,
        ordered: bool = False,
    ) -> None:
        self.learner = Learner(agent)
        _check_no_processor(agent)
        _check_env(agent, env)  # fails here, not in actors Ray would restart
        self.env = env
        self.publish_interval = check_int("publish_interval", publish_interval, minimum=1)
        check_int("seed", seed, minimum=0)
        epsilons = epsilon_ladder(nb_actors)
        self.settings = [
            ActorSettings(
                index=i,
                epsilon=epsilon,
                nb_envs=check_int("envs_per_actor", envs_per_actor, minimum=1),
                chunk_steps=check_int("chunk_steps", chunk_steps, minimum=1),
                n_step=agent.n_step,
                gamma=agent.gamma,
                double=agent.enable_double_dqn,
                seed=seed + 1000 * i,
                window_length=agent.memory.window_length,
                ignore_episode_boundaries=agent.memory.ignore_episode_boundaries,
            )
            for i, epsilon in enumerate(epsilons)
        ]
        self.actor_cpus = (
            None
            if actor_cpus is None
            else check_float("actor_cpus", actor_cpus, 0.0, low_open=True)
        )
        self.custom_objects = _checked_custom_objects(custom_objects)
        self.ordered = check_bool("ordered", ordered)
        self.actors: list = []
        self.restarts = 0
        self.weights_version = 0
        self.stats: dict[str, float] = {}
        self._instances: dict[int, str] = {}  # each actor's current process
        self._pending: list = []  # chunk requests a finished fit left running

    @property
    def agent(self) -> DQNAgent:
        return self.learner.agent

    # ------------------------------------------------------------------ actors

    def start_actors(self) -> None:
        """Start the Ray actors (``ray.init`` first if Ray is not running)."""
        ray = require_ray()
        init_ray()
        actor_cpus = self._cpus_per_actor(ray.cluster_resources().get("CPU", 0.0))
        _check_workers_make(self.env)
        self._publish()
        remote = ray.remote(ActorWorker).options(
            max_restarts=-1, max_task_retries=-1, num_cpus=actor_cpus
        )
        model_json = self.agent.model.to_json()
        self.actors = [
            remote.remote(
                self.env,
                model_json,
                settings,
                custom_objects=self.custom_objects,
                start_step=self.agent.step,
            )
            for settings in self.settings
        ]

    def _cpus_per_actor(self, cluster_cpus: float) -> float:
        """``actor_cpus``, or its default, checked against the cluster's ``cluster_cpus``."""
        nb_actors = len(self.settings)
        if self.actor_cpus is None:
            return min(1.0, cluster_cpus / nb_actors)
        if nb_actors * self.actor_cpus > cluster_cpus + 1e-9:
            raise ValueError(
                f"actor_cpus: {nb_actors} actors (nb_actors) of {self.actor_cpus:g} CPUs each "
                f"need {nb_actors * self.actor_cpus:g}, but the Ray cluster has "
                f"{cluster_cpus:g}; Ray would never start the actors past it. Use fewer "
                f"actors, actor_cpus={cluster_cpus / nb_actors:g} or less, or None to share "
                "the CPUs"
            )
        return self.actor_cpus

    def close(self) -> None:
        """Stop the actors for good, once the chunks they are still making are done."""
        ray = require_ray()
        if self._pending:
            ray.wait(self._pending, num_returns=len(self._pending), timeout=30)
        self._pending = []
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []
        self._instances.clear()  # the next actors are new ones, not restarts of these

    def _publish(self) -> None:
        """Put the learner's weights in the object store as the next version."""
        ray = require_ray()
        self.weights_version += 1
        self._weights_ref = ray.put(self.learner.weights())
        self._published_at = (self.learner.updates, time.perf_counter())
        self._lag_seen = False

    def _request(self, index: int):
        """Ask actor ``index`` for a chunk. Every request carries the current weights, which
        the actor switches to if it acts with an older version. They go as a top-level
        argument, which Ray keeps alive until the request is done and passes again when it
        reruns the request on a restarted actor: that actor, whose networks are freshly
        initialised, thus never acts or computes priorities with them. An actor that has the
        version already only looks it up in its node's object store."""
        return self.actors[index].run_chunk.remote(self.weights_version, self._weights_ref)

    # ------------------------------------------------------------------ training

    def fit(
        self,
        nb_steps: int,
        callbacks: list | None = None,
        verbose: int = 0,
        checkpoint_dir: str | os.PathLike | None = None,
        checkpoint_interval: int | None = None,
    ) -> History:
        """Train for ``nb_steps`` more environment steps, summed over the actors (``agent.step``
        counts them across ``fit`` calls and checkpoints; a chunk may overshoot by one chunk).

        ``callbacks``: kerasdqn callbacks; their ``on_train_begin``, ``on_episode_end`` (with
        ``episode_reward``, ``nb_episode_steps``, ``nb_steps``, ``actor``, ``stream``,
        ``epsilon``, and ``game_score`` for an episode that ended a game whose environment
        reports its real score, as ``make_atari``'s do), ``on_chunk_end`` after each stored
        chunk (with ``first_step``, and ``metrics``: the mean of ``agent.metrics_names`` over
        the gradient steps the chunk let the learner take, if any; an ``EvalCallback``
        evaluates there, ``TensorBoard`` writes its training curves) and ``on_train_end`` are
        called; one that
        sets ``agent.stop_training`` ends the run at the next chunk. ``verbose``: 1 shows a
        progress bar.
        ``checkpoint_dir``: write the whole run there (see ``save_checkpoint``) every
        ``checkpoint_interval`` environment steps and at the end. Ctrl-C or SIGTERM stops at
        the next chunk: the checkpoint is still written, and ``on_train_end``'s logs say
        ``interrupted_by`` (the signal's name, else None). Returns the ``History``.

        The arguments are checked as ``Agent.fit`` checks them (``checkpoint_interval`` needs
        ``checkpoint_dir``, which must be a writable directory path), before Ray or any actor
        starts.
        """
        nb_steps = check_int("nb_steps", nb_steps, minimum=1)
        verbose = check_int("verbose", verbose, minimum=0)
        _check_fit_arguments(self.agent, callbacks, checkpoint_dir, checkpoint_interval)
        if not self.actors:
            self.start_actors()
        history = History()
        callback_list = CallbackList([*(callbacks or []), history], self.agent, None, {})
        self.agent.training = True  # as in Agent.fit: callbacks log training episodes
        callback_list.on_train_begin()
        progress = _Progress(self.agent.step, nb_steps) if verbose else None
        self.stats = {"lag_updates": [], "lag_seconds": [], "chunks": 0, "start": time.time()}
        checkpointing = (checkpoint_dir, checkpoint_interval)
        with StopRequest() as stop:
            try:
                self._run(self.agent.step + nb_steps, callback_list, progress, checkpointing, stop)
                interruption = stop.signal_name
            except KeyboardInterrupt:
                interruption = "SIGINT"
        self._summarize()
        if checkpoint_dir is not None:
            self.save_checkpoint(checkpoint_dir)
        callback_list.on_train_end(
            {"did_abort": interruption is not None, "interrupted_by": interruption}
        )
        self.agent.training = False
        return history

    def _run(self, last_step: int, callback_list, progress, checkpointing, stop) -> None:
        """The driver loop: one outstanding chunk request per actor until ``last_step`` or
        until ``stop`` is requested (Ctrl-C, SIGTERM)."""
        checkpoint_dir, interval = checkpointing
        pending = {self._request(index): index for index in range(len(self.actors))}
        self.agent.stop_training = False
        while self.agent.step < last_step and not (stop.requested or self.agent.stop_training):
            ready = self._next_ready(pending)
            index = pending.pop(ready)
            chunk = self._receive(ready, index)
            if chunk is not None:
                before = self.agent.step
                metrics = self._absorb(index, chunk, callback_list)
                logs = {"first_step": before}
                if metrics is not None:
                    logs["metrics"] = metrics
                callback_list.on_chunk_end(self.agent.step, logs)
                if progress is not None:
                    progress.update(self.agent.step)
                if checkpoint_dir and interval and self.agent.step // interval > before // interval:
                    self.save_checkpoint(checkpoint_dir)
            pending[self._request(index)] = index
        # Chunks still on their way are dropped: their streams' episodes end here.
        for index in pending.values():
            self.learner.end_streams(self.settings[index].streams)
        self._pending = list(pending)

    def _next_ready(self, pending: dict) -> object:
        """The request to handle next: the oldest one if ``ordered`` (requests are kept in
        the order they were made; ``_receive`` waits for it), else the first one done."""
        if self.ordered:
            return next(iter(pending))
        (ready,), _ = require_ray().wait(list(pending), num_returns=1)
        return ready

    def _receive(self, ref, index: int) -> Chunk | None:
        """The chunk, or None if it was lost with its actor. Ray retries a request whose
        actor died on the restarted one, so a restart shows as a chunk from a new instance:
        the actor's episodes in the replay end where they stood, and ``restarts`` counts it."""
        ray = require_ray()
        try:
            chunk = ray.get(ref)
        except ray.exceptions.RayActorError:
            self.learner.end_streams(self.settings[index].streams)
            return None
        if self._instances.setdefault(index, chunk.instance) != chunk.instance:
            self.restarts += 1
            self._instances[index] = chunk.instance
            self.learner.end_streams(self.settings[index].streams)
        return chunk

    def _absorb(self, index: int, chunk: Chunk, callback_list) -> np.ndarray | None:
        """Store a chunk, report its episodes, train what is owed and publish when due;
        return the mean metrics of the gradient steps taken (None if none was)."""
        self._record_lag(chunk)
        self.learner.ingest(chunk)
        self.stats["chunks"] += 1
        for stream, reward, length, game_score in chunk.episodes:
            logs = {
                "episode_reward": reward,
                "nb_episode_steps": length,
                "nb_steps": self.agent.step,
                "actor": index,
                "stream": stream,
                "epsilon": self.settings[index].epsilon,
            }
            if game_score is not None:
                logs["game_score"] = game_score
            callback_list.on_episode_end(self.agent.episode, logs)
            self.agent.episode += 1
        metrics = self.learner.train(self.learner.updates_due())
        if self.learner.updates - self._published_at[0] >= self.publish_interval:
            self._publish()
        return metrics

    def _record_lag(self, chunk: Chunk) -> None:
        """How far behind the learner the chunk's weights were: gradient steps since the
        current version was published if the chunk used it, and for the first chunk acting
        on a version, the seconds from its publication to that chunk's arrival."""
        if chunk.weights_version != self.weights_version:
            return
        updates, published = self._published_at
        self.stats["lag_updates"].append(self.learner.updates - updates)
        if not self._lag_seen:
            self.stats["lag_seconds"].append(time.perf_counter() - published)
            self._lag_seen = True

    def _summarize(self) -> None:
        stats = self.stats
        stats["seconds"] = time.time() - stats.pop("start")
        for key in ("lag_updates", "lag_seconds"):
            values = stats.pop(key)
            stats[f"mean_{key}"] = float(np.mean(values)) if values else float("nan")
        stats["restarts"] = self.restarts

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self, directory: str | os.PathLike) -> None:
        """Write the whole run to ``directory``: the agent's checkpoint (networks, optimizer,
        replay with its streams and priorities, counters: ``checkpoint.h5``) and the actors'
        settings with the run's counters (``apex.json``)."""
        directory = os.fspath(directory)
        os.makedirs(directory, exist_ok=True)
        self.agent.save_checkpoint(os.path.join(directory, "checkpoint.h5"))
        with atomic_path(os.path.join(directory, STATE_NAME)) as temporary:
            with open(temporary, "w") as handle:
                json.dump(self._run_state(), handle, indent=1)

    def _run_state(self) -> dict:
        return {
            "env": self.env if isinstance(self.env, str) else None,
            "actors": [asdict(settings) for settings in self.settings],
            "publish_interval": self.publish_interval,
            "updates": self.learner.updates,
            "restarts": self.restarts,
            "weights_version": self.weights_version,
        }

    def load_checkpoint(self, directory: str | os.PathLike) -> None:
        """Continue the run ``save_checkpoint`` wrote to ``directory``; this ``ApeX`` must have
        the same environment id (where both runs name theirs by id) and actor settings. Each
        actor stream's unfinished episode ends where it stood."""
        path = os.path.join(os.fspath(directory), STATE_NAME)
        if not os.path.isfile(path):
            raise ValueError(f"checkpoint_dir: no {STATE_NAME} in {os.fspath(directory)!r}")
        with open(path) as handle:
            state = json.load(handle)
        self._check_saved_env(path, state.get("env"))
        saved = state.get("actors")
        if _actor_settings(saved) != self.settings:
            raise ValueError(
                f"{path!r}: the run was started with other actor settings ({saved}); resume "
                "it with the same nb_actors, envs_per_actor, chunk_steps, seed and agent"
            )
        self.agent.load_checkpoint(os.path.join(os.fspath(directory), "checkpoint.h5"))
        self.learner.updates = int(state["updates"])
        self.restarts = int(state["restarts"])
        for settings in self.settings:
            self.learner.end_streams(settings.streams)
        if self.actors:
            self._publish()

    def _check_saved_env(self, path: str, saved_env: str | None) -> None:
        """Refuse a checkpoint of a run on another environment id: with the same spaces, its
        networks and replay would load and the run would go on, silently, on another task.
        A run on an environment function saved no id, so there is nothing to compare."""
        env = self.env if isinstance(self.env, str) else None
        if saved_env is not None and env is not None and saved_env != env:
            raise ValueError(
                f"env: {path!r} holds a run on {saved_env!r}, not {env!r}; resume it on "
                f"{saved_env!r}"
            )


def _check_fit_arguments(agent: DQNAgent, callbacks, checkpoint_dir, checkpoint_interval) -> None:
    """``Agent.fit``'s checks of these arguments, made before Ray or an actor starts: a list
    of callbacks, a checkpoint directory that is a path where files can be written, and a
    ``checkpoint_interval`` of at least 1 only with a ``checkpoint_dir``."""
    agent._check_ready("fit", callbacks)
    check_checkpoint_arguments(checkpoint_dir, checkpoint_interval)


def _make_and_close(env: EnvSource) -> None:
    make_env_factory(env)().close()


def _check_workers_make(env: EnvSource) -> None:
    """Make the environment once in a Ray worker, in a task Ray does not retry. An environment
    the workers cannot make (say, a function from a module they cannot import) fails here
    with its cause, instead of failing each actor Ray would then restart without end."""
    ray = require_ray()
    task = ray.remote(num_cpus=0, max_retries=0)(_make_and_close)
    try:
        ray.get(task.remote(env))
    except ray.exceptions.RayError as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        advice = (
            "install what it needs on every machine"
            if isinstance(env, str)
            else "a function must be importable where the actors run: define it in the script "
            "you run, or install its module on every machine"
        )
        raise RuntimeError(
            f"env: the Ray workers cannot make the environment "
            f"({lines[-1] if lines else error}); {advice}"
        ) from None


def _check_env(agent: DQNAgent, env: EnvSource) -> None:
    """Make one environment from ``env`` and check it against ``agent`` (action count,
    observation shape), as ``fit`` would; the error names ``env`` and what was expected."""
    instance = make_env_factory(env)()
    try:
        agent.check_env(instance)
    finally:
        instance.close()


def _actor_settings(saved) -> list[ActorSettings] | None:
    """The actors' settings a checkpoint holds (fields it predates take their defaults), or
    None if they cannot be read."""
    try:
        return [ActorSettings(**settings) for settings in saved]
    except (TypeError, ValueError):
        return None


class _Progress:
    """A Keras progress bar over the environment steps of one ``fit``."""

    def __init__(self, first_step: int, nb_steps: int) -> None:
        self.first_step, self.nb_steps = first_step, nb_steps
        self.bar = keras.utils.Progbar(nb_steps)

    def update(self, step: int) -> None:
        self.bar.update(min(step - self.first_step, self.nb_steps))


def _check_no_processor(agent: DQNAgent) -> None:
    """Refuse an agent with a ``Processor``: the actors neither apply it to what they
    observe nor to the rewards they send."""
    if agent.processor is not None:
        raise ValueError(
            f"agent: Ape-X actors do not apply a Processor, and this agent has "
            f"{agent.processor!r}; do the processing in the environment instead (gymnasium "
            "wrappers such as TransformObservation and ClipReward, or make_atari for Atari "
            "games), and build the agent without processor"
        )


def _checked_custom_objects(custom_objects) -> dict:
    """``custom_objects`` as a dict of names to classes or functions ({} for None)."""
    if custom_objects is None:
        return {}
    if not isinstance(custom_objects, dict) or not all(
        isinstance(name, str) and callable(value) for name, value in custom_objects.items()
    ):
        raise TypeError(
            "custom_objects: expected a dict of names to classes or functions (as Keras "
            f"takes), got {custom_objects!r}"
        )
    return dict(custom_objects)
