"""Flower ServerApp (``fedleak.server.app:app``): resolves the experiment and runs the federation.

The experiment comes from the run config (``flwr run . --run-config ...``):

- ``overrides``: fedleak's overrides as on ``fedleak run``'s command line, e.g.
  ``--run-config 'overrides="model=lenet federation.rounds=5"'``;
- ``experiment-json``: a fully resolved experiment (what ``fedleak deploy run`` sends);

else from ``$FEDLEAK_EXPERIMENT_JSON`` (set by ``fedleak run``), else the embedded default.
The run directory comes from ``run-dir`` / ``$FEDLEAK_RUN_DIR``, else a fresh one is made
under ``output_dir``. Under ``flwr run .``'s own simulation the experiment adapts to the
federation Flower runs (:mod:`fedleak.server.flower_runtime`). Every path the experiment names is
checked before the first round (:func:`fedleak.simulator.runtime.preflight.check_paths`).
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedleak.server.federation import run_federation
from fedleak.server.flower_runtime import flower_starts_ray, join_flower_simulation
from fedleak.simulator import record_keys as keys
from fedleak.simulator.config.compose import load_experiment
from fedleak.simulator.config.schema import ConfigError, ExperimentConfig, experiment_from_mapping
from fedleak.simulator.errors import FedleakError
from fedleak.simulator.runtime.preflight import check_paths
from fedleak.simulator.runtime.results import RunPaths
from fedleak.simulator.runtime.rundir import create_run_dir

app = ServerApp()


def run_config_overrides(context: Context) -> list[str]:
    """The ``overrides`` run-config entry split as a shell would (quotes group)."""
    text = str(context.run_config.get(keys.OVERRIDES, "") or "")
    try:
        overrides = shlex.split(text)
    except ValueError as exc:
        raise ConfigError([f"run config overrides={text!r}: {exc}"]) from None
    from fedleak.simulator.sweep.runner import sweep_overrides

    if sweeps := sweep_overrides(overrides):
        raise ConfigError(
            [
                f"run config overrides: {' '.join(sweeps)} sweeps several values; a Flower "
                "run is one experiment (sweep with fedleak run -m)"
            ]
        )
    return overrides


def resolve_config(context: Context) -> ExperimentConfig:
    """The experiment of this ServerApp run (see module docstring).

    Raises
    ------
    ConfigError
        When the overrides or the JSON do not give a valid experiment, or both are set.
    """
    text = str(context.run_config.get(keys.EXPERIMENT_JSON, "") or "")
    overrides = run_config_overrides(context)
    if text and overrides:
        raise ConfigError(
            ["run config: give either overrides or experiment-json (a resolved experiment)"]
        )
    if not text and not overrides:
        text = os.environ.get(keys.ENV_EXPERIMENT_JSON, "")
    return experiment_from_mapping(json.loads(text)) if text else load_experiment(overrides)


def run_paths(context: Context, cfg: ExperimentConfig) -> RunPaths:
    """The run directory given by ``run-dir`` / ``$FEDLEAK_RUN_DIR``, else a fresh one."""
    run_dir = str(context.run_config.get(keys.RUN_DIR, "") or os.environ.get(keys.ENV_RUN_DIR, ""))
    if run_dir:
        return RunPaths(Path(run_dir))
    paths = create_run_dir(cfg)
    print(f"fedleak: experiment {cfg.name!r} -> {paths.root}", flush=True)
    return paths


def resolve_start_round(context: Context) -> int:
    """First round to run: 1, or the round after the checkpoint of a resumed run."""
    value = context.run_config.get(keys.START_ROUND, "") or os.environ.get(keys.ENV_START_ROUND, "")
    return int(value) if str(value) else 1


def prepare(grid: Grid, context: Context) -> tuple[ExperimentConfig, RunPaths]:
    """Resolve, adapt to Flower's simulation where it started this app, check the paths.

    Raises
    ------
    FedleakError
        A ConfigError or PreflightError, after printing the message as ``fedleak run``
        would, so it stands out in Flower's log.
    """
    try:
        cfg = resolve_config(context)
        if flower_starts_ray(grid):
            cfg, note = join_flower_simulation(grid, cfg)
            print(note, flush=True)
        check_paths(cfg)
    except FedleakError as exc:
        print(f"fedleak: error: {exc.describe()}", flush=True)
        raise
    return cfg, run_paths(context, cfg)


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the curious federation described by the resolved experiment."""
    cfg, paths = prepare(grid, context)
    run_federation(grid, cfg, paths, start_round=resolve_start_round(context))
