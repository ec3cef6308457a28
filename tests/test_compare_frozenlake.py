"""scripts/compare_frozenlake.py runs every method end to end and writes its CSV and PNG."""

import csv
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_small_comparison_writes_a_row_per_method_and_map(tmp_path):
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    environment = {**os.environ, "PYTHONPATH": path}
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "compare_frozenlake.py")]
        + ["--budget-scale", "0.01", "--episodes", "20", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    with open(tmp_path / "frozenlake.csv") as handle:
        rows = list(csv.DictReader(handle))
    methods = ["value iteration", "policy iteration", "model-based", "Q-learning", "DQN"]
    assert [(row["map"], row["method"]) for row in rows] == [
        (map_name, method) for map_name in ("4x4", "8x8") for method in methods
    ]
    # Planning on the true model: the exact chances of the optimal policies.
    exact = {row["map"]: float(row["exact_success"]) for row in rows[::5]}
    assert round(exact["4x4"], 2) == 0.74 and round(exact["8x8"], 2) == 0.63
    assert [int(row["samples"]) for row in rows[:5]] == [0, 0, 500, 2000, 300]
    assert (tmp_path / "frozenlake.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| 4x4 | DQN |" in result.stdout
