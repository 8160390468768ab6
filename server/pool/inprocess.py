"""Attack workers as threads of the server process: for tests and tiny runs."""

from __future__ import annotations

import concurrent.futures as cf

from fedleak.server.pool.base import AttackPool, timed_out
from fedleak.server.pool.jobs import AttackJob, AttackResult
from fedleak.server.pool.worker import run_attack_job
from fedleak.simulator.config.schema import PoolConfig


class InProcessAttackPool(AttackPool):
    """A thread pool; torch releases the GIL in its kernels, so attacks overlap training."""

    def __init__(self, cfg: PoolConfig) -> None:
        self._executor = cf.ThreadPoolExecutor(max_workers=cfg.workers, thread_name_prefix="attack")
        self._futures: dict[cf.Future[AttackResult], AttackJob] = {}

    def submit(self, job: AttackJob) -> None:
        self._futures[self._executor.submit(run_attack_job, job)] = job

    def _collect(self, done: set[cf.Future[AttackResult]]) -> list[AttackResult]:
        results = []
        for future in done:
            self._futures.pop(future)
            results.append(future.result())  # run_attack_job never raises
        return results

    def poll(self, timeout_s: float = 0.0) -> list[AttackResult]:
        if timeout_s > 0 and self._futures:
            done, _ = cf.wait(list(self._futures), timeout_s, cf.FIRST_COMPLETED)
            return self._collect(set(done) | {f for f in self._futures if f.done()})
        return self._collect({f for f in self._futures if f.done()})

    def drain(self, timeout_s: float, *, deadline_s: float | None = None) -> list[AttackResult]:
        done, _ = cf.wait(list(self._futures), timeout=timeout_s)
        results = self._collect(set(done))
        for future, job in list(self._futures.items()):
            future.cancel()
            results.append(timed_out(job, timeout_s if deadline_s is None else deadline_s))
        self._futures.clear()
        return results

    @property
    def pending(self) -> int:
        return len(self._futures)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
