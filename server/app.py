"""Flower ServerApp (``server.app:app``): resolves the experiment and runs the federation.

The experiment comes from the run config's ``experiment-json`` (``flwr run . --run-config``),
else from ``$FEDLEAK_EXPERIMENT_JSON`` (set by ``fedleak run``), else the embedded default.
The run directory comes from ``run-dir`` / ``$FEDLEAK_RUN_DIR``, else a fresh one is made.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from server.federation import run_federation
from simulator import record_keys as keys
from simulator.compose import load_experiment
from simulator.config import ExperimentConfig, experiment_from_mapping
from simulator.results import RunPaths
from simulator.rundir import create_run_dir

app = ServerApp()


def resolve_experiment(context: Context) -> tuple[ExperimentConfig, RunPaths]:
    """The experiment and run directory of this ServerApp run (see module docstring)."""
    text = str(
        context.run_config.get(keys.EXPERIMENT_JSON, "")
        or os.environ.get(keys.ENV_EXPERIMENT_JSON, "")
    )
    cfg = experiment_from_mapping(json.loads(text)) if text else load_experiment()
    run_dir = str(context.run_config.get(keys.RUN_DIR, "") or os.environ.get(keys.ENV_RUN_DIR, ""))
    paths = RunPaths(Path(run_dir)) if run_dir else create_run_dir(cfg)
    return cfg, paths


def resolve_start_round(context: Context) -> int:
    """First round to run: 1, or the round after the checkpoint of a resumed run."""
    value = context.run_config.get(keys.START_ROUND, "") or os.environ.get(keys.ENV_START_ROUND, "")
    return int(value) if str(value) else 1


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the curious federation described by the resolved experiment."""
    cfg, paths = resolve_experiment(context)
    run_federation(grid, cfg, paths, start_round=resolve_start_round(context))
