"""The ``kerasdqn`` command: train, test and plot DQN agents on gymnasium environments.

``train`` takes the options of scripts/train_cartpole.py and works on any environment with a
Discrete action space; ``test`` builds the network from --hidden and --dueling, which must be
those used for training. The work is done by ``kerasdqn.training`` and ``kerasdqn.plotting``,
imported only once the arguments are understood: ``--help``, ``--version`` and argument errors
answer without starting TensorFlow, and TensorFlow's start-up log stays quiet unless
``--tf-log`` is given.
"""

from __future__ import annotations

import argparse
import os
import sys

from kerasdqn._version import __version__
from kerasdqn.config import (
    NETWORK_FIELDS,
    DQNConfig,
    add_config_arguments,
    add_run_arguments,
    add_threads_argument,
    config_from_flags,
    positive_number,
    whole_number,
)
from kerasdqn.errors import UsageError

ENV_ID = "<ENV_ID>"  # stands for the environment id in default paths

EXAMPLES = """examples:
  kerasdqn train CartPole-v1                   # weights/dqn_CartPole-v1.h5, runs/CartPole-v1
  kerasdqn test CartPole-v1 --episodes 10      # greedy episodes with those weights
  kerasdqn test CartPole-v1 --record-video videos/
  kerasdqn plot runs/CartPole-v1              # runs/CartPole-v1/curve.png
  kerasdqn plot 'runs/CartPole-v1-seed*'      # seeds compared: runs/comparison.png
  kerasdqn train CartPole-v1 --checkpoint-dir checkpoints/   # Ctrl-C, then add --resume
  kerasdqn tune CartPole-v1 --trials 20 --steps 20000   # runs/tune/CartPole-v1/best.toml

test must be given the --hidden and --dueling used for training."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kerasdqn",
        description="Train, test and plot DQN agents on gymnasium environments.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXAMPLES,
    )
    parser.add_argument("--version", action="version", version=f"kerasdqn {__version__}")
    parser.add_argument(
        "--tf-log", action="store_true", help="show TensorFlow's own start-up and log messages"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parser.train_parser = _add_train_command(commands)
    _add_test_command(commands)
    _add_plot_command(commands)
    _add_export_command(commands)
    _add_tune_command(commands)
    return parser


FORMATTER = argparse.ArgumentDefaultsHelpFormatter


def _add_train_command(commands) -> argparse.ArgumentParser:
    train = commands.add_parser(
        "train", help="train an agent and save its weights", formatter_class=FORMATTER
    )
    train.add_argument("env_id", metavar="ENV_ID", help="gymnasium environment id")
    run = add_run_arguments(train, logdir=f"runs/{ENV_ID}", weights=f"weights/dqn_{ENV_ID}.h5")
    presets = run.add_mutually_exclusive_group()
    presets.add_argument(
        "--preset",
        metavar="FILE",
        help="hyperparameters from a preset file (default: the shipped preset for ENV_ID, "
        "if there is one); flags given on the command line still win",
    )
    presets.add_argument(
        "--no-preset", action="store_true", help="ignore the shipped preset: plain defaults"
    )
    add_config_arguments(train.add_argument_group("experiment"))
    _add_distributed_arguments(train)
    train.set_defaults(run=run_train, preset_used=None)
    return train


def _add_distributed_arguments(train: argparse.ArgumentParser) -> None:
    """Declare the Ape-X options of ``train`` (group ``distributed``, needs Ray)."""
    distributed = train.add_argument_group(
        "distributed (Ape-X on Ray: pip install kerasdqn[distributed])"
    )
    distributed.add_argument(
        "--actors",
        type=whole_number,
        default=0,
        help="Ray actor processes acting with Ape-X's epsilon ladder into a prioritized "
        "replay (0: train in this process)",
    )
    distributed.add_argument(
        "--envs-per-actor", type=positive_number, default=1, help="environments per actor"
    )
    distributed.add_argument(
        "--ray-address",
        help="the Ray cluster to join ('auto': the one `ray start` runs on this machine; "
        "default: start Ray here)",
    )
    distributed.add_argument(
        "--ordered",
        action="store_true",
        help="take the actors' chunks in turn, not as they arrive, so that a seed repeats "
        "the run (at the pace of the slowest actor)",
    )


def with_preset(parser: argparse.ArgumentParser, argv, args: argparse.Namespace):
    """``args`` parsed again with the preset's values as the defaults of their flags."""
    from kerasdqn.presets import preset_path, read_preset

    path = args.preset or (None if args.no_preset else preset_path(args.env_id))
    if path is None:
        return args
    parser.train_parser.set_defaults(**read_preset(path), preset_used=str(path))
    return parser.parse_args(argv)


def _add_test_command(commands) -> None:
    test = commands.add_parser(
        "test", help="play greedy episodes with saved weights", formatter_class=FORMATTER
    )
    test.add_argument("env_id", metavar="ENV_ID", help="gymnasium environment id")
    test.add_argument("--weights", default=f"weights/dqn_{ENV_ID}.h5", help="HDF5 weights file")
    test.add_argument("--episodes", type=whole_number, default=10, help="episodes to play")
    test.add_argument("--seed", type=whole_number, default=0, help="seed of the episodes")
    shown = test.add_mutually_exclusive_group()
    shown.add_argument(
        "--render", action="store_true", help="show the episodes in a window (needs a display)"
    )
    shown.add_argument(
        "--record-video",
        metavar="DIR",
        help="save each episode as an MP4 in DIR (needs the video extra: moviepy)",
    )
    add_threads_argument(test)
    network = test.add_argument_group("network (as trained)")
    add_config_arguments(network, only=NETWORK_FIELDS)
    test.set_defaults(run=run_test)


def _add_plot_command(commands) -> None:
    plot = commands.add_parser(
        "plot",
        help="draw training curves from TensorBoard logs, of one run or several compared",
        formatter_class=FORMATTER,
    )
    plot.add_argument(
        "logdir",
        metavar="LOGDIR",
        nargs="+",
        help="a run's TensorBoard log directory, or a quoted glob pattern such as "
        "'runs/CartPole-v1-seed*'; several runs are drawn on one figure, each group of "
        "seeds (names differing only in a -seedN suffix) as its mean and min-max band",
    )
    plot.add_argument(
        "-o",
        "--output",
        help="image file to write (default: LOGDIR/curve.png for one run; for several, "
        "comparison.png in the directory holding them all, else runs/comparison.png)",
    )
    plot.add_argument(
        "--window", type=int, default=20, help="episodes in the reward's moving average"
    )
    plot.add_argument(
        "--labels",
        metavar="LABEL",
        nargs="+",
        help="one per LOGDIR: the group its runs are drawn as (default: the directory's "
        "name without its -seedN suffix)",
    )
    plot.set_defaults(run=run_plot)


def _add_export_command(commands) -> None:
    export = commands.add_parser(
        "export",
        help="write saved weights as a TensorFlow SavedModel serving greedy actions",
        formatter_class=FORMATTER,
    )
    export.add_argument("env_id", metavar="ENV_ID", help="gymnasium environment id")
    export.add_argument("--weights", default=f"weights/dqn_{ENV_ID}.h5", help="HDF5 weights file")
    export.add_argument("--out", required=True, metavar="DIR", help="SavedModel directory")
    export.add_argument("--overwrite", action="store_true", help="replace an existing export")
    network = export.add_argument_group("network (as trained)")
    add_config_arguments(network, only=NETWORK_FIELDS)
    export.set_defaults(run=run_export, threads=1)


# The DQNConfig fields kerasdqn.tuning samples (its SAMPLED_FIELDS; the tests check that they
# agree), named here so that ``tune --help`` needs neither TensorFlow nor optuna.
TUNED_FIELDS = (
    "lr",
    "batch_size",
    "gamma",
    "train_interval",
    "gradient_steps",
    "target_update",
    "eps_end",
    "eps_fraction",
    "hidden",
    "n_step",
    "double",
)


class _Sampled:
    """The default of a flag that ``tune`` samples unless it is given; --help shows it as
    ``(default: sampled)``."""

    def __repr__(self) -> str:
        return "sampled"


SAMPLED = _Sampled()

TUNE_DESCRIPTION = """Search hyperparameters with optuna and write the best as a preset.

Each trial trains a fresh agent for --steps steps (trial i with seed --seed + i), evaluates it
greedily on a separate environment every --eval-interval steps, reports each evaluation to a
median pruner that stops the trials falling behind, and scores the mean reward of the evaluation
at the last step. Experiment flags given on the command line are fixed for every trial; those
shown as sampled are searched, the others keep their defaults. The study stays in --storage:
the same command run again runs only the trials still missing to reach --trials."""

TUNE_EXAMPLES = """examples:
  kerasdqn tune CartPole-v1 --trials 20 --steps 20000   # runs/tune/CartPole-v1/best.toml
  kerasdqn tune CartPole-v1 --trials 30 --steps 20000   # the same study, 10 trials more
  kerasdqn tune CartPole-v1 --trials 20 --steps 20000 --double --hidden 64 64   # fixed
  kerasdqn train CartPole-v1 --preset runs/tune/CartPole-v1/best.toml"""


class _TuneFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown, the description and examples kept as written."""


def _add_tune_command(commands) -> None:
    tune = commands.add_parser(
        "tune",
        help="search hyperparameters with optuna and write the best as a preset",
        description=TUNE_DESCRIPTION,
        epilog=TUNE_EXAMPLES,
        formatter_class=_TuneFormatter,
    )
    tune.add_argument("env_id", metavar="ENV_ID", help="gymnasium environment id")
    study = tune.add_argument_group("study")
    study.add_argument(
        "--trials",
        type=positive_number,
        required=True,
        default=argparse.SUPPRESS,
        help="finished trials (complete or pruned) the study should have",
    )
    study.add_argument(
        "--storage",
        default=f"runs/tune/{ENV_ID}/study.log",
        help="optuna journal file of the study; a path ending in .db, or sqlite:///PATH, is an "
        "SQLite database instead",
    )
    study.add_argument("--study-name", default=ENV_ID, help="the study's name in --storage")
    study.add_argument(
        "--eval-interval",
        type=positive_number,
        default=argparse.SUPPRESS,
        help="steps between the evaluations reported to the pruner (default: a fifth of --steps)",
    )
    study.add_argument(
        "--eval-episodes", type=positive_number, default=5, help="greedy episodes per evaluation"
    )
    study.add_argument(
        "--out", default=f"runs/tune/{ENV_ID}/best.toml", help="preset file of the best trial"
    )
    study.add_argument(
        "--timeout",
        type=float,
        default=argparse.SUPPRESS,
        help="seconds after which no new trial starts (default: no limit)",
    )
    add_threads_argument(study)
    add_config_arguments(tune.add_argument_group("experiment (given: fixed for every trial)"))
    tune.set_defaults(run=run_tune, **dict.fromkeys(TUNED_FIELDS, SAMPLED))


def run_train(args: argparse.Namespace) -> int:
    config = config_from_flags(args)  # bad settings are reported before TensorFlow starts
    check_distributed_flags(args, config)
    if args.preset_used:
        print(f"Using the preset for {args.env_id}: {args.preset_used}")
    start_tensorflow(args.tf_log)
    from kerasdqn import training
    from kerasdqn.envs import file_name

    args.logdir = args.logdir.replace(ENV_ID, file_name(args.env_id))
    args.weights = args.weights.replace(ENV_ID, file_name(args.env_id))
    training.configure_threads(args.threads)
    if args.actors:
        from kerasdqn.distributed import training as distributed_training

        result = distributed_training.train(args.env_id, args)
    else:
        result = training.train(args.env_id, args)
    print(result.summary())
    print(f"Curves:      kerasdqn plot {args.logdir}")
    return result.exit_code


def check_distributed_flags(args: argparse.Namespace, config: DQNConfig) -> None:
    """Refuse, before TensorFlow or Ray starts, the Ape-X flags without --actors (they would
    be ignored) and a distributional agent with --actors (the actors act on scalar Q values)."""
    if not args.actors:
        if args.envs_per_actor != 1:
            raise UsageError(
                "--envs-per-actor: only used with --actors N (Ape-X on Ray); for several "
                "environments in this process, use --n-envs"
            )
        if args.ray_address is not None:
            raise UsageError("--ray-address: only used with --actors N (Ape-X on Ray)")
        if args.ordered:
            raise UsageError(
                "--ordered: only used with --actors N (Ape-X on Ray); a run in this process "
                "repeats with its --seed already"
            )
    elif config.distributional != "none":
        preset = _preset_sets(args, "distributional")
        raise UsageError(
            f"--distributional {config.distributional}"
            + (f" (set by the preset {preset})" if preset else "")
            + ": --actors (Ape-X) supports only scalar Q values; add --distributional none, "
            "or train without --actors"
        )


def _preset_sets(args: argparse.Namespace, name: str) -> str | None:
    """The preset in use, if it sets the config field ``name``."""
    from kerasdqn.presets import read_preset

    if args.preset_used and name in read_preset(args.preset_used):
        return args.preset_used
    return None


def run_test(args: argparse.Namespace) -> int:
    start_tensorflow(args.tf_log)
    from kerasdqn import training
    from kerasdqn.envs import file_name

    args.weights = args.weights.replace(ENV_ID, file_name(args.env_id))
    training.configure_threads(args.threads)
    rewards = training.play(args.env_id, args, video_folder=args.record_video)
    print(training.mean_reward(rewards))
    if args.record_video:
        print(f"Videos:      {args.record_video}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    start_tensorflow(args.tf_log)
    from kerasdqn import training
    from kerasdqn.envs import file_name, make_env
    from kerasdqn.export import export_agent

    args.weights = args.weights.replace(ENV_ID, file_name(args.env_id))
    if not os.path.isfile(args.weights):
        raise UsageError(f"--weights {args.weights!r}: no such file")
    env = make_env(args.env_id, seed=0)
    agent = training.checked_build_agent(env, config_from_flags(args))
    env.close()
    try:
        agent.load_weights(args.weights)
        export_agent(agent, args.out, overwrite=args.overwrite)
    except (ValueError, FileExistsError) as error:
        raise UsageError(error) from None
    print(f"Wrote {args.out}: a SavedModel with greedy_action (the default) and q_values")
    return 0


def run_tune(args: argparse.Namespace) -> int:
    fixed = fixed_settings(args)
    start_tensorflow(args.tf_log)
    from kerasdqn import training, tuning  # tuning: a UsageError if optuna is missing
    from kerasdqn.envs import file_name

    training.configure_threads(args.threads)
    tuner = tuning.Tuner(
        args.env_id,
        fixed,
        trials=args.trials,
        storage=args.storage.replace(ENV_ID, file_name(args.env_id)),
        study_name=args.study_name.replace(ENV_ID, args.env_id),
        out=args.out.replace(ENV_ID, file_name(args.env_id)),
        eval_interval=getattr(args, "eval_interval", None),
        eval_episodes=args.eval_episodes,
        timeout=getattr(args, "timeout", None),
    )
    print(tuner.plan(), flush=True)
    try:
        tuner.run(on_trial=lambda trial: print(tuning.trial_line(trial), flush=True))
    except KeyboardInterrupt as stop:
        print(tuner.interrupted(stop))
        return tuning.exit_code(stop)
    print(tuner.summary())
    preset = tuner.write_preset()
    if preset is not None:
        print(f"Wrote {preset}; train with: kerasdqn train {args.env_id} --preset {preset}")
    return 0


def fixed_settings(args: argparse.Namespace) -> dict:
    """The config fields ``tune``'s ``args`` fix for every trial: all but the sampled ones
    not given. Bad values are reported here, before TensorFlow starts."""
    fixed = {
        name: value
        for name, value in vars(args).items()
        if name in DQNConfig.__dataclass_fields__ and value is not SAMPLED
    }
    config_from_flags(argparse.Namespace(**fixed))
    return fixed


def run_plot(args: argparse.Namespace) -> int:
    from kerasdqn import plotting

    flags = {"logdirs": "LOGDIR", "labels": "--labels", "window": "--window", "output": "--output"}
    try:
        output = plotting.plot_logdirs(
            args.logdir, args.output, window=args.window, labels=args.labels
        )
    except (OSError, ValueError) as error:
        name, _, problem = str(error).partition(": ")
        raise UsageError(f"{flags[name]}: {problem}" if name in flags else error) from None
    print(f"Wrote {output}")
    return 0


def start_tensorflow(show_log: bool) -> None:
    """Import TensorFlow, quietly unless ``show_log``."""
    if show_log:
        import tensorflow  # noqa: F401
    else:
        quiet_tensorflow()


def quiet_tensorflow() -> None:
    """Start TensorFlow with its start-up log (CPU features, CUDA probing, which its native
    code writes to the error stream whatever the log level) sent nowhere, and its later
    informational messages off. A failure to import still raises as usual."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow as tf

            tf.config.list_physical_devices()  # probes for GPUs, which logs too
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit status: 0,
    130 or 143 for a training run stopped by Ctrl-C or SIGTERM; exit with status 2 and a
    one-line message on bad input."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            args = with_preset(parser, argv, args)
        return args.run(args)
    except UsageError as error:
        parser.exit(2, f"kerasdqn {args.command}: error: {error}\n")


if __name__ == "__main__":
    sys.exit(main())
