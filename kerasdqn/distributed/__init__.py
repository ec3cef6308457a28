"""Ape-X on Ray: actor processes, each with its own environments and epsilon, feeding one
learner's prioritized replay (Horgan et al., 2018). Needs the ``distributed`` extra (Ray Core):
``pip install 'kerasdqn[distributed]'``.

    import ray
    from kerasdqn.distributed import ApeX, build_apex_agent

    ray.init()                                  # ray.init(address="auto") on a cluster
    agent = build_apex_agent(gymnasium.make("CartPole-v1"), DQNConfig(steps=50_000))
    apex = ApeX(agent, "CartPole-v1", nb_actors=4)
    history = apex.fit(nb_steps=50_000)
"""

from kerasdqn.distributed._ray import init_ray, require_ray

require_ray()

from kerasdqn.distributed.actor import (  # noqa: E402
    ActorSettings,
    ActorWorker,
    Chunk,
    epsilon_ladder,
)
from kerasdqn.distributed.apex import ApeX  # noqa: E402
from kerasdqn.distributed.learner import Learner  # noqa: E402
from kerasdqn.distributed.training import build_apex_agent, train  # noqa: E402

__all__ = [
    "ActorSettings",
    "ActorWorker",
    "ApeX",
    "Chunk",
    "Learner",
    "build_apex_agent",
    "epsilon_ladder",
    "init_ray",
    "train",
]
