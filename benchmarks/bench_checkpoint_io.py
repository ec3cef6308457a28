"""Checkpoint write and read of an Atari-sized replay memory: time, file size, peak memory.

An Atari agent (``nature_cnn``, ``SequentialMemory(window_length=4)``) holds N synthetic
Pong-like 84x84 uint8 frames (flat background, a paddle and a ball; they compress about as
real frames do). Each write and each read runs in a fresh subprocess, which reports its time
and how far its peak resident memory rose above the level just before (Linux: the peak is
reset through ``/proc/self/clear_refs``). Side by side: this kerasdqn without and with
``compression="lzf"``, and, for the sizes in ``--old-sizes``, the code of a git revision
(``--old-ref``, default HEAD) for comparison. The file sits in the OS page cache when it is
read back (it was just written), so reads show the cost of kerasdqn's side, not the disk's.

    python benchmarks/bench_checkpoint_io.py [--sizes 100000 1000000] [--old-sizes 100000]

prints a table and writes benchmarks/checkpoint_io.csv. A 1M-frame run needs about 7.5 GB of
memory at a time (the old loader twice that) and as much disk for the file.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(HERE)
CSV_PATH = os.path.join(HERE, "checkpoint_io.csv")
SHAPE = (84, 84)
NB_ACTIONS = 6
COLUMNS = (
    "frames",
    "code",
    "compression",
    "payload_gb",
    "file_gb",
    "write_s",
    "read_s",
    "write_peak_gb",
    "read_peak_gb",
    "read_peak_over_payload",
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument(
        "--old-sizes", type=int, nargs="*", default=[100_000], help="sizes also run on --old-ref"
    )
    parser.add_argument("--old-ref", default="HEAD", help="git revision of the old code")
    parser.add_argument("--dir", default=None, help="where the checkpoint files go (a temp dir)")
    parser.add_argument("--csv", default=CSV_PATH)
    parser.add_argument("--worker", choices=("write", "read"), help=argparse.SUPPRESS)
    parser.add_argument("--frames", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--compression", default=None, help=argparse.SUPPRESS)
    return parser.parse_args()


# --------------------------------------------------------------------------- workers


def atari_agent(frames: int):
    """A compiled Nature-CNN agent whose memory holds ``frames`` entries."""
    import keras

    from kerasdqn import DQNAgent, SequentialMemory
    from kerasdqn.networks import nature_cnn

    agent = DQNAgent(
        nature_cnn(nb_actions=NB_ACTIONS),
        nb_actions=NB_ACTIONS,
        memory=SequentialMemory(frames, window_length=4),
    )
    agent.compile(keras.optimizers.Adam(1e-4))
    return agent


def synthetic_frames(count: int):
    """``count`` distinct Pong-like frames, cycled through to fill the memory."""
    import numpy as np

    frames = np.full((count,) + SHAPE, 87, np.uint8)
    for index, image in enumerate(frames):
        image[(index * 3) % 70 : (index * 3) % 70 + 14, 76:79] = 147
        row, column = (index * 5) % 82, (index * 7) % 82
        image[row : row + 2, column : column + 2] = 236
    return frames


def fill(memory, frames: int) -> None:
    pool = synthetic_frames(4096)
    for index in range(frames):
        terminal = index % 2000 == 1999
        memory.append(pool[index % len(pool)], index % NB_ACTIONS, 1.0, terminal=terminal)


def reset_peak() -> int:
    """Reset this process's peak resident memory to its current level; that level, bytes."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    return _status("VmRSS")


def _status(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def write_worker(frames: int, path: str, compression: str | None) -> dict:
    agent = atari_agent(frames)
    fill(agent.memory, frames)
    options = {} if compression is None else {"compression": compression}
    before = reset_peak()
    start = time.perf_counter()
    agent.save_checkpoint(path, **options)
    seconds = time.perf_counter() - start
    return {
        "write_s": seconds,
        "write_peak": _status("VmHWM") - before,
        "payload": agent.memory.get_state()["observations"].nbytes,
        "file": os.path.getsize(path),
    }


def read_worker(frames: int, path: str) -> dict:
    agent = atari_agent(frames)
    before = reset_peak()
    start = time.perf_counter()
    agent.load_checkpoint(path)
    seconds = time.perf_counter() - start
    assert agent.memory.nb_entries == frames
    return {"read_s": seconds, "read_peak": _status("VmHWM") - before}


# --------------------------------------------------------------------------- driver


def run_worker(mode: str, frames: int, path: str, compression, pythonpath: str | None) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--worker", mode]
    command += ["--frames", str(frames), "--path", path]
    if compression is not None:
        command += ["--compression", compression]
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if pythonpath is not None:
        environment["PYTHONPATH"] = pythonpath
    result = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=HERE)
    if result.returncode != 0:
        raise RuntimeError(f"{mode} worker failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure(frames: int, code: str, compression, directory: str, pythonpath) -> dict:
    """One write and one read of ``frames`` frames, each in a fresh process; the file is
    deleted after."""
    path = os.path.join(directory, f"checkpoint_{code}_{frames}.h5")
    try:
        written = run_worker("write", frames, path, compression, pythonpath)
        read = run_worker("read", frames, path, None, pythonpath)
    finally:
        if os.path.exists(path):
            os.remove(path)
    gb = 1e9
    return {
        "frames": frames,
        "code": code,
        "compression": compression or "none",
        "payload_gb": round(written["payload"] / gb, 3),
        "file_gb": round(written["file"] / gb, 3),
        "write_s": round(written["write_s"], 2),
        "read_s": round(read["read_s"], 2),
        "write_peak_gb": round(written["write_peak"] / gb, 3),
        "read_peak_gb": round(read["read_peak"] / gb, 3),
        "read_peak_over_payload": round(read["read_peak"] / written["payload"], 2),
    }


def old_code(ref: str, directory: str) -> str:
    """The package as it was at git revision ``ref``, unpacked under ``directory``."""
    target = os.path.join(directory, "old")
    os.makedirs(target)
    archive = subprocess.run(
        ["git", "-C", REPO_ROOT, "archive", ref, "kerasdqn"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", target], input=archive.stdout, check=True)
    return target


def variants(args: argparse.Namespace, old_path: str) -> list[tuple]:
    runs = []
    for frames in args.sizes:
        if frames in args.old_sizes:
            runs.append((frames, f"old ({args.old_ref})", None, old_path))
        runs += [(frames, "new", None, None), (frames, "new", "lzf", None)]
    return runs


def print_table(rows: list[dict]) -> None:
    print(" | ".join(f"{name:>12}" for name in COLUMNS))
    for row in rows:
        print(" | ".join(f"{str(row[name]):>12}" for name in COLUMNS))


def main() -> None:
    args = parse_args()
    if args.worker == "write":
        print(json.dumps(write_worker(args.frames, args.path, args.compression)))
        return
    if args.worker == "read":
        print(json.dumps(read_worker(args.frames, args.path)))
        return
    directory = tempfile.mkdtemp(prefix="checkpoint_io_", dir=args.dir)
    try:
        old_path = old_code(args.old_ref, directory) if args.old_sizes else None
        rows = []
        for frames, code, compression, pythonpath in variants(args, old_path):
            rows.append(measure(frames, code, compression, directory, pythonpath))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print_table(rows)
    with open(args.csv, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
