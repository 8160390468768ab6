"""Run an experiment on Flower's Ray-backed simulation engine, on this machine."""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
from typing import Any

from fedleak.simulator import record_keys as keys
from fedleak.simulator.config.schema import ExperimentConfig
from fedleak.simulator.runtime.failures import FAILURES_LOG, divert_flower_errors
from fedleak.simulator.runtime.results import RunPaths


def load_component(reference: str) -> Any:
    """Import a Flower component by its ``module:attribute`` string."""
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


def backend_config(cfg: ExperimentConfig, total_cpus: int | None = None) -> dict[str, Any]:
    """Ray resources split between client actors and attack workers.

    Flower creates ``floor(CPUs / client_cpus)`` client actors, so Ray is told only the CPUs
    left for clients; attack workers get ``pool.workers`` slots of a custom resource instead.
    On a 2-core machine with one worker: one client at a time plus one attack worker.
    """
    total = total_cpus or os.cpu_count() or 1
    fed, pool = cfg.federation, cfg.pool
    attack_cpus = pool.workers * pool.num_cpus if pool.backend == "ray" else 0.0
    client_cpus = max(fed.client_cpus, total - attack_cpus)
    init_args: dict[str, Any] = {
        "num_cpus": client_cpus,
        "include_dashboard": False,
        "resources": {keys.ATTACK_WORKER_SLOT: pool.workers},
    }
    return {
        "client_resources": {"num_cpus": fed.client_cpus, "num_gpus": fed.client_gpus},
        "init_args": init_args,
    }


RAY_START_ATTEMPTS = 3
_RAY_START_TIMEOUT = "timed out during startup"
"""Ray gives a new node's raylet a fixed 30 s to register; a loaded machine can miss it."""


def start_ray(ray: Any, attempts: int = RAY_START_ATTEMPTS, **init_args: Any) -> None:
    """``ray.init(**init_args)``, started again when Ray's node startup timed out.

    Ray's fixed 30 s wait for the raylet is too short on a heavily loaded machine (several
    sweep jobs starting Ray at once beside other work): the node is shut down and started
    again, up to ``attempts`` times; any other error is raised at once.
    """
    for attempt in range(1, attempts + 1):
        try:
            ray.init(**init_args)
            return
        except Exception as exc:  # Ray raises a bare Exception for this one
            if _RAY_START_TIMEOUT not in str(exc) or attempt == attempts:
                raise
            ray.shutdown()
            print(
                f"fedleak: Ray's node startup timed out (attempt {attempt} of {attempts}); "
                "starting it again",
                file=sys.stderr,
                flush=True,
            )


def run_in_simulation(
    cfg: ExperimentConfig, paths: RunPaths, *, verbose: bool = False, start_round: int = 1
) -> None:
    """Run ``cfg`` with ``cfg.federation.num_clients`` virtual SuperNodes; results in ``paths``.

    The ServerApp runs in this process (a thread of Flower's simulation), so it reads the
    experiment from the environment this function sets, and shares Flower's Ray.
    """
    os.environ[keys.ENV_EXPERIMENT_JSON] = json.dumps(cfg.to_dict())
    os.environ[keys.ENV_RUN_DIR] = str(paths.root)
    os.environ[keys.ENV_START_ROUND] = str(start_round)
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    import ray
    from flwr.simulation import run_simulation

    config = backend_config(cfg)
    # fedleak owns Ray's start so the attack pool (created by the ServerApp thread) and
    # Flower's client actors share one cluster; Flower skips ray.init when Ray is up.
    if not ray.is_initialized():
        runtime_env = {"env_vars": {"PYTHONPATH": os.pathsep.join(sys.path)}}
        quiet: dict[str, Any] = {
            "logging_level": logging.INFO if verbose else logging.WARNING,
            "log_to_driver": verbose,
        }
        address = cfg.pool.address or os.environ.get("RAY_ADDRESS")
        if address:  # an existing cluster: its own resources; clients and workers share them
            start_ray(ray, address=address, runtime_env=runtime_env, **quiet)
        else:
            start_ray(ray, runtime_env=runtime_env, **quiet, **config["init_args"])
    if not verbose:
        # Flower warns about its own deprecated run_simulation and skipped evaluation.
        logging.getLogger("flwr").setLevel(logging.ERROR)
    with divert_flower_errors(paths.root / FAILURES_LOG) as failures:
        try:
            run_simulation(
                server_app=load_component(keys.SERVER_APP),
                client_app=load_component(keys.CLIENT_APP),
                num_supernodes=cfg.federation.num_clients,
                backend_config=config,
                verbose_logging=verbose,
            )
        finally:
            for line in failures.summary():
                print(f"fedleak: {line}", file=sys.stderr)
