"""Checks that fail fast, before any work starts, each with its own exit code and remedy."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from simulator import exit_codes
from simulator.config import ExperimentConfig


class PreflightError(RuntimeError):
    """An environment problem found before the run; ``exit_code`` tells which."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def check_cuda(cfg: ExperimentConfig) -> None:
    """``device=cuda`` or GPU resources requested on a machine without a visible GPU."""
    wants_gpu = cfg.device == "cuda" or cfg.pool.num_gpus > 0 or cfg.federation.client_gpus > 0
    if not wants_gpu:
        return
    import torch

    if not torch.cuda.is_available():
        raise PreflightError(
            "CUDA was requested (device=cuda, pool.num_gpus or federation.client_gpus > 0) "
            "but no GPU is visible; use device=auto, pool.num_gpus=0 and "
            "federation.client_gpus=0 on this machine",
            exit_codes.CUDA_UNAVAILABLE,
        )


def check_ray_address(cfg: ExperimentConfig, timeout_s: float = 3.0) -> None:
    """A Ray cluster named by ``pool.address`` / ``$RAY_ADDRESS`` must answer on its port."""
    address = cfg.pool.address or os.environ.get("RAY_ADDRESS")
    if not address or address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
            return
    except (OSError, ValueError) as exc:
        raise PreflightError(
            f"cannot reach the Ray cluster at {address!r} ({exc}); start it with "
            "'ray start --head --port=PORT' or unset pool.address and RAY_ADDRESS "
            "to let fedleak start a local one",
            exit_codes.RAY_UNREACHABLE,
        ) from None


def check_model_weights(cfg: ExperimentConfig) -> None:
    """``model.weights`` must name a readable state-dict file."""
    if cfg.model.weights is None:
        return
    path = Path(cfg.model.weights).expanduser()
    if not path.is_file():
        raise PreflightError(
            f"model.weights: {str(path)!r} does not exist; give the path of a state dict "
            "saved with torch.save(model.state_dict(), PATH), e.g. a run's final_model.pt, "
            "or model.weights=null for a fresh seeded initialisation",
            exit_codes.MODEL_WEIGHTS_MISSING,
        )


def preflight(cfg: ExperimentConfig) -> None:
    """Run every check; the first failure raises :class:`PreflightError`."""
    for check in (check_cuda, check_ray_address, check_model_weights):
        check(cfg)
