"""Run directories: ``<output_dir>/<experiment>/<timestamp>/`` with the resolved config."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import yaml

from fedleak.simulator.config.schema import ExperimentConfig
from fedleak.simulator.runtime.results import RunPaths


def create_run_dir(cfg: ExperimentConfig, now: dt.datetime | None = None) -> RunPaths:
    """Make a fresh run directory and write ``config.yaml`` into it."""
    stamp = (now or dt.datetime.now()).strftime("%Y%m%d-%H%M%S-%f")
    root = Path(cfg.output_dir).resolve() / cfg.name / stamp
    root.mkdir(parents=True, exist_ok=False)
    paths = RunPaths(root)
    paths.config.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")
    return paths
