"""Attack workers as Ray actors: on the simulation's Ray, or on a cluster by address."""

from __future__ import annotations

import os
import time
from typing import Any

from attacks.types import AttackFailure
from server.pool.base import AttackPool, timed_out
from server.pool.jobs import AttackJob, AttackResult
from simulator.config import PoolConfig
from simulator.record_keys import ATTACK_WORKER_SLOT

# Flower sizes its client-actor pool from the node's total CPUs, so attack workers cannot
# take CPUs from that pool; the simulation runner instead declares these slots (and only the
# client share of CPUs), and a worker takes one slot.
ATTACK_SLOT = ATTACK_WORKER_SLOT


class AttackWorker:
    """Ray actor body: one attack at a time, torch threads matched to its CPU share."""

    def __init__(self, num_threads: int) -> None:
        import torch

        import simulator  # noqa: F401  (torchvision shim in this process)

        torch.set_num_threads(max(1, num_threads))

    def run(self, job: AttackJob) -> AttackResult:
        from server.pool.worker import run_attack_job

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
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    return ray


class RayAttackPool(AttackPool):
    """``cfg.workers`` actors with ``num_cpus`` / ``num_gpus`` each (fractions allowed)."""

    def __init__(self, cfg: PoolConfig) -> None:
        ray = _ensure_ray(cfg)
        self._ray = ray
        if ray.cluster_resources().get(ATTACK_SLOT, 0) >= 1:
            options: dict[str, Any] = {"num_cpus": 0, "resources": {ATTACK_SLOT: 1}}
        else:
            options = {"num_cpus": cfg.num_cpus}
        if cfg.num_gpus > 0:
            options["num_gpus"] = cfg.num_gpus
        actor_cls = ray.remote(AttackWorker).options(**options)
        threads = max(1, int(cfg.num_cpus))
        self._actors = [actor_cls.remote(threads) for _ in range(cfg.workers)]
        self._load = [0] * cfg.workers
        self._inflight: dict[Any, tuple[AttackJob, int]] = {}

    def submit(self, job: AttackJob) -> None:
        index = min(range(len(self._actors)), key=self._load.__getitem__)
        ref = self._actors[index].run.remote(job)
        self._inflight[ref] = (job, index)
        self._load[index] += 1

    def _collect(self, refs: list[Any]) -> list[AttackResult]:
        results = []
        for ref in refs:
            job, index = self._inflight.pop(ref)
            self._load[index] -= 1
            try:
                results.append(self._ray.get(ref))
            except Exception as exc:  # the actor died or Ray failed: record, never crash
                reason = f"worker error {type(exc).__name__}: {str(exc).splitlines()[0]}"
                results.append(AttackResult(job=job, outcome=AttackFailure("failed", reason)))
        return results

    def poll(self) -> list[AttackResult]:
        if not self._inflight:
            return []
        ready, _ = self._ray.wait(list(self._inflight), num_returns=len(self._inflight), timeout=0)
        return self._collect(ready)

    def drain(self, timeout_s: float) -> list[AttackResult]:
        start = time.monotonic()
        results: list[AttackResult] = []
        while self._inflight:
            remaining = timeout_s - (time.monotonic() - start)
            if remaining <= 0:
                break
            ready, _ = self._ray.wait(list(self._inflight), num_returns=1, timeout=remaining)
            results.extend(self._collect(ready))
        for job, index in list(self._inflight.values()):
            self._load[index] -= 1
            results.append(timed_out(job, time.monotonic() - start))
        self._inflight.clear()
        return results

    @property
    def pending(self) -> int:
        return len(self._inflight)

    def shutdown(self) -> None:
        for actor in self._actors:
            self._ray.kill(actor)
        self._actors = []
