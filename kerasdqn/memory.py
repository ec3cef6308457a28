"""Replay memory: a preallocated ring buffer of transitions, sampled in vectorized minibatches.

Layout (as in keras-rl): entry ``i`` holds observation ``o_i``, the action ``a_i`` taken in it,
the reward ``r_i`` that followed, and whether the episode *terminated* with that step. Each
observation is stored once: the next observation of a transition is the entry its stream wrote
next. When an episode ends, its last observation is stored as one more entry, from which no
transition starts and which no stacked window of the next episode reaches back across.

Several independent *streams* (the environments of a vector environment, remote actors) can
write into one memory, their entries interleaved. Entries are numbered by a serial number that
counts writes (entry ``s`` sits at position ``s % limit``). While one stream writes, the entry
after ``s`` in its stream is ``s + 1``, and nothing more needs storing; once streams
interleave, each entry also records the serial numbers of the entries before and after it in
its stream, so that windows and n-step returns follow a stream through the ring.

Episode ends, in one vocabulary across kerasdqn: an episode *terminated* when gymnasium's
``terminated`` was set (the next state has no future: the TD target does not bootstrap; keras-rl
called it ``terminal``); it was *truncated* when it was cut off (a time limit, gymnasium's
``truncated``: the TD target bootstraps); it *ended* in either case.

``PrioritizedMemory`` stores the same entries and samples them in proportion to their TD errors
(prioritized experience replay, proportional variant), with a ``kerasdqn.sumtree.SumTree``
beside the ring.
"""

from __future__ import annotations

import collections
import math
import os
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from kerasdqn._blocks import row_blocks
from kerasdqn._checks import check_bool, check_float, check_int
from kerasdqn.state import StateWindow
from kerasdqn.sumtree import SumTree

Experience = collections.namedtuple("Experience", "state0, action, reward, state1, terminal1")
Experience.__doc__ = """One transition as keras-rl returned it: in ``state0``, ``action`` gave
``reward`` and led to ``state1``, which is terminal if ``terminal1``."""

NONE = -1  # no entry: the serial number of a missing link


class TransitionBatch(NamedTuple):
    """A minibatch of transitions as arrays, the first axis running over the batch.

    ``state0`` and ``state1`` have shape ``(batch, window_length) + observation_shape``;
    ``terminal1`` says the transition terminated (no bootstrapping from ``state1``);
    ``steps`` counts the environment steps each transition spans (None: one each);
    ``indices`` name the transitions for ``update_priorities`` (None for hand-made batches):
    a ``SequentialMemory`` gives the buffer positions they start at, a ``PrioritizedMemory``
    their serial numbers (position ``index % limit``), which tell a transition from the one
    that later overwrote it; ``weights`` are per-sample importance weights for the loss
    (None: all 1).
    """

    state0: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    state1: np.ndarray
    terminal1: np.ndarray
    steps: np.ndarray | None = None
    indices: np.ndarray | None = None
    weights: np.ndarray | None = None


@dataclass
class _Stream:
    """Where one writer stands: its newest entry (a serial number) and its episode."""

    newest: int = NONE
    in_episode: bool = False  # the newest entry belongs to an episode still going on
    awaiting_action: bool = False  # the newest entry is a next observation, not yet acted on
    previous_ended: bool = False  # keras-rl protocol: the last append ended the episode


class SequentialMemory:
    """A ring buffer holding the last ``limit`` observations, with keras-rl's window semantics.

    Args:
        limit: how many entries (observations) the buffer holds; the oldest are overwritten.
        window_length: how many consecutive observations make one state (frame stacking).
        ignore_episode_boundaries: let stacked windows reach back into the previous episode,
            as keras-rl's option of that name did. Off by default.

    Memory is allocated on the first write, once, from the observation's shape and dtype: it
    depends on ``limit``, never on how many steps were taken. A ``limit`` whose observations
    would need more than the machine's physical memory is refused there with ``MemoryError``,
    before anything is allocated.

    Two ways to write: keras-rl's ``append(observation, action, reward, terminal)`` /
    ``append_final(observation)``, where the next observation is the next one appended, and
    ``append_transition`` with whole transitions, for any number of ``stream`` s.
    """

    prioritized = False  # the agent samples a prioritized memory before each gradient step

    def __init__(
        self,
        limit: int,
        window_length: int = 1,
        ignore_episode_boundaries: bool = False,
    ) -> None:
        self.limit = check_int("limit", limit, minimum=2)
        self.window_length = check_int("window_length", window_length, minimum=1)
        self.ignore_episode_boundaries = check_bool(
            "ignore_episode_boundaries", ignore_episode_boundaries
        )
        self.rng: np.random.Generator | None = None
        self._allocate()

    def _allocate(self) -> None:
        """Start empty (observation storage is allocated at the first write)."""
        self._observations: np.ndarray | None = None
        self._observation_shape: tuple | None = None
        self._actions = np.zeros(self.limit, dtype=np.int32)
        self._rewards = np.zeros(self.limit, dtype=np.float32)
        self._terminated = np.zeros(self.limit, dtype=np.bool_)
        self._episode_start = np.zeros(self.limit, dtype=np.bool_)
        self._has_next = np.zeros(self.limit, dtype=np.bool_)
        # Serial numbers of each entry's neighbours in its stream; None while they are s -/+ 1.
        self._previous: np.ndarray | None = None
        self._next: np.ndarray | None = None
        self._nb_written = 0
        self._nb_entries = 0
        self._nb_transitions = 0
        self._streams: dict[int, _Stream] = {}
        self._window = StateWindow(self.window_length, self.ignore_episode_boundaries)
        self._window_episode_ended = False

    # ------------------------------------------------------------------ writing

    def append(
        self,
        observation: Any,
        action: int,
        reward: float,
        terminal: bool,
        training: bool = True,
        truncated: bool = False,
        stream: int = 0,
    ) -> None:
        """Store that in ``observation``, ``action`` was taken and ``reward`` followed.

        ``terminal``: the episode terminated with this step (no bootstrapping from the next
        observation). ``truncated``: it was cut off after this step (a time limit); the next
        observation still bootstraps. After a terminal or truncated step, the next appended
        observation is taken as the episode's last one (keras-rl's convention), as is any
        observation given to ``append_final``.
        With ``training=False`` only the window ``get_recent_state`` stacks is updated.
        """
        observation = self._checked("observation", observation)
        ended = bool(terminal) or bool(truncated)
        if stream == 0:
            self._update_window(observation, ended)
        if not training:
            return
        writer = self._keras_rl_stream(stream)
        if writer.previous_ended:
            self._write(writer, observation, episode_ends=True)
            writer.previous_ended = False
            return
        position = self._write(writer, observation, episode_ends=False)
        self._record_step(position, action, reward, terminal)
        writer.previous_ended = ended

    def append_final(self, observation: Any, training: bool = True, stream: int = 0) -> None:
        """Store the last observation of an episode, from which no transition starts."""
        observation = self._checked("observation", observation)
        if stream == 0:
            self._window_episode_ended = False
            self._window.end_episode(observation)
        if not training:
            return
        writer = self._keras_rl_stream(stream)
        self._write(writer, observation, episode_ends=True)
        writer.previous_ended = False

    def append_transition(
        self,
        observation: Any,
        action: int,
        reward: float,
        next_observation: Any,
        terminated: bool,
        truncated: bool = False,
        stream: int = 0,
    ) -> None:
        """Store one whole transition of ``stream`` (a vector environment's index, an actor).

        Consecutive transitions of a stream share an observation, which is stored once:
        ``observation`` must then be the ``next_observation`` of the stream's previous
        transition, unless that one ended its episode (terminated or truncated), after which
        ``observation`` begins a new episode.
        """
        observation = self._checked("observation", observation)
        next_observation = self._checked("next_observation", next_observation)
        writer = self._stream(stream)
        if writer.awaiting_action and self._outlives_next_write(writer.newest):
            position = writer.newest % self.limit
            if not np.array_equal(self._observations[position], observation):
                raise ValueError(
                    f"observation: stream {stream}'s previous transition led to a different "
                    "observation and did not end its episode; end it (terminated or truncated) "
                    "or call end_episode(stream) before starting another"
                )
        else:
            writer.in_episode = writer.in_episode and writer.awaiting_action
            position = self._write(writer, observation, episode_ends=False)
        self._record_step(position, action, reward, terminated)
        ended = bool(terminated) or bool(truncated)
        self._write(writer, next_observation, episode_ends=ended)
        writer.awaiting_action = not ended

    def end_episode(self, stream: int = 0) -> None:
        """End ``stream``'s episode at its newest observation, as a truncation (e.g. when
        training stops mid-episode): no transition of its next episode links to it."""
        writer = self._stream(stream)
        writer.in_episode = writer.awaiting_action = writer.previous_ended = False

    def clear_recent(self) -> None:
        """A new episode begins: forget the observations ``get_recent_state`` stacks (unless
        episode boundaries are ignored)."""
        self._window_episode_ended = False
        self._window.reset()

    def update_priorities(self, indices: np.ndarray, td_errors: Any) -> None:
        """Take the TD errors of the transitions at ``indices`` after a gradient step. Uniform
        replay has no priorities, so nothing happens; a prioritized memory overrides this."""

    def _stream(self, stream: int) -> _Stream:
        writer = self._streams.get(stream)
        if writer is None:
            check_int("stream", stream, minimum=0)
            writer = self._streams[stream] = _Stream()
        return writer

    def _keras_rl_stream(self, stream: int) -> _Stream:
        writer = self._stream(stream)
        if writer.awaiting_action:
            raise ValueError(
                f"stream: stream {stream} is written with append_transition; use one way of "
                "writing per stream"
            )
        return writer

    def _checked(self, name: str, observation: Any) -> np.ndarray:
        """``observation`` as an array, if its shape is that of the earlier ones."""
        observation = np.asarray(observation)
        if self._observation_shape is None:
            check_fits_in_memory(self.limit, observation.shape, observation.dtype)
            self._observation_shape = observation.shape
        elif observation.shape != self._observation_shape:
            raise ValueError(
                f"{name}: expected shape {self._observation_shape} like the earlier "
                f"observations in this memory, got {observation.shape}"
            )
        return observation

    def _update_window(self, observation: np.ndarray, ended: bool) -> None:
        if self._window_episode_ended:
            # keras-rl's protocol: this is the last observation of the episode that just ended.
            self._window_episode_ended = False
            self._window.end_episode(observation)
            return
        self._window.append(observation)
        self._window_episode_ended = ended

    def _write(self, writer: _Stream, observation: np.ndarray, episode_ends: bool) -> int:
        """Store ``observation`` as ``writer``'s newest entry and link it to the one before;
        return its position."""
        if self._observations is None:
            self._observations = np.zeros((self.limit,) + observation.shape, observation.dtype)
        serial = self._nb_written
        position = serial % self.limit
        if self._nb_entries == self.limit:
            self._nb_transitions -= int(self._has_next[position])
        else:
            self._nb_entries += 1
        linked = writer.in_episode and self._outlives_next_write(writer.newest)
        if self._previous is None and writer.newest != serial - 1:
            if linked or self.ignore_episode_boundaries:
                self._store_links()
        self._observations[position] = observation
        self._actions[position] = 0
        self._rewards[position] = 0.0
        self._terminated[position] = False
        self._has_next[position] = False
        # A stream whose newest entry the ring has evicted starts over here: stacking must not
        # reach into the entries before this one, which belong to other streams.
        self._episode_start[position] = not linked
        if self._previous is not None:
            self._previous[position] = writer.newest
            self._next[position] = NONE
        if linked:
            before = writer.newest % self.limit
            self._has_next[before] = True
            if self._next is not None:
                self._next[before] = serial
            self._nb_transitions += 1
        self._nb_written += 1
        writer.newest = serial
        writer.in_episode = not episode_ends
        return position

    def _store_links(self) -> None:
        """Streams now interleave: write down the neighbours that were implicit so far."""
        positions = np.arange(self.limit)
        serials = self._serials(positions)
        self._previous = serials - 1
        self._next = np.where(self._has_next, serials + 1, NONE)

    def _serials(self, positions: np.ndarray) -> np.ndarray:
        """The serial numbers of the entries at ``positions``."""
        newest = self._nb_written - 1
        return newest - (newest - positions) % self.limit

    def _record_step(self, position: int, action: int, reward: float, terminated: bool) -> None:
        self._actions[position] = action
        self._rewards[position] = reward
        self._terminated[position] = terminated

    def _is_stored(self, serial: int) -> bool:
        return serial != NONE and serial >= self._nb_written - self._nb_entries

    def _outlives_next_write(self, serial: int) -> bool:
        """Whether entry ``serial`` is stored and stays so through the next write, which
        evicts the oldest entry once the ring is full (with several streams, that can be a
        stream's newest entry)."""
        return self._is_stored(serial) and serial > self._nb_written - self.limit

    # ------------------------------------------------------------------ reading

    @property
    def nb_entries(self) -> int:
        """How many observations are stored (keras-rl's name)."""
        return self._nb_entries

    @property
    def nb_transitions(self) -> int:
        """How many stored transitions can be sampled: those whose next observation is stored."""
        return self._nb_transitions

    @property
    def nbytes(self) -> int:
        """Bytes held by the buffer's arrays."""
        arrays = (self._actions, self._rewards, self._terminated, self._episode_start)
        arrays += (self._has_next, self._previous, self._next)
        total = sum(array.nbytes for array in arrays if array is not None)
        return total + (0 if self._observations is None else self._observations.nbytes)

    def get_recent_state(self, current_observation: Any) -> np.ndarray:
        """keras-rl's acting window: ``current_observation`` stacked after the observations
        appended before it in this episode (zeros before its start). Agents keep their own
        ``kerasdqn.state.StateWindow``; this one follows ``append`` on stream 0."""
        return self._window.state(current_observation)

    def transition_positions(self) -> np.ndarray:
        """The buffer positions of every complete transition stored, in position order."""
        return np.flatnonzero(self._has_next[: self._nb_entries])

    def sample_indices(self, batch_size: int) -> np.ndarray:
        """Buffer positions of ``batch_size`` transitions drawn uniformly, with replacement.

        Only transitions whose next observation is stored are drawn; an episode's last
        observation never starts one.
        """
        batch_size = check_int("batch_size", batch_size, minimum=1)
        self._check_sampleable()
        rng = self._rng()
        newest = (self._nb_written - 1) % self.limit
        indices = np.empty(batch_size, dtype=np.int64)
        missing = np.arange(batch_size)
        while missing.size:
            ages = rng.integers(1, self._nb_entries, size=missing.size)
            candidates = (newest - ages) % self.limit
            valid = self._has_next[candidates]
            indices[missing[valid]] = candidates[valid]
            missing = missing[~valid]
        return indices

    def _check_sampleable(self) -> None:
        if self._nb_transitions == 0:
            raise ValueError(
                "the memory holds no complete transition yet; append at least two observations "
                "of one episode before sampling"
            )

    def sample_batch(
        self, batch_size: int, n_step: int = 1, gamma: float = 1.0, step: int | None = None
    ) -> TransitionBatch:
        """A minibatch of ``batch_size`` transitions as arrays (the fast path).

        With ``n_step > 1`` each transition spans up to ``n_step`` steps (see ``batch_at``).
        ``step`` (the agent's step count) is taken for the signature a prioritized memory
        shares, and ignored: uniform replay anneals nothing.
        """
        return self.batch_at(self.sample_indices(batch_size), n_step, gamma)

    def batch_at(self, indices: np.ndarray, n_step: int = 1, gamma: float = 1.0) -> TransitionBatch:
        """The transitions starting at the given buffer positions, with stacked windows.

        With ``n_step > 1``, a transition runs ``k <= n_step`` steps ahead: ``reward`` is
        ``r_0 + gamma r_1 + ... + gamma^(k-1) r_(k-1)``, ``state1`` the state ``k`` steps on and
        ``steps`` holds ``k``. It stops early where the episode ended, or where the memory
        holds nothing newer of the stream.
        """
        n_step = check_int("n_step", n_step, minimum=1)
        gamma = check_float("gamma", gamma, 0.0, 1.0)
        indices = np.asarray(indices, dtype=np.int64)
        ahead = self._positions_ahead(indices, n_step)
        steps, reward, terminal1 = self._n_step_returns(ahead, gamma)
        behind, usable = self._positions_behind(indices)
        frames = self._observations[np.concatenate([behind, ahead], axis=1)]
        window = self.window_length
        if window > 1:
            frames[:, : window - 1][~usable] = 0
        if n_step == 1:
            state1 = frames[:, 1:]
        else:
            rows = np.arange(len(indices))[:, np.newaxis]
            state1 = frames[rows, steps[:, np.newaxis] + np.arange(window)]
        return TransitionBatch(
            state0=frames[:, :window],
            action=self._actions[indices],
            reward=reward,
            state1=state1,
            terminal1=terminal1,
            steps=steps,
            indices=indices,
        )

    def _positions_ahead(self, indices: np.ndarray, n_step: int) -> np.ndarray:
        """``(batch, n_step + 1)`` positions: each transition's start and the entries its
        stream wrote after it (where there are none, the last one repeats)."""
        columns = [indices]
        for _ in range(n_step):
            current = columns[-1]
            following = current + 1 if self._next is None else self._next[current]
            columns.append(np.where(self._has_next[current], following % self.limit, current))
        return np.stack(columns, axis=1)

    def _positions_behind(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The ``window_length - 1`` positions before each start, oldest first, and a mask of
        those that may be stacked: still stored and, unless episode boundaries are ignored,
        in the same episode."""
        batch, width = len(indices), self.window_length - 1
        positions = np.empty((batch, width), dtype=np.int64)
        usable = np.empty((batch, width), dtype=np.bool_)
        oldest = self._nb_written - self._nb_entries
        current, still_usable = indices, np.ones(batch, dtype=np.bool_)
        for back in range(1, width + 1):
            if self._previous is None:
                previous = self._serials(current) - 1
            else:
                previous = self._previous[current]
            still_usable = still_usable & (previous != NONE) & (previous >= oldest)
            if not self.ignore_episode_boundaries:
                still_usable &= ~self._episode_start[current]
            current = np.where(still_usable, previous % self.limit, current)
            positions[:, width - back] = current
            usable[:, width - back] = still_usable
        return positions, usable

    def _n_step_returns(self, ahead: np.ndarray, gamma: float):
        """``(steps, discounted reward sum, terminated)`` of transitions of up to ``n_step``."""
        start = ahead[:, 0]
        reward = self._rewards[start]
        terminal = self._terminated[start]
        steps = np.ones(len(start), dtype=np.int64)
        going_on = ~terminal
        for step in range(1, ahead.shape[1] - 1):
            position = ahead[:, step]
            # The transition from `position` is complete (its next observation is stored).
            going_on &= self._has_next[position]
            reward[going_on] += gamma**step * self._rewards[position[going_on]]
            steps[going_on] += 1
            terminal[going_on] = self._terminated[position[going_on]]
            going_on &= ~terminal
        return steps, reward, terminal

    def sample(self, batch_size: int, batch_idxs: Any = None) -> list[Experience]:
        """keras-rl's interface: a list of ``Experience`` tuples.

        ``batch_idxs``, if given, are buffer positions of transitions (see ``sample_indices``).
        """
        indices = self.sample_indices(batch_size) if batch_idxs is None else batch_idxs
        batch = self.batch_at(indices)
        return [
            Experience(
                batch.state0[i],
                batch.action[i],
                batch.reward[i],
                batch.state1[i],
                batch.terminal1[i],
            )
            for i in range(len(batch.action))
        ]

    # ------------------------------------------------------------------ checkpoints

    def get_state(self) -> dict[str, Any]:
        """Everything stored, as arrays and plain numbers (for checkpoints; no pickling).
        The arrays are views of the memory's own, not copies: copy them to keep them past the
        next write."""
        filled = self._nb_entries
        state: dict[str, Any] = {
            name: getattr(self, f"_{name}")[:filled]
            for name in _ENTRY_ARRAYS
            if getattr(self, f"_{name}") is not None
        }
        state["nb_written"] = self._nb_written
        state["streams"] = np.array(
            [
                [key, s.newest, s.in_episode, s.awaiting_action, s.previous_ended]
                for key, s in sorted(self._streams.items())
            ],
            dtype=np.int64,
        ).reshape(-1, 5)
        if self._observations is not None:
            state["observations"] = self._observations[:filled]
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what ``get_state`` returned. The whole state is checked first
        (``check_state``); on any problem this raises ``ValueError`` and the memory is left
        as it was.

        ``state["observations"]`` may be any array-like with ``shape``, ``dtype`` and
        slicing, such as an open ``h5py.Dataset``: it is copied block by block straight into
        the memory's one preallocated array, so a restore never holds the observations
        twice. Should a read fail part-way, the memory is still left as it was, with one
        exception: if it already holds observations and the machine has not the memory for
        those and the restored ones at once (a million frames loaded into a filled agent),
        the old ones are dropped first, and a read failing part-way leaves it empty."""
        self.check_state(state)
        filled = len(state["actions"])
        restored = self._empty_like()
        if filled and self._observations is not None:
            row_bytes = self._observations[0].nbytes
            if filled * row_bytes > _available_memory(default=math.inf):
                self._clear()
        if filled:
            restored._observations = _copy_into_new_ring(state["observations"], self.limit)
            restored._observation_shape = restored._observations.shape[1:]
        if "previous" in state:
            restored._previous = np.full(self.limit, NONE, dtype=np.int64)
            restored._next = np.full(self.limit, NONE, dtype=np.int64)
        for name in _ENTRY_ARRAYS:
            if name in state:
                getattr(restored, f"_{name}")[:filled] = state[name]
        restored._nb_entries = filled
        restored._nb_written = int(state["nb_written"])
        restored._nb_transitions = int(np.count_nonzero(restored._has_next))
        for key, newest, in_episode, awaiting, previous_ended in np.asarray(state["streams"]):
            restored._streams[int(key)] = _Stream(
                int(newest), bool(in_episode), bool(awaiting), bool(previous_ended)
            )
        self._take_entries_of(restored)

    def _empty_like(self) -> SequentialMemory:
        """A new, empty ``SequentialMemory`` of this one's settings."""
        return SequentialMemory(self.limit, self.window_length, self.ignore_episode_boundaries)

    def _take_entries_of(self, other: SequentialMemory) -> None:
        """Hold ``other``'s entries and streams instead of this memory's own; the random
        generator stays."""
        rng = self.rng
        self.__dict__.update(other.__dict__)
        self.rng = rng

    def _clear(self) -> None:
        """Drop every entry, as a new memory of the same settings."""
        self._take_entries_of(self._empty_like())

    def check_state(self, state: dict[str, Any], observation_shape: tuple | None = None) -> None:
        """Raise ``ValueError`` naming the part if ``state`` is not a state this memory can
        hold: every part present, arrays of numbers of one length within ``limit``, flags
        0 or 1, links and streams within the written entries, finite rewards and observations
        (of ``observation_shape``, if given)."""
        missing = [name for name in _REQUIRED_STATE if name not in state]
        if missing:
            raise ValueError(f"memory: the parts {', '.join(missing)} are missing")
        if ("priorities" in state) != self.prioritized:
            raise ValueError(_PRIORITIES_MISMATCH[self.prioritized])
        arrays = {name: _numbers(state[name], name) for name in _ENTRY_ARRAYS if name in state}
        filled = len(arrays["actions"])
        for name, array in arrays.items():
            if array.shape != (filled,):
                raise ValueError(
                    f"memory: {name} has shape {array.shape}, expected ({filled},) like actions"
                )
        if filled > self.limit:
            raise ValueError(f"memory: it holds {filled} entries but the limit is {self.limit}")
        _check_flags(arrays)
        nb_written = _whole_number(state["nb_written"], "nb_written")
        if nb_written < filled or (filled < self.limit and nb_written != filled):
            raise ValueError(f"memory: nb_written = {nb_written} does not fit {filled} entries")
        _check_links(arrays, nb_written)
        _check_streams(_numbers(state["streams"], "streams"), nb_written)
        if filled:
            _check_observations(state.get("observations"), filled, observation_shape)

    def _rng(self) -> np.random.Generator:
        if self.rng is None:
            # Seeded from NumPy's global state, so np.random.seed makes runs repeatable.
            self.rng = np.random.default_rng(np.random.randint(2**31))
        return self.rng

    def get_config(self) -> dict:
        return {
            "limit": self.limit,
            "window_length": self.window_length,
            "ignore_episode_boundaries": self.ignore_episode_boundaries,
        }


def checked_beta_schedule(beta, beta_steps) -> tuple[float, int]:
    """A prioritized memory's importance-sampling schedule: ``beta`` in [0, 1] and
    ``beta_steps`` of at least 1, checked, as ``(beta, beta_steps)``."""
    return check_float("beta", beta, 0.0, 1.0), check_int("beta_steps", beta_steps, minimum=1)


class PrioritizedMemory(SequentialMemory):
    """A ``SequentialMemory`` that samples transitions in proportion to their TD errors.

    Prioritized experience replay, proportional variant (Schaul et al., 2016, "Prioritized
    Experience Replay", ICLR; section 3.3 and Algorithm 1): transition ``i`` has priority
    ``p_i = |delta_i| + epsilon``, its last TD error's size, and is drawn with probability
    ``P(i) = p_i^alpha / sum_k p_k^alpha``; its loss is scaled by the importance weight
    ``w_i = (N * P(i))^-beta / max_j w_j``, ``N`` the number of transitions that can be sampled
    and ``j`` running over the minibatch, so that weights only ever scale updates down. A
    minibatch is drawn stratified: the total is split into ``batch_size`` equal segments and
    one transition drawn uniformly within each. New transitions enter with the highest
    priority handed out so far (1 at first), so that they are soon replayed, before their TD
    error is known.

    Args:
        limit: how many entries (observations) the buffer holds; the oldest are overwritten.
        window_length: how many consecutive observations make one state (frame stacking).
        alpha: how strongly priorities shape sampling, ``>= 0``; 0 samples uniformly.
            Default 0.6, the paper's value for the proportional variant.
        beta: the importance-sampling exponent at step 0, in ``[0, 1]``; it rises linearly to
            1 over ``beta_steps`` agent steps and stays there (1 corrects the bias of
            prioritized sampling fully). Default 0.4, the paper's value.
        beta_steps: agent steps over which ``beta`` anneals to 1; set it to the length of
            training (``nb_steps``), as the paper anneals over the whole run. Default 100000.
        epsilon: added to ``|delta|`` so that no transition's priority is 0, ``> 0``.
            Default 1e-6.
        ignore_episode_boundaries: as for ``SequentialMemory``.

    The sum tree stores ``p_i^alpha``, and ``priorities`` and ``max_priority`` are in those
    terms: ``alpha`` is applied once, when a TD error comes back, and sampling never computes a
    power. Only positions from which a complete
    transition starts have a positive priority; every other position (a stream's newest entry,
    an episode's last observation) holds 0 and is never drawn, and a position's priority is
    reset whenever the ring overwrites it. ``TransitionBatch.indices`` of this memory are the
    transitions' serial numbers, so TD errors handed back after the ring overwrote a
    transition are ignored rather than given to the transition now in its place.
    """

    prioritized = True

    def __init__(
        self,
        limit: int,
        window_length: int = 1,
        alpha: float = 0.6,
        beta: float = 0.4,
        beta_steps: int = 100_000,
        epsilon: float = 1e-6,
        ignore_episode_boundaries: bool = False,
    ) -> None:
        self.alpha = check_float("alpha", alpha, 0.0)
        self.beta, self.beta_steps = checked_beta_schedule(beta, beta_steps)
        self.epsilon = check_float("epsilon", epsilon, 0.0, low_open=True)
        super().__init__(limit, window_length, ignore_episode_boundaries)

    def _allocate(self) -> None:
        super()._allocate()
        self._tree = SumTree(self.limit)
        self._max_priority = 1.0
        # No single priority may reach a size at which the tree's total overflows.
        self._largest_priority = np.finfo(np.float64).max / (2 * self.limit)

    @property
    def max_priority(self) -> float:
        """The highest priority handed out so far, ``alpha`` applied: new transitions get it."""
        return self._max_priority

    @property
    def priorities(self) -> np.ndarray:
        """A copy of every position's priority (``alpha`` applied), shape ``(limit,)``."""
        return self._tree.priorities()

    @property
    def nbytes(self) -> int:
        return super().nbytes + self._tree.nbytes

    def beta_at(self, step: int | None) -> float:
        """The importance-sampling exponent at agent step ``step``: ``beta`` rising linearly
        to 1 over ``beta_steps`` steps, never past 1 (``None``: ``beta`` itself)."""
        if step is None:
            return self.beta
        step = check_int("step", step, minimum=0)
        return min(1.0, self.beta + (1.0 - self.beta) * step / self.beta_steps)

    # ------------------------------------------------------------------ writing

    def _write(self, writer: _Stream, observation: np.ndarray, episode_ends: bool) -> int:
        """Write as ``SequentialMemory`` does; the tree follows the two ``has_next`` flags a
        write can change: the new entry's (no transition starts there yet: 0) and that of
        the entry before it in its stream, which now starts a transition (the max)."""
        # Only positions that start a transition hold a priority other than 0.
        overwrites_transition = self._has_next[self._nb_written % self.limit]
        before = writer.newest % self.limit if self._outlives_next_write(writer.newest) else None
        completes = before is not None and not self._has_next[before]
        position = super()._write(writer, observation, episode_ends)
        if overwrites_transition:
            self._tree.set(position, 0.0)
        if completes and self._has_next[before]:
            self._tree.set(before, self._max_priority)
        return position

    def update_priorities(self, indices: np.ndarray, td_errors: Any) -> None:
        """Set the priorities of the transitions ``indices`` names (a batch's ``indices``) to
        ``(|td_error| + epsilon)^alpha``. Indices of transitions the ring has overwritten since
        they were sampled are ignored; where an index repeats, its last TD error counts. An
        index this memory never gave (negative, or past the entries written) is refused."""
        serials = np.asarray(indices).reshape(-1)
        if serials.size and serials.dtype.kind not in "iu":
            raise TypeError(f"indices: expected whole numbers, got {serials.dtype} values")
        errors = np.asarray(td_errors, dtype=np.float64).reshape(-1)
        if serials.shape != errors.shape:
            raise ValueError(
                f"td_errors: expected one per index ({serials.size}), got {errors.size}"
            )
        if not np.isfinite(errors).all():
            raise ValueError("td_errors: expected finite numbers, got NaN or infinite values")
        serials = serials.astype(np.int64)
        if serials.size and (serials.min() < 0 or serials.max() >= self._nb_written):
            raise ValueError(
                "indices: expected serial numbers of transitions this memory has stored, from "
                f"0 to {self._nb_written - 1} (a sampled batch's indices), got "
                f"{serials[(serials < 0) | (serials >= self._nb_written)][:5].tolist()}"
            )
        positions = serials % self.limit
        current = serials >= self._nb_written - self._nb_entries  # not overwritten since
        current &= self._has_next[positions]
        priorities = np.clip(
            (np.abs(errors[current]) + self.epsilon) ** self.alpha,
            np.finfo(np.float64).tiny,
            self._largest_priority,
        )
        self._tree.update(positions[current], priorities)
        if priorities.size:
            self._max_priority = max(self._max_priority, float(priorities.max()))

    def newest_transition(self, stream: int = 0) -> int:
        """The serial number of the transition ``stream`` completed last (the one an
        ``append_transition`` just stored), for ``update_priorities``: a writer that computed
        the new transition's TD error itself (an Ape-X actor) sets its priority with it
        instead of leaving it at the maximum. Raises ``ValueError`` if there is none."""
        writer = self._streams.get(stream)
        newest = NONE if writer is None else writer.newest
        if self._previous is None:
            start = newest - 1
        else:
            start = int(self._previous[newest % self.limit]) if newest != NONE else NONE
        if newest == NONE or start == NONE or not self._is_stored(start):
            raise ValueError(f"stream: stream {stream} holds no complete transition")
        if not self._has_next[start % self.limit]:
            raise ValueError(f"stream: stream {stream}'s newest entry starts no transition")
        return start

    # ------------------------------------------------------------------ reading

    def sample_indices(self, batch_size: int) -> np.ndarray:
        """Buffer positions of ``batch_size`` transitions drawn in proportion to their
        priorities, stratified: one draw in each of ``batch_size`` equal segments of the
        total priority."""
        batch_size = check_int("batch_size", batch_size, minimum=1)
        self._check_sampleable()
        segment = self._tree.total / batch_size
        prefix_sums = (np.arange(batch_size) + self._rng().random(batch_size)) * segment
        return self._tree.find(prefix_sums)

    def sample_batch(
        self, batch_size: int, n_step: int = 1, gamma: float = 1.0, step: int | None = None
    ) -> TransitionBatch:
        """A prioritized minibatch with its importance ``weights`` (float32), ``beta`` annealed
        to agent step ``step`` (see ``beta_at``). Otherwise as ``SequentialMemory``'s."""
        beta = self.beta_at(step)
        positions = self.sample_indices(batch_size)
        batch = self.batch_at(positions, n_step, gamma)
        return batch._replace(weights=self._importance_weights(positions, beta))

    def batch_at(self, indices: np.ndarray, n_step: int = 1, gamma: float = 1.0) -> TransitionBatch:
        """As ``SequentialMemory.batch_at`` (``indices`` are buffer positions), but the
        batch's ``indices`` are the transitions' serial numbers, for ``update_priorities``."""
        positions = np.asarray(indices, dtype=np.int64)
        batch = super().batch_at(positions, n_step, gamma)
        return batch._replace(indices=self._serials(positions))

    def _importance_weights(self, positions: np.ndarray, beta: float) -> np.ndarray:
        """``w_i = (N * P(i))^-beta``, divided by the batch's largest weight."""
        probabilities = self._tree[positions] / self._tree.total
        weights = (self._nb_transitions * probabilities) ** -beta
        return (weights / weights.max()).astype(np.float32)

    # ------------------------------------------------------------------ checkpoints

    def get_state(self) -> dict[str, Any]:
        """``SequentialMemory``'s state plus every stored entry's priority and the highest
        priority handed out, on which sampling depends."""
        state = super().get_state()
        state["priorities"] = self._tree.priorities()[: self._nb_entries]
        state["max_priority"] = self._max_priority
        return state

    def _clear(self) -> None:
        super()._clear()
        self._tree = SumTree(self.limit)
        self._max_priority = 1.0

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what ``get_state`` returned, priorities included; everything is checked
        first (``check_state``), and on any problem the memory is left as it was (but see
        ``SequentialMemory.set_state`` on loading into a full memory)."""
        super().set_state(state)
        leaves = np.zeros(self.limit, dtype=np.float64)
        leaves[: self._nb_entries] = state["priorities"]
        self._tree.set_all(leaves)
        self._max_priority = float(state["max_priority"])

    def check_state(self, state: dict[str, Any], observation_shape: tuple | None = None) -> None:
        """As ``SequentialMemory.check_state``; also the priorities: one per entry, finite,
        positive exactly where a transition starts (0 elsewhere), and a ``max_priority`` at
        least as high as each."""
        super().check_state(state, observation_shape)
        _check_priorities(state)

    def get_config(self) -> dict:
        return {
            **super().get_config(),
            "alpha": self.alpha,
            "beta": self.beta,
            "beta_steps": self.beta_steps,
            "epsilon": self.epsilon,
        }


_PRIORITIES_MISMATCH = {
    False: (
        "memory: the state holds priorities: it is a PrioritizedMemory's, and this "
        "SequentialMemory samples uniformly; load it with a PrioritizedMemory"
    ),
    True: (
        "memory: the state holds no priorities: it is a uniform SequentialMemory's, and this "
        "PrioritizedMemory needs them; load it with a SequentialMemory"
    ),
}


_ENTRY_ARRAYS = (
    "actions",
    "rewards",
    "terminated",
    "episode_start",
    "has_next",
    "previous",
    "next",
)


_REQUIRED_STATE = (
    "actions",
    "rewards",
    "terminated",
    "episode_start",
    "has_next",
    "nb_written",
    "streams",
)


def _numbers(value: Any, name: str) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"memory: {name} holds {array.dtype} values, expected numbers")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError(f"memory: {name} holds NaN or infinite values")
    return array


def _whole_number(value: Any, name: str) -> int:
    array = np.asarray(value)
    if array.shape != () or array.dtype.kind not in "iu" or int(array) < 0:
        raise ValueError(f"memory: {name} must be a whole number >= 0, got {value!r}")
    return int(array)


def _check_flags(arrays: dict[str, np.ndarray]) -> None:
    for name in ("terminated", "episode_start", "has_next"):
        if not np.isin(arrays[name], (0, 1)).all():
            raise ValueError(f"memory: {name} must hold only 0/1 flags")
    if arrays["actions"].dtype.kind == "f" or (arrays["actions"] < 0).any():
        raise ValueError("memory: actions must be whole numbers >= 0")


def _check_links(arrays: dict[str, np.ndarray], nb_written: int) -> None:
    if ("previous" in arrays) != ("next" in arrays):
        raise ValueError("memory: previous and next must come together")
    for name in ("previous", "next"):
        if name in arrays:
            links = arrays[name]
            if links.dtype.kind == "f" or ((links < NONE) | (links >= nb_written)).any():
                raise ValueError(f"memory: {name} links outside the {nb_written} entries written")


def _check_streams(streams: np.ndarray, nb_written: int) -> None:
    if streams.ndim != 2 or streams.shape[1] != 5 or streams.dtype.kind == "f":
        raise ValueError(
            f"memory: streams must be whole numbers of shape (n, 5), got {streams.shape}"
        )
    keys, newest, flags = streams[:, 0], streams[:, 1], streams[:, 2:]
    if (keys < 0).any() or len(set(keys.tolist())) != len(keys):
        raise ValueError("memory: stream numbers must be distinct and >= 0")
    if ((newest < NONE) | (newest >= nb_written)).any() or not np.isin(flags, (0, 1)).all():
        raise ValueError("memory: a stream's newest entry or flags are out of range")


def _check_observations(observations: Any, filled: int, shape: tuple | None) -> None:
    """Numbers, one per entry, of ``shape`` if given, finite; checked block by block, so an
    on-disk array (an ``h5py.Dataset``) is never read whole."""
    if observations is None:
        raise ValueError(f"memory: {filled} entries without observations")
    observations = _array_like(observations)
    if observations.dtype.kind not in "biuf":
        raise ValueError(
            f"memory: observations holds {observations.dtype} values, expected numbers"
        )
    if tuple(observations.shape[:1]) != (filled,):
        counted = observations.shape[0] if observations.shape else "no array of"
        raise ValueError(f"memory: {counted} observations for {filled} entries")
    if shape is not None and tuple(observations.shape[1:]) != tuple(shape):
        raise ValueError(
            f"memory: observations have shape {tuple(observations.shape[1:])}, expected "
            f"{tuple(shape)} (the model's)"
        )
    if observations.dtype.kind == "f":
        for block in row_blocks(observations.shape, observations.dtype):
            if not np.isfinite(observations[block]).all():
                raise ValueError("memory: observations holds NaN or infinite values")


def _array_like(value: Any) -> Any:
    """``value`` itself if it has a ``shape``, a ``dtype`` and slicing (a NumPy array, an
    ``h5py.Dataset``), else ``value`` as a NumPy array (a list)."""
    if all(hasattr(value, name) for name in ("shape", "dtype", "__getitem__")):
        return value
    return np.asarray(value)


def _copy_into_new_ring(observations: Any, limit: int) -> np.ndarray:
    """A new ``(limit, ...)`` array (pages untouched beyond what is copied, so resident
    memory follows the entries filled) holding ``observations`` in its first rows, copied
    block by block from any array-like (see ``_array_like``)."""
    observations = _array_like(observations)
    check_fits_in_memory(limit, observations.shape[1:], observations.dtype)
    ring = np.zeros((limit,) + tuple(observations.shape[1:]), observations.dtype)
    for block in row_blocks(observations.shape, observations.dtype):
        ring[block] = observations[block]
    return ring


def upgrade_single_writer_state(state: dict[str, Any], limit: int) -> dict[str, Any]:
    """A ``get_state`` dict from the memory of kerasdqn 0.1 (checkpoint format 1: one writer,
    each entry's next observation the next entry, episode ends as *final* flags)."""
    finals = np.asarray(state["finals"], dtype=np.bool_)
    filled = len(finals)
    next_index = int(state["next_index"])
    nb_written = next_index + (limit if filled == limit else 0)
    positions = np.arange(filled)
    newest = (next_index - 1) % limit
    oldest = next_index % limit if filled == limit else 0
    upgraded = {
        "actions": state["actions"],
        "rewards": state["rewards"],
        "terminated": state["terminals"],
        "episode_start": (positions == oldest) | np.roll(finals, 1),
        "has_next": ~finals & (positions != newest),
        "nb_written": nb_written,
        "streams": np.zeros((0, 5), dtype=np.int64),
    }
    if filled:
        in_episode = not finals[newest]
        upgraded["streams"] = np.array(
            [[0, nb_written - 1, in_episode, False, bool(state["previous_ended"])]],
            dtype=np.int64,
        )
        upgraded["observations"] = state["observations"]
    return upgraded


def _check_priorities(state: dict[str, Any]) -> None:
    """``state``'s priorities fit its entries (see ``PrioritizedMemory.check_state``)."""
    priorities = _numbers(state["priorities"], "priorities")
    has_next = np.asarray(state["has_next"], dtype=np.bool_)
    if priorities.shape != has_next.shape:
        raise ValueError(
            f"memory: priorities has shape {priorities.shape}, expected {has_next.shape} "
            "like actions"
        )
    if (priorities < 0).any() or (priorities[~has_next] != 0).any():
        raise ValueError("memory: priorities must be >= 0, and 0 where no transition starts")
    if not (priorities[has_next] > 0).all():
        raise ValueError("memory: priorities must be > 0 where a transition starts")
    if "max_priority" not in state:
        raise ValueError("memory: the part max_priority is missing")
    highest = _numbers(state["max_priority"], "max_priority")
    if highest.shape != () or not highest > 0 or (priorities > highest).any():
        raise ValueError(
            f"memory: max_priority = {highest} must be a number > 0 and at least every priority"
        )


def check_fits_in_memory(limit: int, shape: tuple, dtype: Any, name: str = "limit") -> None:
    """Raise ``MemoryError`` before ``limit`` observations of ``shape`` and ``dtype`` are
    allocated, if they would need more bytes than the machine's physical memory (where the
    system says how much that is). ``name`` is the argument the message names."""
    dtype = np.dtype(dtype)
    needed = limit * math.prod(shape) * dtype.itemsize
    physical = _physical_memory()
    if physical is not None and needed > physical:
        advice = f"use a smaller {name}"
        if dtype != np.uint8:
            advice += (
                ", or store uint8 observations (a Processor whose process_observation "
                "returns uint8 frames)"
            )
        raise MemoryError(
            f"{name}: {limit} observations of shape {tuple(shape)} and dtype {dtype} need "
            f"{needed / 1e9:.1f} GB, more than this machine's {physical / 1e9:.1f} GB of "
            f"memory; {advice}"
        )


def _available_memory(default: float) -> float:
    """Bytes of memory the system can still give without swapping (Linux's MemAvailable),
    or ``default`` where it does not say."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return default


def _physical_memory() -> int | None:
    """Bytes of physical memory, or None where the system does not say."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
    return physical if physical > 0 else None
