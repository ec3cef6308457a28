"""Environment helpers for experiments: making a seeded environment, rendering, videos.

Problems the user can fix (an unknown environment id, an action space DQN cannot use, a missing
optional package) raise ``UsageError`` with a message saying what to do.
"""

from __future__ import annotations

import os
import sys

import gymnasium
import numpy as np

from kerasdqn.errors import UsageError


def make_env(env_id: str, seed: int, render_mode: str | None = None) -> gymnasium.Env:
    """The gymnasium environment ``env_id``, reset with ``seed``, its action space seeded too.

    Raises ``UsageError`` for an unknown id, an action space DQN cannot use, or a render mode
    the environment does not offer.
    """
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


def _check_render_mode(env: gymnasium.Env, env_id: str, render_mode: str) -> None:
    modes = env.metadata.get("render_modes", [])
    if render_mode not in modes:
        env.close()
        raise UsageError(
            f"{env_id} cannot render {render_mode!r} (it offers {list(modes) or 'no modes'})"
        )


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
