"""DQN (Mnih et al., 2015) with keras-rl's ``DQNAgent`` interface, Double and Dueling options.

The data path runs one way. Acting: observation -> processor -> ``StateWindow`` -> Q values ->
policy -> action. Learning: transition -> memory -> ``TransitionBatch`` -> TD math
(``kerasdqn.agents.td``) -> optimizer -> TD errors back to the memory (which a prioritized
memory turns into priorities) -> target update (``kerasdqn.targets``).

Speed: one compiled call does ``gradient_steps`` gradient steps, the soft target update after
each, and hands back the online weights for acting, so a training step costs one call into
TensorFlow. Acting evaluates the network with NumPy when it can (see ``kerasdqn.inference``).
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium
import keras
import numpy as np
import tensorflow as tf

from kerasdqn._checks import check_bool, check_choice, check_float, check_int
from kerasdqn._compiled import CompiledCall
from kerasdqn._env_checks import env_name, shape_matches
from kerasdqn.agents import td
from kerasdqn.checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from kerasdqn.core import Agent, Processor
from kerasdqn.inference import checked_evaluator, flat_layout, make_q_function, views_of_flat
from kerasdqn.layers import DUELING_TYPES, DuelingCombine, NoisyDense, dense_like
from kerasdqn.memory import SequentialMemory, TransitionBatch
from kerasdqn.policy import EpsGreedyQPolicy, GreedyQPolicy, Policy
from kerasdqn.saving import greedy_action, load_agent, save_agent
from kerasdqn.state import StateWindow
from kerasdqn.targets import TargetUpdate, make_hard_update, target_update_for
from kerasdqn.weights import load_model_weights, save_model_weights


class DQNAgent(Agent):
    """Deep Q-Network agent.

    Args:
        model: a built Keras model from states of shape ``(window_length,) +
            observation_shape`` to ``nb_actions`` Q values (linear output).
        policy: exploration policy while training (default ``EpsGreedyQPolicy(eps=0.1)``,
            or ``GreedyQPolicy()`` for a network with ``NoisyDense`` layers, whose noise
            explores).
        test_policy: policy while testing (default ``GreedyQPolicy()``).
        enable_double_dqn: pick the next action with the online network (Double DQN).
        enable_dueling_network: replace the model's last Dense layer by a dueling head.
        dueling_type: the dueling aggregation, ``'avg'``, ``'max'`` or ``'naive'``.
        nb_actions: number of discrete actions.
        memory: the replay memory, e.g. ``SequentialMemory(limit=50000, window_length=1)``.
        gamma: discount factor in [0, 1].
        batch_size: transitions per gradient step.
        nb_steps_warmup: steps before learning starts (learning happens at steps after it).
        train_interval: learn every that many steps.
        memory_interval: store every that many steps; only 1 is supported.
        target_model_update: below 1, soft-update the target network with this tau after every
            gradient step; 1 or more, copy the online weights into it every that many steps.
        delta_clip: Huber threshold of the loss (``inf``: plain squared error).
        processor: optional ``Processor`` hooks.
        custom_model_objects: custom layers etc. needed to clone ``model``.
        gradient_steps: gradient steps each time the agent learns (Stable-Baselines3's
            ``gradient_steps``); 1 is keras-rl's behaviour.
        n_step: learn from n-step returns: ``r_0 + ... + gamma^(n-1) r_(n-1) + gamma^n
            max_a Q_target(s_n, a)``, cut short at episode ends; 1 is plain DQN.
        seed: seeds exploration and replay sampling (see ``Agent``).
        fast_acting: evaluate the network with NumPy for acting when its layers allow it (a
            convolutional network for one state at a time; see ``kerasdqn.inference``).
        jit_compile: compile the training function with XLA (and acting, for a network the
            NumPy fast path cannot evaluate, such as a CNN).
    """

    def __init__(
        self,
        model: keras.Model,
        policy: Policy | None = None,
        test_policy: Policy | None = None,
        enable_double_dqn: bool = False,
        enable_dueling_network: bool = False,
        dueling_type: str = "avg",
        *,
        nb_actions: int,
        memory: SequentialMemory,
        gamma: float = 0.99,
        batch_size: int = 32,
        nb_steps_warmup: int = 1000,
        train_interval: int = 1,
        memory_interval: int = 1,
        target_model_update: float = 10000,
        delta_clip: float = np.inf,
        processor: Processor | None = None,
        custom_model_objects: dict | None = None,
        gradient_steps: int = 1,
        n_step: int = 1,
        seed: int | None = None,
        fast_acting: bool = True,
        jit_compile: bool = True,
    ) -> None:
        super().__init__(processor=processor, seed=seed)
        self.nb_actions = check_int("nb_actions", nb_actions, minimum=1)
        self.gamma = check_float("gamma", gamma, 0.0, 1.0)
        self.batch_size = check_int("batch_size", batch_size, minimum=1)
        self.nb_steps_warmup = check_int("nb_steps_warmup", nb_steps_warmup, minimum=0)
        self.train_interval = check_int("train_interval", train_interval, minimum=1)
        self.memory_interval = check_int("memory_interval", memory_interval, minimum=1)
        if self.memory_interval != 1:
            raise ValueError(
                "memory_interval: only 1 is supported; keras-rl's memory_interval > 1 stored "
                "transitions whose next state lay memory_interval steps later"
            )
        self.delta_clip = check_float("delta_clip", delta_clip, 0.0, low_open=True, allow_inf=True)
        self.gradient_steps = check_int("gradient_steps", gradient_steps, minimum=1)
        self.n_step = check_int("n_step", n_step, minimum=1)
        self.jit_compile = check_bool("jit_compile", jit_compile)
        self.enable_double_dqn = check_bool("enable_double_dqn", enable_double_dqn)
        self.enable_dueling_network = check_bool("enable_dueling_network", enable_dueling_network)
        self.dueling_type = check_choice("dueling_type", dueling_type, DUELING_TYPES)
        if custom_model_objects is not None and not isinstance(custom_model_objects, dict):
            raise TypeError(
                "custom_model_objects: expected a dict of names to custom classes or "
                f"functions, got {custom_model_objects!r}"
            )
        self.custom_model_objects = dict(custom_model_objects or {})
        self.target_model_update = _check_target_model_update(target_model_update)
        self.memory = _check_memory(memory)
        self.memory.rng = self.rng
        self.window = StateWindow(
            memory.window_length, getattr(memory, "ignore_episode_boundaries", False)
        )

        _check_model(model, self.memory.window_length)
        self._check_output(model)
        self.fast_acting = check_bool("fast_acting", fast_acting)
        self._build_networks(model, self.fast_acting)
        self.target_update: TargetUpdate = target_update_for(self.target_model_update)
        if policy is None:
            policy = GreedyQPolicy() if has_noisy_layers(model) else EpsGreedyQPolicy()
        self.policy = policy
        self.test_policy = GreedyQPolicy() if test_policy is None else test_policy
        self._learn_functions: dict[int, CompiledCall] = {}
        self.recent_observation = None
        self.recent_action = None

    def _build_networks(self, model: keras.Model, fast_acting: bool) -> None:
        """The online network (with the dueling head if asked), its target copy, and the
        evaluator acting uses."""
        if self.enable_dueling_network:
            model = self._with_dueling_head(model)
        self.model = model
        with keras.saving.custom_object_scope(self.custom_model_objects):
            self.target_model = keras.models.clone_model(model)
        self.target_model.set_weights(model.get_weights())
        self._copy_to_target = make_hard_update(self.target_model.weights, model.weights)
        self._input_dtype = np.dtype(model.inputs[0].dtype)
        self._q_function = checked_evaluator(
            lambda: self._make_q_function(model, fast_acting), model
        )
        self._acting_layout = flat_layout(self._q_function.variables)

    # Hooks a distributional agent (``kerasdqn.agents.distributional``) overrides: what the
    # network outputs, its dueling head, how acting turns outputs into Q values, and the
    # gradient step (``_gradient_step``, built from ``_apply_gradients`` and ``_statistics``).

    def _check_output(self, model: keras.Model) -> None:
        """Raise unless the network outputs one Q value per action."""
        output_shape = tuple(model.outputs[0].shape)
        if output_shape != (None, self.nb_actions):
            raise ValueError(
                f"model: its output shape is {output_shape}; DQN expects one Q value per "
                f"action, (None, {self.nb_actions}) for nb_actions={self.nb_actions}"
            )

    def _with_dueling_head(self, model: keras.Model) -> keras.Model:
        """``model`` with its last Dense layer replaced by the dueling head."""
        return add_dueling_head(model, self.nb_actions, self.dueling_type)

    def _make_q_function(self, model: keras.Model, fast_acting: bool):
        """The evaluator acting calls: states in, Q values ``(batch, nb_actions)`` out (a
        network NumPy cannot evaluate runs compiled, with XLA when training uses it)."""
        return make_q_function(model, prefer_numpy=fast_acting, jit_compile=self.jit_compile)

    # ----------------------------------------------------------------- policies

    @property
    def policy(self) -> Policy:
        return self._policy

    @policy.setter
    def policy(self, policy: Policy) -> None:
        self._policy = _check_policy("policy", policy)
        policy.attach(self)

    @property
    def test_policy(self) -> Policy:
        return self._test_policy

    @test_policy.setter
    def test_policy(self, policy: Policy) -> None:
        self._test_policy = _check_policy("test_policy", policy)
        policy.attach(self)

    # ----------------------------------------------------------------- compile

    def compile(self, optimizer: Any, metrics: list | None = None) -> None:
        """Choose the optimizer (an instance or a Keras name such as ``'adam'``) and the
        metrics computed on (TD target, predicted Q) besides the loss and ``mean_q``."""
        if isinstance(optimizer, str):
            try:
                optimizer = keras.optimizers.get(optimizer)
            except ValueError:
                raise ValueError(f"optimizer: unknown Keras optimizer name {optimizer!r}") from None
        if not isinstance(optimizer, keras.optimizers.Optimizer):
            raise TypeError(
                f"optimizer: expected a Keras 3 optimizer or its name, got {optimizer!r}"
            )
        if metrics is not None and not isinstance(metrics, list | tuple):
            raise TypeError(f"metrics: expected a list, got {metrics!r}")
        self._metric_functions = [_resolve_metric(metric) for metric in metrics or []]
        optimizer.build(self.model.trainable_variables)
        self.optimizer = optimizer
        self._learn_functions = {}
        self.compiled = True
        self._on_train_begin()

    @property
    def metrics_names(self) -> list[str]:
        names = ["loss"] + [name for name, _ in getattr(self, "_metric_functions", [])]
        names += ["mean_q"] + list(self.policy.metrics_names)
        if self.processor is not None:
            names += list(self.processor.metrics_names)
        return names

    @property
    def layers(self) -> list:
        return self.model.layers[:]

    # ----------------------------------------------------------------- acting

    def process_state_batch(self, batch) -> np.ndarray:
        """``batch`` through the processor's ``process_state_batch``, if there is a processor.

        Raises ``TypeError`` if the processor turns the states into floats for a network
        that takes integers (``nature_cnn``'s uint8 frames): cast back, values in [0, 1]
        would all become 0."""
        batch = np.asarray(batch)
        if self.processor is not None:
            batch = np.asarray(self.processor.process_state_batch(batch))
            if batch.dtype.kind == "f" and self._input_dtype.kind in "iu":
                raise TypeError(
                    f"processor: process_state_batch returned {batch.dtype} states, but the "
                    f"network takes {self._input_dtype} (nature_cnn takes the uint8 frames "
                    "and scales them inside): return the states as they are (drop the "
                    "scaling to [0, 1]), or give the network a float input"
                )
        return batch

    def compute_batch_q_values(self, state_batch) -> np.ndarray:
        """Q values of a batch of states, shape ``(batch, nb_actions)``."""
        return self._q_function(
            self.process_state_batch(state_batch).astype(self._input_dtype, copy=False)
        )

    def compute_q_values(self, state) -> np.ndarray:
        """Q values of one state, shape ``(nb_actions,)``."""
        return self.compute_batch_q_values(np.asarray(state)[np.newaxis])[0]

    def q_values_from_outputs(self, outputs: tf.Tensor) -> tf.Tensor:
        """The Q values, ``(batch, nb_actions)``, of the online network's outputs for a batch
        of states, in TensorFlow (for graphs built around ``model``, such as an export). The
        outputs are the Q values for DQN; distributional agents reduce their distributions to
        their means."""
        return outputs

    def forward(self, observation) -> int:
        """The action for ``observation``, stacked with the episode's previous observations."""
        state = self.window.observe(observation)
        q_values = self.compute_q_values(state)
        policy = self.policy if self.training else self.test_policy
        action = policy.select_action(q_values=q_values)
        self.recent_observation = observation
        self.recent_action = action
        return action

    def forward_batch(self, states) -> np.ndarray:
        """The actions for a batch of stacked states, one per environment of a vector
        environment: one call of the acting network for the whole batch and one vectorized
        policy draw (``Policy.select_actions``), each state with the exploration of the
        current step. A noisy network draws one noise sample for the whole batch."""
        q_values = self.compute_batch_q_values(states)
        policy = self.policy if self.training else self.test_policy
        return policy.select_actions(q_values)

    def reset_states(self) -> None:
        """A new episode begins in the one environment ``fit`` and ``test`` play."""
        self.recent_observation = None
        self.recent_action = None
        self.window.reset()
        if self.training:
            # Stream 0 may hold an episode a vector run left open (say, one resumed from
            # its checkpoint): whatever environment wrote it, that episode is over.
            self.memory.end_episode(0)

    # ----------------------------------------------------------------- learning

    def backward(self, reward: float, terminal: bool, truncated: bool = False) -> np.ndarray:
        """Store the step (while training), learn when due, then update the target network
        when a hard copy is due; returns the step's metrics (NaN when nothing was learned)."""
        if not self.training:
            return self._no_metrics
        self.memory.append(
            self.recent_observation, self.recent_action, reward, terminal, truncated=truncated
        )
        return self._learn_and_update_target()

    def backward_transition(
        self,
        stream: int,
        observation,
        action: int,
        reward: float,
        next_observation,
        terminated: bool,
        truncated: bool,
    ) -> np.ndarray:
        """``backward`` for one whole transition of ``stream`` (a vector environment's
        index): store it (a truncated one bootstraps), learn when due, copy the target
        network when due; returns the step's metrics (NaN when nothing was learned)."""
        self.memory.append_transition(
            observation, action, reward, next_observation, terminated, truncated, stream=stream
        )
        return self._learn_and_update_target()

    def _learn_and_update_target(self) -> np.ndarray:
        metrics = self.learn() if self._learning_due() else self._no_metrics
        if self.target_update.copy_due(self.step):
            self.update_target_model_hard()
        return metrics

    def _learning_due(self) -> bool:
        return (
            self.step > self.nb_steps_warmup
            and self.step % self.train_interval == 0
            and self.memory.nb_transitions > 0
        )

    def finish_episode(self, observation) -> None:
        self.window.end_episode(observation)
        if self.training:
            self.memory.append_final(observation)

    def learn(self, batch: TransitionBatch | None = None) -> np.ndarray:
        """Take ``gradient_steps`` gradient steps, each on ``batch_size`` transitions.

        ``batch``: the transitions to learn from, ``batch_size * gradient_steps`` of them
        (default: sampled from the memory). Returns the mean loss, metrics and ``mean_q`` over
        the steps, followed by the policy's and processor's metrics.

        A uniform memory gives all the steps' transitions in one draw and one compiled call
        takes all the steps. A prioritized memory (``memory.prioritized``) is sampled again
        before each gradient step, so every step draws on the priorities the previous one
        handed back.
        """
        needed = self.batch_size * self.gradient_steps
        if batch is not None and len(batch.action) != needed:
            raise ValueError(
                f"batch: expected batch_size * gradient_steps = {needed} transitions, "
                f"got {len(batch.action)}"
            )
        if batch is not None:
            stats = self._train_on(batch)
        elif getattr(self.memory, "prioritized", False):
            stats = np.mean(
                [self._train_on(self._sample(self.batch_size)) for _ in range(self.gradient_steps)],
                axis=0,
            )
        else:
            stats = self._train_on(self._sample(needed))
        self._q_function.refresh(self._acting_weights)
        extra = list(self.policy.metrics)
        if self.processor is not None:
            extra += list(self.processor.metrics)
        return np.concatenate([stats, np.asarray(extra, dtype=stats.dtype)]) if extra else stats

    def _sample(self, size: int) -> TransitionBatch:
        """``size`` transitions from the memory; a prioritized one also gets the step count,
        on which its importance-sampling exponent is annealed."""
        options = {"step": self.step} if getattr(self.memory, "prioritized", False) else {}
        return self.memory.sample_batch(size, n_step=self.n_step, gamma=self.gamma, **options)

    def _train_on(self, batch: TransitionBatch) -> np.ndarray:
        """Gradient steps on ``batch`` (``batch_size`` transitions per step) in one compiled
        call; hands the TD errors back to the memory and returns the mean statistics."""
        inputs = self._training_inputs(batch)
        steps = inputs[1].shape[0]
        function = self._learn_functions.get(steps)
        if function is None:
            function = self._learn_functions[steps] = self._build_learn_function(inputs)
        results, acting = function(*inputs)
        results = results.numpy()
        stats, td_errors = results[: self._nb_stats], results[self._nb_stats :]
        self._acting_weights = self._unflatten_acting(acting)
        if not np.isfinite(stats[0]):
            raise FloatingPointError(
                f"the loss is {stats[0]} at step {self.step}; training stopped. The networks "
                "may now hold non-finite values: save_weights refuses to write them, so the "
                "last good weights file stays as it was"
            )
        if batch.indices is not None:
            self.memory.update_priorities(batch.indices, td_errors)
        return stats

    @property
    def _nb_stats(self) -> int:
        """Statistics a gradient step reports: the loss, the metrics and ``mean_q``."""
        return len(self._metric_functions) + 2

    def _training_inputs(self, batch: TransitionBatch) -> list[np.ndarray]:
        """The training call's two arrays for a batch of ``steps * batch_size`` transitions:
        the states ``(2, steps, batch_size, ...)`` (``s`` then ``s'``, in the network's input
        dtype) and the float32 columns ``(steps, batch_size, 4)``: action, reward, discount of
        ``V(s')``, importance weight. Two arrays rather than six, because each array handed
        to TensorFlow costs a conversion; action indices are exact in float32."""
        steps = 1 if batch.steps is None else batch.steps
        states = np.stack(
            [self.process_state_batch(batch.state0), self.process_state_batch(batch.state1)],
            dtype=self._input_dtype,
            casting="unsafe",  # as astype: the network's input dtype decides
        )
        columns = np.empty((len(batch.action), 4), dtype=np.float32)
        columns[:, 0] = batch.action
        columns[:, 1] = batch.reward
        columns[:, 2] = td.n_step_discounts(self.gamma, steps, batch.terminal1)
        columns[:, 3] = 1.0 if batch.weights is None else batch.weights
        shape = (len(batch.action) // self.batch_size, self.batch_size)
        return [
            states.reshape((2,) + shape + states.shape[2:]),
            columns.reshape(shape + (4,)),
        ]

    def _unflatten_acting(self, flat: tf.Tensor) -> list[np.ndarray]:
        """The acting variables' values out of the training call's one flat vector."""
        return views_of_flat(flat, self._acting_layout)

    def _build_learn_function(self, example_inputs: list[np.ndarray]):
        """Trace the training call once, for inputs shaped like ``example_inputs``: it takes
        one gradient step per leading row and returns the mean statistics followed by the TD
        errors (``steps * batch_size``), and the weights acting reads as one flat vector."""
        gradient_steps = example_inputs[1].shape[0]
        acting_variables = self._q_function.variables

        def gradient_step(states, columns, k):
            action = tf.cast(columns[k, :, 0], tf.int32)
            reward, discount, weights = (columns[k, :, column] for column in (1, 2, 3))
            return self._gradient_step(
                states[0, k], action, reward, discount, states[1, k], weights
            )

        def learn(states, columns):
            if gradient_steps == 1:
                stats, errors = gradient_step(states, columns, 0)
            else:
                stats = tf.zeros([self._nb_stats])
                all_errors = tf.TensorArray(tf.float32, size=gradient_steps)
                for k in tf.range(gradient_steps):
                    step_stats, step_errors = gradient_step(states, columns, k)
                    stats += step_stats
                    all_errors = all_errors.write(k, step_errors)
                stats /= gradient_steps
                errors = all_errors.stack()
            results = tf.concat([stats, tf.reshape(errors, [-1])], axis=0)
            acting = [tf.reshape(variable, [-1]) for variable in acting_variables]
            return [results, tf.concat(acting, axis=0) if acting else tf.zeros([0])]

        specs = [tf.TensorSpec(array.shape, array.dtype) for array in example_inputs]
        return CompiledCall(learn, specs, jit_compile=self.jit_compile)

    def _next_state_values(self, state1):
        """``V(s')`` of the TD target: the target network's max, or Double DQN's choice."""
        next_q_target = self.target_model(state1, training=False)
        if self.enable_double_dqn:
            return td.double_next_values(next_q_target, self.model(state1, training=False))
        return td.max_next_values(next_q_target)

    def _gradient_step(self, state0, action, reward, discount, state1, weights):
        """One gradient step on a batch (traced into the training call); returns the
        statistics ``[loss, metrics..., mean_q]`` and the batch's TD errors."""
        targets = td.td_targets(reward, discount, self._next_state_values(state1))
        with tf.GradientTape() as tape:
            q_values = self.model(state0, training=True)
            q_taken = td.q_of_actions(q_values, action)
            loss, errors = td.td_loss(targets, q_taken, self.delta_clip, weights)
        self._apply_gradients(tape, loss)
        return self._statistics(loss, targets, q_taken, q_values), errors

    def _apply_gradients(self, tape: tf.GradientTape, loss: tf.Tensor) -> None:
        """The optimizer's step on the online network, then the soft target update (if any)."""
        trainable = self.model.trainable_variables
        gradients = tape.gradient(loss, trainable)
        self.optimizer.apply_gradients(zip(gradients, trainable))
        self.target_update.after_gradient_step(self.target_model.weights, self.model.weights)

    def _statistics(self, loss, targets, q_taken, q_values) -> tf.Tensor:
        """``[loss, metrics(targets, q_taken)..., mean_q]`` as one float32 vector."""
        stats = [loss]
        stats += [metric(targets, q_taken) for _, metric in self._metric_functions]
        stats.append(td.mean_max_q(q_values))
        return tf.stack([tf.cast(value, tf.float32) for value in stats])

    def _on_train_begin(self) -> None:
        # The metrics a step without learning reports; the policy may have changed since.
        self._no_metrics = np.full(len(self.metrics_names), np.nan)

    def _on_test_begin(self) -> None:
        self._on_train_begin()

    # ----------------------------------------------------------------- target network

    def update_target_model_hard(self) -> None:
        """Copy the online network's weights into the target network."""
        self._copy_to_target()

    # ----------------------------------------------------------------- weights

    def save_weights(self, filepath: str | os.PathLike, overwrite: bool = False) -> None:
        """Write the online network's weights to an HDF5 file (``.h5``, ``.h5f``, ...).

        The write is atomic; an existing file is replaced only with ``overwrite=True``.
        """
        save_model_weights(self.model, filepath, overwrite=check_bool("overwrite", overwrite))

    def load_weights(self, filepath: str | os.PathLike) -> None:
        """Load weights saved by ``save_weights`` or by keras-rl (Keras 2) for the same
        architecture; the target network gets a copy."""
        load_model_weights(self.model, filepath)
        self.update_target_model_hard()
        self.refresh_acting_weights()

    def refresh_acting_weights(self) -> None:
        """Make acting use the online network's current weights (after setting them by hand)."""
        self._q_function.refresh()

    def save_checkpoint(
        self,
        filepath: str | os.PathLike,
        pending_observation=None,
        compression: str | None = None,
    ) -> None:
        """Write everything training depends on to one HDF5 file, atomically: weights of both
        networks, optimizer state, replay memory, counters, policy state and random state.

        ``filepath`` may be a directory (then ``<directory>/checkpoint.h5``).
        ``pending_observation``: the current observation of an unfinished episode, which
        loading turns into that episode's (truncated) end.
        ``compression``: None (default), ``"lzf"`` or ``"gzip"``, the HDF5 filter for the
        replay memory (whose arrays are stored in chunks and streamed, never copied whole).
        """
        save_checkpoint(self, checkpoint_path(filepath), pending_observation, compression)

    def load_checkpoint(self, filepath: str | os.PathLike) -> None:
        """Restore a checkpoint written by ``save_checkpoint`` into this agent, which must be
        built and compiled the same way. ``fit`` then continues every counter and schedule."""
        load_checkpoint(self, checkpoint_path(filepath))

    # ----------------------------------------------------------------- whole agent

    def save(
        self, filepath: str | os.PathLike, include_memory: bool = False, overwrite: bool = False
    ) -> None:
        """Write the whole agent to one HDF5 file, atomically: its configuration, policies,
        network architecture (Keras JSON), weights, optimizer configuration and, with
        ``include_memory=True``, the replay memory. ``DQNAgent.load`` rebuilds it.

        Counters, random state, target weights and optimizer moments are not stored (use
        ``save_checkpoint`` to continue training exactly); policies must be kerasdqn's own.
        An existing file is replaced only with ``overwrite=True``; NaN weights are refused.
        """
        save_agent(self, filepath, include_memory=include_memory, overwrite=overwrite)

    @classmethod
    def load(
        cls,
        filepath: str | os.PathLike,
        custom_objects: dict | None = None,
        *,
        compile: bool = True,
        processor: Processor | None = None,
        seed: int | None = None,
    ) -> DQNAgent:
        """An agent rebuilt from a file written by ``save``, with its weights (and memory).

        The network is rebuilt by Keras in safe mode (Python lambdas are refused);
        ``custom_objects`` names the custom layers, functions, optimizers and metrics it needs.
        With ``compile`` (the default) an agent saved compiled comes back compiled, with a new
        optimizer of the saved configuration (learning rate included, moments fresh); one
        saved uncompiled, or loaded with ``compile=False``, must be compiled before ``fit``
        (acting with ``predict`` needs no optimizer). ``processor`` is required when the agent
        was saved with one. Its step and episode counters start at 0. Raises ``ValueError``
        naming the file and the part on any problem.
        """
        return load_agent(
            cls, filepath, custom_objects, compile=compile, processor=processor, seed=seed
        )

    def predict(self, observation) -> int:
        """The greedy action (highest Q value) for one observation, without changing the
        agent: its acting window, ``recent_observation``/``recent_action``, memory and random
        generator stay as they are, so it may be called in the middle of an episode.

        ``observation``: one observation as the environment gives it (passed through the
        processor's ``process_observation``); with ``window_length > 1`` it is stacked after
        zero frames, as at an episode start. An array of the network's state shape
        ``(window_length,) + observation_shape`` is taken as a whole state of processed
        observations instead.
        """
        return greedy_action(self, observation)

    # ----------------------------------------------------------------- checks

    def check_env(self, env) -> None:
        """Raise a clear error, before ``env`` is touched, if this agent cannot run on it: a
        Discrete action space of ``nb_actions`` actions, and without a ``Processor`` an
        observation space of the model's observation shape (not a ``Dict`` or ``Tuple``)."""
        if not callable(getattr(env, "step", None)) or not callable(getattr(env, "reset", None)):
            raise TypeError(f"env: expected a gymnasium environment, got {env!r}")
        name = env_name(env)
        space = getattr(env, "action_space", None)
        if not isinstance(space, gymnasium.spaces.Discrete):
            raise ValueError(f"env {name}: DQN needs a Discrete action space, got {space!r}")
        if int(space.n) != self.nb_actions:
            raise ValueError(
                f"env {name}: its action space has {int(space.n)} actions but the agent was "
                f"built with nb_actions={self.nb_actions}"
            )
        observation_shape = getattr(getattr(env, "observation_space", None), "shape", None)
        expected = self.expected_observation_shape()
        if (
            self.processor is None
            and observation_shape is not None
            and not shape_matches(tuple(observation_shape), expected)
        ):
            raise ValueError(
                f"env {name}: observations have shape {tuple(observation_shape)} but the model "
                f"takes states of shape {tuple(self.model.inputs[0].shape[1:])}, i.e. "
                f"observations of shape {expected}"
            )
        super().check_env(env)

    def expected_observation_shape(self) -> tuple:
        """The model's observation shape: its input shape without the batch and window axes."""
        return tuple(self.model.inputs[0].shape[2:])

    def get_config(self) -> dict:
        return {
            "nb_actions": self.nb_actions,
            "gamma": self.gamma,
            "batch_size": self.batch_size,
            "nb_steps_warmup": self.nb_steps_warmup,
            "train_interval": self.train_interval,
            "memory_interval": self.memory_interval,
            "target_model_update": self.target_model_update,
            "delta_clip": self.delta_clip,
            "enable_double_dqn": self.enable_double_dqn,
            "enable_dueling_network": self.enable_dueling_network,
            "dueling_type": self.dueling_type,
            "gradient_steps": self.gradient_steps,
            "n_step": self.n_step,
            "memory": self.memory.get_config(),
        }


def has_noisy_layers(model: keras.Model) -> bool:
    """Whether ``model`` (or a model nested in it) holds a ``NoisyDense`` layer."""
    return any(
        isinstance(layer, NoisyDense)
        or (isinstance(layer, keras.Model) and has_noisy_layers(layer))
        for layer in model.layers
    )


def add_dueling_head(model: keras.Model, nb_actions: int, dueling_type: str) -> keras.Model:
    """The model with its last Dense layer replaced by ``V`` and ``A`` streams combined.

    Trailing linear ``Activation`` layers are skipped, so the keras-rl tutorial's
    ``Dense(nb_actions), Activation('linear')`` ending works. A ``NoisyDense`` last layer is
    replaced by a noisy head with its ``sigma0`` and ``seed``, so the value and advantage
    streams are noisy too, as in Rainbow (Hessel et al., 2018).
    """
    features, last = features_before_last_dense(model, "nb_actions units")
    head = dense_like(last, nb_actions + 1, name="dueling_value_advantage")(features)
    q_values = DuelingCombine(dueling_type, name="dueling_q_values")(head)
    return keras.Model(model.inputs[0], q_values, name=f"{model.name}_dueling")


def features_before_last_dense(model: keras.Model, units: str) -> tuple[Any, keras.layers.Layer]:
    """The tensor that feeds the model's last ``Dense`` or ``NoisyDense`` layer (the one a
    dueling head replaces), trailing linear ``Activation`` layers skipped, and that layer;
    ``units`` says in the error what that layer should have."""
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    index = len(layers) - 1
    while (
        index >= 0
        and isinstance(layers[index], keras.layers.Activation)
        and getattr(layers[index].activation, "__name__", "") == "linear"
    ):
        index -= 1
    if index < 0 or not isinstance(layers[index], keras.layers.Dense | NoisyDense):
        raise ValueError(
            f"enable_dueling_network: the model must end with a Dense or NoisyDense layer of "
            f"{units} (optionally followed by a linear Activation), which the dueling head "
            "replaces"
        )
    features = layers[index - 1].output if index > 0 else model.inputs[0]
    return features, layers[index]


def _check_model(model, window_length: int) -> None:
    if not isinstance(model, keras.Model):
        raise TypeError(f"model: expected a Keras model, got {model!r}")
    if not model.built or not model.inputs:
        raise ValueError(
            "model: expected a built model with a known input shape; start it with "
            "keras.Input(shape=(window_length,) + observation_shape)"
        )
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(
            f"model: DQN expects one input and one output; this model has "
            f"{len(model.inputs)} inputs and {len(model.outputs)} outputs"
        )
    input_shape = tuple(model.inputs[0].shape)
    if len(input_shape) < 2 or input_shape[1] != window_length:
        raise ValueError(
            f"model: its input shape is {input_shape}; the agent feeds states of shape "
            f"(batch, window_length) + observation_shape with window_length={window_length} "
            "(for window_length=1 start the model with e.g. Flatten(input_shape=(1,) + shape))"
        )


def _check_memory(memory) -> SequentialMemory:
    needed = ("append", "append_final", "sample_batch", "update_priorities")
    if not all(callable(getattr(memory, name, None)) for name in needed):
        raise TypeError(
            f"memory: expected a kerasdqn memory such as SequentialMemory, got {memory!r}"
        )
    return memory


def _check_policy(name: str, policy) -> Policy:
    if not isinstance(policy, Policy):
        raise TypeError(f"{name}: expected a kerasdqn.policy.Policy, got {policy!r}")
    return policy


def _check_target_model_update(value) -> float:
    value = check_float("target_model_update", value, 0.0, low_open=True)
    return value if value < 1 else float(int(value))


def _resolve_metric(metric) -> tuple[str, Any]:
    """``(name, function(target, predicted) -> scalar)`` for a Keras metric name or object."""
    if isinstance(metric, keras.metrics.Metric):

        def stateless(target, predicted, metric=metric):
            metric.reset_state()
            metric.update_state(target[:, None], predicted[:, None])
            return metric.result()

        return metric.name, stateless
    name = metric if isinstance(metric, str) else getattr(metric, "__name__", None)
    try:
        function = keras.metrics.get(metric)
    except (ValueError, TypeError):
        function = None
    if function is None or name is None:
        raise ValueError(
            f"metrics: unknown metric {metric!r}; expected a Keras metric name "
            "such as 'mae' or a function(y_true, y_pred)"
        )
    if isinstance(function, keras.metrics.Metric):
        return name if isinstance(metric, str) else function.name, _resolve_metric(function)[1]
    return name, lambda target, predicted: tf.reduce_mean(
        function(target[:, None], predicted[:, None])
    )
