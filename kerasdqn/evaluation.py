"""Evaluation during training: greedy episodes on a separate environment every N steps.

``EvalCallback`` (Stable-Baselines3's name, keras-rl style arguments) plays ``nb_episodes``
greedy episodes on its own environment every ``eval_interval`` training steps, records their
rewards, optionally writes them to TensorBoard, keeps the best weights in their own file, and
can stop training once a reward threshold is reached::

    eval_env = gymnasium.make("CartPole-v1")
    evaluation = EvalCallback(eval_env, eval_interval=5000, nb_episodes=10,
                              best_weights_path="weights/best.h5", reward_threshold=475)
    agent.fit(env, nb_steps=50000, callbacks=[evaluation])
    evaluation.evaluations[-1]["mean_reward"]

Evaluation does not disturb training: it acts with its own acting window and plain argmax over
the agent's Q values, so the replay memory, the counters, the acting window of the episode in
progress and the agent's random generator are exactly as they were, and a run with the
callback trains exactly like the same run without it.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import tensorflow as tf

from kerasdqn._checks import check_float, check_int
from kerasdqn._env_checks import check_one_env
from kerasdqn._files import check_directory_exists, check_path
from kerasdqn.callbacks import Callback
from kerasdqn.layers import noise_kept
from kerasdqn.state import StateWindow

__all__ = ["EvalCallback"]


class EvalCallback(Callback):
    """Every ``eval_interval`` training steps, play greedy episodes on ``eval_env``.

    Args:
        eval_env: a gymnasium environment used only for evaluation; it must not be the
            training environment (nor wrap the same one). It is one environment, not a
            ``VectorEnv``: evaluation plays its episodes one at a time, as ``test`` does.
        eval_interval: training steps between evaluations, counted on the agent's step
            counter, which continues across ``fit`` calls (so evaluations happen at steps
            ``eval_interval``, ``2 * eval_interval``, ... whatever the ``fit`` calls).
        nb_episodes: greedy episodes per evaluation.
        best_weights_path: if set, the agent's weights are saved there (atomically) whenever
            the mean reward of an evaluation beats the best one so far.
        reward_threshold: if set, training stops after the step whose evaluation reaches this
            mean reward (``stopped_early`` becomes True).
        nb_max_episode_steps: cut evaluation episodes off after that many steps.
        verbose: 0 silent, 1 a line per evaluation (and per saved best / early stop).
        log_dir: if set, TensorBoard scalars ``eval/mean_reward`` and ``eval/std_reward`` are
            written there, on the agent's step axis.

    Actions are the argmax of ``agent.compute_q_values`` on states stacked by the callback's
    own ``StateWindow``; the agent's ``processor``, if any, processes each observation
    (``process_observation``) and action (``process_action``). Rewards are the environment's
    own, as returned by ``eval_env.step``.

    Each evaluation is also recorded in the History that ``fit`` returns (see
    ``kerasdqn.callbacks.History``).

    Attributes:
        evaluations: one dict per evaluation: ``step`` (training steps done), ``mean_reward``,
            ``std_reward`` and ``rewards`` (one total per episode).
        best_mean_reward: the best mean reward so far (``-inf`` before the first evaluation).
        stopped_early: whether ``reward_threshold`` stopped training.
    """

    def __init__(
        self,
        eval_env: Any,
        eval_interval: int = 10_000,
        nb_episodes: int = 10,
        best_weights_path: str | os.PathLike | None = None,
        reward_threshold: float | None = None,
        nb_max_episode_steps: int | None = None,
        verbose: int = 1,
        log_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        if not callable(getattr(eval_env, "reset", None)) or not callable(
            getattr(eval_env, "step", None)
        ):
            raise TypeError(
                f"eval_env: expected a gymnasium environment (with reset and step), "
                f"got {eval_env!r}"
            )
        check_one_env("eval_env", eval_env, "evaluation")
        self.eval_env = eval_env
        self.eval_interval = check_int("eval_interval", eval_interval, minimum=1)
        self.nb_episodes = check_int("nb_episodes", nb_episodes, minimum=1)
        self.best_weights_path = _optional(check_path, "best_weights_path", best_weights_path)
        self.reward_threshold = _optional(check_float, "reward_threshold", reward_threshold)
        self.nb_max_episode_steps = _optional(
            check_int, "nb_max_episode_steps", nb_max_episode_steps, minimum=1
        )
        self.verbose = check_int("verbose", verbose, minimum=0)
        self.log_dir = _optional(check_path, "log_dir", log_dir)
        self.evaluations: list[dict[str, Any]] = []
        self.best_mean_reward = -math.inf
        self.stopped_early = False
        self._writer = None

    # ------------------------------------------------------------------ hooks

    def on_train_begin(self, logs: dict | None = None) -> None:
        """Check the evaluation environment against the agent and the training environment,
        and the best-weights directory, before the first step."""
        if not self.agent.training:
            return  # inside ``test``: nothing to evaluate
        if self.eval_env is self.env or _unwrapped(self.eval_env) is _unwrapped(self.env):
            raise ValueError(
                "eval_env: it is the training environment; pass a separate environment (e.g. "
                "another gymnasium.make of the same id), so evaluation does not disturb "
                "the training episodes"
            )
        try:
            self.agent.check_env(self.eval_env)
        except (TypeError, ValueError) as error:
            raise type(error)(f"eval_env: {error}") from None
        if self.best_weights_path is not None:
            check_directory_exists("best_weights_path", self.best_weights_path)
        if self.log_dir is not None and self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)

    def on_step_end(self, step: int, logs: dict | None = None) -> None:
        """Evaluate when the step just taken makes the agent's step count a multiple of
        ``eval_interval`` (``agent.step`` is incremented after this hook)."""
        if self.agent.training and (self.agent.step + 1) % self.eval_interval == 0:
            self.evaluate(self.agent.step + 1)

    def on_chunk_end(self, step: int, logs: dict | None = None) -> None:
        """Evaluate at ``step`` when the steps that just arrived together (``ApeX.fit``'s
        chunks) passed a multiple of ``eval_interval``."""
        if step // self.eval_interval > logs["first_step"] // self.eval_interval:
            self.evaluate(step)

    def on_train_end(self, logs: dict | None = None) -> None:
        """Flush the TensorBoard events."""
        if self._writer is not None:
            self._writer.flush()

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, step: int) -> dict[str, Any]:
        """Play ``nb_episodes`` greedy episodes now and record them as the evaluation at
        ``step``: log it, save the best weights, and ask training to stop if the threshold
        is reached. Returns the evaluation's dict (also appended to ``evaluations``)."""
        with noise_kept(self.agent.model):
            rewards = [self.play_episode() for _ in range(self.nb_episodes)]
        result = {
            "step": int(step),
            "mean_reward": float(np.mean(rewards)),
            "std_reward": float(np.std(rewards)),
            "rewards": rewards,
        }
        self.evaluations.append(result)
        history = getattr(self.agent, "history", None)
        if self.agent.training and history is not None:
            history.record_evaluation(result)
        improved = result["mean_reward"] > self.best_mean_reward
        if improved:
            self.best_mean_reward = result["mean_reward"]
        self._write_scalars(result)
        self._print(
            f"Eval at step {step}: mean reward {result['mean_reward']:.1f} +/- "
            f"{result['std_reward']:.1f} over {self.nb_episodes} episodes "
            f"(best {self.best_mean_reward:.1f})"
        )
        if improved and self.best_weights_path is not None:
            self.agent.save_weights(self.best_weights_path, overwrite=True)
            self._print(f"Eval at step {step}: new best, weights saved to {self.best_weights_path}")
        if self.reward_threshold is not None and result["mean_reward"] >= self.reward_threshold:
            self._request_stop(step, result["mean_reward"])
        return result

    def play_episode(self) -> float:
        """Play one greedy episode on ``eval_env``; return its total reward.

        The episode ends at termination, truncation or ``nb_max_episode_steps``. Nothing of
        the agent's is changed: states come from a fresh ``StateWindow`` and actions are the
        argmax of the Q values, so no random number is drawn (a noisy network draws its
        noise, and ``evaluate`` puts its noise generators back afterwards).
        """
        processor = self.agent.processor
        window = StateWindow(self.agent.memory.window_length)
        observation, _ = self.eval_env.reset()
        total, steps, ended = 0.0, 0, False
        while not ended:
            if processor is not None:
                observation = processor.process_observation(observation)
            action = int(np.argmax(self.agent.compute_q_values(window.observe(observation))))
            if processor is not None:
                action = processor.process_action(action)
            observation, reward, terminated, truncated, _ = self.eval_env.step(action)
            total += float(reward)
            steps += 1
            limit_reached = self.nb_max_episode_steps is not None and (
                steps >= self.nb_max_episode_steps
            )
            ended = bool(terminated or truncated or limit_reached)
        return total

    def close(self) -> None:
        """Flush and close the TensorBoard event file, if any."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # ------------------------------------------------------------------ helpers

    def _write_scalars(self, result: dict[str, Any]) -> None:
        if self._writer is None:
            return
        with self._writer.as_default(step=result["step"]):
            tf.summary.scalar("eval/mean_reward", result["mean_reward"])
            tf.summary.scalar("eval/std_reward", result["std_reward"])
        self._writer.flush()

    def _request_stop(self, step: int, mean_reward: float) -> None:
        """Ask ``fit`` to stop after the current step: it reads ``agent.stop_training``, which
        it clears when it starts."""
        self.stopped_early = True
        self.agent.stop_training = True
        self._print(
            f"Eval at step {step}: mean reward {mean_reward:.1f} reached reward_threshold "
            f"{self.reward_threshold:g}; stopping training"
        )

    def _print(self, line: str) -> None:
        if self.verbose >= 1:
            print(line)


def _optional(check, name: str, value, **options):
    """``check(name, value, **options)``, or None for None."""
    return None if value is None else check(name, value, **options)


def _unwrapped(env):
    """The environment under any gymnasium wrappers."""
    return getattr(env, "unwrapped", env)
