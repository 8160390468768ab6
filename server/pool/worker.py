"""The work an attack worker does for one job, shared by every pool backend."""

from __future__ import annotations

import os
import socket

import torch

from fedleak.attacks import create_attack, execute_attack
from fedleak.attacks.types import AttackFailure, Status
from fedleak.server.pool.jobs import AttackJob, AttackResult
from fedleak.simulator.models.architectures import build_model


def resolve_device(preference: str) -> torch.device:
    """``auto``: CUDA when this worker sees a GPU, else CPU.

    Raises
    ------
    RuntimeError
        When ``cuda`` is requested but no GPU is visible to this worker.
    """
    if preference == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda requested but this worker sees no GPU; use device=auto")
    if preference in ("cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def worker_name() -> str:
    """host:pid of this process, recorded with each result."""
    return f"{socket.gethostname()}:{os.getpid()}"


def run_attack_job(job: AttackJob) -> AttackResult:
    """Rebuild the model, load the global parameters, run the attack; never raises."""
    device_name = ""
    try:
        device = resolve_device(job.device)
        device_name = str(device)
        model = build_model(job.model_spec)
        state = {k: torch.from_numpy(v) for k, v in job.update.global_params.items()}
        model.load_state_dict(state)
        model.to(device)
        # The client computed its update in train mode; the attack must see the same function.
        model.train()
        attack = create_attack(job.attack, job.params)
        outcome = execute_attack(attack, model, job.update, device=device, seed=job.seed)
    except Exception as exc:  # building the model or attack failed: still a row
        outcome = AttackFailure(Status.FAILED, f"{type(exc).__name__}: {exc}")
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # release GPU memory between tasks
    return AttackResult(job=job, outcome=outcome, worker=worker_name(), device=device_name)
