"""Tabular reinforcement learning: the ground DQN stands on, on the same environments.

DQN approximates the Q values of tabular Q-learning with a network. Where states are few and
countable (gymnasium's toy-text environments: FrozenLake, Taxi, CliffWalking), everything can be
done exactly or by counting, and compared with DQN:

- ``value_iteration`` and ``policy_iteration`` solve the Bellman optimality equation of a known
  model, given in gymnasium's toy-text format ``P[s][a] = [(prob, next_state, reward,
  terminated), ...]`` (``env.unwrapped.P``). The model is turned into dense NumPy arrays once
  (``dense_model``), so each sweep is one matrix product.
- ``TransitionModel`` estimates such a model from experience by counting: the entry ``(s, a)``
  holds ``{s1: c1, s2: c2, ...}``, from which ``P(s' | s, a)`` and the rewards follow. Value
  iteration on the estimate is model-based reinforcement learning from samples.
- ``QLearningAgent`` learns Q values from experience without a model, with keras-rl's
  ``fit`` / ``test`` loop, the same policies and callbacks as ``DQNAgent``, and checkpoints.

A transition that *terminates* the episode ends all future reward: it never bootstraps. A
transition cut off by a time limit (*truncated*) does: the state it reached still has a future.
"""

from kerasdqn.tabular.model import TransitionModel
from kerasdqn.tabular.planning import (
    DenseModel,
    PlanningResult,
    ToyTextModel,
    check_policy_array,
    dense_model,
    evaluate_policy,
    greedy_policy,
    horizon_values,
    policy_iteration,
    policy_values,
    q_values_of,
    value_iteration,
)
from kerasdqn.tabular.qlearning import QLearningAgent

__all__ = [
    "DenseModel",
    "PlanningResult",
    "QLearningAgent",
    "ToyTextModel",
    "TransitionModel",
    "check_policy_array",
    "dense_model",
    "evaluate_policy",
    "greedy_policy",
    "horizon_values",
    "policy_iteration",
    "policy_values",
    "q_values_of",
    "value_iteration",
]
