"""Checks that fail fast, before any work starts, each with its own exit code and remedy."""

from __future__ import annotations

import os
import socket
import warnings
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


def partition_sizes(cfg: ExperimentConfig) -> tuple[int, ...]:
    """The number of training samples of each client, as the clients will partition them.

    Raises
    ------
    PreflightError
        (exit code ``CONFIG_ERROR``) when some client would get no sample: more clients
        than training samples, or a Dirichlet draw that leaves a client empty. Every client
        would otherwise fail inside the simulation, one traceback each.
    """
    from simulator.experiment_data import cached_partitions, cached_splits

    data, fed = cfg.dataset, cfg.federation
    train = cached_splits(data.name, data.data_dir, cfg.seed, data.test_fraction).train
    if fed.num_clients > len(train.labels):
        raise PreflightError(
            f"federation.num_clients={fed.num_clients} is more than the {len(train.labels)} "
            f"training samples of dataset.name={data.name}: every client needs at least one "
            f"sample; use federation.num_clients <= {len(train.labels)}",
            exit_codes.CONFIG_ERROR,
        )
    try:
        with warnings.catch_warnings():  # flwr-datasets warns once per redraw, alpha list and all
            warnings.simplefilter("ignore")
            parts = cached_partitions(
                data.name,
                data.data_dir,
                cfg.seed,
                data.test_fraction,
                fed.num_clients,
                fed.partitioner,
                fed.alpha,
            )
    except ValueError as exc:
        raise PreflightError(
            f"federation.partitioner={fed.partitioner} with federation.alpha={fed.alpha:g} "
            f"cannot give each of federation.num_clients={fed.num_clients} clients a sample "
            f"({str(exc).splitlines()[0]}); raise federation.alpha or lower "
            "federation.num_clients",
            exit_codes.CONFIG_ERROR,
        ) from None
    return tuple(len(part) for part in parts)


def check_partitions(cfg: ExperimentConfig) -> None:
    """Every client gets at least one training sample (see :func:`partition_sizes`)."""
    partition_sizes(cfg)


def preflight(cfg: ExperimentConfig) -> None:
    """Run every check; the first failure raises :class:`PreflightError`."""
    for check in (check_cuda, check_ray_address, check_model_weights, check_partitions):
        check(cfg)
