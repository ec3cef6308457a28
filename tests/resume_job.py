"""Training jobs run as separate processes by tests/test_checkpoint.py.

python tests/resume_job.py straight STEPS OUT.h5          train STEPS, save weights
python tests/resume_job.py first STEPS CHECKPOINT_DIR     train STEPS, checkpoint
python tests/resume_job.py resume STEPS CHECKPOINT_DIR OUT.h5
                                                          load, train STEPS, save weights
python tests/resume_job.py until-signal CHECKPOINT_DIR LOG.json
                                                          train until SIGINT or SIGTERM

With RESUME_JOB_NOISY=1 in the environment, the network's layers are NoisyDense and the agent
acts greedily on it.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gymnasium  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.threading.set_inter_op_parallelism_threads(1)
tf.config.threading.set_intra_op_parallelism_threads(1)

from kerasdqn import (  # noqa: E402
    DQNAgent,
    EpsGreedyQPolicy,
    FileLogger,
    GreedyQPolicy,
    LinearAnnealedPolicy,
    SequentialMemory,
    build_mlp,
)
from kerasdqn.layers import NoisyDense  # noqa: E402

EPISODE_LENGTH = 50


class Drift(gymnasium.Env):
    """A deterministic cart on a line: reset always gives the same state, and every episode
    lasts exactly EPISODE_LENGTH steps (a time limit), so episode ends fall on known steps."""

    observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gymnasium.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.state = 0, np.array([0.5, 0.0], np.float32)
        return self.state.copy(), {}

    def step(self, action):
        self.t += 1
        self.state[1] += 0.05 * (action - 0.5)
        self.state[0] += self.state[1]
        reward = -abs(float(self.state[0]))
        return self.state.copy(), reward, False, self.t == EPISODE_LENGTH, {}


def build_agent() -> DQNAgent:
    keras.utils.set_random_seed(1)
    if os.environ.get("RESUME_JOB_NOISY") == "1":
        model = keras.Sequential(
            [
                keras.Input((2, 2)),
                keras.layers.Flatten(),
                NoisyDense(32, activation="relu"),
                NoisyDense(2),
            ]
        )
        policy = GreedyQPolicy()
    else:
        model = build_mlp((2, 2), 2, (32, 32))
        policy = LinearAnnealedPolicy(EpsGreedyQPolicy(), "eps", 1.0, 0.05, 0.0, nb_steps=1500)
    agent = DQNAgent(
        model,
        nb_actions=2,
        policy=policy,
        memory=SequentialMemory(limit=600, window_length=2),
        nb_steps_warmup=100,
        batch_size=16,
        train_interval=2,
        gradient_steps=2,
        n_step=3,
        target_model_update=0.05,
        enable_double_dqn=True,
        enable_dueling_network=True,
        seed=3,
    )
    schedule = keras.optimizers.schedules.PolynomialDecay(1e-3, 1000, 1e-4)
    agent.compile(keras.optimizers.Adam(learning_rate=schedule), metrics=["mae"])
    return agent


def main(command: str, *args: str) -> None:
    agent, env = build_agent(), Drift()
    if command == "straight":
        agent.fit(env, nb_steps=int(args[0]), verbose=0)
        agent.save_weights(args[1])
    elif command == "first":
        agent.fit(env, nb_steps=int(args[0]), verbose=0, checkpoint_dir=args[1])
    elif command == "resume":
        agent.load_checkpoint(args[1])
        agent.fit(env, nb_steps=int(args[0]), verbose=0)
        agent.save_weights(args[2])
    elif command == "until-signal":
        print("training", flush=True)
        history = agent.fit(
            env, nb_steps=10**9, verbose=0, checkpoint_dir=args[0], callbacks=[FileLogger(args[1])]
        )
        print(f"stopped at step {agent.step} after {len(history.episode)} episodes", flush=True)
    else:
        sys.exit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(*sys.argv[1:])
