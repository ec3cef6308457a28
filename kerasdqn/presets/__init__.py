"""Tuned hyperparameters per environment, shipped with the package (like rl-zoo's ``dqn.yml``).

Each preset is a TOML file here named after its environment id (a namespaced id such as
``ALE/Pong-v5`` with ``_`` for its ``/``: ``ALE_Pong-v5.toml``): a ``[dqn]`` table of
``DQNConfig`` fields (the rest keep their defaults) and a ``[claim]`` table saying what it was
measured to reach, with the figures and the command that measured them. ``kerasdqn train ENV_ID``
uses the preset when there is one; ``--preset FILE`` reads any such file (``kerasdqn tune``
writes them). A *named* preset is a file here whose name is not an environment id
(``rainbow.toml``: Rainbow's hyperparameters for Atari); ``--preset NAME`` reads it, so
``kerasdqn train ALE/Pong-v5 --preset rainbow`` trains Rainbow on Pong. Files are checked when
read: unknown tables or fields, and values of the wrong type or range, are refused with the file
and the field named.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any

from kerasdqn.config import DQNConfig
from kerasdqn.errors import UsageError

PRESET_DIRECTORY = Path(__file__).resolve().parent
_TABLES = {"dqn", "claim", "measured"}
_ENV_ID = re.compile(r"-v\d+$")  # how the name of an environment's preset ends


def preset_path(env_id: str) -> Path | None:
    """The shipped preset for ``env_id``, if there is one."""
    path = PRESET_DIRECTORY / f"{env_id.replace('/', '_')}.toml"
    return path if path.is_file() else None


def available_presets() -> list[str]:
    """The environment ids that have a shipped preset (``ALE/Pong-v5`` for
    ``ALE_Pong-v5.toml``: gymnasium's own ids have no ``_``, so one marks the namespace)."""
    return sorted(
        path.stem.replace("_", "/", 1)
        for path in PRESET_DIRECTORY.glob("*.toml")
        if _ENV_ID.search(path.stem)
    )


def named_presets() -> list[str]:
    """The names of the shipped presets that are not an environment's (``rainbow``)."""
    return sorted(
        path.stem for path in PRESET_DIRECTORY.glob("*.toml") if not _ENV_ID.search(path.stem)
    )


def named_preset_path(name: str) -> Path | None:
    """The shipped preset called ``name`` (``rainbow``), if there is one."""
    return PRESET_DIRECTORY / f"{name}.toml" if name in named_presets() else None


def read_preset(path: str | os.PathLike) -> dict[str, Any]:
    """The ``DQNConfig`` fields a preset file sets, checked: a ``UsageError`` names the file
    and the problem (not TOML, an unknown table or field, a bad value). ``path`` may also be
    the name of a shipped named preset (``"rainbow"``) when no file of that name exists."""
    path = os.fspath(path)
    named = named_preset_path(path)
    if named is not None and not os.path.exists(path):
        path = os.fspath(named)
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        raise UsageError(f"--preset {path!r}: no such file") from None
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise UsageError(f"preset {path!r} is not a readable TOML file ({error})") from None
    unknown = sorted(set(document) - _TABLES)
    if unknown or not isinstance(document.get("dqn"), dict):
        raise UsageError(f"preset {path!r}: expected a [dqn] table (and [claim]), got {unknown}")
    return _checked_fields(document["dqn"], path)


def _checked_fields(values: dict[str, Any], path: str) -> dict[str, Any]:
    fields = set(DQNConfig.__dataclass_fields__)
    unknown = sorted(set(values) - fields)
    if unknown:
        raise UsageError(f"preset {path!r}: unknown fields {unknown} in [dqn]")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    try:
        DQNConfig(**values)
    except (TypeError, ValueError) as error:
        raise UsageError(f"preset {path!r}: {error}") from None
    return values
