"""The background thread between the strategy and the pool: decode, submit, collect, record."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from fedleak.attacks.types import InputDomain, InterceptedUpdate, Status
from fedleak.server.capture import CapturedRound, decode, to_update
from fedleak.server.policy import AttackPolicy
from fedleak.server.pool import AttackJob, AttackPool, AttackResult, job_seed
from fedleak.server.recorder import LeakageRecorder
from fedleak.server.update_store import UpdateStore
from fedleak.server.validation import Rejection
from fedleak.simulator.models.architectures import ModelSpec
from fedleak.simulator.runtime.audit import AuditStore


@dataclass(frozen=True)
class Resubmission:
    """Updates of earlier rounds whose attacks never finished (a resumed run)."""

    updates: tuple[InterceptedUpdate, ...]
    done: frozenset[tuple[int, int, str]]


@dataclass(frozen=True)
class RejectedReplies:
    """Replies of one round the server refused to aggregate."""

    server_round: int
    rejections: tuple[Rejection, ...]


@dataclass(frozen=True)
class DrainProgress:
    """How the end-of-run drain goes: attacks recorded since it began, left, and timings."""

    done: int
    left: int
    since_last_result_s: float
    elapsed_s: float

    def line(self) -> str:
        """``draining: 5 attack(s) done, 18 left; last result 3 s ago (42 s so far)``."""
        return (
            f"draining: {self.done} attack(s) done, {self.left} left; last result "
            f"{self.since_last_result_s:.0f} s ago ({self.elapsed_s:.0f} s so far)"
        )


@dataclass(frozen=True)
class AttackPlan:
    """Which attacks run on every update, with what settings."""

    names: Sequence[str]
    params: dict[str, dict[str, Any]]
    seed: int
    device: str
    effort: str = "default"
    """Budget level given to every attack whose own params do not set one."""
    disclose_labels: bool = False
    policy: AttackPolicy = field(default_factory=AttackPolicy)
    max_pending: int = 256
    when_full: str = "wait"


class AttackPipeline:
    """Owns the pool; the strategy only calls :meth:`intercept` (an O(1) enqueue).

    Parameters
    ----------
    pool : AttackPool
        Where attacks run.
    recorder : LeakageRecorder
        Where results go.
    plan : AttackPlan
        Attacks and their settings.
    model_spec : ModelSpec
        Public architecture the workers rebuild.
    audit : AuditStore | None
        Read only for disclosed labels (when the threat model allows it).
    poll_interval_s : float
        How often finished attacks are collected.
    input_domain : InputDomain | None
        The inputs' public schema (modality, bounds, one-hot blocks) every update carries to
        the attacks; ``None``: images in ``[0, 1]``.
    """

    def __init__(
        self,
        pool: AttackPool,
        recorder: LeakageRecorder,
        plan: AttackPlan,
        model_spec: ModelSpec,
        audit: AuditStore | None = None,
        poll_interval_s: float = 0.1,
        update_store: UpdateStore | None = None,
        input_domain: InputDomain | None = None,
    ) -> None:
        self.pool = pool
        self.recorder = recorder
        self.plan = plan
        self.model_spec = model_spec
        self.audit = audit
        self.update_store = update_store
        self.input_domain = input_domain or InputDomain()
        self._interval = poll_interval_s
        # A deque, not a queue.Queue: append is atomic and wakes no thread. Queue.put's notify
        # woke this thread inside the strategy's timed aggregate_train (~40 us of a switch);
        # the pipeline instead polls its inbox every poll_interval_s.
        self._inbox: collections.deque[CapturedRound | RejectedReplies | Resubmission] = (
            collections.deque()
        )
        self._posted = 0
        self._handled = 0
        self._rounds_posted = 0
        self._rounds_persisted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name="fedleak-attack-pipeline", daemon=True
        )
        self.submitted = 0
        self.recorded = 0
        self._expected = 0  # attacks owed for every intercepted reply (strategy thread only)
        self._deselected = 0  # of those, not selected by the policy (pipeline thread only)
        self.skipped = 0
        self._thread.start()

    # ------------------------------------------------------------------ strategy side
    def intercept(self, captured: CapturedRound) -> None:
        """Hand one round's replies to the pipeline; returns at once."""
        self._expected += len(captured.replies) * len(self.plan.names)
        self._rounds_posted += 1
        self._post(captured)

    def reject(self, server_round: int, rejections: Sequence[Rejection]) -> None:
        """Record replies the server refused to aggregate as ``rejected`` rows (O(1) here)."""
        self._expected += len(rejections) * len(self.plan.names)
        self._post(RejectedReplies(server_round, tuple(rejections)))

    @property
    def pending(self) -> int:
        """Attacks owed for intercepted replies and not yet recorded (for progress)."""
        return self._expected - self._deselected - self.recorded

    def _post(self, item: CapturedRound | RejectedReplies | Resubmission) -> None:
        self._posted += 1
        self._inbox.append(item)

    def wait_until_persisted(self) -> None:
        """Block until every intercepted round's updates are in the update store.

        Called before a round's checkpoint: a crash after the checkpoint must find the
        round's updates on disk, so ``--resume`` can re-run its unfinished attacks.
        """
        while self._rounds_persisted < self._rounds_posted and self._thread.is_alive():
            time.sleep(0.001)

    def wait_until_submitted(self) -> None:
        """Block until every intercepted round has been decoded and submitted (benchmarks)."""
        while self._handled < self._posted and self._thread.is_alive():
            time.sleep(0.001)

    # ------------------------------------------------------------------ pipeline thread
    def _disclosed_labels(self, server_round: int, node_id: int) -> np.ndarray | None:
        """True labels, only where the threat model discloses them and the client audited."""
        if not self.plan.disclose_labels or self.audit is None:
            return None
        if not self.audit.has(server_round, node_id):
            return None
        return self.audit.read(server_round, node_id).labels

    def _jobs_for(self, captured: CapturedRound) -> tuple[list[AttackJob], int]:
        """The jobs for the policy's choice of replies, and how many attacks it left out."""
        global_params = decode(captured.global_arrays)
        jobs: list[AttackJob] = []
        chosen = self.plan.policy.select(
            captured.server_round, [r.node_id for r in captured.replies]
        )
        unselected = (len(captured.replies) - len(chosen)) * len(self.plan.names)
        for reply in (r for r in captured.replies if r.node_id in chosen):
            labels = self._disclosed_labels(captured.server_round, reply.node_id)
            try:
                update = to_update(
                    captured,
                    reply,
                    global_params=global_params,
                    input_shape=self.model_spec.input_shape,
                    num_classes=self.model_spec.num_classes,
                    disclosed_labels=labels,
                )
                update = replace(update, input_domain=self.input_domain)
            except ValueError as exc:
                for name in self.plan.names:
                    reason = f"update rejected: {exc}"
                    self.recorder.record_failure(
                        captured.server_round, reply.node_id, name, Status.FAILED, reason
                    )
                    self.recorded += 1
                continue
            if self.update_store is not None:
                self.update_store.save(update)  # so a crash before the attacks ends loses none
            jobs.extend(self._job(update, name) for name in self.plan.names)
        return jobs, unselected

    def _has_room(self, job: AttackJob) -> bool:
        """Apply the queue policy; ``False`` when the job was recorded ``skipped``."""
        while self.pool.pending >= self.plan.max_pending:
            if self.plan.when_full == "skip":
                server_round, node_id, attack = job.key
                reason = (
                    f"pool full: {self.pool.pending} attacks pending (pool.max_pending="
                    f"{self.plan.max_pending}); pool.when_full=wait queues instead"
                )
                self.recorder.record_failure(server_round, node_id, attack, Status.SKIPPED, reason)
                self.recorded += 1
                self.skipped += 1
                return False
            # wait: training never waits, only this thread; wakes when an attack ends
            self._record(self.pool.poll(self._interval))
        return True

    def _record_rejected(self, rejected: RejectedReplies) -> None:
        for rejection in rejected.rejections:
            for name in self.plan.names:
                self.recorder.record_failure(
                    rejected.server_round,
                    rejection.node_id,
                    name,
                    Status.REJECTED,
                    rejection.reason,
                )
                self.recorded += 1

    def _handle(self, item: CapturedRound | RejectedReplies | Resubmission) -> None:
        if isinstance(item, RejectedReplies):
            self._record_rejected(item)
        elif isinstance(item, Resubmission):
            self._resubmit(item)
        else:
            self._submit_round(item)

    def resubmit(
        self, updates: Sequence[InterceptedUpdate], done: set[tuple[int, int, str]]
    ) -> None:
        """Attack again every (update, attack) without a row in ``done`` (O(1) here)."""
        missing = sum(
            (u.server_round, u.node_id, n) not in done for u in updates for n in self.plan.names
        )
        self._expected += missing
        self._post(Resubmission(tuple(updates), frozenset(done)))

    def _job(self, update: InterceptedUpdate, name: str) -> AttackJob:
        seed = job_seed(self.plan.seed, update, name)
        params = {"effort": self.plan.effort, **self.plan.params.get(name, {})}
        return AttackJob(name, params, update, self.model_spec, seed, self.plan.device)

    def _resubmit(self, item: Resubmission) -> None:
        for stored in item.updates:
            labels = self._disclosed_labels(stored.server_round, stored.node_id)
            update = replace(stored, disclosed_labels=labels, input_domain=self.input_domain)
            for name in self.plan.names:
                if (update.server_round, update.node_id, name) in item.done:
                    continue
                job = self._job(update, name)
                if self._has_room(job):
                    self.pool.submit(job)
                    self.submitted += 1

    def _submit_round(self, captured: CapturedRound) -> None:
        try:
            jobs, unselected = self._jobs_for(captured)
            self._rounds_persisted += 1
        except Exception as exc:  # a pipeline bug must cost rows with a reason, not the thread
            reason = f"pipeline error {type(exc).__name__}: {exc}"
            for reply in captured.replies:
                for name in self.plan.names:
                    self.recorder.record_failure(
                        captured.server_round, reply.node_id, name, Status.FAILED, reason
                    )
            self.recorded += len(captured.replies) * len(self.plan.names)
            return
        self._deselected += unselected
        for job in jobs:
            if self._has_room(job):
                self.pool.submit(job)
                self.submitted += 1

    def _record(self, results: list[AttackResult]) -> None:
        for result in results:
            self.recorder.record(result)
            self.recorded += 1

    def _drain_inbox(self) -> None:
        while self._inbox:
            self._handle(self._inbox.popleft())
            self._handled += 1

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._drain_inbox()
            if self.pool.pending:  # wake as soon as an attack ends, not a fixed interval later
                self._record(self.pool.poll(self._interval))
            else:
                self._stop.wait(self._interval)

    # ------------------------------------------------------------------ end of run
    def finish(
        self,
        timeout_s: float,
        on_progress: Callable[[DrainProgress], None] | None = None,
        every_s: float = 10.0,
    ) -> None:
        """Submit what is queued, record results as they arrive for up to ``timeout_s``, record
        what is still unfinished as ``timeout``, release the pool.

        ``on_progress`` hears how the drain goes: after new results (at most once a
        second) and every ``every_s`` seconds without one.
        """
        deadline = time.monotonic() + timeout_s
        self._stop.set()
        self._thread.join()
        self._drain_inbox()
        start = last_result = last_report = time.monotonic()
        first, seen = self.recorded, self.recorded
        while self.pool.pending and time.monotonic() < deadline:
            # each row lands on disk as soon as it exists; wakes when an attack ends
            self._record(self.pool.poll(max(0.0, min(self._interval, deadline - time.monotonic()))))
            now = time.monotonic()
            new, seen = self.recorded > seen, self.recorded
            last_result = now if new else last_result
            if on_progress and (now - last_report >= (1.0 if new else every_s)):
                done, left = seen - first, self.pending
                on_progress(DrainProgress(done, left, now - last_result, now - start))
                last_report = now
        remaining = max(0.0, deadline - time.monotonic())
        self._record(self.pool.drain(remaining, deadline_s=timeout_s))
        self.pool.shutdown()
