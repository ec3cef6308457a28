"""Agents."""

from kerasdqn.agents.dqn import DQNAgent

__all__ = ["DQNAgent"]
