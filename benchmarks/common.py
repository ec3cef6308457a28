"""What the benchmarks share: the DQN settings, each library's learner for a setting,
single-threaded start-up, and running one measurement in its own subprocess.

Each library is imported only inside the functions that need it, so a subprocess measuring
kerasdqn never imports torch and one measuring Stable-Baselines3 never imports TensorFlow.

The two libraries run the same algorithm: the same MLP (ReLU hidden layers, linear output),
Adam with the same learning rate and epsilon (PyTorch's 1e-8), the Huber loss with threshold 1
averaged over the batch (SB3's ``smooth_l1_loss``, kerasdqn's ``delta_clip=1.0``), gradients
clipped to a global norm of 10 (SB3's ``max_grad_norm``, Keras's ``global_clipnorm``), the same
replay size, batch, warm-up, training frequency, target update and epsilon schedule, gamma 0.99,
no Double DQN, no dueling head, 1-step returns.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from dataclasses import dataclass

ENV_ID = "CartPole-v1"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADAM_EPSILON = 1e-8  # torch.optim.Adam's default, which SB3's DQN uses
MAX_GRAD_NORM = 10.0  # SB3's DQN default


@dataclass(frozen=True)
class Setting:
    """One DQN configuration, in terms both libraries express.

    ``target_update`` below 1 is a soft update with that tau after every environment step
    (kerasdqn applies it after every gradient step, the same thing when training every step
    with one gradient step); 1 or more is a hard copy every that many environment steps.
    Epsilon falls linearly from ``eps_start`` to ``eps_end`` over the first ``eps_fraction`` of
    ``steps``.
    """

    name: str
    hidden: tuple[int, ...]
    lr: float
    batch_size: int
    buffer_size: int
    learning_starts: int
    train_freq: int
    gradient_steps: int
    target_update: float
    eps_start: float
    eps_end: float
    eps_fraction: float
    steps: int
    gamma: float = 0.99


SETTINGS = {
    "tutorial": Setting(
        name="tutorial",
        hidden=(16,),
        lr=1e-3,
        batch_size=32,
        buffer_size=50_000,
        learning_starts=10,
        train_freq=1,
        gradient_steps=1,
        target_update=0.01,
        eps_start=0.1,
        eps_end=0.1,
        eps_fraction=1.0,
        steps=20_000,
    ),
    "64x64": Setting(
        name="64x64",
        hidden=(64, 64),
        lr=1e-3,
        batch_size=32,
        buffer_size=50_000,
        learning_starts=1_000,
        train_freq=4,
        gradient_steps=1,
        target_update=500,
        eps_start=1.0,
        eps_end=0.05,
        eps_fraction=0.2,
        steps=20_000,
    ),
    "rl-zoo": Setting(
        name="rl-zoo",
        hidden=(256, 256),
        lr=2.3e-3,
        batch_size=64,
        buffer_size=100_000,
        learning_starts=1_000,
        train_freq=256,
        gradient_steps=128,
        target_update=10,
        eps_start=1.0,
        eps_end=0.04,
        eps_fraction=0.16,
        steps=50_000,
    ),
}


# --------------------------------------------------------------------------- start-up


def tensorflow_threads(threads: int) -> None:
    """Import TensorFlow quietly and give it ``threads`` inter-op and intra-op threads."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(threads)
    tf.config.threading.set_intra_op_parallelism_threads(threads)


def torch_threads(threads: int) -> None:
    """Give PyTorch ``threads`` threads."""
    import torch

    torch.set_num_threads(threads)


def single_threaded_tensorflow() -> None:
    """Import TensorFlow quietly and give it one inter-op and one intra-op thread."""
    tensorflow_threads(1)


def single_threaded_torch() -> None:
    """Give PyTorch one thread."""
    torch_threads(1)


def make_env(seed: int):
    """CartPole-v1, reset with ``seed`` and its action space seeded."""
    import gymnasium

    env = gymnasium.make(ENV_ID)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    return env


# --------------------------------------------------------------------------- learners


def kerasdqn_config(setting: Setting, seed: int, clip_gradients: bool = True):
    """``setting`` as kerasdqn's ``DQNConfig``: constant learning rate, SB3's Adam epsilon and
    (unless ``clip_gradients=False``) its gradient clipping, plain 1-step DQN."""
    from kerasdqn.config import DQNConfig

    return DQNConfig(
        steps=setting.steps,
        seed=seed,
        hidden=setting.hidden,
        lr=setting.lr,
        lr_end=None,
        batch_size=setting.batch_size,
        gamma=setting.gamma,
        memory=setting.buffer_size,
        warmup=setting.learning_starts,
        train_interval=setting.train_freq,
        gradient_steps=setting.gradient_steps,
        n_step=1,
        target_update=setting.target_update,
        eps_start=setting.eps_start,
        eps_end=setting.eps_end,
        eps_fraction=setting.eps_fraction,
        double=False,
        delta_clip=1.0,
        adam_epsilon=ADAM_EPSILON,
        max_grad_norm=MAX_GRAD_NORM if clip_gradients else None,
    )


def kerasdqn_agent(setting: Setting, seed: int, clip_gradients: bool = True):
    """A compiled kerasdqn ``DQNAgent`` for ``setting`` (call ``single_threaded_tensorflow``
    first); ``clip_gradients=False`` leaves out SB3's gradient clipping."""
    import keras

    from kerasdqn.training import build_agent

    keras.utils.set_random_seed(seed)
    config = kerasdqn_config(setting, seed, clip_gradients)
    return build_agent(make_env(seed), config)


def sb3_model(setting: Setting, env, seed: int):
    """A Stable-Baselines3 ``DQN`` for ``setting`` on ``env`` (call ``single_threaded_torch``
    first)."""
    from stable_baselines3 import DQN

    soft = setting.target_update < 1
    return DQN(
        "MlpPolicy",
        env,
        policy_kwargs={"net_arch": list(setting.hidden)},
        learning_rate=setting.lr,
        batch_size=setting.batch_size,
        buffer_size=setting.buffer_size,
        learning_starts=setting.learning_starts,
        gamma=setting.gamma,
        train_freq=setting.train_freq,
        gradient_steps=setting.gradient_steps,
        tau=setting.target_update if soft else 1.0,
        target_update_interval=1 if soft else int(setting.target_update),
        exploration_initial_eps=setting.eps_start,
        exploration_final_eps=setting.eps_end,
        exploration_fraction=setting.eps_fraction,
        max_grad_norm=MAX_GRAD_NORM,
        seed=seed,
        device="cpu",
        verbose=0,
    )


# --------------------------------------------------------------------------- subprocesses


def run_worker(script: str, arguments: list[str]) -> dict:
    """Run ``script`` with ``arguments`` in a fresh Python process; return the JSON object it
    prints on its last line of output."""
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [REPO_ROOT, environment.get("PYTHONPATH")])
    )
    done = subprocess.run(
        [sys.executable, script, *arguments],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{os.path.basename(script)} {' '.join(arguments)} failed:\n{done.stderr[-3000:]}"
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(result: dict) -> None:
    """Print a worker's result as the JSON line ``run_worker`` reads."""
    print(json.dumps(result), flush=True)


def median(values: list[float]) -> float:
    """The median of ``values``."""
    return statistics.median(values)
