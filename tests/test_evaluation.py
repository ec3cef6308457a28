"""EvalCallback: greedy evaluation during training, on a separate CartPole, that leaves
training exactly as it would be without it."""

import os
import re

import gymnasium
import keras
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util.tensor_util import make_ndarray

from kerasdqn import DQNAgent, Processor, SequentialMemory, build_mlp
from kerasdqn.errors import OneEnvironmentExpected
from kerasdqn.evaluation import EvalCallback

PROBES = np.random.default_rng(7).normal(size=(5, 1, 4)).astype(np.float32)


def make_agent(window_length=1, nb_steps_warmup=50, processor=None) -> DQNAgent:
    keras.utils.set_random_seed(0)
    agent = DQNAgent(
        build_mlp((window_length, 4), 2, (16,)),
        nb_actions=2,
        memory=SequentialMemory(2000, window_length=window_length),
        nb_steps_warmup=nb_steps_warmup,
        target_model_update=100,
        processor=processor,
        seed=0,
    )
    agent.compile(keras.optimizers.Adam(1e-3))
    return agent


def make_env(seed: int) -> gymnasium.Env:
    env = gymnasium.make("CartPole-v1")
    env.reset(seed=seed)
    env.action_space.seed(seed)
    return env


class SameStart(gymnasium.Wrapper):
    """Every episode starts from the same state, so a fixed network scores the same."""

    def reset(self, **kwargs):
        return self.env.reset(seed=0)


def probe_q_values(agent) -> np.ndarray:
    return np.stack([agent.compute_q_values(state) for state in PROBES])


def test_evaluations_happen_every_interval_of_the_agents_steps_across_fit_calls(capsys):
    agent = make_agent()
    callback = EvalCallback(make_env(1), eval_interval=100, nb_episodes=2, verbose=1)
    agent.fit(make_env(0), nb_steps=250, callbacks=[callback], verbose=0)
    agent.fit(make_env(2), nb_steps=150, callbacks=[callback], verbose=0)
    assert [e["step"] for e in callback.evaluations] == [100, 200, 300, 400]
    for evaluation in callback.evaluations:
        rewards = evaluation["rewards"]
        assert len(rewards) == 2 and all(reward >= 1 for reward in rewards)
        assert evaluation["mean_reward"] == pytest.approx(np.mean(rewards))
        assert evaluation["std_reward"] == pytest.approx(np.std(rewards))
    lines = re.findall(r"Eval at step .*", capsys.readouterr().out)
    assert len(lines) == 4
    first = callback.evaluations[0]
    assert lines[0] == (
        f"Eval at step 100: mean reward {first['mean_reward']:.1f} +/- "
        f"{first['std_reward']:.1f} over 2 episodes (best {first['mean_reward']:.1f})"
    )
    best = max(e["mean_reward"] for e in callback.evaluations)
    assert lines[-1].endswith(f"(best {best:.1f})")
    assert callback.best_mean_reward == best
    # In test (no training steps) it does nothing.
    agent.test(make_env(3), nb_episodes=1, callbacks=[callback], visualize=False, verbose=0)
    assert len(callback.evaluations) == 4


def test_nb_max_episode_steps_cuts_evaluation_episodes_off():
    agent = make_agent()
    callback = EvalCallback(
        make_env(1), eval_interval=60, nb_episodes=3, nb_max_episode_steps=5, verbose=0
    )
    agent.fit(make_env(0), nb_steps=120, callbacks=[callback], verbose=0)
    assert len(callback.evaluations) == 2
    assert all(0 < reward <= 5 for e in callback.evaluations for reward in e["rewards"])


def training_state(agent, observation) -> dict:
    """Everything of the agent's that training depends on."""
    return {
        "step": agent.step,
        "episode": agent.episode,
        "training": agent.training,
        "window": agent.window.state(observation),
        "recent_observation": agent.recent_observation,
        "recent_action": agent.recent_action,
        "rng": agent.rng.bit_generator.state,
        "memory": agent.memory.get_state(),
        "memory_rng": agent.memory.rng.bit_generator.state,
    }


def assert_same(before, after) -> None:
    assert before.keys() == after.keys()
    for key in before:
        if key == "memory":
            assert before[key].keys() == after[key].keys()
            for name in before[key]:
                np.testing.assert_array_equal(before[key][name], after[key][name], err_msg=name)
        elif isinstance(before[key], np.ndarray):
            np.testing.assert_array_equal(before[key], after[key], err_msg=key)
        else:
            assert before[key] == after[key], key


class Watched(EvalCallback):
    """Checks around every evaluation that the agent's training state is untouched."""

    def evaluate(self, step):
        probe = np.ones(4, dtype=np.float32)
        before = training_state(self.agent, probe)
        result = super().evaluate(step)
        assert_same(before, training_state(self.agent, probe))
        self.checked = getattr(self, "checked", 0) + 1
        return result


def train(with_evaluation: bool):
    agent = make_agent(window_length=2)
    callbacks = []
    if with_evaluation:
        callbacks = [Watched(make_env(1), eval_interval=70, nb_episodes=2, verbose=0)]
    first = agent.fit(make_env(0), nb_steps=260, callbacks=callbacks, verbose=0)
    second = agent.fit(make_env(5), nb_steps=160, callbacks=callbacks, verbose=0)
    rewards = first.history["episode_reward"] + second.history["episode_reward"]
    return agent, rewards, callbacks


def test_evaluation_leaves_training_exactly_as_it_would_be_without_it():
    plain, plain_rewards, _ = train(with_evaluation=False)
    evaluated, evaluated_rewards, (callback,) = train(with_evaluation=True)
    assert callback.checked == len(callback.evaluations) == 6  # steps 70, 140, ..., 420
    assert evaluated_rewards == plain_rewards
    for mine, theirs in zip(evaluated.model.get_weights(), plain.model.get_weights()):
        np.testing.assert_array_equal(mine, theirs)
    assert evaluated.step == plain.step == 420
    assert evaluated.episode == plain.episode
    assert evaluated.rng.bit_generator.state == plain.rng.bit_generator.state
    assert_same(
        training_state(plain, np.zeros(4, np.float32)),
        training_state(evaluated, np.zeros(4, np.float32)),
    )


def file_version(path) -> tuple:
    """What changes whenever the file is rewritten."""
    status = os.stat(path)
    with open(path, "rb") as handle:
        return status.st_ino, status.st_mtime_ns, hash(handle.read())


class Recorded(EvalCallback):
    """Records, after each evaluation, the best-weights file's version and the Q values."""

    def evaluate(self, step):
        result = super().evaluate(step)
        self.__dict__.setdefault("versions", []).append(file_version(self.best_weights_path))
        self.__dict__.setdefault("q_values", []).append(probe_q_values(self.agent))
        return result


def test_best_weights_are_saved_whenever_the_mean_improves_and_hold_those_weights(tmp_path):
    path = tmp_path / "best.h5"
    agent = make_agent()
    callback = Recorded(make_env(1), 80, nb_episodes=2, best_weights_path=path, verbose=0)
    agent.fit(make_env(0), nb_steps=640, callbacks=[callback], verbose=0)
    means = [e["mean_reward"] for e in callback.evaluations]
    assert len(means) == 8
    improved = [mean > max(means[:index], default=-np.inf) for index, mean in enumerate(means)]
    rewritten = [True] + [a != b for a, b in zip(callback.versions, callback.versions[1:])]
    assert rewritten == improved
    last_best = max(index for index, flag in enumerate(improved) if flag)
    fresh = make_agent()
    assert not np.allclose(probe_q_values(fresh), callback.q_values[last_best])
    fresh.load_weights(path)
    np.testing.assert_allclose(probe_q_values(fresh), callback.q_values[last_best], rtol=1e-6)
    assert callback.best_mean_reward == max(means)


def test_best_weights_are_not_rewritten_when_the_mean_does_not_improve(tmp_path, capsys):
    path = tmp_path / "best.h5"
    agent = make_agent(nb_steps_warmup=10_000)  # no learning: the network stays as it is
    callback = Recorded(SameStart(make_env(1)), 50, nb_episodes=2, best_weights_path=path)
    agent.fit(make_env(0), nb_steps=150, callbacks=[callback], verbose=0)
    means = [e["mean_reward"] for e in callback.evaluations]
    assert len(means) == 3 and means[0] == means[1] == means[2]
    assert callback.versions[0] == callback.versions[1] == callback.versions[2]
    output = capsys.readouterr().out
    assert output.count(f"weights saved to {path}") == 1
    assert "Eval at step 50: new best, weights saved to" in output


def test_tensorboard_holds_the_evaluations_at_their_steps(tmp_path):
    agent = make_agent()
    callback = EvalCallback(
        make_env(1), eval_interval=100, nb_episodes=2, verbose=0, log_dir=tmp_path / "logs"
    )
    agent.fit(make_env(0), nb_steps=300, callbacks=[callback], verbose=0)
    callback.close()
    accumulator = EventAccumulator(str(tmp_path / "logs"), size_guidance={"tensors": 0})
    accumulator.Reload()
    assert {"eval/mean_reward", "eval/std_reward"} <= set(accumulator.Tags()["tensors"])
    for tag, key in [("eval/mean_reward", "mean_reward"), ("eval/std_reward", "std_reward")]:
        events = accumulator.Tensors(tag)
        assert [event.step for event in events] == [100, 200, 300]
        values = [float(make_ndarray(event.tensor_proto)) for event in events]
        np.testing.assert_allclose(values, [e[key] for e in callback.evaluations], rtol=1e-6)


def test_reward_threshold_stops_training_after_the_evaluation_that_reaches_it(capsys):
    # Needs Agent.fit to honour agent.stop_training (and clear it when it starts).
    agent = make_agent()
    callback = EvalCallback(make_env(1), eval_interval=100, nb_episodes=2, reward_threshold=1.0)
    history = agent.fit(make_env(0), nb_steps=1000, callbacks=[callback], verbose=0)
    assert callback.stopped_early
    assert agent.step == 100 and [e["step"] for e in callback.evaluations] == [100]
    assert history.history["nb_steps"][-1] <= 100
    assert "reached reward_threshold 1; stopping training" in capsys.readouterr().out
    agent.fit(make_env(2), nb_steps=50, verbose=0)
    assert agent.step == 150


def test_an_unreached_reward_threshold_does_not_stop_training():
    agent = make_agent()
    callback = EvalCallback(make_env(1), 100, nb_episodes=1, reward_threshold=1e9, verbose=0)
    agent.fit(make_env(0), nb_steps=200, callbacks=[callback], verbose=0)
    assert agent.step == 200 and not callback.stopped_early
    assert [e["step"] for e in callback.evaluations] == [100, 200]


class CountingProcessor(Processor):
    def __init__(self):
        self.observations = 0
        self.actions = 0

    def process_observation(self, observation):
        self.observations += 1
        return observation

    def process_action(self, action):
        self.actions += 1
        return action


def test_the_agents_processor_sees_evaluation_observations_and_actions():
    processor = CountingProcessor()
    agent = make_agent(processor=processor)
    callback = EvalCallback(make_env(1), 100, nb_episodes=1, nb_max_episode_steps=7, verbose=0)
    agent.fit(make_env(0), nb_steps=100, callbacks=[callback], verbose=0)
    (evaluation,) = callback.evaluations
    eval_steps = int(evaluation["rewards"][0])  # CartPole pays 1 per step
    assert 1 <= eval_steps <= 7
    assert processor.actions == 100 + eval_steps


@pytest.mark.parametrize(
    "arguments, error, name",
    [
        ({"eval_interval": 0}, ValueError, "eval_interval"),
        ({"eval_interval": 1.5}, TypeError, "eval_interval"),
        ({"nb_episodes": 0}, ValueError, "nb_episodes"),
        ({"nb_episodes": "10"}, TypeError, "nb_episodes"),
        ({"best_weights_path": 3}, TypeError, "best_weights_path"),
        ({"reward_threshold": float("nan")}, ValueError, "reward_threshold"),
        ({"reward_threshold": "high"}, TypeError, "reward_threshold"),
        ({"nb_max_episode_steps": 0}, ValueError, "nb_max_episode_steps"),
        ({"verbose": -1}, ValueError, "verbose"),
        ({"log_dir": 5}, TypeError, "log_dir"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(arguments, error, name):
    with pytest.raises(error, match=f"^{name}: "):
        EvalCallback(make_env(1), **arguments)


def test_eval_env_must_be_an_environment():
    with pytest.raises(TypeError, match="^eval_env: expected a gymnasium environment"):
        EvalCallback(object())


def test_eval_env_must_be_one_environment_not_a_vector_env():
    vector_env = gymnasium.make_vec("CartPole-v1", num_envs=2, vectorization_mode="sync")
    with pytest.raises(OneEnvironmentExpected, match="^eval_env: evaluation plays one") as error:
        EvalCallback(vector_env)
    assert isinstance(error.value, TypeError) and isinstance(error.value, ValueError)


def test_eval_env_must_not_be_the_training_environment():
    agent = make_agent()
    env = make_env(0)
    for eval_env in (env, SameStart(env)):
        with pytest.raises(ValueError, match="^eval_env: it is the training environment"):
            agent.fit(env, nb_steps=10, callbacks=[EvalCallback(eval_env)], verbose=0)
    assert agent.step == 0


def test_eval_env_must_suit_the_agent():
    agent = make_agent()
    other = gymnasium.make("Acrobot-v1")  # three actions, six-dimensional observations
    with pytest.raises(ValueError, match="^eval_env: env Acrobot-v1: .*3 actions"):
        agent.fit(make_env(0), nb_steps=10, callbacks=[EvalCallback(other)], verbose=0)


def test_best_weights_directory_must_exist(tmp_path):
    agent = make_agent()
    callback = EvalCallback(make_env(1), best_weights_path=tmp_path / "missing" / "best.h5")
    with pytest.raises(FileNotFoundError, match="^best_weights_path: the directory"):
        agent.fit(make_env(0), nb_steps=10, callbacks=[callback], verbose=0)


def test_evaluations_are_recorded_in_the_history_fit_returns():
    agent = make_agent()
    callback = EvalCallback(make_env(1), eval_interval=100, nb_episodes=2, verbose=0)
    history = agent.fit(make_env(0), nb_steps=300, callbacks=[callback], verbose=0)
    assert agent.history is history
    assert history.evaluations == callback.evaluations
    assert history.history["eval/step"] == [100, 200, 300]
    assert history.history["eval/mean_reward"] == [e["mean_reward"] for e in callback.evaluations]
    assert history.history["eval/std_reward"] == [e["std_reward"] for e in callback.evaluations]
    assert len(history.history["episode_reward"]) == len(history.episode)


def test_each_fit_has_its_own_history_of_evaluations():
    agent = make_agent()
    callback = EvalCallback(make_env(1), eval_interval=100, nb_episodes=1, verbose=0)
    first = agent.fit(make_env(0), nb_steps=200, callbacks=[callback], verbose=0)
    second = agent.fit(make_env(2), nb_steps=100, callbacks=[callback], verbose=0)
    assert first.history["eval/step"] == [100, 200]
    assert second.history["eval/step"] == [300]
