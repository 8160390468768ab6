"""Checks that fail fast, before any work starts, each with its own exit code and remedy."""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from fedleak.simulator import exit_codes
from fedleak.simulator.config.schema import ExperimentConfig
from fedleak.simulator.errors import FedleakError


class PreflightError(FedleakError, RuntimeError):
    """An environment problem found before the run; ``exit_code`` tells which."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message, exit_code=exit_code)


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
    """``model.weights`` must be a state dict (``torch.save``) that fits the model."""
    if cfg.model.weights is None:
        return
    path = Path(cfg.model.weights).expanduser()
    remedy = (
        "give the path of a state dict saved with torch.save(model.state_dict(), PATH), "
        "e.g. a run's final_model.pt, or model.weights=null for a fresh seeded initialisation"
    )
    if not path.is_file():
        raise PreflightError(
            f"model.weights: {str(path)!r} does not exist; {remedy}",
            exit_codes.MODEL_WEIGHTS_MISSING,
        )
    import torch

    if not _has_torch_save_header(path):
        raise PreflightError(
            f"model.weights: {str(path)!r} is not a file written by torch.save (neither a zip "
            f"archive nor a pickle); {remedy}",
            exit_codes.MODEL_WEIGHTS_MISSING,
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a text file, a pickle of arbitrary objects, no permission
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
        raise PreflightError(
            f"model.weights: {str(path)!r} is not a readable torch state dict ({reason}); {remedy}",
            exit_codes.MODEL_WEIGHTS_MISSING,
        ) from None
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise PreflightError(
            f"model.weights: {str(path)!r} holds a {type(state).__name__}, not a mapping of "
            f"parameter names to tensors; {remedy}",
            exit_codes.MODEL_WEIGHTS_MISSING,
        )
    _check_weights_fit(cfg, state)


_TORCH_SAVE_MAGIC = (b"PK\x03\x04", b"\x80")
"""torch.save writes a zip archive (torch >= 1.6) or, legacy, a pickle (protocol >= 2)."""


def _has_torch_save_header(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
    except OSError:
        return True  # let torch.load report the reason (e.g. permission denied)
    return head.startswith(_TORCH_SAVE_MAGIC)


def _check_weights_fit(cfg: ExperimentConfig, state: Mapping[str, Any]) -> None:
    """The state dict's names and shapes are the experiment model's."""
    from fedleak.simulator.models.architectures import build_model
    from fedleak.simulator.runtime.experiment_data import experiment_spec, experiment_splits

    spec = experiment_spec(cfg, experiment_splits(cfg))
    expected = {k: tuple(v.shape) for k, v in build_model(spec).state_dict().items()}
    given = {k: tuple(v.shape) for k, v in state.items()}
    problems = [f"missing {k}" for k in sorted(set(expected) - set(given))]
    problems += [f"unexpected {k}" for k in sorted(set(given) - set(expected))]
    problems += [
        f"{k} has shape {list(given[k])}, the model's is {list(expected[k])}"
        for k in sorted(set(given) & set(expected))
        if given[k] != expected[k]
    ]
    if problems:
        shown = "; ".join(problems[:4]) + (
            f"; and {len(problems) - 4} more" if len(problems) > 4 else ""
        )
        raise PreflightError(
            f"model.weights: {str(cfg.model.weights)!r} does not fit model {spec.name!r} on "
            f"{cfg.dataset.name!r} ({shown}); give weights saved from the same model and data set",
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
    from fedleak.simulator.runtime.experiment_data import (
        args_key,
        cached_partitions,
        experiment_splits,
    )

    data, fed = cfg.dataset, cfg.federation
    train = experiment_splits(cfg).train
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
                args_key(data.args),
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


# ------------------------------------------------------------------ paths the user gives


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _os_reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _writable_dir_problem(path: Path) -> str | None:
    """Why ``path`` cannot be (made) a directory fedleak writes into; ``None`` if it can.

    Really tries: creates the missing directories and a probe file, then removes what it
    created (``os.access`` says yes to root on ``/proc`` and on read-only mounts' parents).
    """
    existing = _nearest_existing(path)
    if not existing.is_dir():
        return f"{existing} is not a directory"
    created: list[Path] = []
    try:
        for missing in reversed([path, *path.parents]):
            if not missing.exists():
                missing.mkdir()
                created.append(missing)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        return f"cannot write there: {_os_reason(exc)}{where}"
    finally:
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()
    return None


def check_output_dir(cfg: ExperimentConfig) -> None:
    """``output_dir`` must be, or be creatable as, a directory this process can write."""
    path = Path(cfg.output_dir).expanduser().resolve()
    problem = _writable_dir_problem(path)
    if problem is not None:
        raise PreflightError(
            f"output_dir: {str(path)!r} cannot hold the run directory: {problem}; "
            "give a writable directory, e.g. output_dir=runs",
            exit_codes.PATH_UNUSABLE,
        )


def check_data_dir(cfg: ExperimentConfig) -> None:
    """``dataset.data_dir``, where data sets are cached, must be a readable directory.

    It need not exist yet (a download creates it), but it cannot be, or lie under, a file.
    """
    path = Path(cfg.dataset.data_dir).expanduser().resolve()
    existing = _nearest_existing(path)
    if existing == path and path.is_dir() and not os.access(path, os.R_OK | os.X_OK):
        problem = "it is not readable"
    elif not existing.is_dir():
        problem = f"{existing} is not a directory"
    else:
        return
    raise PreflightError(
        f"dataset.data_dir: {str(path)!r} cannot hold data sets: {problem}; "
        "give a directory, e.g. dataset.data_dir=data",
        exit_codes.PATH_UNUSABLE,
    )


def check_resume_dir(run_dir: Path) -> None:
    """A ``--resume`` directory must be a run directory with a readable ``config.yaml``."""
    path = run_dir.expanduser().resolve()
    config = path / "config.yaml"
    if not path.is_dir():
        problem = "does not exist" if not path.exists() else "is not a directory"
    elif not config.is_file():
        problem = "has no config.yaml"
    else:
        try:
            data = yaml.safe_load(config.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            problem = f"has an unreadable config.yaml ({type(exc).__name__}: {first})"
        else:
            if isinstance(data, dict):
                return
            problem = "has a config.yaml that is not a mapping"
    raise PreflightError(
        f"--resume: {str(path)!r} {problem}: not a fedleak run directory; give the "
        "directory a run printed at its start (runs/<experiment>/<timestamp>)",
        exit_codes.RUN_DIR_INVALID,
    )


def check_paths(cfg: ExperimentConfig) -> None:
    """Every path the experiment names: output_dir, dataset.data_dir, model.weights."""
    for check in (check_output_dir, check_data_dir, check_model_weights):
        check(cfg)


def preflight(cfg: ExperimentConfig) -> None:
    """Run every check; the first failure raises :class:`PreflightError`."""
    check_paths(cfg)
    for check in (check_cuda, check_ray_address, check_partitions):
        check(cfg)
