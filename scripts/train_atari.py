"""Train DQN on an Atari game from its pixels (default ALE/Pong-v5), or play saved weights with
--test.

    python scripts/train_atari.py                        # Pong with Dopamine's DQN settings
    python scripts/train_atari.py --env-id ALE/Breakout-v5 --terminal-on-life-loss
    python scripts/train_atari.py --checkpoint-dir checkpoints     # Ctrl-C, then --resume
    python scripts/train_atari.py --n-envs 4       # 4 games at once; --steps counts them all
    python scripts/train_atari.py --test --weights weights/dqn_ALE_Pong-v5.h5

The game is made by ``kerasdqn.envs.make_atari``: gymnasium's AtariPreprocessing (no-op starts,
4 frames per step max-pooled, 84x84 grey frames), FIRE after each reset where the game needs
it, rewards clipped to their sign. The network is the Nature CNN (Mnih et al., 2015), which
takes the 4 stacked ``uint8`` frames as the replay memory stores them (each frame once) and
scales them itself. The hyperparameters default to the Pong preset
(kerasdqn/presets/ALE_Pong-v5.toml: Dopamine's DQN, the same for every game).

Training shows its progress, logs each whole game's real (unclipped) score as ``game_score``
(TensorBoard ``charts/game_score``), evaluates greedy games on a separate environment every
--eval-interval steps (``eval/mean_reward``, real scores; the best weights beside --weights as
*_best.h5), writes the final weights to --weights, then plays --episodes greedy games. Ctrl-C
or SIGTERM stops cleanly: the weights (and, with --checkpoint-dir, a checkpoint) are written and
the exit status is 130 or 143.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from kerasdqn.cli import ENV_ID as ENV_ID_PLACEHOLDER
from kerasdqn.cli import quiet_tensorflow
from kerasdqn.config import (
    DQNConfig,
    add_config_arguments,
    add_run_arguments,
    config_from_flags,
    whole_number,
)
from kerasdqn.envs import display_available, file_name, make_atari
from kerasdqn.errors import UsageError
from kerasdqn.presets import preset_path, read_preset

ENV_ID = "ALE/Pong-v5"
DEFAULTS = DQNConfig(**read_preset(preset_path(ENV_ID)))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--env-id", default=ENV_ID, help="ale-py game id")
    run = add_run_arguments(
        parser,
        logdir=f"runs/{ENV_ID_PLACEHOLDER}",
        weights=f"weights/dqn_{ENV_ID_PLACEHOLDER}.h5",
    )
    parser.set_defaults(threads=0)  # convolutions use every core TensorFlow is given
    run.add_argument("--test", action="store_true", help="play --episodes greedy games instead")
    run.add_argument("--render", action="store_true", help="with --test: show the games")
    run.add_argument("--tf-log", action="store_true", help="show TensorFlow's own log messages")
    game = parser.add_argument_group("game")
    game.add_argument(
        "--terminal-on-life-loss",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="end the training episode at each lost life (the game goes on)",
    )
    game.add_argument(
        "--noop-max", type=whole_number, default=30, help="most no-ops at a game's start"
    )
    add_config_arguments(parser.add_argument_group("experiment"), defaults=DEFAULTS)
    args = parser.parse_args(argv)
    check_flags(parser, args)
    args.logdir = args.logdir.replace(ENV_ID_PLACEHOLDER, file_name(args.env_id))
    args.weights = args.weights.replace(ENV_ID_PLACEHOLDER, file_name(args.env_id))
    return args


def check_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse bad numbers as argparse does (usage, the flag, exit status 2) before TensorFlow
    starts: the experiment's flags as ``DQNConfig`` checks them (the run's own are checked
    by their argparse types)."""
    try:
        config_from_flags(args)
    except UsageError as error:
        parser.error(str(error))


def training_env(args: argparse.Namespace, seed: int):
    """The game as the agent learns it: clipped rewards, episodes per life if asked."""
    return make_atari(
        args.env_id,
        seed,
        noop_max=args.noop_max,
        terminal_on_life_loss=args.terminal_on_life_loss,
    )


def game_env(args: argparse.Namespace, seed: int, render_mode: str | None = None):
    """The game as it is scored: whole games, real (unclipped) rewards."""
    return make_atari(
        args.env_id, seed, noop_max=args.noop_max, clip_rewards=False, render_mode=render_mode
    )


def evaluation_during_training(args: argparse.Namespace, config: DQNConfig):
    """Greedy games every --eval-interval steps (None with 0), scored for real."""
    from kerasdqn import training
    from kerasdqn.evaluation import EvalCallback

    if not args.eval_interval:
        return None
    return EvalCallback(
        game_env(args, config.seed + 2_000),
        eval_interval=args.eval_interval,
        nb_episodes=args.eval_episodes,
        best_weights_path=training.best_weights_path(args.weights),
        verbose=1 if args.verbose else 0,
        log_dir=args.logdir,
    )


def train(args: argparse.Namespace) -> int:
    """The experiment; returns the exit status (130 or 143 if Ctrl-C or SIGTERM stopped it)."""
    import keras

    from kerasdqn import training
    from kerasdqn.callbacks import GameScoreLogger, TensorBoard

    config = config_from_flags(args)
    keras.utils.set_random_seed(config.seed)
    env = training_env(args, config.seed)
    agent = training.checked_build_agent(env, config)  # the Nature CNN on 4 stacked frames
    # --n-envs N > 1: a SyncVectorEnv of N games made alike, game i seeded with seed + i
    env = training.training_envs(
        env, args.env_id, config.seed, args.n_envs, lambda seed: training_env(args, seed)
    )
    checkpoint = training.resume(agent, args)  # with --resume, continue where it stopped
    training.prepare_weights_path(args.weights)

    scores, tensorboard = GameScoreLogger(log_dir=args.logdir), TensorBoard(log_dir=args.logdir)
    outcome, evaluation = training.Outcome(), evaluation_during_training(args, config)
    planned, first_step, start = max(0, config.steps - agent.step), agent.step, time.perf_counter()
    try:
        agent.fit(
            env,
            nb_steps=planned,
            callbacks=[scores, tensorboard, outcome] + ([evaluation] if evaluation else []),
            verbose=args.verbose,
            **training.checkpoint_options(args),
        )
    finally:
        training.close_evaluation(evaluation)
        scores.close()
        tensorboard.close()
        env.close()
    seconds = time.perf_counter() - start
    agent.save_weights(args.weights, overwrite=True)

    interrupted = outcome.interrupted_by is not None
    skip = interrupted or not args.episodes
    rewards = [] if skip else play_games(agent, args, seed=config.seed + 1_000)
    result = training.TrainingResult(
        agent.step - first_step,
        seconds,
        args.weights,
        args.logdir,
        rewards,
        planned_steps=planned,
        interrupted_by=outcome.interrupted_by,
        checkpoint=checkpoint,
        best=training.best_evaluation(evaluation),
    )
    print(result.summary())
    return result.exit_code


def play_games(agent, args: argparse.Namespace, seed: int, verbose: int = 0) -> list[float]:
    """--episodes greedy games on a fresh game seeded with ``seed``: their scores."""
    from kerasdqn import training

    render = args.render and display_available()
    env = game_env(args, seed, render_mode="human" if render else None)
    try:
        return training.evaluate(agent, env, args.episodes, verbose=verbose, visualize=render)
    finally:
        env.close()


def play(args: argparse.Namespace) -> list[float]:
    """Load --weights into the network and play --episodes greedy games, printing each
    game's score."""
    import keras

    from kerasdqn import training

    if not os.path.isfile(args.weights):
        raise UsageError(f"--weights {args.weights!r}: no such file (train first)")
    config = config_from_flags(args)
    keras.utils.set_random_seed(config.seed)
    env = game_env(args, config.seed)
    agent = training.checked_build_agent(env, config)
    env.close()
    try:
        agent.load_weights(args.weights)
    except ValueError as error:
        raise UsageError(
            f"{error}; build the network with the --dueling it was trained with"
        ) from None
    return play_games(agent, args, seed=config.seed, verbose=1)


def main(argv: list[str] | None = None) -> int:
    """Run the script; return the exit status."""
    args = parse_args(argv)
    if not args.tf_log:
        quiet_tensorflow()
    from kerasdqn import training

    training.configure_threads(args.threads)
    try:
        if args.test:
            print(training.mean_reward(play(args)))
            return 0
        return train(args)
    except UsageError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    sys.exit(main())
