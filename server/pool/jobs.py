"""What goes into the attack pool and what comes out of it."""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedleak.attacks.types import AttackOutcome, InterceptedUpdate
from fedleak.simulator.models.architectures import ModelSpec


@dataclass(frozen=True)
class AttackJob:
    """One attack on one intercepted update.

    Attributes
    ----------
    attack : str
        Registered attack name.
    params : dict[str, Any]
        The attack's settings (validated at startup).
    update : InterceptedUpdate
        All the attack may see.
    model_spec : ModelSpec
        Public architecture, rebuilt by the worker.
    seed : int
        Seed of the attack's random choices.
    device : str
        ``auto``, ``cpu`` or ``cuda``.
    """

    attack: str
    params: dict[str, Any]
    update: InterceptedUpdate
    model_spec: ModelSpec
    seed: int
    device: str = "auto"

    @property
    def key(self) -> tuple[int, int, str]:
        """(round, node, attack): the identity of a leakage row."""
        return (self.update.server_round, self.update.node_id, self.attack)


@dataclass(frozen=True)
class AttackResult:
    """The pool's answer for one job."""

    job: AttackJob
    outcome: AttackOutcome
    worker: str = ""
    device: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def update_fingerprint(update: InterceptedUpdate) -> int:
    """CRC-32 of the client's parameters: the same update gets the same value in every run.

    Flower's node ids are random per run, so seeding attacks by node id would make two runs
    of one experiment attack with different random starts.
    """
    crc = 0
    for value in update.client_params.values():
        crc = zlib.crc32(np.ascontiguousarray(value).tobytes(), crc)
    return crc


def job_seed(base_seed: int, update: InterceptedUpdate, attack: str) -> int:
    """A reproducible seed per (experiment seed, round, update content, attack)."""
    key = f"{base_seed}/{update.server_round}/{update_fingerprint(update)}/{attack}"
    return zlib.crc32(key.encode()) & 0x7FFFFFFF
