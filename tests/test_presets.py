"""Shipped presets: every one reads into a valid config, bad files are refused naming the file
and the field, and ``kerasdqn train`` uses the preset of its environment (flags still win)."""

import pytest

from kerasdqn.cli import build_parser, with_preset
from kerasdqn.config import DQNConfig
from kerasdqn.errors import UsageError
from kerasdqn.presets import available_presets, preset_path, read_preset

EXPECTED = {"Acrobot-v1", "CartPole-v1", "FrozenLake-v1", "LunarLander-v3", "MountainCar-v0"}


def test_the_expected_environments_have_presets():
    assert EXPECTED <= set(available_presets())


@pytest.mark.parametrize("env_id", sorted(EXPECTED))
def test_each_preset_is_a_valid_config_with_a_claim(env_id):
    path = preset_path(env_id)
    config = DQNConfig(**read_preset(path))
    assert config.steps > 0
    assert "[claim]" in path.read_text()


def test_the_cartpole_preset_is_the_config_defaults():
    assert DQNConfig(**read_preset(preset_path("CartPole-v1"))) == DQNConfig()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[dqn]\nbatch_sise = 3\n", r"unknown fields \['batch_sise'\]"),
        ("[dqn]\nbatch_size = 0\n", "batch_size: expected an integer >= 1"),
        ("[dqn]\ngamma = 'high'\n", "gamma: expected a number"),
        ("[settings]\nlr = 1.0\n", r"expected a \[dqn\] table"),
        ("[dqn\nlr = 1.0\n", "not a readable TOML file"),
    ],
)
def test_a_bad_preset_file_is_refused_naming_the_file(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UsageError, match=message) as raised:
        read_preset(path)
    assert str(path) in str(raised.value)


def parse(*argv):
    parser = build_parser()
    return with_preset(parser, list(argv), parser.parse_args(list(argv)))


def test_train_takes_the_environments_preset_and_flags_still_win():
    args = parse("train", "MountainCar-v0", "--batch-size", "7")
    config = DQNConfig.from_args(args)
    assert args.preset_used == str(preset_path("MountainCar-v0"))
    assert (config.steps, config.n_step, config.eps_fraction) == (200_000, 10, 0.4)
    assert config.batch_size == 7


def test_no_preset_and_an_explicit_preset_file(tmp_path):
    assert DQNConfig.from_args(parse("train", "MountainCar-v0", "--no-preset")) == DQNConfig()
    preset = tmp_path / "mine.toml"
    preset.write_text("[dqn]\nsteps = 1234\nhidden = [8, 8]\n")
    config = DQNConfig.from_args(parse("train", "CartPole-v1", "--preset", str(preset)))
    assert (config.steps, config.hidden) == (1234, (8, 8))


def test_an_environment_without_a_preset_keeps_the_defaults():
    args = parse("train", "Taxi-v3")
    assert args.preset_used is None and DQNConfig.from_args(args) == DQNConfig()
