"""The auditor: joins each reconstruction with the audit store's ground truth and records it."""

from __future__ import annotations

import math
import threading

import numpy as np

from attacks.types import AttackFailure, Reconstruction
from server.pool.jobs import AttackResult
from simulator.audit import AuditStore
from simulator.metrics import compute_leakage
from simulator.results import STATUS_OK, JsonlAppender, LeakageRecord, RunPaths


class LeakageRecorder:
    """Turns attack results into :class:`LeakageRecord` rows, appended as they arrive.

    Parameters
    ----------
    paths : RunPaths
        The run directory.
    audit : AuditStore | None
        Ground truth; ``None`` when auditing is off (rows then carry no metrics).
    """

    def __init__(self, paths: RunPaths, audit: AuditStore | None) -> None:
        self.paths = paths
        self.audit = audit
        self.records: list[LeakageRecord] = []
        self._lock = threading.Lock()
        self._jsonl = JsonlAppender(paths.leakage_jsonl)

    def _base(self, result: AttackResult) -> dict[str, object]:
        server_round, node_id, attack = result.job.key
        return {
            "round": server_round,
            "node_id": node_id,
            "attack": attack,
            "worker": result.worker,
            "device": result.device,
            "attack_time_s": result.outcome.wall_time_s,
        }

    def _measure(self, result: AttackResult, recon: Reconstruction) -> LeakageRecord:
        server_round, node_id, attack = result.job.key
        base = self._base(result)
        details = dict(recon.details)
        if self.audit is None or not self.audit.has(server_round, node_id):
            return LeakageRecord(
                **base, status=STATUS_OK, reason="no ground truth (audit disabled)",  # type: ignore[arg-type]
                iterations=recon.iterations, details=details,
            )
        truth = self.audit.read(server_round, node_id)
        metrics = compute_leakage(truth.inputs, truth.labels, recon.inputs, recon.labels)
        target = self.paths.reconstruction_file(server_round, node_id, attack)
        target.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(target, inputs=recon.inputs, labels=recon.labels)
        return LeakageRecord(
            **base,  # type: ignore[arg-type]
            status=STATUS_OK,
            **metrics.to_row(),  # type: ignore[arg-type]
            iterations=recon.iterations,
            details=details,
        )

    def _append(self, row: LeakageRecord) -> LeakageRecord:
        with self._lock:
            self._jsonl.append(row.to_json())
            self.records.append(row)
        return row

    def record_failure(
        self, server_round: int, node_id: int, attack: str, status: str, reason: str
    ) -> LeakageRecord:
        """Record an attack that never ran (e.g. a malformed update)."""
        return self._append(LeakageRecord(server_round, node_id, attack, status, reason))

    def record(self, result: AttackResult) -> LeakageRecord:
        """Measure and append one row; a measuring error is itself a recorded failure."""
        outcome = result.outcome
        if isinstance(outcome, AttackFailure):
            row = LeakageRecord(**self._base(result), status=outcome.status, reason=outcome.reason)  # type: ignore[arg-type]
        else:
            try:
                row = self._measure(result, outcome)
            except Exception as exc:  # a bad reconstruction shape must not stop the run
                row = LeakageRecord(
                    **self._base(result),  # type: ignore[arg-type]
                    status="failed",
                    reason=f"measuring failed: {type(exc).__name__}: {exc}",
                )
        return self._append(row)

    def best_psnr(self) -> float:
        """Best mean PSNR of any row so far (NaN when none)."""
        with self._lock:
            values = [r.psnr_mean for r in self.records if not math.isnan(r.psnr_mean)]
        return max(values) if values else math.nan

    def close(self) -> None:
        """Close the JSONL file."""
        self._jsonl.close()
