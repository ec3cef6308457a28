"""The TensorBoard callback writes real event files with the documented tags."""

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util.tensor_util import make_ndarray

from kerasdqn import DQNAgent, EpsGreedyQPolicy, LinearAnnealedPolicy, SequentialMemory, build_mlp
from kerasdqn.callbacks import TensorBoard


def read_scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` read back with TensorBoard's own event reader."""
    accumulator = EventAccumulator(str(log_dir), size_guidance={"tensors": 0})
    accumulator.Reload()
    return {
        tag: [
            (event.step, float(make_ndarray(event.tensor_proto)))
            for event in accumulator.Tensors(tag)
        ]
        for tag in accumulator.Tags()["tensors"]
    }


@pytest.fixture
def trained(cartpole, tmp_path):
    policy = LinearAnnealedPolicy(EpsGreedyQPolicy(), "eps", 1.0, 0.1, 0.0, nb_steps=400)
    agent = DQNAgent(
        build_mlp((1, 4), 2, (16,)),
        nb_actions=2,
        policy=policy,
        memory=SequentialMemory(2000),
        nb_steps_warmup=50,
        seed=0,
    )
    agent.compile("adam", metrics=["mae"])
    callback = TensorBoard(log_dir=tmp_path / "logs", update_freq=50)
    history = agent.fit(cartpole, nb_steps=600, callbacks=[callback], verbose=0)
    callback.close()
    return history, read_scalars(tmp_path / "logs")


def test_event_files_hold_the_documented_tags(trained):
    _, scalars = trained
    assert set(scalars) == {
        "episode/reward",
        "episode/length",
        "episode/epsilon",
        "train/loss",
        "train/mae",
        "train/mean_q",
        "train/steps_per_second",
    }


def test_episode_rewards_and_steps_equal_what_fit_returned(trained):
    history, scalars = trained
    steps, rewards = zip(*scalars["episode/reward"])
    np.testing.assert_allclose(rewards, history.history["episode_reward"])
    assert list(steps) == history.history["nb_steps"]
    lengths = [value for _, value in scalars["episode/length"]]
    assert lengths == history.history["nb_episode_steps"]


def test_epsilon_follows_the_annealing_schedule(trained):
    history, scalars = trained
    for step, epsilon in scalars["episode/epsilon"]:
        np.testing.assert_allclose(epsilon, max(0.1, 1.0 - 0.9 * step / 400), atol=1e-6)


def test_training_curves_start_after_warm_up_on_the_step_axis(trained):
    _, scalars = trained
    loss_steps = [step for step, _ in scalars["train/loss"]]
    assert loss_steps == sorted(loss_steps)
    assert loss_steps[0] >= 50 and loss_steps[-1] <= 600
    assert all(np.isfinite(value) and value >= 0 for _, value in scalars["train/loss"])
    assert all(value > 0 for _, value in scalars["train/steps_per_second"])
