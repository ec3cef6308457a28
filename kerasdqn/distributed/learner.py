"""The Ape-X learner: a ``DQNAgent`` on a ``PrioritizedMemory`` fed by the actors' chunks.

The learner stores each chunk's transitions in the replay, one stream per actor environment,
with the priorities the actor computed; samples and trains at a fixed ratio of gradient steps
to environment steps (the agent's ``gradient_steps / train_interval``); copies the target
network on the agent's schedule (every ``target_model_update`` environment steps, or softly
after each gradient step); and hands out its weights for publishing.
"""

from __future__ import annotations

import numpy as np

from kerasdqn.agents.distributional import DistributionalDQNAgent
from kerasdqn.agents.dqn import DQNAgent
from kerasdqn.distributed.actor import Chunk
from kerasdqn.memory import PrioritizedMemory


class Learner:
    """Owns the agent and its prioritized replay; counts environment steps and updates.

    The agent is a ``DQNAgent`` with scalar Q values (not C51 or QR-DQN: the actors act and
    compute priorities on Q values), compiled, on a ``PrioritizedMemory``.

    ``agent.step`` is the environment steps ingested (summed over actors), on which the
    warm-up, the importance-sampling anneal and hard target copies are defined, as in ``fit``.
    ``updates`` counts gradient steps.
    """

    def __init__(self, agent: DQNAgent) -> None:
        if not isinstance(agent, DQNAgent):
            raise TypeError(f"agent: expected a DQNAgent, got {agent!r}")
        if isinstance(agent, DistributionalDQNAgent):
            # The actors act and compute priorities on the network's outputs as Q values;
            # a distributional network's are nb_actions * atoms numbers, not Q values.
            raise TypeError(
                f"agent: Ape-X supports a DQNAgent with scalar Q values, got a "
                f"{type(agent).__name__}, which learns return distributions"
            )
        if not isinstance(agent.memory, PrioritizedMemory):
            raise TypeError(
                "agent: Ape-X needs the agent's memory to be a PrioritizedMemory, got "
                f"{type(agent.memory).__name__}"
            )
        if not agent.compiled:
            raise RuntimeError("agent: compile the agent before training it with Ape-X")
        self.agent = agent
        self.memory: PrioritizedMemory = agent.memory
        self.updates = 0
        self.ratio = agent.gradient_steps / agent.train_interval

    def ingest(self, chunk: Chunk) -> None:
        """Store the chunk's transitions, each with its actor's TD error as its priority.

        The actor sends a transition once it knows its n-step return, and computed its TD
        error on it. The replay builds returns from the transitions it holds, so those of a
        stream's last ``n_step - 1`` transitions run short (as ``fit``'s newest do) until the
        stream's next chunk brings the ones that follow."""
        serials = np.empty(len(chunk), dtype=np.int64)
        for row in range(len(chunk)):
            stream = int(chunk.stream[row])
            self.memory.append_transition(
                chunk.observation[row],
                chunk.action[row],
                chunk.reward[row],
                chunk.next_observation[row],
                chunk.terminated[row],
                chunk.truncated[row],
                stream=stream,
            )
            serials[row] = self.memory.newest_transition(stream)
        self.memory.update_priorities(serials, chunk.td_error)
        before = self.agent.step
        self.agent.step += chunk.env_steps
        self._copy_target_if_due(before)

    def end_streams(self, streams: list[int]) -> None:
        """The episodes of these streams stop where they are (their actor restarted)."""
        for stream in streams:
            self.memory.end_episode(stream)

    def _copy_target_if_due(self, before: int) -> None:
        interval = self.agent.target_model_update
        if interval >= 1 and self.agent.step // int(interval) > before // int(interval):
            self.agent.update_target_model_hard()

    def updates_due(self) -> int:
        """Gradient steps owed after the warm-up at the training ratio."""
        if self.agent.step <= self.agent.nb_steps_warmup or self.memory.nb_transitions == 0:
            return 0
        owed = int((self.agent.step - self.agent.nb_steps_warmup) * self.ratio)
        return max(0, owed - self.updates)

    def train(self, nb_updates: int) -> np.ndarray | None:
        """Take ``nb_updates`` gradient steps (whole ``learn`` calls of ``gradient_steps``,
        rounded up); return the calls' mean metrics (``agent.metrics_names``), or None if none
        was taken."""
        metrics = []
        calls = -(-nb_updates // self.agent.gradient_steps)
        for _ in range(calls):
            metrics.append(self.agent.learn())
            self.updates += self.agent.gradient_steps
        return np.mean(metrics, axis=0) if metrics else None

    def weights(self) -> tuple[list, list]:
        """The ``(online, target)`` weights for the actors."""
        return self.agent.model.get_weights(), self.agent.target_model.get_weights()
