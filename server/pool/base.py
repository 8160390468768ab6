"""The attack pool interface; backends live behind a name table (Flower's simulation backends)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

from fedleak.attacks.types import AttackFailure, Status
from fedleak.server.pool.jobs import AttackJob, AttackResult
from fedleak.simulator.config.choices import POOL_BACKENDS
from fedleak.simulator.config.schema import PoolConfig
from fedleak.simulator.plugins import import_object


class AttackPool(ABC):
    """Runs attack jobs beside training: submit without waiting, poll, drain at the end."""

    @abstractmethod
    def submit(self, job: AttackJob) -> None:
        """Queue ``job``; returns at once."""

    @abstractmethod
    def poll(self, timeout_s: float = 0.0) -> list[AttackResult]:
        """Results finished since the last call.

        With ``timeout_s > 0`` and nothing finished yet, waits up to that long for the first
        result, so a caller that loops on ``poll`` wakes as soon as an attack ends instead of
        sleeping a fixed interval (which capped a worker at one attack per interval).
        """

    @abstractmethod
    def drain(self, timeout_s: float, *, deadline_s: float | None = None) -> list[AttackResult]:
        """Wait up to ``timeout_s`` for every pending job; the rest become ``timeout`` results.

        ``deadline_s`` is the whole drain deadline the run set (``pool.drain_timeout_s``), which
        the ``timeout`` reason states; the caller may have spent part of it before calling, so
        ``timeout_s`` can be smaller (even 0). Defaults to ``timeout_s``.
        """

    @property
    @abstractmethod
    def pending(self) -> int:
        """Jobs submitted and not yet returned by :meth:`poll` or :meth:`drain`."""

    @abstractmethod
    def shutdown(self) -> None:
        """Release workers (idempotent)."""


def timed_out(job: AttackJob, deadline_s: float) -> AttackResult:
    """The recorded result of a job still running when the drain deadline ``deadline_s`` passed."""
    return AttackResult(
        job=job,
        outcome=AttackFailure(
            Status.TIMEOUT,
            f"not finished within the {deadline_s:g} s drain deadline (pool.drain_timeout_s)",
        ),
    )


PoolFactory = Callable[[PoolConfig], AttackPool]


def register_pool_backend(name: str, factory: PoolFactory | str) -> None:
    """Register a backend (its factory, or the factory's import path); a name is registered once.

    The table is :data:`fedleak.simulator.config.choices.POOL_BACKENDS`, which ``pool.backend`` is
    checked against.
    """
    POOL_BACKENDS.register(name, factory)


def available_pool_backends() -> list[str]:
    """Registered backend names."""
    return POOL_BACKENDS.names()


def create_pool(cfg: PoolConfig) -> AttackPool:
    """Build the backend ``cfg.backend``.

    Raises
    ------
    ValueError
        Listing the available backends when the name is unknown.
    """
    factory = POOL_BACKENDS.get(cfg.backend)
    if isinstance(factory, str):
        factory = import_object(factory)
    pool: AttackPool = factory(cfg)
    return pool
