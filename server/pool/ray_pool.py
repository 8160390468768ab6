"""Attack workers as Ray actors: on the simulation's Ray, or on a cluster by address.

Each actor runs one attack at a time; jobs wait in a local queue until an actor is free.
That keeps faults contained: a worker process that dies (SIGKILL, OOM) or exceeds the
per-attack timeout is replaced, and only its own job is retried or recorded.
"""

from __future__ import annotations

import collections
import os
import time
from dataclasses import dataclass
from typing import Any

from fedleak.attacks.types import AttackFailure, Status
from fedleak.server.pool.base import AttackPool, timed_out
from fedleak.server.pool.jobs import AttackJob, AttackResult
from fedleak.simulator.config.schema import PoolConfig
from fedleak.simulator.record_keys import ATTACK_WORKER_SLOT


class AttackWorker:
    """Ray actor body: one attack at a time, torch threads matched to its CPU share."""

    def __init__(self, num_threads: int) -> None:
        import torch

        from fedleak import simulator  # noqa: F401  (torchvision shim in this process)

        torch.set_num_threads(max(1, num_threads))

    def pid(self) -> int:
        """The worker's process id (for fault-injection tests and diagnostics)."""
        return os.getpid()

    def run(self, job: AttackJob) -> AttackResult:
        from fedleak.server.pool.worker import run_attack_job

        return run_attack_job(job)


def _ensure_ray(cfg: PoolConfig) -> Any:
    try:
        import ray
    except ImportError as exc:
        raise RuntimeError(
            "pool.backend=ray needs Ray: pip install 'flwr[simulation]' (or use pool=inprocess)"
        ) from exc
    if not ray.is_initialized():
        address = cfg.address or os.environ.get("RAY_ADDRESS")
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        except ConnectionError as exc:
            raise RuntimeError(
                f"cannot reach the Ray cluster at {address!r}: {exc}; start it with "
                "'ray start --head' or unset pool.address / RAY_ADDRESS for a local one"
            ) from exc
    return ray


@dataclass
class _Running:
    job: AttackJob
    slot: int
    started: float
    attempt: int


class RayAttackPool(AttackPool):
    """``cfg.workers`` actors with ``num_cpus`` / ``num_gpus`` each (fractions allowed)."""

    def __init__(self, cfg: PoolConfig) -> None:
        self._ray = _ensure_ray(cfg)
        self._cfg = cfg
        if self._ray.cluster_resources().get(ATTACK_WORKER_SLOT, 0) >= 1:
            # simulation: Flower's client actors own the CPUs; workers take reserved slots
            options: dict[str, Any] = {"num_cpus": 0, "resources": {ATTACK_WORKER_SLOT: 1}}
        else:
            options = {"num_cpus": cfg.num_cpus}
        if cfg.num_gpus > 0:
            options["num_gpus"] = cfg.num_gpus
        self._actor_cls = self._ray.remote(AttackWorker).options(**options)
        self._actors: list[Any] = []
        self._pids: list[Any] = []  # asked at creation, so answered before any job
        for _ in range(cfg.workers):
            self._add_actor()
        self._idle = collections.deque(range(cfg.workers))
        self._waiting: collections.deque[tuple[AttackJob, int]] = collections.deque()
        self._running: dict[Any, _Running] = {}
        self.replaced_workers = 0

    def _new_actor(self) -> tuple[Any, Any]:
        actor = self._actor_cls.remote(max(1, int(self._cfg.num_cpus)))
        return actor, actor.pid.remote()

    def _add_actor(self) -> None:
        actor, pid = self._new_actor()
        self._actors.append(actor)
        self._pids.append(pid)

    def worker_pids(self) -> list[int]:
        """Process ids of the current workers (for fault-injection tests and diagnostics)."""
        return [int(pid) for pid in self._ray.get(self._pids)]

    # ------------------------------------------------------------------ scheduling
    def submit(self, job: AttackJob) -> None:
        self._waiting.append((job, 0))
        self._dispatch()

    def _dispatch(self) -> None:
        while self._waiting and self._idle:
            (job, attempt), slot = self._waiting.popleft(), self._idle.popleft()
            ref = self._actors[slot].run.remote(job)
            self._running[ref] = _Running(job, slot, time.monotonic(), attempt)

    def _replace(self, slot: int) -> None:
        self._ray.kill(self._actors[slot], no_restart=True)
        self._actors[slot], self._pids[slot] = self._new_actor()
        self.replaced_workers += 1

    def _finish(self, ref: Any) -> AttackResult | None:
        """Result of a finished task; ``None`` when its job went back to the queue."""
        run = self._running.pop(ref)
        try:
            result: AttackResult = self._ray.get(ref)
        except self._ray.exceptions.RayActorError as exc:  # the worker process died
            self._replace(run.slot)
            self._idle.append(run.slot)
            if run.attempt < self._cfg.max_retries:
                self._waiting.appendleft((run.job, run.attempt + 1))
                return None
            first = str(exc).splitlines()[0]
            reason = f"worker died {run.attempt + 1} time(s) running this attack: {first}"
            return AttackResult(job=run.job, outcome=AttackFailure(Status.FAILED, reason))
        except Exception as exc:  # Ray failed to run or return it: record, never crash
            self._idle.append(run.slot)
            reason = f"worker error {type(exc).__name__}: {str(exc).splitlines()[0]}"
            return AttackResult(job=run.job, outcome=AttackFailure(Status.FAILED, reason))
        self._idle.append(run.slot)
        return result

    def _expire(self) -> list[AttackResult]:
        now, results = time.monotonic(), []
        limit = self._cfg.attack_timeout_s
        for ref, run in list(self._running.items()):
            if now - run.started > limit:
                del self._running[ref]
                self._replace(run.slot)  # the only way to stop a running actor task
                self._idle.append(run.slot)
                reason = f"attack ran longer than pool.attack_timeout_s={limit:g} s"
                results.append(
                    AttackResult(job=run.job, outcome=AttackFailure(Status.TIMEOUT, reason))
                )
        return results

    def _collect(self, timeout: float) -> list[AttackResult]:
        results: list[AttackResult] = []
        if self._running:
            refs = list(self._running)
            ready, _ = self._ray.wait(refs, num_returns=1, timeout=timeout)
            if ready:  # then everything else that is done too
                ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=0)
            results.extend(r for r in map(self._finish, ready) if r is not None)
        results.extend(self._expire())
        self._dispatch()
        return results

    # ------------------------------------------------------------------ AttackPool
    def poll(self, timeout_s: float = 0.0) -> list[AttackResult]:
        return self._collect(timeout=timeout_s)

    def drain(self, timeout_s: float, *, deadline_s: float | None = None) -> list[AttackResult]:
        start = time.monotonic()
        results: list[AttackResult] = []
        while self._running or self._waiting:
            remaining = timeout_s - (time.monotonic() - start)
            if remaining <= 0:
                break
            results.extend(self._collect(timeout=min(remaining, 0.5)))
        leftover = [run.job for run in self._running.values()] + [j for j, _ in self._waiting]
        deadline = timeout_s if deadline_s is None else deadline_s
        results.extend(timed_out(job, deadline) for job in leftover)
        self._running.clear()
        self._waiting.clear()
        return results

    @property
    def pending(self) -> int:
        return len(self._running) + len(self._waiting)

    def shutdown(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor, no_restart=True)
        self._actors = []
