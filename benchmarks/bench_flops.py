"""How close kerasdqn's Atari training step runs to this CPU's matmul peak, and what stands
between the two.

The peak is a large float32 ``tf.matmul`` (``2 n^3`` FLOPs for two ``n x n`` matrices) in a
warmed ``tf.function``. The training step is ``DQNAgent.learn`` on the Nature CNN (84x84x4 uint8
frames, 6 actions, batch 32, Adam, Huber loss) drawing from a filled ``SequentialMemory``
(``window_length=4``), exactly as ``fit`` calls it. Its FLOPs are counted per layer:

    conv:  2 * H_out * W_out * k * k * C_in * C_out      dense:  2 * n_in * n_out

    step = batch * (F_online(s) + F_target(s') [+ F_online(s') if Double DQN]
                    + 2 * F_online(s) - F_conv1(s))

The backward pass costs twice the forward (gradients with respect to the weights and to each
layer's input), less the first convolution's input gradient, which nothing needs. Biases, ReLUs,
the loss and Adam's update (about 10 FLOPs per parameter, 1.7 M parameters) are left out: under
1% of the total.

The step is then taken apart and each piece timed alone: sampling the batch (index draw and
window gathering in NumPy), building the input arrays, converting them to tensors, the compiled
call on ready-made tensors with XLA on and off, and the online network's forward pass alone.
Each thread count runs in its own process (TensorFlow fixes its thread pools at start-up).

    python benchmarks/bench_flops.py                  # 1 and 2 threads, writes flops.csv
    python benchmarks/bench_flops.py --threads 1 --calls 50
"""

from __future__ import annotations

import argparse
import csv
import os
import time

import common

NB_ACTIONS = 6  # Pong's action set
BATCH = 32
FRAMES = (4, 84, 84)
MATMUL_SIZES = (2048, 4096)
FILLED = 5_000  # transitions in the replay memory before timing
EPISODE_LENGTH = 500
SCALE_AND_PERMUTE = ("scale_to_unit", "frames_last")
CSV_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flops.csv")

# The Nature CNN as (name, kind, output side, kernel, inputs, outputs); dense layers have no
# side or kernel.
NATURE_CNN = (
    ("conv_8x8", "conv", 20, 8, 4, 32),
    ("conv_4x4", "conv", 9, 4, 32, 64),
    ("conv_3x3", "conv", 7, 3, 64, 64),
    ("dense_512", "dense", None, None, 7 * 7 * 64, 512),
    ("q_values", "dense", None, None, 512, NB_ACTIONS),
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--threads", type=int, nargs="+", default=[1, 2], help="TensorFlow thread counts"
    )
    parser.add_argument("--calls", type=int, default=100, help="timed calls per step piece")
    parser.add_argument("--csv", default=CSV_PATH, help="where to write the results")
    parser.add_argument("--worker-threads", type=int, help="internal: one process's run")
    return parser.parse_args()


# --------------------------------------------------------------------------- FLOP counts


def layer_flops(kind: str, side: int | None, kernel: int | None, inputs: int, outputs: int) -> int:
    """Multiply-adds times two of one layer on one sample."""
    if kind == "conv":
        return 2 * side * side * kernel * kernel * inputs * outputs
    return 2 * inputs * outputs


def forward_flops() -> dict[str, int]:
    """FLOPs of one Nature CNN forward pass on one state, per layer."""
    return {name: layer_flops(*spec) for name, *spec in NATURE_CNN}


def step_flops(double: bool = False) -> int:
    """FLOPs of one training step at ``BATCH`` (see the module docstring)."""
    per_layer = forward_flops()
    forward = sum(per_layer.values())
    per_sample = forward + forward + 2 * forward - per_layer["conv_8x8"]
    if double:
        per_sample += forward
    return BATCH * per_sample


# --------------------------------------------------------------------------- timing


def seconds_per_call(function, calls: int, blocks: int = 5) -> float:
    """Median over ``blocks`` blocks of the seconds per call of ``function`` (one warm-up
    call first); the median resists a shared machine's bursts."""
    function()
    per_block = max(1, calls // blocks)
    times = []
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(per_block):
            function()
        times.append((time.perf_counter() - start) / per_block)
    return common.median(times)


def matmul_peak(size: int) -> float:
    """GFLOP/s of a float32 ``size x size`` matmul in a warmed ``tf.function``."""
    import tensorflow as tf

    a = tf.random.normal([size, size])
    b = tf.random.normal([size, size])
    matmul = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    seconds = seconds_per_call(lambda: matmul().numpy(), calls=5 if size <= 2048 else 3, blocks=1)
    return 2 * size**3 / seconds / 1e9


def filled_agent(jit_compile: bool):
    """A compiled Nature CNN ``DQNAgent`` whose memory holds ``FILLED`` random transitions."""
    import keras
    import numpy as np

    from kerasdqn.agents.dqn import DQNAgent
    from kerasdqn.memory import SequentialMemory
    from kerasdqn.networks import nature_cnn

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    memory = SequentialMemory(limit=FILLED + 10, window_length=FRAMES[0])
    frame = rng.integers(0, 256, FRAMES[1:], dtype=np.uint8)
    for step in range(FILLED):
        following = rng.integers(0, 256, FRAMES[1:], dtype=np.uint8)
        ends = (step + 1) % EPISODE_LENGTH == 0
        memory.append_transition(frame, int(rng.integers(NB_ACTIONS)), 1.0, following, ends)
        frame = following
    agent = DQNAgent(
        nature_cnn(FRAMES, nb_actions=NB_ACTIONS),
        nb_actions=NB_ACTIONS,
        memory=memory,
        nb_steps_warmup=0,
        target_model_update=1_000,
        delta_clip=1.0,
        jit_compile=jit_compile,
    )
    agent.compile(keras.optimizers.Adam(learning_rate=1e-4, epsilon=common.ADAM_EPSILON))
    agent.learn()  # traces and compiles the training call
    return agent


def step_pieces(agent, calls: int) -> dict[str, float]:
    """Seconds per call of ``learn`` and of each of its pieces, timed alone."""
    import tensorflow as tf

    function = agent._learn_functions[1]
    batch = agent.memory.sample_batch(BATCH)
    inputs = agent._training_inputs(batch)
    tensors = [tf.constant(array) for array in inputs]
    return {
        "learn": seconds_per_call(agent.learn, calls),
        "sample": seconds_per_call(lambda: agent.memory.sample_batch(BATCH), calls),
        "inputs": seconds_per_call(lambda: agent._training_inputs(batch), calls),
        "to_tensors": seconds_per_call(lambda: [tf.constant(array) for array in inputs], calls),
        "compiled": seconds_per_call(
            lambda: function._direct(tensors, function._captured)[0].numpy(), calls
        ),
    }


def forward_seconds(agent, calls: int) -> dict[str, float]:
    """Seconds per compiled forward pass on a batch of states: the online network as the agent
    runs it (uint8 ``(batch, 4, 84, 84)``, scaled and moved channels-last inside), and the same
    layers on float32 frames already channels-last (what the scaling and transpose cost)."""
    import keras
    import tensorflow as tf

    frames = agent.memory.sample_batch(BATCH).state0
    layers = [layer for layer in agent.model.layers if layer.name not in SCALE_AND_PERMUTE]
    channels_last = keras.Sequential([keras.Input(FRAMES[1:] + FRAMES[:1])] + layers)
    runs = {
        "forward": (agent.model, tf.constant(frames)),
        "forward_nhwc_float": (
            channels_last,
            tf.constant(frames.transpose(0, 2, 3, 1).astype("float32") / 255.0),
        ),
    }
    seconds = {}
    for name, (network, states) in runs.items():
        forward = tf.function(lambda n=network, s=states: tf.reduce_sum(n(s, training=False)))
        seconds[name] = seconds_per_call(lambda f=forward: f().numpy(), calls)
    return seconds


def worker(threads: int, calls: int) -> dict:
    """One process: the peaks, then the step and its pieces with XLA on and off."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from kerasdqn.training import configure_threads

    configure_threads(threads)
    result: dict = {"threads": threads}
    result["peak"] = {size: matmul_peak(size) for size in MATMUL_SIZES}
    xla = filled_agent(jit_compile=True)
    result["xla"] = step_pieces(xla, calls)
    result["forward"] = forward_seconds(xla, calls)
    result["no_xla"] = step_pieces(filled_agent(jit_compile=False), calls)
    return result


# --------------------------------------------------------------------------- parent


def rows_of(result: dict) -> list[dict]:
    """``result`` as table rows: what, milliseconds per call, GFLOP/s, fraction of the peak."""
    threads = result["threads"]
    peak = max(result["peak"].values())
    rows = [
        {"threads": threads, "measure": f"matmul {size}", "ms": None, "gflops": rate}
        for size, rate in result["peak"].items()
    ]
    work = {"learn": step_flops(), "compiled": step_flops()}
    for mode in ("xla", "no_xla"):
        for piece, seconds in result[mode].items():
            flops = work.get(piece)
            rows.append(
                {
                    "threads": threads,
                    "measure": f"{piece} ({'XLA' if mode == 'xla' else 'no XLA'})",
                    "ms": seconds * 1e3,
                    "gflops": flops / seconds / 1e9 if flops else None,
                }
            )
    forward = BATCH * sum(forward_flops().values())
    labels = {
        "forward": "online forward alone",
        "forward_nhwc_float": "same, float32 NHWC input",
    }
    for name, seconds in result["forward"].items():
        rows.append(
            {
                "threads": threads,
                "measure": labels[name],
                "ms": seconds * 1e3,
                "gflops": forward / seconds / 1e9,
            }
        )
    for row in rows:
        row["of_peak"] = row["gflops"] / peak if row["gflops"] else None
    return rows


def print_flop_counts() -> None:
    per_layer = forward_flops()
    print("Nature CNN forward FLOPs per state (2 * multiply-adds):")
    for name, flops in per_layer.items():
        print(f"  {name:10s} {flops / 1e6:8.3f} M")
    print(f"  {'total':10s} {sum(per_layer.values()) / 1e6:8.3f} M")
    print(
        f"Training step at batch {BATCH}: {step_flops() / 1e9:.3f} GFLOP "
        f"(Double DQN: {step_flops(double=True) / 1e9:.3f} GFLOP)\n"
    )


def number(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:,.{digits}f}"


def print_table(rows: list[dict]) -> None:
    print("| threads | measure | ms per call | GFLOP/s | of matmul peak |")
    print("|---:|---|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['threads']} | {row['measure']} | {number(row['ms'], 2)} | "
            f"{number(row['gflops'], 1)} | {number(row['of_peak'] and 100 * row['of_peak'], 0)}"
            f"{'%' if row['of_peak'] else ''} |"
        )


def write_csv(rows: list[dict], path: str) -> None:
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=["threads", "measure", "ms", "gflops", "of_peak"])
        writer.writeheader()
        for row in rows:
            writer.writerow({key: "" if value is None else value for key, value in row.items()})


def main() -> None:
    args = parse_args()
    if args.worker_threads is not None:
        common.report(worker(args.worker_threads, args.calls))
        return
    print_flop_counts()
    rows = []
    for threads in args.threads:
        arguments = ["--worker-threads", str(threads), "--calls", str(args.calls)]
        rows += rows_of(common.run_worker(__file__, arguments))
    print_table(rows)
    write_csv(rows, args.csv)
    print(f"\nwrote {os.path.relpath(args.csv)}")


if __name__ == "__main__":
    main()
