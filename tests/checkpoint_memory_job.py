"""Peak resident memory of a checkpoint's save and load, each measured in this fresh process
by tests/test_checkpoint_streaming.py.

python tests/checkpoint_memory_job.py FRAMES CHECKPOINT.h5

fills a replay memory of FRAMES 84x84 uint8 frames, saves a checkpoint, drops that agent, loads
the checkpoint into a fresh one and prints one JSON line: the observations' payload in bytes and
how far resident memory rose above its level just before the save and just before the load.
"""

import gc
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

tf.config.threading.set_inter_op_parallelism_threads(1)
tf.config.threading.set_intra_op_parallelism_threads(1)

from kerasdqn import DQNAgent, SequentialMemory  # noqa: E402

SHAPE = (84, 84)
NB_ACTIONS = 3


def pixel_agent(limit: int, memory: SequentialMemory | None = None) -> DQNAgent:
    """A compiled agent on 4 stacked uint8 frames, with a network too small to matter beside
    the replay memory (``memory``, or a ``SequentialMemory`` of ``limit`` entries)."""
    memory = SequentialMemory(limit, window_length=4) if memory is None else memory
    model = keras.Sequential(
        [
            keras.Input((4,) + SHAPE, dtype="uint8"),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Flatten(),
            keras.layers.Dense(NB_ACTIONS),
        ]
    )
    agent = DQNAgent(model, nb_actions=NB_ACTIONS, memory=memory)
    agent.compile(keras.optimizers.Adam(1e-3))
    return agent


def frame(index: int) -> np.ndarray:
    """A Pong-like frame: flat background, a paddle and a ball that move with ``index``."""
    image = np.full(SHAPE, 87, np.uint8)
    image[(index * 3) % 70 : (index * 3) % 70 + 14, 76:79] = 147
    image[(index * 5) % 82 : (index * 5) % 82 + 2, (index * 7) % 82 : (index * 7) % 82 + 2] = 236
    return image


def fill(memory: SequentialMemory, frames: int) -> None:
    """``frames`` entries, in episodes of 1000 steps."""
    for index in range(frames):
        memory.append(frame(index), index % NB_ACTIONS, 1.0, terminal=index % 1000 == 999)


def reset_peak() -> int:
    """Reset this process's peak resident memory to its current level (Linux) and return it."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    return _status("VmRSS")


def peak() -> int:
    return _status("VmHWM")


def _status(field: str) -> int:
    """A ``/proc/self/status`` figure, in bytes."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def main(frames: int, path: str) -> None:
    agent = pixel_agent(frames)
    fill(agent.memory, frames)
    payload = agent.memory.get_state()["observations"].nbytes
    before = reset_peak()
    agent.save_checkpoint(path)
    saving = peak() - before
    del agent
    gc.collect()
    fresh = pixel_agent(frames)
    before = reset_peak()
    fresh.load_checkpoint(path)
    loading = peak() - before
    assert fresh.memory.nb_entries == frames
    print(json.dumps({"payload": payload, "saving": saving, "loading": loading}))


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
