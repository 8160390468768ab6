"""What the ServerApp adapts to when Flower's own simulation started it (``flwr run .``).

``fedleak run`` starts Ray itself, before Flower's simulation, with the CPUs split between
client actors and attack workers. ``flwr run .`` (the managed local SuperLink) and
``flwr.simulation.run_simulation`` instead start the ServerApp in a thread *beside* the
Simulation Runtime, which calls ``ray.init`` a moment later. A ServerApp that started Ray
too would race it: whichever ``ray.init`` comes second fails ("Perhaps you called ray.init
twice by accident?") and the simulation crashes with Flower exit code 700.

So in that case the ServerApp waits for Flower's Ray and adapts to it:

- the clients are the federation's SuperNodes (``num-supernodes``), all registered before
  Flower starts Ray, so ``federation.num_clients`` becomes their number;
- Flower's client actors hold every CPU of its Ray for the whole run, so attack workers
  ask for none (``pool.num_cpus=0``) and share the CPUs with them, as a ``fedleak run``
  on a small machine does.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

from flwr.serverapp import Grid

from fedleak.simulator.config.schema import ExperimentConfig, experiment_from_mapping

RAY_START_TIMEOUT_S = 300.0
"""How long to wait for the Simulation Runtime's ``ray.init`` (it loads the ClientApp first)."""


def flower_starts_ray(grid: Grid) -> bool:
    """True when Flower's Simulation Runtime is about to start Ray in this process.

    That is an in-memory grid (a simulation) whose Ray is not up yet: ``fedleak run``
    starts Ray before the simulation, a deployment's grid talks to a SuperLink over gRPC.
    """
    from flwr.superlink.grid import InMemoryGrid

    if not isinstance(grid, InMemoryGrid):
        return False
    import ray

    return not ray.is_initialized()


def wait_for_ray(
    timeout_s: float = RAY_START_TIMEOUT_S, is_up: Callable[[], bool] | None = None
) -> None:
    """Block until the Simulation Runtime's ``ray.init`` has connected this process.

    Raises
    ------
    TimeoutError
        When Ray is not up after ``timeout_s`` (the Simulation Runtime failed to start).
    """
    if is_up is None:
        import ray

        is_up = ray.is_initialized
    deadline = time.monotonic() + timeout_s
    while not is_up():
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"Flower's Simulation Runtime did not start Ray within {timeout_s:.0f} s; "
                "see the lines above for its error"
            )
        time.sleep(0.1)


def adapt_to_federation(cfg: ExperimentConfig, num_nodes: int) -> tuple[ExperimentConfig, str]:
    """``cfg`` for a Flower-managed Ray with ``num_nodes`` SuperNodes, and a note saying so.

    Raises
    ------
    fedleak.simulator.config.schema.ConfigError
        When the experiment does not validate with that many clients (e.g. SecAgg+'s shares).
    """
    federation = dataclasses.replace(cfg.federation, num_clients=num_nodes)
    pool = dataclasses.replace(cfg.pool, num_cpus=0.0)
    adapted = experiment_from_mapping(
        dataclasses.replace(cfg, federation=federation, pool=pool).to_dict()
    )
    note = (
        f"fedleak: Flower's simulation runs {num_nodes} SuperNodes: federation.num_clients="
        f"{num_nodes} (flwr run . --federation-config 'num-supernodes=N' sets it); attack "
        "workers share the client actors' CPUs (pool.num_cpus=0)"
    )
    if cfg.pool.address:
        note += f"; pool.address={cfg.pool.address} is not used: the pool joins Flower's Ray"
    return adapted, note


def join_flower_simulation(grid: Grid, cfg: ExperimentConfig) -> tuple[ExperimentConfig, str]:
    """Wait for the Simulation Runtime's Ray, then adapt ``cfg`` to its federation."""
    wait_for_ray()
    return adapt_to_federation(cfg, len(list(grid.get_node_ids())))
