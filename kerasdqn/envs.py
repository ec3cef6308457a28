"""Environment helpers for experiments: making a seeded environment, Atari games, rendering,
videos.

Problems the user can fix (an unknown environment id, an action space DQN cannot use, a missing
optional package) raise ``UsageError`` with a message saying what to do.
"""

from __future__ import annotations

import os
import sys

import gymnasium
import numpy as np

from kerasdqn._checks import check_bool, check_float, check_int
from kerasdqn.errors import UsageError

ATARI_EXTRA = (
    "pip install -e '.[atari]' (in a clone of kerasdqn) or pip install ale-py "
    "opencv-python-headless"
)


def make_env(env_id: str, seed: int | None, render_mode: str | None = None) -> gymnasium.Env:
    """The gymnasium environment ``env_id``, reset with ``seed`` (an integer >= 0; None: an
    unseeded start), its action space seeded too.

    Atari games (``ALE/Pong-v5``, ``Pong-v4``, ``PongNoFrameskip-v4``; see ``is_atari_id``)
    are made by ``make_atari`` with its defaults: 84x84 grey frames, 4 frames per step, rewards
    clipped.

    Raises ``UsageError`` for an unknown id, an action space DQN cannot use, or a render mode
    the environment does not offer.
    """
    seed = _checked_seed(seed)
    if is_atari_id(env_id):
        return make_atari(env_id, seed, render_mode=render_mode)
    try:
        env = gymnasium.make(env_id)
        if render_mode is not None:
            _check_render_mode(env, env_id, render_mode)
            env.close()
            env = gymnasium.make(env_id, render_mode=render_mode)
    except gymnasium.error.Error as error:
        raise UsageError(f"cannot make environment {env_id!r}: {error}") from None
    if not isinstance(env.action_space, gymnasium.spaces.Discrete):
        env.close()
        raise UsageError(
            f"{env_id} has the action space {env.action_space}; DQN needs a Discrete one"
        )
    env.reset(seed=seed)
    env.action_space.seed(seed)
    return env


def _checked_seed(seed) -> int | None:
    """``seed`` as a Python int (gymnasium refuses NumPy integers), checked before anything is
    made; None stays None."""
    return None if seed is None else check_int("seed", seed, minimum=0)


def _check_render_mode(env: gymnasium.Env, env_id: str, render_mode: str) -> None:
    modes = env.metadata.get("render_modes", [])
    if render_mode not in modes:
        env.close()
        raise UsageError(
            f"{env_id} cannot render {render_mode!r} (it offers {list(modes) or 'no modes'})"
        )


# --------------------------------------------------------------------------- Atari


#: Endings only Atari ids have: ale-py's ``PongNoFrameskip-v4`` and ``-v0``, and older gym's
#: ``PongDeterministic-v4`` and ``-v0`` (which ale-py no longer registers).
ATARI_ID_ENDINGS = tuple(
    kind + version for kind in ("NoFrameskip", "Deterministic") for version in ("-v4", "-v0")
)


def is_atari_id(env_id: str) -> bool:
    """Whether ``env_id`` names one of ale-py's Atari games, with or without a module prefix
    (``ale_py:ALE/Pong-v5``): the ``ALE`` namespace (``ALE/Pong-v5``), the ids ending as
    ``ATARI_ID_ENDINGS`` (``PongNoFrameskip-v4``), or the plain ``Pong-v4`` and ``Pong-v0``
    that ale-py registers.

    The answer does not depend on what the process made before: ale-py is registered here
    when the id needs it, so ``Pong-v4`` is an Atari game in a fresh process too.
    """
    name = env_id.rpartition(":")[2]
    if name.startswith("ALE/") or name.endswith(ATARI_ID_ENDINGS):
        return True
    return name.endswith(("-v4", "-v0")) and _registered_by_ale_py(name)


def _registered_by_ale_py(name: str) -> bool:
    """Whether ale-py, if installed, registers ``name``: its ``Pong-v4`` looks like other
    environments' ids (``CartPole-v0``), so only the registry can tell."""
    try:
        register_atari_envs()
    except UsageError:  # no ale-py: no Atari game of that name
        return False
    spec = gymnasium.envs.registry.get(name)
    return spec is not None and str(spec.entry_point).startswith("ale_py")


def register_atari_envs() -> None:
    """Register ale-py's games with gymnasium (needed once, before ``gymnasium.make``);
    ``UsageError`` if ale-py is not installed."""
    try:
        import ale_py
    except ImportError:
        raise UsageError(f"Atari games need ale-py: {ATARI_EXTRA}") from None
    gymnasium.register_envs(ale_py)


def make_atari(
    env_id: str,
    seed: int | None,
    *,
    noop_max: int = 30,
    frame_skip: int = 4,
    screen_size: int = 84,
    terminal_on_life_loss: bool = False,
    clip_rewards: bool = True,
    fire_reset: bool = True,
    repeat_action_probability: float | None = None,
    render_mode: str | None = None,
) -> gymnasium.Env:
    """The Atari game ``env_id`` preprocessed as in DQN (Mnih et al., 2015), reset with
    ``seed``, its action space seeded too.

    Gymnasium's ``AtariPreprocessing`` does the frame work on an ALE environment made with
    ``frameskip=1``: up to ``noop_max`` random no-op actions at each game's start, each step
    repeating the action for ``frame_skip`` frames and max-pooling the last two (the Atari
    flickers), and ``screen_size`` x ``screen_size`` grey ``uint8`` frames. Stacking frames is
    the agent's job (``SequentialMemory(window_length=4)`` stores each frame once). Ids that
    skip frames themselves (``Pong-v4`` skips 2 to 4 at random) are made with ``frameskip=1``
    too: ``frame_skip`` replaces their own skipping.

    Args:
        env_id: an ale-py game id, e.g. ``ALE/Pong-v5`` (sticky actions, as Machado et al.,
            2018, recommend) or ``PongNoFrameskip-v4`` (none); see ``is_atari_id``.
        seed: an integer >= 0 seeding the game (its no-op starts and sticky actions) and the
            action space; None: an unseeded start.
        noop_max: most no-op actions at a game's start (0: none).
        frame_skip: frames per step, the action repeated on each.
        screen_size: side of the square frames, in pixels. ``nature_cnn`` needs 36 or more
            (``kerasdqn.networks.MIN_FRAME_SIDE``); smaller frames suit networks of your own.
        terminal_on_life_loss: end the episode (as terminated) when a life is lost, while the
            game goes on: the next reset continues it (see ``LifeLossEpisodes``).
        clip_rewards: give the agent the reward's sign (-1, 0 or 1), as DQN trains.
        fire_reset: press FIRE after each reset and each lost life in games that wait
            for it (see ``FireOnReset``); ignored in games without FIRE.
        repeat_action_probability: chance that the game repeats the previous action instead
            of the new one (sticky actions); None keeps the id's default (0.25 for ``v5`` and
            ``v0``, 0 for ``v4``).
        render_mode: ``'rgb_array'`` or ``'human'``, passed to the ALE environment.

    The real score of each whole game (unclipped, summed over all its lives) is in the
    ``info`` of the step that ends the game, as ``info['episode']['r']`` (gymnasium's
    ``RecordEpisodeStatistics``, placed under the reward clipping and the episodes per life);
    ``kerasdqn.callbacks.GameScoreLogger`` logs it.

    Raises ``UsageError`` if ale-py or OpenCV is missing or the id is not an Atari game.
    """
    seed = _checked_seed(seed)
    options = _checked_atari_options(noop_max, frame_skip, screen_size, repeat_action_probability)
    env = _make_ale(env_id, options.pop("repeat_action_probability"), render_mode)
    try:
        env = gymnasium.wrappers.AtariPreprocessing(env, **options)
    except gymnasium.error.DependencyNotInstalled:
        env.close()
        raise UsageError(f"Atari preprocessing needs OpenCV: {ATARI_EXTRA}") from None
    env = gymnasium.wrappers.RecordEpisodeStatistics(env)
    if check_bool("terminal_on_life_loss", terminal_on_life_loss):
        env = LifeLossEpisodes(env)
    if check_bool("fire_reset", fire_reset) and FireOnReset.needed(env):
        env = FireOnReset(env)
    if check_bool("clip_rewards", clip_rewards):
        env = gymnasium.wrappers.TransformReward(env, lambda reward: float(np.sign(reward)))
    env.reset(seed=seed)
    env.action_space.seed(seed)
    return env


def _checked_atari_options(noop_max, frame_skip, screen_size, repeat_action_probability) -> dict:
    """``make_atari``'s numeric arguments, checked, as keyword arguments."""
    if repeat_action_probability is not None:
        repeat_action_probability = check_float(
            "repeat_action_probability", repeat_action_probability, 0.0, 1.0
        )
    return {
        "noop_max": check_int("noop_max", noop_max, minimum=0),
        "frame_skip": check_int("frame_skip", frame_skip, minimum=1),
        "screen_size": check_int("screen_size", screen_size, minimum=1),
        "repeat_action_probability": repeat_action_probability,
    }


def _make_ale(env_id: str, repeat_action_probability, render_mode) -> gymnasium.Env:
    """The ALE environment of ``env_id`` without frame skipping (the preprocessing skips)."""
    if not isinstance(env_id, str):
        raise TypeError(f"env_id: expected an environment id string, got {env_id!r}")
    register_atari_envs()
    kwargs = {"frameskip": 1, "render_mode": render_mode}
    if repeat_action_probability is not None:
        kwargs["repeat_action_probability"] = repeat_action_probability
    try:
        env = gymnasium.make(env_id, **kwargs)
    except gymnasium.error.Error as error:
        raise UsageError(
            f"cannot make environment {env_id!r}: {error}{_retired_id_hint(env_id)}"
        ) from None
    except TypeError:  # the environment takes no frameskip
        env = None
    if env is None or not hasattr(env.unwrapped, "ale"):
        if env is not None:
            env.close()
        raise UsageError(f"{env_id} is not an Atari game of ale-py; make it with make_env")
    return env


def _retired_id_hint(env_id: str) -> str:
    """For gym's ``PongDeterministic-v4`` ids, which ale-py does not register, the id that
    plays the same under ``make_atari``; '' for other ids."""
    name = env_id.rpartition(":")[2]
    if not name.endswith(("Deterministic-v4", "Deterministic-v0")):
        return ""
    game, _, version = name.rpartition("Deterministic")
    return (
        f" (ale-py has no Deterministic ids; {game}NoFrameskip{version} with make_atari's "
        "frame_skip=4 plays the same)"
    )


class LifeLossEpisodes(gymnasium.Wrapper):
    """Ends the episode when a life is lost, while the game goes on (Mnih et al., 2015, and
    Stable-Baselines3's ``EpisodicLifeEnv``): the step that loses a life returns
    ``terminated=True`` (no value bootstraps across a lost life), and the reset after it takes
    one no-op step in the same game instead of restarting it. Only a game over, a time limit
    or a new seed restarts the game.

    Gymnasium's ``AtariPreprocessing(terminal_on_life_loss=True)`` restarts the whole game at
    every reset, so after the first lost life an agent would never see the later lives.
    """

    def __init__(self, env: gymnasium.Env) -> None:
        super().__init__(env)
        self.lives = 0
        self.game_over = True

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = terminated or truncated
        lives = self.env.unwrapped.ale.lives()
        life_lost = 0 < lives < self.lives
        self.lives = lives
        return observation, reward, terminated or life_lost, truncated, info

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if self.game_over or seed is not None:
            observation, info = self.env.reset(seed=seed, options=options)
        else:
            observation, _, terminated, truncated, info = self.env.step(0)  # NOOP
            if terminated or truncated:
                observation, info = self.env.reset(options=options)
        self.game_over = False
        self.lives = self.env.unwrapped.ale.lives()
        return observation, info


class FireOnReset(gymnasium.Wrapper):
    """Presses FIRE once after every reset and every lost life, for games that wait for it
    before they go on (Breakout launches each ball with it). Without it, an agent that has not
    learnt FIRE, or a greedy one whose FIRE is never the best action, sits still after losing
    a ball until the time limit, 27,000 steps. With ``LifeLossEpisodes`` inside, a lost life
    ends the episode and the reset after it fires. The reset's FIRE step's reward counts in the
    game's score, not in the episode's reward; the reward of a FIRE step after a lost life is
    added to the reward of the step that lost it.
    """

    def __init__(self, env: gymnasium.Env) -> None:
        super().__init__(env)
        self.lives = 0

    @staticmethod
    def needed(env: gymnasium.Env) -> bool:
        """Whether ``env``'s game has FIRE as its action 1, as ALE's games that need it do."""
        meanings = env.unwrapped.get_action_meanings()
        return len(meanings) > 1 and meanings[1] == "FIRE"

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        self.env.reset(seed=seed, options=options)
        observation, _, terminated, truncated, info = self.env.step(1)  # FIRE
        if terminated or truncated:
            observation, info = self.env.reset(options=options)
        self.lives = self.env.unwrapped.ale.lives()
        return observation, info

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        lives = self.env.unwrapped.ale.lives()
        if 0 < lives < self.lives and not (terminated or truncated):
            observation, fire_reward, terminated, truncated, info = self.env.step(1)  # FIRE
            reward += fire_reward
            lives = self.env.unwrapped.ale.lives()
        self.lives = lives
        return observation, reward, terminated, truncated, info


# --------------------------------------------------------------------------- display, video


def display_available() -> bool:
    """Whether a window can be opened (a display on Linux; always on macOS and Windows)."""
    return bool(
        os.environ.get("DISPLAY")
        or os.environ.get("WAYLAND_DISPLAY")
        or sys.platform in ("darwin", "win32")
    )


def record_video(env: gymnasium.Env, video_folder: str, name_prefix: str) -> gymnasium.Env:
    """``env`` (made with ``render_mode='rgb_array'``) wrapped to save every episode as
    ``<video_folder>/<name_prefix>-episode-<i>.mp4``; the last one is written on ``close``.

    Raises ``UsageError`` if moviepy (the ``video`` extra) or the environment's renderer is
    missing.
    """
    try:
        import moviepy  # noqa: F401  (RecordVideo writes MP4s with it)
    except ImportError:
        raise UsageError(
            "recording videos needs moviepy: pip install -e '.[video]' (in a clone of "
            "kerasdqn) or pip install moviepy"
        ) from None
    try:
        frame = env.render()
    except gymnasium.error.DependencyNotInstalled as error:
        raise UsageError(f"the environment cannot render frames: {error}") from None
    if not isinstance(frame, np.ndarray):
        raise UsageError(f"the environment renders {type(frame).__name__}, not video frames")
    return gymnasium.wrappers.RecordVideo(
        env, video_folder, episode_trigger=lambda episode: True, name_prefix=name_prefix
    )


def file_name(env_id: str) -> str:
    """``env_id`` usable as a file name: namespaced ids such as ``ALE/Pong-v5`` lose the slash."""
    return env_id.replace("/", "_")
