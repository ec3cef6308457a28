"""Writes v1_checkpoint.h5 and v1_reference.npz with kerasdqn 0.1.0 (checkpoint format 1).

The checkpoint holds a window_length=2 replay memory of 60 entries that has wrapped around, so
the test that reads it checks that later versions convert format 1's memory exactly: every
stored transition (2-step returns) must come out as 0.1.0 sampled it, recorded in the npz file.
Run from a checkout of 0.1.0: python tests/data/make_v1_checkpoint.py
"""

import os

import gymnasium
import keras
import numpy as np

from kerasdqn import DQNAgent, SequentialMemory, build_mlp

HERE = os.path.dirname(os.path.abspath(__file__))


def make_agent() -> DQNAgent:
    keras.utils.set_random_seed(3)
    agent = DQNAgent(
        build_mlp((2, 4), 2, (8,)),
        nb_actions=2,
        memory=SequentialMemory(60, window_length=2),
        nb_steps_warmup=20,
        n_step=2,
        seed=3,
    )
    agent.compile(keras.optimizers.Adam(1e-3))
    return agent


def main() -> None:
    env = gymnasium.make("CartPole-v1")
    env.reset(seed=3)
    agent = make_agent()
    agent.fit(env, nb_steps=150, verbose=0)
    agent.save_checkpoint(os.path.join(HERE, "v1_checkpoint.h5"))
    memory = agent.memory
    valid = np.array(sorted(set(memory.sample_indices(5000).tolist())))
    batch = memory.batch_at(valid, n_step=2, gamma=0.99)
    np.savez(
        os.path.join(HERE, "v1_reference.npz"),
        nb_transitions=memory.nb_transitions,
        state0=batch.state0,
        action=batch.action,
        reward=batch.reward,
        state1=batch.state1,
        terminal1=batch.terminal1,
        steps=batch.steps,
    )


if __name__ == "__main__":
    main()
