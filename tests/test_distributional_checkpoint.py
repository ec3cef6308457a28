"""Checkpoints of distributional agents load only into agents whose outputs mean the same."""

import gymnasium
import keras
import pytest

from kerasdqn import CategoricalDQNAgent, QuantileDQNAgent, SequentialMemory, build_mlp


def categorical(v_max: float = 10.0) -> CategoricalDQNAgent:
    agent = CategoricalDQNAgent(
        build_mlp((1, 4), 2 * 8, (16,)),
        nb_actions=2,
        memory=SequentialMemory(500),
        nb_atoms=8,
        v_min=-v_max,
        v_max=v_max,
        nb_steps_warmup=20,
        seed=0,
    )
    agent.compile(keras.optimizers.Adam(1e-3))
    return agent


def quantile() -> QuantileDQNAgent:
    agent = QuantileDQNAgent(
        build_mlp((1, 4), 2 * 8, (16,)),
        nb_actions=2,
        memory=SequentialMemory(500),
        nb_quantiles=8,
        nb_steps_warmup=20,
        seed=0,
    )
    agent.compile(keras.optimizers.Adam(1e-3))
    return agent


@pytest.fixture
def c51_checkpoint(tmp_path):
    agent = categorical()
    env = gymnasium.make("CartPole-v1")
    env.reset(seed=0)
    agent.fit(env, nb_steps=60, verbose=0)
    path = tmp_path / "c51.h5"
    agent.save_checkpoint(path)
    return path, agent


def test_a_c51_checkpoint_resumes_into_the_same_c51_agent(c51_checkpoint):
    path, saved = c51_checkpoint
    restored = categorical()
    restored.load_checkpoint(path)
    assert restored.step == saved.step
    for left, right in zip(restored.model.get_weights(), saved.model.get_weights()):
        assert (left == right).all()


def test_a_c51_checkpoint_is_refused_by_a_quantile_agent_of_the_same_output_size(c51_checkpoint):
    path, _ = c51_checkpoint
    with pytest.raises(ValueError, match="differently built agent.*nb_atoms"):
        quantile().load_checkpoint(path)


def test_a_c51_checkpoint_is_refused_by_a_c51_agent_on_another_support(c51_checkpoint):
    path, _ = c51_checkpoint
    with pytest.raises(ValueError, match="v_max: checkpoint 10.0, agent 20.0"):
        categorical(v_max=20.0).load_checkpoint(path)
