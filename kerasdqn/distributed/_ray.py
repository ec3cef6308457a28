"""Ray, imported on first use, with an error saying how to install it."""

from __future__ import annotations

import os
from types import ModuleType


def require_ray() -> ModuleType:
    """The ``ray`` module; ``ImportError`` naming the extra to install if it is missing."""
    try:
        import ray
    except ImportError:
        raise ImportError(
            "kerasdqn.distributed needs Ray: pip install 'kerasdqn[distributed]'"
        ) from None
    return ray


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Start Ray on this machine, or join the cluster at ``address`` (``'auto'``: the one
    ``ray start`` runs here), unless it is already running. Usage statistics stay off."""
    ray = require_ray()
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    options = {"include_dashboard": False, "log_to_driver": False}
    if address is None:
        options["num_cpus"] = num_cpus
    ray.init(address=address, **options)
