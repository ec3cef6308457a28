"""The keras-rl tutorial, exactly as the README shows it, runs end to end."""

import re
import warnings
from pathlib import Path

import h5py

README = Path(__file__).resolve().parents[1] / "README.md"


def tutorial_code() -> str:
    text = README.read_text()
    section = text[text.index("## The keras-rl tutorial, on kerasdqn") :]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_readme_tutorial_trains_tests_and_saves_weights(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(compile(tutorial_code(), "README tutorial", "exec"), namespace)

    output = capsys.readouterr().out
    assert "Training for 5000 steps ..." in output
    assert re.search(r"\d+/5000: episode: \d+, duration: .*loss: .*mae: .*mean_q: ", output)
    assert "Testing for 5 episodes ..." in output
    assert len(re.findall(r"Episode \d: reward: \d+\.\d+, steps: \d+", output)) == 5

    dqn = namespace["dqn"]
    assert dqn.step == 5000
    assert dqn.metrics_names == ["loss", "mae", "mean_q"]
    with h5py.File(tmp_path / "dqn_CartPole-v1_weights.h5f", "r") as handle:
        assert len(handle.attrs["layer_names"]) == 5
    assert any("render mode" in str(warning.message) for warning in caught)
