"""Prepare a killed run directory to continue from its last completed round."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import yaml

from fedleak.simulator import exit_codes
from fedleak.simulator.config.schema import ConfigError, ExperimentConfig, experiment_from_mapping
from fedleak.simulator.errors import FedleakError
from fedleak.simulator.runtime.checkpoint import load_checkpoint
from fedleak.simulator.runtime.results import RunPaths


class RunDirInvalidError(FedleakError, FileNotFoundError):
    """The directory given to ``--resume`` is not a fedleak run directory."""

    exit_code = exit_codes.RUN_DIR_INVALID


def _keep_rows_through(path: Path, last_round: int) -> None:
    """Rewrite a JSONL file with only complete rows of rounds <= ``last_round``."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if int(json.loads(line)["round"]) <= last_round:
                kept.append(line)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            continue  # the torn line of the kill
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("".join(line + "\n" for line in kept))
    os.replace(tmp, path)


def _drop_rounds_after(folder: Path, last_round: int) -> None:
    for child in folder.glob("round_*"):
        digits = child.stem.removeprefix("round_")
        if digits.isdigit() and int(digits) > last_round:
            shutil.rmtree(child) if child.is_dir() else child.unlink()


def prepare_resume(run_dir: Path) -> tuple[ExperimentConfig, RunPaths, int]:
    """The run's config, paths and the round to start from, with every trace of the
    unfinished round removed (its rows, ground truth, updates, reconstructions, grid).

    Raises
    ------
    RunDirInvalidError
        When ``run_dir`` has no ``config.yaml`` (a ``FileNotFoundError``).
    ConfigError
        When the run used ``defense.secagg`` (no checkpoints to resume from).
    """
    paths = RunPaths(Path(run_dir).resolve())
    if not paths.config.is_file():
        raise RunDirInvalidError(f"{paths.root} has no config.yaml: not a fedleak run directory")
    cfg = experiment_from_mapping(yaml.safe_load(paths.config.read_text(encoding="utf-8")))
    if cfg.defense.secagg.enabled:
        raise ConfigError(
            [
                "defense.secagg: a secure-aggregation run cannot be resumed (Flower's SecAgg+ "
                "workflow starts at round 1 and keeps no checkpoints); start it again"
            ]
        )
    checkpoint = load_checkpoint(paths.root)
    done = checkpoint.server_round if checkpoint is not None else 0
    _keep_rows_through(paths.leakage_jsonl, done)
    _keep_rows_through(paths.training_jsonl, done)
    for folder in (paths.audit, paths.updates, paths.reconstructions, paths.grids):
        _drop_rounds_after(folder, done)
    return cfg, paths, done + 1
