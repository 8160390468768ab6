"""The global model and round counter, saved after every completed round."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from flwr.app import ArrayRecord


@dataclass(frozen=True)
class Checkpoint:
    """The state after ``server_round`` completed."""

    server_round: int
    arrays: ArrayRecord


def checkpoint_path(run_dir: Path) -> Path:
    """Where a run keeps its latest checkpoint."""
    return Path(run_dir) / "checkpoint.pt"


def save_checkpoint(run_dir: Path, server_round: int, arrays: ArrayRecord) -> None:
    """Write atomically: a kill leaves the previous checkpoint or the new one, never half."""
    target = checkpoint_path(run_dir)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as handle:
        torch.save({"round": server_round, "state_dict": arrays.to_torch_state_dict()}, handle)
    os.replace(tmp, target)


def load_checkpoint(run_dir: Path) -> Checkpoint | None:
    """The latest checkpoint, or ``None`` when the run completed no round."""
    path = checkpoint_path(run_dir)
    if not path.is_file():
        return None
    data = torch.load(path, map_location="cpu", weights_only=True)
    return Checkpoint(int(data["round"]), ArrayRecord(data["state_dict"]))
